"""The operating-system sandbox around an agent process, from parts Linux already has.

An agent process (``arena.engine.hosts.ProcessHost``) is forked from a
forkserver with torch loaded; right after the fork, before any plugin code is
imported, it locks itself in (``enter``):

- **Landlock** (Linux 5.13+) limits the file system to what running Python
  needs, read-only: the interpreter and its standard library, the
  directories on ``sys.path`` (site-packages, installed plugins), the
  ``arena`` and ``arena_agents`` packages, the plugin's own file, shared
  libraries, the few files of ``/etc`` a Python process reads (``ETC_FILES``),
  CPU facts under ``/sys`` and ``/proc`` (this process's own ``/proc/PID``
  only: no other process's environment or memory), and ``/dev/null`` and
  ``/dev/urandom``. One private scratch folder is writable; the referee
  deletes it after the process ends. The arena home, the data directories,
  the cache and the database are in none of these places (a ``sys.path``
  entry that holds one of them is left out, so it stays unreadable), so they
  can be neither read nor written. With ABI 6+ the process can neither signal
  nor reach (abstract sockets) any process outside its sandbox, the referee
  included.
- **seccomp** refuses the system calls an agent has no use for: new sockets
  (no network, no connection to any local service), new processes and new
  programs (``fork``, ``clone`` without ``CLONE_THREAD``, ``execve``: threads
  work, child processes do not, so the process *is* the whole tree its limits
  apply to), ``ptrace`` and other processes' memory, namespaces and mounts,
  ``setsid``/``setpgid``, ``bpf``, ``io_uring``, ``perf_event_open``, keyrings.
- ``PR_SET_NO_NEW_PRIVS`` (needed by both), ``PR_SET_DUMPABLE = 0`` and a
  parent-death signal.

The level a match ran under is stored with it: ``full`` (both layers),
``landlock`` (Landlock without seccomp or without signal scoping), ``process``
(only the process boundary: an old kernel, another OS, or the in-process
debugging host). ``probe()`` says which level this machine gives.

Out of scope: time and memory (the host's limits do that, polled from the
referee), CPU side channels, and CUDA devices beyond their device files.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import platform
import signal
import site
import struct
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

LEVELS = ("full", "landlock", "process")

def weakest(*levels: str) -> str:
    """The weakest of ``levels``: a match is as isolated as the least isolated of its agent processes."""
    return max(levels, key=LEVELS.index)


# --- Landlock (uapi/linux/landlock.h) -------------------------------------------------------------------
_NR = {"x86_64": {"create": 444, "add": 445, "restrict": 446},
       "aarch64": {"create": 444, "add": 445, "restrict": 446}}
_EXECUTE, _WRITE_FILE, _READ_FILE, _READ_DIR = 1 << 0, 1 << 1, 1 << 2, 1 << 3
_REMOVE_DIR, _REMOVE_FILE, _MAKE_CHAR, _MAKE_DIR, _MAKE_REG = 1 << 4, 1 << 5, 1 << 6, 1 << 7, 1 << 8
_MAKE_SOCK, _MAKE_FIFO, _MAKE_BLOCK, _MAKE_SYM = 1 << 9, 1 << 10, 1 << 11, 1 << 12
_REFER, _TRUNCATE, _IOCTL_DEV = 1 << 13, 1 << 14, 1 << 15
_FILE_RIGHTS = _EXECUTE | _WRITE_FILE | _READ_FILE | _TRUNCATE | _IOCTL_DEV  # rights that apply to a file
_SCOPE_ABSTRACT_UNIX, _SCOPE_SIGNAL = 1 << 0, 1 << 1
_NET_BIND_TCP, _NET_CONNECT_TCP = 1 << 0, 1 << 1
_RULE_PATH_BENEATH = 1
_PR_SET_NO_NEW_PRIVS, _PR_SET_DUMPABLE, _PR_SET_PDEATHSIG, _PR_SET_SECCOMP = 38, 4, 1, 22

_libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


def landlock_abi() -> int:
    """The kernel's Landlock ABI version (0: none, or not Linux)."""
    if sys.platform != "linux" or platform.machine() not in _NR:
        return 0
    v = _libc.syscall(_NR[platform.machine()]["create"], None, ctypes.c_size_t(0), ctypes.c_uint32(1))
    return max(0, int(v))


def _fs_rights(abi: int) -> int:
    rights = (1 << 13) - 1  # EXECUTE .. MAKE_SYM (ABI 1)
    if abi >= 2:
        rights |= _REFER
    if abi >= 3:
        rights |= _TRUNCATE
    if abi >= 5:
        rights |= _IOCTL_DEV
    return rights


# --- seccomp (a classic BPF filter on seccomp_data) -------------------------------------------------------
_SECCOMP_RET_ALLOW = 0x7FFF0000
_SECCOMP_RET_ERRNO = 0x00050000
_EPERM, _ENOSYS = 1, 38
_AUDIT_ARCH = {"x86_64": 0xC000003E, "aarch64": 0xC00000B7}
_CLONE_THREAD = 0x00010000
# Refused outright (EPERM); clone3 answers ENOSYS so libc falls back to clone, whose flags the filter reads.
_DENY = {
    "x86_64": {"socket": 41, "ptrace": 101, "process_vm_readv": 310, "process_vm_writev": 311, "execve": 59,
               "execveat": 322, "fork": 57, "vfork": 58, "io_uring_setup": 425, "bpf": 321,
               "perf_event_open": 298, "keyctl": 250, "add_key": 248, "request_key": 249, "mount": 165,
               "umount2": 166, "unshare": 272, "setns": 308, "pivot_root": 155, "chroot": 161, "setsid": 112,
               "setpgid": 109, "kcmp": 312, "userfaultfd": 323},
    "aarch64": {"socket": 198, "ptrace": 117, "process_vm_readv": 270, "process_vm_writev": 271, "execve": 221,
                "execveat": 281, "io_uring_setup": 425, "bpf": 280, "perf_event_open": 241, "keyctl": 219,
                "add_key": 217, "request_key": 218, "mount": 40, "umount2": 39, "unshare": 97, "setns": 268,
                "pivot_root": 41, "chroot": 51, "setsid": 157, "setpgid": 154, "kcmp": 272, "userfaultfd": 282},
}
_CLONE = {"x86_64": 56, "aarch64": 220}
_CLONE3 = 435


def _bpf(code: int, jt: int, jf: int, k: int) -> bytes:
    return struct.pack("HBBI", code, jt, jf, k)


def seccomp_program(machine: str) -> bytes:
    """The filter for ``machine`` (x86_64 or aarch64) as packed ``sock_filter`` instructions:

    0  load arch; another ABI (i386 compat) is refused      4+n    clone3? -> ENOSYS (libc falls back to clone)
    3  load nr; x32 numbers (bit 30) are refused             4+n+2  clone without CLONE_THREAD -> EPERM
    5… each denied number -> EPERM                           last   allow
    """
    ld_w_abs, jeq_k, jge_k, jset_k, ret_k = 0x20, 0x15, 0x35, 0x45, 0x06
    deny = sorted(_DENY[machine].values())
    n = len(deny)
    eperm = 5 + n + 5  # index of the shared "return EPERM"
    prog = [_bpf(ld_w_abs, 0, 0, 4),
            _bpf(jeq_k, 1, 0, _AUDIT_ARCH[machine]),
            _bpf(ret_k, 0, 0, _SECCOMP_RET_ERRNO | _EPERM),
            _bpf(ld_w_abs, 0, 0, 0),
            _bpf(jge_k, eperm - 5, 0, 0x40000000)]
    prog += [_bpf(jeq_k, eperm - (5 + i) - 1, 0, nr) for i, nr in enumerate(deny)]
    prog += [_bpf(jeq_k, 0, 1, _CLONE3),                        # 5+n
             _bpf(ret_k, 0, 0, _SECCOMP_RET_ERRNO | _ENOSYS),   # 5+n+1
             _bpf(jeq_k, 0, 3, _CLONE[machine]),                # 5+n+2
             _bpf(ld_w_abs, 0, 0, 16),                          # 5+n+3: clone's flags, low word of args[0]
             _bpf(jset_k, 1, 0, _CLONE_THREAD),                 # 5+n+4: a thread -> allow
             _bpf(ret_k, 0, 0, _SECCOMP_RET_ERRNO | _EPERM),    # 5+n+5 = eperm
             _bpf(ret_k, 0, 0, _SECCOMP_RET_ALLOW)]             # 5+n+6
    assert struct.unpack("HBBI", prog[eperm])[3] == _SECCOMP_RET_ERRNO | _EPERM
    return b"".join(prog)


def _install_seccomp(machine: str) -> None:
    prog = seccomp_program(machine)
    count = len(prog) // 8
    buf = ctypes.create_string_buffer(prog, len(prog))

    class SockFprog(ctypes.Structure):
        _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]

    fprog = SockFprog(count, ctypes.cast(buf, ctypes.c_void_p))
    if _libc.prctl(_PR_SET_SECCOMP, 2, ctypes.byref(fprog), 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "seccomp filter refused")


# --- what the agent may read -------------------------------------------------------------------------------

@dataclass(frozen=True)
class Policy:
    """The paths an agent process may read (``read``) and write (``write``), and the paths that must stay
    out of reach (``secret``: the arena home, data folders), which no read path may contain."""

    read: tuple[str, ...]
    write: tuple[str, ...]
    secret: tuple[str, ...]


def _within(path: Path, root: Path) -> bool:
    try:
        path.relative_to(root)
        return True
    except ValueError:
        return False


# What of /etc a Python process with torch reads: the dynamic loader's cache (a library loaded late),
# time zone, users and groups, the OS name. Not the rest of /etc, which holds secrets to whoever runs
# as root (/etc/shadow, the SSH host keys, TLS private keys), and an agent could hide them in its trojan.
ETC_FILES = ("/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/ld.so.conf.d", "/etc/localtime", "/etc/timezone",
             "/etc/passwd", "/etc/group", "/etc/nsswitch.conf", "/etc/os-release", "/etc/mime.types")


def policy(scratch: str, plugin_file: str | None, secret: Iterable[str], extra_files: Iterable[str] = ()
           ) -> Policy:
    """The read and write paths for an agent whose scratch folder is ``scratch``."""
    import arena

    secrets = tuple(str(Path(s).resolve()) for s in secret if s)
    roots: list[str] = [sys.prefix, sys.base_prefix, sys.exec_prefix, os.path.dirname(os.path.realpath(sys.executable)),
                        os.path.dirname(os.path.dirname(os.path.abspath(arena.__file__))) + "/arena"]
    try:
        import arena_agents

        roots.append(os.path.dirname(os.path.abspath(arena_agents.__file__)))
    except ImportError:
        pass
    roots += [p for p in sys.path if p and os.path.isdir(p)]
    roots += site.getsitepackages() + [site.getusersitepackages()]
    roots += ["/usr/lib", "/usr/lib64", "/usr/local/lib", "/lib", "/lib64", *ETC_FILES, "/usr/share/zoneinfo",
              "/sys/devices/system/cpu", "/sys/fs/cgroup", "/proc/cpuinfo", "/proc/meminfo", "/proc/stat",
              f"/proc/{os.getpid()}", "/dev/urandom", "/dev/random", "/dev/null"]
    if plugin_file:
        roots.append(plugin_file)
    roots += [f for f in extra_files if f]
    cwd = Path.cwd().resolve()
    read: list[str] = []
    for r in roots:
        p = Path(r).resolve() if not r.startswith("/proc/") else Path(r)
        if not p.exists():
            continue
        # A path on sys.path that holds the arena home or a data folder (a checkout that keeps its
        # home inside, the current folder) would open them: it is left out.
        if any(_within(Path(s), p) for s in secrets) or (p == cwd and str(p) not in (sys.prefix,)):
            continue
        if str(p) not in read:
            read.append(str(p))
    return Policy(tuple(read), (str(Path(scratch).resolve()),), secrets)


def _landlock(pol: Policy, abi: int, devices: Iterable[str] = ()) -> bool:
    """Restrict this process to ``pol``; True when signals and abstract sockets are scoped too."""
    nr = _NR[platform.machine()]
    handled = _fs_rights(abi)
    scoped = (_SCOPE_ABSTRACT_UNIX | _SCOPE_SIGNAL) if abi >= 6 else 0
    net = (_NET_BIND_TCP | _NET_CONNECT_TCP) if abi >= 4 else 0
    attr = struct.pack("QQQ", handled, net, scoped)
    size = 24 if abi >= 6 else 16 if abi >= 4 else 8
    fd = _libc.syscall(nr["create"], attr[:size], ctypes.c_size_t(size), ctypes.c_uint32(0))
    if fd < 0:
        raise OSError(ctypes.get_errno(), "landlock_create_ruleset")
    read_rights = _EXECUTE | _READ_FILE | _READ_DIR
    try:
        rules = [(p, read_rights) for p in pol.read] + [(p, handled) for p in pol.write]
        rules += [("/dev/null", _READ_FILE | _WRITE_FILE)] + [(d, _READ_FILE | _WRITE_FILE | (_IOCTL_DEV if abi >= 5 else 0))
                                                                for d in devices]
        for path, rights in rules:
            try:
                pfd = os.open(path, os.O_PATH | os.O_CLOEXEC)
            except OSError:
                continue
            try:
                if not os.path.isdir(path):
                    rights &= _FILE_RIGHTS
                rule = struct.pack("=Qi", rights & handled, pfd)
                if _libc.syscall(nr["add"], ctypes.c_int(fd), ctypes.c_int(_RULE_PATH_BENEATH), rule,
                                 ctypes.c_uint32(0)) != 0:
                    raise OSError(ctypes.get_errno(), f"landlock_add_rule {path}")
            finally:
                os.close(pfd)
        if _libc.syscall(nr["restrict"], ctypes.c_int(fd), ctypes.c_uint32(0)) != 0:
            raise OSError(ctypes.get_errno(), "landlock_restrict_self")
    finally:
        os.close(fd)
    return abi >= 6


def restrict(read: Iterable[str], write: Iterable[str]) -> None:
    """Restrict this process (and its children) to reading ``read`` and writing ``write``, for good.

    The agents' lock (``enter``) without the rest; also how the tests make a
    folder read-only for a process run as root, where permission bits do not bite.
    Raises OSError where Landlock is unavailable (``landlock_abi() == 0``).
    """
    abi = landlock_abi()
    if not abi:
        raise OSError("Landlock is not available on this kernel")
    if _libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS)")
    _landlock(Policy(tuple(read), tuple(write), ()), abi)


def enter(scratch: str, plugin_file: str | None, secret: Iterable[str], extra_files: Iterable[str] = ()) -> str:
    """Lock this (agent) process in; returns the level reached (``LEVELS``). Call before any plugin code
    is imported. ``extra_files``: other user files the agent may read (a given model's trigger). Agent
    processes never run programs, ``torch.compile``'s compiler included: that is the referee's own."""
    if sys.platform != "linux":
        return "process"
    _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    _libc.prctl(_PR_SET_DUMPABLE, 0, 0, 0, 0)  # no core dumps, no /proc/PID/mem for same-uid readers
    if _libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        return "process"
    abi = landlock_abi()
    scoped = False
    if abi:
        devices = [f"/dev/{d}" for d in os.listdir("/dev") if d.startswith("nvidia")] if os.path.isdir("/dev") else []
        scoped = _landlock(policy(scratch, plugin_file, secret, extra_files), abi, devices)
    seccomp = False
    machine = platform.machine()
    if machine in _DENY:
        _install_seccomp(machine)
        seccomp = True
    if abi and seccomp and scoped:
        return "full"
    return "landlock" if abi else "process"


def probe() -> str:
    """The level an agent process gets on this machine (checked in a throw-away child process)."""
    import tempfile

    r, w = os.pipe()
    scratch = tempfile.mkdtemp(prefix="arena-probe-")
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        os.close(r)
        try:
            level = enter(scratch, None, ())
        except OSError:
            level = "process"
        os.write(w, level.encode())
        os._exit(0)
    os.close(w)
    with os.fdopen(r, "rb") as f:
        level = f.read().decode() or "process"
    os.waitpid(pid, 0)
    os.rmdir(scratch)
    return level
