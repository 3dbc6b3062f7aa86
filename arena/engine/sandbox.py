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
``landlock`` (seccomp, and Landlock without signal scoping), ``process``
(only the process boundary: an old kernel, another OS, a CPU architecture
other than x86_64 and aarch64, or the in-process debugging host).
``probe()`` says which level this machine gives.

Out of scope: time and memory (the host's limits do that, polled from the
referee), CPU side channels, and CUDA devices beyond their device files.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import importlib
import importlib.metadata
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
_PR_CAPBSET_DROP, _PR_SET_SECUREBITS, _PR_CAP_AMBIENT, _PR_CAP_AMBIENT_CLEAR_ALL = 24, 28, 47, 4
# NOROOT, NO_SETUID_FIXUP, KEEP_CAPS and NO_CAP_AMBIENT_RAISE, each with its lock: uid 0 means nothing
_SECUREBITS = 0x01 | 0x02 | 0x04 | 0x08 | 0x20 | 0x40 | 0x80
_CAP_VERSION_3 = 0x20080522

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
# Refused outright (EPERM), by class:
# - other processes and programs: sockets (socket pairs too: their buffers are kernel memory), ptrace
#   and other processes' memory, exec, fork, namespaces;
# - the machine's own state, which root's capabilities would otherwise reach (they are dropped too, but
#   the filter does not depend on that): reboot, kexec, modules, the clock, the kernel log, swap, device
#   nodes, the mount API, I/O ports, host names, accounting, quotas, file handles;
# - memory and files the kernel keeps outside the process, which the referee's memory and disk polls
#   cannot see (resident memory, the scratch folder's files) and some of which outlive the process:
#   memfd, SysV shared memory, message queues and semaphores, POSIX message queues (O_TMPFILE below).
# clone3 and openat2 answer ENOSYS (their flags sit in a struct the filter cannot read), so libc falls
# back to clone and openat, whose flags it reads.
_DENY = {
    "x86_64": {"socket": 41, "socketpair": 53, "ptrace": 101, "process_vm_readv": 310, "process_vm_writev": 311,
               "execve": 59, "execveat": 322, "fork": 57, "vfork": 58, "io_uring_setup": 425, "bpf": 321,
               "perf_event_open": 298, "keyctl": 250, "add_key": 248, "request_key": 249, "mount": 165,
               "umount2": 166, "unshare": 272, "setns": 308, "pivot_root": 155, "chroot": 161, "setsid": 112,
               "setpgid": 109, "kcmp": 312, "userfaultfd": 323, "pidfd_getfd": 438,
               "reboot": 169, "kexec_load": 246, "kexec_file_load": 320, "init_module": 175,
               "finit_module": 313, "delete_module": 176, "settimeofday": 164, "clock_settime": 227,
               "clock_adjtime": 305, "adjtimex": 159, "syslog": 103, "swapon": 167, "swapoff": 168,
               "mknod": 133, "mknodat": 259, "open_tree": 428, "move_mount": 429, "fsopen": 430, "fsconfig": 431,
               "fsmount": 432, "fspick": 433, "mount_setattr": 442, "iopl": 172, "ioperm": 173,
               "sethostname": 170, "setdomainname": 171, "acct": 163, "quotactl": 179, "quotactl_fd": 443,
               "name_to_handle_at": 303, "open_by_handle_at": 304, "vhangup": 153, "lookup_dcookie": 212,
               "memfd_create": 319, "memfd_secret": 447, "shmget": 29, "msgget": 68, "semget": 64,
               "mq_open": 240},
    "aarch64": {"socket": 198, "socketpair": 199, "ptrace": 117, "process_vm_readv": 270, "process_vm_writev": 271,
                "execve": 221, "execveat": 281, "io_uring_setup": 425, "bpf": 280, "perf_event_open": 241,
                "keyctl": 219, "add_key": 217, "request_key": 218, "mount": 40, "umount2": 39, "unshare": 97,
                "setns": 268,
                "pivot_root": 41, "chroot": 51, "setsid": 157, "setpgid": 154, "kcmp": 272, "userfaultfd": 282,
                "pidfd_getfd": 438, "reboot": 142, "kexec_load": 104, "kexec_file_load": 294, "init_module": 105,
                "finit_module": 273, "delete_module": 106, "settimeofday": 170, "clock_settime": 112,
                "clock_adjtime": 266, "adjtimex": 171, "syslog": 116, "swapon": 224, "swapoff": 225, "mknodat": 33,
                "open_tree": 428, "move_mount": 429, "fsopen": 430, "fsconfig": 431, "fsmount": 432, "fspick": 433,
                "mount_setattr": 442, "sethostname": 161, "setdomainname": 162, "acct": 89, "quotactl": 60,
                "quotactl_fd": 443, "name_to_handle_at": 264, "open_by_handle_at": 265, "vhangup": 58,
                "lookup_dcookie": 18, "memfd_create": 279, "memfd_secret": 447, "shmget": 194, "msgget": 186,
                "semget": 190, "mq_open": 180},
}
_ENOSYS_CALLS = {"clone3": 435, "openat2": 437}  # the same number on both machines
_CLONE = {"x86_64": 56, "aarch64": 220}
_PRCTL = {"x86_64": 157, "aarch64": 167}
# open's and openat's flags (argument index): O_TMPFILE makes a file with no name, which no walk of the
# scratch folder finds; it stays on disk for as long as a descriptor or a mapping holds it.
_OPEN_FLAGS = {"x86_64": {2: 1, 257: 2}, "aarch64": {56: 2}}
_O_TMPFILE_BIT = 0o20000000  # __O_TMPFILE, the same on both machines (O_TMPFILE adds O_DIRECTORY)
# prctl options an agent may not use: clearing its parent-death signal (with it, an agent outlived a
# referee killed outright: no limit was polled any more), its dumpability, a ptracer, a subreaper, its
# memory map's fields.
_PRCTL_DENIED = (1, 4, 0x59616D61, 36, 35)  # PDEATHSIG, DUMPABLE, PTRACER, CHILD_SUBREAPER, SET_MM


def _bpf(code: int, jt: int, jf: int, k: int) -> bytes:
    return struct.pack("HBBI", code, jt, jf, k)


def seccomp_program(machine: str) -> bytes:
    """The filter for ``machine`` (x86_64 or aarch64) as packed ``sock_filter`` instructions: another
    ABI (i386 compat) and x32 numbers are refused; each number of ``_DENY`` -> EPERM; clone3 and openat2
    -> ENOSYS; clone without CLONE_THREAD -> EPERM; prctl with an option of ``_PRCTL_DENIED`` -> EPERM;
    open and openat with O_TMPFILE -> EPERM; everything else is allowed."""
    ld_w_abs, jeq_k, jge_k, jset_k, ret_k = 0x20, 0x15, 0x35, 0x45, 0x06
    prog: list[tuple[int, int | str, int | str, int] | str] = []  # an instruction, or a label (a str)

    def op(code: int, k: int, jt: int | str = 0, jf: int | str = 0) -> None:
        prog.append((code, jt, jf, k))

    def arg_low(i: int) -> None:  # the low 32 bits of syscall argument i (seccomp_data.args[i], little-endian)
        op(ld_w_abs, 16 + 8 * i)

    op(ld_w_abs, 4)                                   # seccomp_data.arch
    op(jeq_k, _AUDIT_ARCH[machine], 0, "eperm")
    op(ld_w_abs, 0)                                   # seccomp_data.nr
    op(jge_k, 0x40000000, "eperm", 0)                 # x32 numbers
    for nr in sorted(_DENY[machine].values()):
        op(jeq_k, nr, "eperm", 0)
    for nr in _ENOSYS_CALLS.values():
        op(jeq_k, nr, "enosys", 0)
    op(jeq_k, _CLONE[machine], "clone", 0)
    op(jeq_k, _PRCTL[machine], "prctl", 0)
    for nr, arg in _OPEN_FLAGS[machine].items():
        op(jeq_k, nr, f"open{arg}", 0)
    op(ret_k, _SECCOMP_RET_ALLOW)
    prog.append("clone")
    arg_low(0)                                        # clone's flags
    op(jset_k, _CLONE_THREAD, "allow", "eperm")       # a thread -> allow
    prog.append("prctl")
    arg_low(0)                                        # the option
    for option in _PRCTL_DENIED:
        op(jeq_k, option, "eperm", 0)
    op(ret_k, _SECCOMP_RET_ALLOW)
    for arg in sorted(set(_OPEN_FLAGS[machine].values())):
        prog.append(f"open{arg}")
        arg_low(arg)                                  # the flags
        op(jset_k, _O_TMPFILE_BIT, "eperm", "allow")
    prog += ["allow"]
    op(ret_k, _SECCOMP_RET_ALLOW)
    prog += ["eperm"]
    op(ret_k, _SECCOMP_RET_ERRNO | _EPERM)
    prog += ["enosys"]
    op(ret_k, _SECCOMP_RET_ERRNO | _ENOSYS)

    at, index = {}, 0  # each label's instruction index
    for item in prog:
        if isinstance(item, str):
            at[item] = index
        else:
            index += 1
    out, index = [], 0
    for item in prog:
        if isinstance(item, str):
            continue
        code, jt, jf, k = item
        jumps = [at[j] - index - 1 if isinstance(j, str) else j for j in (jt, jf)]
        assert all(0 <= j < 256 for j in jumps), "a jump past a classic BPF program's reach"
        out.append(_bpf(code, jumps[0], jumps[1], k))
        index += 1
    return b"".join(out)


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


def _installed_plugin_code() -> list[str]:
    """The code of every installed agent and architecture (entry points), wherever it lives: a
    package's folder, or a single module's file (never the folder around it)."""
    from importlib.metadata import entry_points
    from importlib.util import find_spec

    from arena.plugins import GROUPS

    found: list[str] = []
    for group in (*GROUPS.values(), "arena.architectures"):
        for ep in entry_points(group=group):
            try:
                spec = find_spec(ep.module.split(".")[0])
            except (ImportError, ValueError):
                continue
            if spec is not None:
                found += list(spec.submodule_search_locations or ([spec.origin] if spec.origin else []))
    return found


def policy(scratch: str, plugin_file: str | None, secret: Iterable[str], extra_files: Iterable[str] = ()
           ) -> Policy:
    """The read and write paths for an agent whose scratch folder is ``scratch``."""
    import arena

    secrets = tuple(str(Path(s).resolve()) for s in secret if s)
    prefixes = [sys.prefix, sys.base_prefix, sys.exec_prefix, os.path.dirname(os.path.realpath(sys.executable))]
    roots: list[str] = [*prefixes, os.path.dirname(os.path.dirname(os.path.abspath(arena.__file__))) + "/arena"]
    try:
        import arena_agents

        roots.append(os.path.dirname(os.path.abspath(arena_agents.__file__)))
    except ImportError:
        pass
    sites = site.getsitepackages() + [site.getusersitepackages()]
    installed = [Path(r).resolve() for r in (*prefixes, *sites) if r]
    # Of sys.path, only what lies in the Python installation: a script's own folder, the current
    # folder or a PYTHONPATH entry is the user's, and may hold anything (a `.env` beside the script
    # a user ran was readable, and an agent's notes are published). Installed plugins whose code lives
    # elsewhere (an editable install) are granted by name below.
    roots += [p for p in sys.path if p and os.path.isdir(p)
              and any(_within(Path(p).resolve(), root) for root in installed)]
    roots += sites + _installed_plugin_code()
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


def drop_capabilities() -> bool:
    """Give up every capability for good; True when none is left (effective, permitted, inheritable,
    ambient). Run as root (most containers and CI runners), an agent kept root's: a device node made in
    its scratch folder (which Landlock judges by its path, not by the device behind it) opened the
    kernel log, the console or the disk, and reboot or the clock were a system call away. Without
    CAP_SETPCAP (not root) the bounding set stays, which matters only to exec, refused anyway."""
    try:
        last = int(Path("/proc/sys/kernel/cap_last_cap").read_text())
    except (OSError, ValueError):
        last = 63
    _libc.prctl(_PR_CAP_AMBIENT, _PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0)
    _libc.prctl(_PR_SET_SECUREBITS, _SECUREBITS, 0, 0, 0)  # needs CAP_SETPCAP: root's; else no effect
    for cap in range(last + 1):
        _libc.prctl(_PR_CAPBSET_DROP, cap, 0, 0, 0)
    header = struct.pack("Ii", _CAP_VERSION_3, 0)
    _libc.capset(header, bytes(24))  # two {effective, permitted, inheritable} words, all zero
    return capabilities_left() == 0


def capabilities_left() -> int:
    """This process's effective, permitted, inheritable and ambient capability bits, or-ed (-1: unknown)."""
    try:
        status = Path("/proc/self/status").read_text()
    except OSError:
        return -1
    bits = 0
    for line in status.splitlines():
        if line.split(":")[0] in ("CapInh", "CapPrm", "CapEff", "CapAmb"):
            bits |= int(line.split(":")[1], 16)
    return bits


def _landlock(pol: Policy, abi: int, devices: Iterable[str] = (), append_only: bool = True) -> bool:
    """Restrict this process to ``pol``; True when signals and abstract sockets are scoped too.
    ``append_only``: the write paths allow no removal, renaming or special files (an agent's scratch)."""
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
    # In the scratch folder: files and folders may be made, written and truncated, not removed or
    # renamed (a file removed while still open or mapped keeps its disk, and no walk of the folder
    # finds it: the disk budget would not see it), and no device node, FIFO or socket file is made.
    write_rights = handled & ~(_REMOVE_FILE | _REMOVE_DIR | _MAKE_CHAR | _MAKE_BLOCK | _MAKE_FIFO | _MAKE_SOCK
                               if append_only else 0)
    try:
        rules = [(p, read_rights) for p in pol.read] + [(p, write_rights) for p in pol.write]
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
    _landlock(Policy(tuple(read), tuple(write), ()), abi, append_only=False)


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
    unprivileged = drop_capabilities()
    abi = landlock_abi()
    scoped = False
    if abi:
        devices = [f"/dev/{d}" for d in os.listdir("/dev") if d.startswith("nvidia")] if os.path.isdir("/dev") else []
        scoped = _landlock(policy(scratch, plugin_file, secret, extra_files), abi, devices)
    # Listings of sys.path folders cached before the lock (this process's own, or the forkserver's)
    # may show what the lock now hides: a checkout's *.egg-info found first, then unreadable, hid the
    # installed agents' entry points behind it. Whatever is looked up from now on, is looked up as locked.
    importlib.invalidate_caches()
    fast_path = getattr(importlib.metadata, "FastPath", None)  # the folder listings of importlib.metadata,
    getattr(getattr(fast_path, "__new__", None), "cache_clear", lambda: None)()  # which 3.11's call leaves
    seccomp = False
    machine = platform.machine()
    if machine in _DENY:
        _install_seccomp(machine)
        seccomp = True
    if abi and seccomp and scoped and unprivileged:
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
