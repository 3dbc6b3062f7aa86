"""The operating-system sandbox around agent processes (arena.engine.sandbox), tried by a hostile plugin.

Played through the referee, a plugin tries to reach what its side must not: the arena home (store,
cache), the data folders, the referee's environment through /proc, the network, new processes,
signals to the referee, files outside its scratch folder, descriptors inherited from the forkserver. Each attempt must fail, and the match
must say it ran at level ``full`` on a kernel that offers Landlock ABI 6+ (this project's machines).
"""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import pytest

from arena.config.datasets import DEBIAN_FASHION_MNIST, data_dir
from arena.core.cache import arena_home
from arena.engine import sandbox
from arena.present.match_text import match_report
from conftest import requires_fmnist

needs_landlock = pytest.mark.skipif(sandbox.landlock_abi() < 6 or os.uname().machine not in ("x86_64", "aarch64"),
                                    reason="the full sandbox needs Linux with Landlock ABI 6+ on x86_64/aarch64")

PROBER = '''
import os, socket, subprocess
from arena.api import Attacker, Defender, Deployment, Trojan

HOME, DATA, REFEREE, OUTSIDE, USER_FILE = {home!r}, {data!r}, {referee}, {outside!r}, {user_file!r}


def attempts():
    res = {{}}

    def t(key, f):
        try:
            f()
            res[key] = "allowed"
        except Exception as e:
            res[key] = type(e).__name__

    def fork():
        pid = os.fork()
        if pid == 0:
            os._exit(0)
        os.waitpid(pid, 0)

    t("read_db", lambda: open(os.path.join(HOME, "arena.db"), "rb").read(1))
    t("list_home", lambda: os.listdir(HOME))
    t("write_cache", lambda: open(os.path.join(HOME, "cache", "planted"), "w").write("x"))
    t("list_data", lambda: os.listdir(DATA))
    t("list_etc", lambda: os.listdir("/etc"))
    t("read_shadow", lambda: open("/etc/shadow", "rb").read(1))
    t("referee_environ", lambda: open(f"/proc/{{REFEREE}}/environ", "rb").read())
    t("parent_environ", lambda: open(f"/proc/{{os.getppid()}}/environ", "rb").read())
    t("list_proc", lambda: os.listdir("/proc"))
    t("tcp_socket", lambda: socket.socket(socket.AF_INET, socket.SOCK_STREAM))
    t("unix_socket", lambda: socket.socket(socket.AF_UNIX, socket.SOCK_STREAM))
    t("socket_pair", lambda: socket.socketpair())
    t("subprocess", lambda: subprocess.run(["true"]))
    t("fork", fork)
    t("signal_referee", lambda: os.kill(REFEREE, 0))
    t("write_outside", lambda: open(OUTSIDE, "w").write("x"))
    t("write_scratch", lambda: open("scratch-file", "w").write("x"))
    # A folder on sys.path that is not the Python installation's (a script's own folder, here the
    # tests' folder pytest puts there): the user's, and it may hold a .env beside the script.
    t("read_user_sys_path", lambda: open(USER_FILE, "rb").read(1))
    # Root's capabilities, the machine's own state, memory and files the budgets could not see.
    import ctypes, stat
    libc = ctypes.CDLL(None, use_errno=True)

    def c_call(f, *args):  # a C call: -1 is a failure, and only EPERM a refusal (EINVAL got past the filter)
        if f(*args) == -1 and ctypes.get_errno() == 1:
            raise PermissionError(os.strerror(1))

    def remove():
        open("doomed", "w").close()
        os.remove("doomed")

    def rename():
        open("before", "w").close()
        os.rename("before", "after")

    reboot = {{"x86_64": 169, "aarch64": 142}}[os.uname().machine]
    t("mknod_kmsg", lambda: os.mknod("kmsg", stat.S_IFCHR | 0o600, os.makedev(1, 11)))
    t("mkfifo", lambda: os.mkfifo("fifo"))
    t("rename_scratch", rename)
    t("remove_scratch", remove)
    t("tmpfile", lambda: os.close(os.open(".", os.O_TMPFILE | os.O_RDWR)))
    t("memfd", lambda: os.close(os.memfd_create("hidden")))
    t("sysv_shm", lambda: c_call(libc.shmget, 0, 4096, 0o600))
    t("msg_queue", lambda: c_call(libc.msgget, 0, 0o600))
    t("clear_death_signal", lambda: c_call(libc.prctl, 1, 0, 0, 0, 0))
    t("reboot", lambda: c_call(libc.syscall, reboot, 0, 0, 0, 0))  # a bad magic number: EINVAL if allowed
    t("set_dumpable", lambda: c_call(libc.prctl, 4, 1, 0, 0, 0))
    status = open("/proc/self/status").read().splitlines()
    res["capabilities"] = sum(int(line.split(":")[1], 16) for line in status
                              if line.split(":")[0] in ("CapInh", "CapPrm", "CapEff", "CapAmb"))
    res["environ"] = sorted(k for k in os.environ if k.startswith("ARENA_") and k != "ARENA_HOME")
    # Descriptors inherited from the forkserver: the forkserver's "alive" pipe (a byte there ends it and,
    # through the parent-death signal, every agent it forked) and the resource tracker's pipe must not be.
    links = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            if int(fd) > 2:  # stdout and stderr are the pipe the referee relays prints from
                links.append(os.readlink(f"/proc/self/fd/{{fd}}"))
        except OSError:
            pass
    res["channels"] = sorted(link.split(":")[0] for link in links if link.startswith(("pipe:", "socket:")))
    res["raw_stdout_is_stderr"] = os.path.samestat(os.fstat(1), os.fstat(2))
    return res


class Prober(Attacker):
    name = "prober"

    def craft(self, ctx):
        return Trojan(ctx.benign, ctx.trigger, notes=attempts())


class ProbingDefender(Defender):
    name = "probing-defender"
    category = "none"

    def deploy(self, model, ctx):
        return Deployment(model=model, notes=attempts())


class PipeWriter(Defender):
    """Writes into every inherited descriptor but stdio and sockets (its own pipe to the referee is one):
    before they were closed, one byte in the forkserver's "alive" pipe ended the forkserver, and the
    parent-death signal then killed this deployment and every agent the forkserver had forked."""
    name = "pipe-writer"
    category = "none"

    def deploy(self, model, ctx):
        import stat
        written = 0
        for fd in sorted(int(n) for n in os.listdir("/proc/self/fd")):
            try:
                if fd > 2 and not stat.S_ISSOCK(os.fstat(fd).st_mode):
                    written += os.write(fd, b"x")
            except OSError:
                pass
        import time
        time.sleep(3)  # time for a forkserver that was told to end to do so, and for its death signal
        return Deployment(model=model, notes={{"written": written}})
'''

DENIED = ["read_db", "list_home", "write_cache", "list_data", "list_etc", "read_shadow", "referee_environ", "parent_environ", "list_proc",
          "tcp_socket", "unix_socket", "socket_pair", "subprocess", "fork", "signal_referee", "write_outside",
          "mknod_kmsg", "mkfifo", "rename_scratch", "remove_scratch", "tmpfile", "memfd", "sysv_shm", "msg_queue",
          "clear_death_signal", "reboot", "set_dumpable", "read_user_sys_path"]


@pytest.fixture(scope="module")
def prober(tmp_path_factory) -> tuple[str, Path]:
    folder = tmp_path_factory.mktemp("prober")
    data = DEBIAN_FASHION_MNIST if DEBIAN_FASHION_MNIST.is_dir() else data_dir()
    outside = folder / "escaped"
    (folder / "prober.py").write_text(textwrap.dedent(PROBER.format(
        home=str(arena_home()), data=str(data), referee=os.getpid(), outside=str(outside),
        user_file=str(Path(__file__).resolve().parent / "conftest.py"))))
    return str(folder / "prober.py"), outside


@requires_fmnist
@needs_landlock
def test_an_attacker_reaches_nothing_outside_its_sandbox(referee, prober):
    path, outside = prober
    rec = referee.play(f"{path}:Prober", "none", seed=0).record
    notes = rec.metrics["attacker_notes"]
    assert {k: notes[k] for k in DENIED if notes[k] == "allowed"} == {}, notes
    assert notes["write_scratch"] == "allowed" and notes["environ"] == [] and notes["capabilities"] == 0
    assert notes["channels"] == ["socket"] and notes["raw_stdout_is_stderr"]  # its own pipe to the referee only
    assert not outside.exists() and not (arena_home() / "cache" / "planted").exists()
    assert rec.metrics["sandbox"] == "full"
    assert "sandbox: full" in match_report(rec)


@requires_fmnist
@needs_landlock
def test_a_defender_and_its_controls_reach_nothing_either(referee, prober):
    path, _ = prober
    rec = referee.play("badnet", f"{path}:ProbingDefender", seed=0).record
    notes = rec.metrics["defender_notes"]
    assert {k: notes[k] for k in DENIED if notes[k] == "allowed"} == {}, notes
    assert notes["channels"] == ["socket"] and notes["raw_stdout_is_stderr"] and notes["capabilities"] == 0
    assert rec.metrics["sandbox"] == "full"


@requires_fmnist
def test_inherited_descriptors_cannot_end_the_forkserver(referee, prober):
    path, _ = prober
    first = referee.play("badnet", f"{path}:PipeWriter", seed=0).record
    notes = first.metrics.get("defender_notes")  # none: the deployment was killed before it answered
    assert first.status == "ok" and notes and notes["written"] > 0, first.metrics.get("forfeit")
    assert first.metrics.get("forfeit") is None
    again = referee.play("badnet", "down-upsampling", seed=0).record  # and the next agent still starts
    assert again.status == "ok", again.error


CANARY_PROBE = '''
import ctypes, os, sys
from arena.api import Attacker, Trojan

NAME = {name!r}
NEEDLE = bytes(reversed({reversed_value!r}))  # the value never appears forward in this file's text


def hits_in_memory(needle):
    """Places the needle's bytes occur in this process's readable memory, its own object excepted."""
    libc = ctypes.CDLL(None)
    libc.memmem.restype = ctypes.c_void_p
    libc.memmem.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p, ctypes.c_size_t]
    own = id(needle) + sys.getsizeof(b"") - 1
    hits = 0
    with open("/proc/self/maps") as f:
        regions = f.read().splitlines()
    for line in regions:
        addr, perms, *rest = line.split()
        if not perms.startswith("r") or (rest and rest[-1].startswith(("[vvar", "[vsyscall"))):
            continue
        lo, hi = (int(x, 16) for x in addr.split("-"))
        at = lo
        while at < hi:
            found = libc.memmem(at, hi - at, own, len(needle))
            if not found:
                break
            hits += found != own
            at = found + 1
    return hits


class CanaryProbe(Attacker):
    name = "canary-probe"

    def craft(self, ctx):
        with open("/proc/self/environ", "rb") as f:
            block = f.read()
        notes = {{"in_environ": NAME in os.environ, "in_block": NEEDLE in block or NAME.encode() in block,
                  "in_memory": hits_in_memory(NEEDLE), "path_kept": "PATH" in os.environ}}
        return Trojan(ctx.benign, ctx.trigger, notes=notes)
'''


@requires_fmnist
def test_the_users_environment_never_reaches_an_agent(tiny_path, tmp_path):
    """A secret in the referee's environment (a cloud token, say) is in neither the agent's environment,
    nor its /proc/self/environ, nor anywhere in its memory: a plugin could not hide it in its trojan."""
    import json
    import secrets
    import subprocess
    import sys

    name, value = "ARENA_TEST_CANARY_TOKEN", "canary-" + secrets.token_hex(16)
    probe = tmp_path / "canary.py"
    probe.write_text(textwrap.dedent(CANARY_PROBE.format(name=name, reversed_value=value.encode()[::-1])))
    script = ("import json, sys\n"
              "from arena.config.scenario import load_scenario\n"
              "from arena.engine.referee import Referee\n"
              f"rec = Referee(load_scenario({str(tiny_path)!r}), device='cpu').play({str(probe) + ':CanaryProbe'!r}, "
              "'none', seed=0).record\n"
              "print(json.dumps(rec.metrics.get('attacker_notes')))\n")
    # A fresh interpreter, so its forkserver starts with the canary in the environment.
    out = subprocess.run([sys.executable, "-c", script], env={**os.environ, name: value, "AWS_SECRET_ACCESS_KEY": value},
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    notes = json.loads(out.stdout.strip().splitlines()[-1])
    assert notes == {"in_environ": False, "in_block": False, "in_memory": 0, "path_kept": True}


@needs_landlock
def test_this_machine_gives_the_full_level():
    assert sandbox.probe() == "full"


def test_scratch_folders_are_removed_with_their_process(tiny, tmp_path):
    import torch

    from arena.engine.hosts import open_host

    host = open_host("attacker", "none", {}, torch.device("cpu"))
    scratch = Path(host.scratch)
    assert scratch.is_dir()
    host.close()
    assert not scratch.exists()


def test_the_seccomp_program_refuses_what_it_lists():
    import struct

    for machine in ("x86_64", "aarch64"):
        prog = sandbox.seccomp_program(machine)
        assert len(prog) % 8 == 0 and len(prog) // 8 < 256
        ks = {struct.unpack("HBBI", prog[i:i + 8])[3] for i in range(0, len(prog), 8)}
        assert set(sandbox._DENY[machine].values()) <= ks


@pytest.mark.parametrize("machine,headers", [("x86_64", ("/usr/include/x86_64-linux-gnu/asm/unistd_64.h",
                                                         "/usr/include/asm/unistd_64.h")),
                                             ("aarch64", ("/usr/include/asm-generic/unistd.h",))])
def test_the_seccomp_numbers_are_the_kernels(machine, headers):
    """Every number the filter refuses or reads is the one the kernel's own headers give that name
    (wherever the distribution keeps them; skipped only where linux-libc-dev is not installed)."""
    import re

    header = next((Path(h) for h in headers if Path(h).is_file()), None)
    if header is None:
        pytest.skip(f"none of {', '.join(headers)} here (linux-libc-dev)")
    text = header.read_text()
    numbers = {m.group(1): int(m.group(2)) for m in re.finditer(r"#define __NR(?:3264)?_(\w+)\s+(\d+)", text)}
    named = {**sandbox._DENY[machine], **sandbox._ENOSYS_CALLS, "clone": sandbox._CLONE[machine],
             "prctl": sandbox._PRCTL[machine], **{"open" if nr == 2 else "openat": nr
                                                    for nr in sandbox._OPEN_FLAGS[machine]}}
    assert {name: nr for name, nr in named.items() if numbers.get(name) != nr} == {}


def test_the_weakest_level_wins():
    assert sandbox.weakest("full", "landlock") == "landlock"
    assert sandbox.weakest("full", "full") == "full"
    assert sandbox.weakest("process", "full") == "process"


def test_scratch_folders_of_a_referee_that_is_gone_are_swept(tmp_path):
    import subprocess
    import sys

    from arena.engine.hosts import SCRATCH_PREFIX, sweep_scratch

    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead = tmp_path / f"{SCRATCH_PREFIX}{int(gone.stdout)}-abc"
    live = tmp_path / f"{SCRATCH_PREFIX}{os.getpid()}-def"
    unnamed = tmp_path / f"{SCRATCH_PREFIX}xyz"  # the older name, without a pid: left alone
    for d in (dead, live, unnamed):
        (d / "sub").mkdir(parents=True)
    assert sweep_scratch(str(tmp_path)) == [str(dead)]
    assert not dead.exists() and live.exists() and unnamed.exists()


def test_a_home_whose_cache_links_elsewhere_keeps_the_target_secret(tmp_path, monkeypatch):
    """A cache on another disk, or shared by workers (the test suite's xdist workers share one), is a
    link in the home: what it points to is as far out of an agent's reach as the home itself."""
    from arena.engine.hosts import secret_paths

    home, elsewhere = tmp_path / "home", tmp_path / "big-disk" / "cache"
    home.mkdir()
    elsewhere.mkdir(parents=True)
    (home / "cache").symlink_to(elsewhere, target_is_directory=True)
    monkeypatch.setenv("ARENA_HOME", str(home))
    secret = secret_paths()
    assert str(home.resolve()) in secret and str(elsewhere.resolve()) in secret
