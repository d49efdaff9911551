"""Run untrusted Python programs against unit tests, each in a fresh, confined process.

Threat model: generated code is hostile. It may loop, fork, allocate, write or print
without end, crash its interpreter, read secrets, reach the network, signal other
processes or fake its own results. ``run_tests`` never runs it in the library's
process: each program gets a new ``python -S -s -P`` (stdlib only) with an
environment built from scratch (PATH, LANG, HOME = TMPDIR = its own scratch folder,
removed afterwards; ``PYTHONHASHSEED=0`` for determinism), in a new session, under
``setpriv --no-new-privs`` and ``unshare --mount --net --ipc --pid`` (with ``--user
--map-root-user`` when we are not root) where allowed (``isolation()`` says what is
active). There a monitor (pid 1 of the pid namespace; runs no user code) confines the
filesystem, then forks the worker, which sets rlimits, drops to a uid of its own when
we are root (else enters a user namespace of its own, with no power over the
monitor's mounts), then runs the program, the setup snippet and each test snippet (a
test passes if it raises nothing).

Protected (each tested in ``tests/test_sandbox.py``):

* time and processes: RLIMIT_CPU; a wall-clock deadline, then SIGKILL to the process
  group; RLIMIT_NPROC = 1 + ``processes`` (exact: it counts per uid and each running
  worker has its own, see ``_uid``); the pid namespace's end takes every process along;
* memory, file size, open files, core dumps (RLIMIT_AS, _FSIZE, _NOFILE, _CORE = 0);
  stdout and stderr, read as they come and killed past ``output_bytes`` (a tail kept);
* files (``filesystem``): every mount read-only; one fresh tmpfs of at most 16 x
  ``file_bytes`` (at least 1 MiB) for ``/tmp``, ``/var/tmp``, ``/dev/shm``, ``/run``
  and the program's folder (``/tmp/sandbox``), gone with the namespace (nothing left
  behind, no host socket there to reach); every site-packages and the caller's home
  hidden under empty read-only ones, deepest first (installed packages may hold the
  answers: HumanEval's do); a /proc of the pid namespace alone (``private_proc``, where
  the kernel allows its mount). Without it, as root, the worker's uid owns only its
  folder;
* the network: a new, empty network namespace (not even loopback is up), and SysV IPC
  (a new IPC namespace);
* the parent: its environment and its process (``kill`` reaches nothing outside the pid
  namespace; the monitor is not dumpable, so no ptrace or ``/proc/1/mem``); setuid
  binaries grant nothing (no_new_privs);
* the verdict: records go over a pipe the harness moved to a high fd, tagged with a
  per-run nonce; the harness binds all it calls before user code runs; a test counts
  only if its record arrives, and the monitor says how the worker ended. Closing
  stdout, printing or spraying fake records, replacing builtins or ``sys.modules``,
  ``sys.exit`` and ``os._exit`` never turn a test into a pass;
* the tests' judgement (``plain_results``, on by default): the setup and tests run in a
  namespace of their own, with the program's names except those that would hide a
  builtin, and the builtins as they were before the program ran; every call in them
  returns through a check that the result is plain data: numbers, strings, bytes, None,
  and lists, tuples, sets and dicts of them, rebuilt from their checked items (a
  subclass, such as a ``Counter`` or a named tuple, counts as its value in the base
  type; a dict's views as their checked items), a builtin class (``type(r) is int``),
  or an object of a type written in C (``range``; an iterator such as ``map`` or a
  generator has its items checked as they come), of a class the setup or tests
  define, or of a module they import.
  Anything else fails the snippet (``NotPlain``), so an object whose ``__eq__``,
  ``__lt__`` or ``__contains__`` says yes to anything passes nothing.

Where neither a uid switch (root) nor the filesystem's confinement (user namespaces)
is available, nothing would keep a program out of the caller's files and process:
``run_tests`` and ``CodeTask`` raise ``SandboxUnavailable`` (a ``RuntimeError``) saying
how to fix it, unless ``TEXT_GYM_SANDBOX_UNCONFINED=1`` says to run anyway.

Not protected: the tests run in the program's process, so a program that digs into
its own interpreter (``gc``, frames: the nonce, the harness's ``say``; ``ctypes`` or
``/proc/self/mem``: any object's memory, a type's flags) can forge records or defeat
the plain-data check; one that patches a shared module the tests call
(``math.isclose``) or a helper of its own the tests trust, or returns a C object that
holds its objects (a ``deque``, a ``SimpleNamespace``'s attributes, an exception's
``args``) or an object of an imported module's class (``UserList``), can sway them.
Judging results in another process, from marshalled plain data, would close these.
A Unix socket file outside the hidden folders can be connected to despite the
read-only mounts (the network namespace does not cover them). The worker joins a new session keyring and
clears its uid's user keyring (x86_64 and aarch64), so the caller's keys and a previous
program's stay out of reach; elsewhere it inherits the caller's session keyring.
Files outside the hidden folders stay readable (the library's own checkout too). The
worker reaches the stdlib through directory fds opened before the confinement
(``/proc/self/fd/N`` on ``sys.path``), so an interpreter under ``/root`` or a hidden
home works, and the folders between those and the hidden one stay readable through
them (``fd/3/..``: the interpreter's installation, not the rest of the home). Without
root, RLIMIT_NPROC counts all the caller's processes. Without namespaces (root only):
the network is reachable, world-writable folders stay writable and what is left there
stays, and, with ``processes > 0``, a child that calls ``setsid`` can outlive the group
kill. Linux only (pidfd: kernel >= 5.3; mount_setattr: >= 5.12).

>>> [r.passed for r in run_tests(["def f(x):\\n    return 2 * x"],
...                               [["assert f(2) == 4", "assert f(3) == 5"]])]
[(True, False)]
"""

from __future__ import annotations

import ast
import marshal
import math
import os
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import lru_cache
from time import monotonic

__all__ = ["REASONS", "UNCONFINED", "Limits", "SandboxUnavailable", "TestRun",
           "check_confinement", "isolation", "network_isolated", "run_tests"]

REASONS = ("ok", "syntax_error", "exception", "timeout", "memory", "output_limit", "exit",
           "crash", "sandbox_error")
UID_BASE = 1_800_000_000  # workers run as uids from here on (a range nothing else uses)
SLOTS = 64  # programs one process runs at once, each as its own uid (see _uid)
TAIL_BYTES = 4096  # how much of stdout and of stderr a TestRun keeps (the end)
PLAIN = "_sandbox_plain_"  # the harness's result check, as the setup and tests name it

# Run by the harness, in its new mount namespace, before it forks the worker (and once,
# alone, by ``_isolation``'s probe): everything read-only; one fresh tmpfs of ``size``
# bytes on /tmp, shared (bind mounts) by /var/tmp, /dev/shm, /run and the scratch
# folder; empty read-only tmpfs over ``masks`` (site-packages, the caller's home),
# deepest first; a /proc of the pid namespace where the kernel allows it (the value
# returned says whether it did).
SCRATCH = "/tmp/sandbox"  # the program's folder (its cwd, HOME and TMPDIR) when confined
_CONFINE = r"""
import ctypes, os
def confine(scratch, uid, masks, size, libc):
    def check(ret, what):
        if ret != 0:
            raise OSError(ctypes.get_errno(), "sandbox confinement: " + what)
    class MountAttr(ctypes.Structure):
        _fields_ = [(n, ctypes.c_uint64) for n in ("set", "clr", "propagation", "userns")]
    MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_BIND, MS_REC, MS_PRIVATE = (
        1, 2, 4, 8, 4096, 16384, 262144)
    check(libc.mount(None, b"/", None, MS_REC | MS_PRIVATE, None), "make / private")
    attr = MountAttr(1 | 2, 0, 0, 0)  # MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID
    check(libc.syscall(ctypes.c_long(442), ctypes.c_int(-100), b"/", ctypes.c_uint(0x8000),
                       ctypes.byref(attr), ctypes.c_size_t(ctypes.sizeof(attr))),
          "mount_setattr(/, AT_RECURSIVE, read-only)")  # 442 on every architecture
    def mount(source, path, fstype, flags, options):
        check(libc.mount(source.encode(), path.encode(), fstype and fstype.encode(), flags,
                         options and options.encode()), "mount on " + path)
    if not os.path.isdir("/tmp") or os.path.islink("/tmp"):
        raise OSError("sandbox confinement: /tmp is not a folder")
    mount("tmpfs", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, "size=%d,nr_inodes=4096,mode=1777" % size)
    for path in ("/var/tmp", "/dev/shm", "/run"):
        if os.path.isdir(path) and not os.path.islink(path):
            inner = "/tmp/." + path.strip("/").replace("/", "_")
            os.mkdir(inner), os.chmod(inner, 0o1777)
            mount(inner, path, None, MS_BIND, None)
    for path in sorted(masks, key=len, reverse=True):  # deepest first: one in the home
        if os.path.isdir(path):  # would be out of sight, not hidden, once the home is
            mount("tmpfs", path, "tmpfs", MS_NOSUID | MS_NODEV | MS_RDONLY, "size=4k,nr_inodes=16,mode=555")
    os.mkdir(scratch, 0o700)
    if uid >= 0:
        os.chown(scratch, uid, uid)
    os.chdir(scratch)
    return libc.mount(b"proc", b"/proc", b"proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, None) == 0
"""

# ``python -c _HARNESS <report fd>``; the job comes on stdin. Everything the harness
# calls after user code has run is bound before (default arguments), beyond its reach.
_HARNESS = _CONFINE + r"""
import builtins, marshal, os, resource as R, sys
def main(rfd, write=os.write, fstat=os.fstat, getpid=os.getpid, exit=os._exit, str=str,
         type=type, exec=exec, compile=compile, enumerate=enumerate, BE=BaseException,
         SE=SystemExit, ME=MemoryError, OE=OSError, settrace=sys.settrace,
         setprofile=sys.setprofile, streams=(sys.stdout, sys.stderr), id=id, dict=dict,
         issubclass=issubclass, flags=type.__dict__["__flags__"].__get__):
    pristine = dict(vars(builtins))  # a local: the program cannot reach it through main
    (program, setup, tests, modules, uid, limits, nonce,
     confined) = marshal.loads(sys.stdin.buffer.read())
    rep = min(R.getrlimit(R.RLIMIT_NOFILE)[0], 1024) - 1  # out of the way of os.close(3)
    if rep != rfd:
        os.dup2(rfd, rep, False), os.close(rfd)
    if uid >= 0 or confined:  # reach the stdlib through fds: its path may be closed to
        fds = {p: "/proc/self/fd/%d" % os.open(p, os.O_RDONLY | os.O_DIRECTORY)  # the
               for p in sys.path if os.path.isdir(p)}  # new uid, or hidden by confine()
        sys.path[:] = fds.values()
        for m in list(sys.modules.values()):  # packages already imported (encodings)
            if type(getattr(m, "__path__", None)) is list:
                m.__path__[:] = [next((f + p[len(d):] for d, f in fds.items()
                                       if (p + "/").startswith(d + "/")), p) for p in m.__path__]
    libc = ctypes.CDLL(None, use_errno=True)
    if confined:
        confine(*confined, libc)
    pid = os.fork()
    if pid:  # the monitor: says how the worker ended, runs nothing of the user's
        if confined:  # no ptrace or /proc/<pid>/mem for the worker (it has our kernel uid
            libc.prctl(4, 0, 0, 0, 0)  # without root): PR_SET_DUMPABLE 0
        _, status, ru = os.wait4(pid, 0)
        code = os.waitstatus_to_exitcode(status)
        write(rep, b"%s X %d %d %.3f\n" % (nonce, max(code, 0), max(-code, 0),
                                           ru.ru_utime + ru.ru_stime))
        exit(0)
    pid, ino = getpid(), fstat(rep).st_ino
    for lim, val in zip((R.RLIMIT_CORE, R.RLIMIT_CPU, R.RLIMIT_AS, R.RLIMIT_FSIZE,
                         R.RLIMIT_NPROC, R.RLIMIT_NOFILE), (0, *limits)):
        R.setrlimit(lim, (val, val + (lim == R.RLIMIT_CPU)))  # SIGXCPU, then SIGKILL
    if uid >= 0:
        os.setgroups([]), os.setgid(uid), os.setuid(uid)
    elif confined and libc.unshare(0x10000000) != 0:  # CLONE_NEWUSER: no power over the
        exit(112)  # mounts confine() made, which the namespace's root could undo
    keyctl = {"x86_64": 250, "aarch64": 219}.get(os.uname().machine)
    if keyctl:  # not the caller's session keyring, nor what the slot's last program left
        if libc.syscall(keyctl, 1, None) < 0:  # KEYCTL_JOIN_SESSION_KEYRING: a new one
            exit(114)
        libc.syscall(keyctl, 7, -4)  # KEYCTL_CLEAR of this uid's user keyring
    os.umask(0o077)

    def say(line):
        if getpid() != pid:  # a fork of the worker never speaks for it
            exit(0)
        try:
            if fstat(rep).st_ino != ino:  # the report pipe was closed or replaced
                exit(113)
            write(rep, nonce + b" " + str.encode(line, "utf-8", "replace")[:300] + b"\n")
        except OE:
            exit(113)

    def describe(e, where):
        try:
            name, msg = type(e).__name__, str(e)
            return str.replace("%s%s: %s" % (where, name, msg) if msg else where + name,
                               "\n", " ")[:200]
        except BE:
            return where + "unprintable exception"

    def run(source, name):  # -> None, or (reason, exception)
        try:
            code = compile(source, name, "exec")
        except BE as e:
            return "syntax_error", e
        try:
            exec(code, g)
        except SE as e:
            return "exit", e
        except ME as e:
            return "memory", e
        except BE as e:
            return "exception", e
        finally:  # drop tracers the code installed before the harness goes on
            settrace(None), setprofile(None)

    def finish(reason, detail):
        for f in streams:
            try:
                f.flush()
            except BE:
                pass
        say("R %s %s" % (reason, detail))
        exit(0)

    class NotPlain(BE):  # past a test's "except Exception"
        pass

    ours = {}  # id -> class (kept alive, so its id is never reused) of the setup's and
    # tests' classes and of those of the modules they import

    def build_class(*args, build=pristine["__build_class__"], **kwargs):
        cls = build(*args, **kwargs)
        ours[id(cls)] = cls
        return cls

    scalars = {id(t) for t in (int, float, complex, bool, str, bytes, type(None))}
    containers = {id(t): t for t in (list, tuple, set, frozenset)}

    def setlike(values, set=set, TE=TypeError):  # a dict's keys or items, as a set if
        values = [*values]  # they hash (they compare as sets)
        try:
            return set(values)
        except TE:
            return values

    views = {id(type({}.keys())): setlike, id(type({}.items())): setlike, id(type({}.values())): list}  # fmt: skip
    classes = {id(v) for v in pristine.values() if type(v) is type}  # int, str, ValueError...
    bases = (dict, list, tuple, set, frozenset, str, bytes, int, float, complex)
    items, has, mapping = dict.items, hasattr, type(type.__dict__)  # bound before the
    # program runs, as everything here; mapping: mappingproxy, a read-only dict in C

    def checked(it):  # an iterator of C's (map, a generator), checked as it goes
        for v in it:
            yield plain(v)

    def plain(x):  # every call in the setup and tests returns through here: plain data,
        t = type(x)  # containers rebuilt from their checked items
        if id(t) in scalars:
            return x
        if t is dict or t is mapping:
            return {plain(k): plain(v) for k, v in items(dict(x))}
        if id(t) in containers:
            return containers[id(t)](plain(v) for v in x)
        if id(t) in views:  # a dict's view: its checked items
            return views[id(t)](plain(v) for v in x)
        if t is type:  # a class: a builtin one (type(r) is int), or one of the tests'
            if id(x) in classes or id(x) in ours:
                return x
        else:
            for base in bases:  # a subclass (Counter, OrderedDict, a named tuple): its
                if issubclass(t, base):  # value, as the base
                    y = base(x)
                    if type(y) is base:
                        return plain(y)
            if not flags(t) & 512:  # not a heap type: a type written in C, whose methods
                return checked(x) if has(t, "__next__") else x  # are not the program's
            if id(t) in ours:  # a class of the tests' own, or of a module they import
                return x
        raise NotPlain("a call returned a %s object, not plain data" % t.__name__)

    for name in modules:  # imported before the program runs: their classes are not its
        try:
            pristine["__import__"](name)
        except BE:
            continue
        for v in dict(vars(sys.modules[name])).values():
            if issubclass(type(v), type):
                ours[id(v)] = v
    g = {"__name__": "__main__", "__builtins__": builtins}
    say("S")
    bad = run(program, "<program>")
    if bad:
        finish(bad[0], describe(bad[1], ""))
    # The setup and tests run in a namespace of their own: the program's names, less those
    # that hide a builtin, and the builtins as they were before the program ran.
    g = {k: v for k, v in dict.items(g) if k not in pristine}
    g["__builtins__"] = dict(pristine, __build_class__=build_class)
    g["__name__"], g["_sandbox_plain_"] = "__main__", plain  # sandbox.PLAIN
    bad = setup is not None and run(setup, "<setup>")
    if bad:
        finish("exception" if bad[0] == "syntax_error" else bad[0], describe(bad[1], "setup: "))
    first = ""
    for i, test in enumerate(tests):
        bad = run(test, "<test %d>" % i)
        say("F" if bad else "P")
        if bad:
            first = first or describe(bad[1], "test %d: " % i)
            if bad[0] in ("exit", "memory"):
                finish(bad[0], describe(bad[1], "test %d: " % i))
    finish("ok", first)
main(int(sys.argv[1]))
"""


@dataclass(frozen=True)
class Limits:
    """Limits for each program (the module docstring says how each is enforced).

    Attributes:
        cpu_seconds: CPU time (RLIMIT_CPU, rounded up to whole seconds).
        wall_seconds: Wall-clock time, start-up included; then the group is killed.
        memory_bytes: Address space (RLIMIT_AS).
        file_bytes: Size of any file the program writes (RLIMIT_FSIZE).
        processes: Processes or threads the program may start besides itself.
        open_files: File descriptors (RLIMIT_NOFILE).
        output_bytes: stdout and stderr together; more kills the program.
    """

    cpu_seconds: float = 5.0
    wall_seconds: float = 10.0
    memory_bytes: int = 1 << 30
    file_bytes: int = 1 << 20
    processes: int = 0
    open_files: int = 64
    output_bytes: int = 64 * 1024

    def __post_init__(self):
        for name, low in (("cpu_seconds", 0), ("wall_seconds", 0), ("memory_bytes", 0),
                          ("file_bytes", 0), ("processes", -1), ("open_files", 7),
                          ("output_bytes", -1)):
            if not getattr(self, name) > low:
                raise ValueError(f"Limits.{name} must be > {low}, got {getattr(self, name)!r}")


@dataclass(frozen=True)
class TestRun:
    """One program's outcome against its tests.

    ``reason`` is one of ``REASONS``. "ok": every test ran, ``passed`` says which passed
    and ``detail`` names the first failure. Anything else: the run stopped early
    (``detail`` says how), and tests without a result count as failed.
    """

    __test__ = False  # not a pytest test class
    passed: tuple[bool, ...]
    reason: str
    detail: str
    stdout: str
    stderr: str
    seconds: float

    @property
    def fraction(self) -> float:
        """Share of tests passed, 0.0 when there are none.

        >>> TestRun((True, False, True, True), "ok", "", "", "", 0.1).fraction
        0.75
        """
        return sum(self.passed) / len(self.passed) if self.passed else 0.0


@lru_cache(maxsize=None)
def _isolation() -> tuple[tuple[str, ...], dict[str, bool]]:
    """The command prefix that works here, and what it isolates (probed once)."""
    def works(cmd: list[str]) -> bool:
        try:
            return subprocess.run(cmd, capture_output=True, timeout=10).returncode == 0
        except (OSError, subprocess.SubprocessError):
            return False
    root = os.geteuid() == 0
    nnp = ["setpriv", "--no-new-privs"] if works(["setpriv", "--no-new-privs", "true"]) else []
    rest = ["--net", "--ipc", "--pid", "--fork", "--kill-child"]
    ns = ["unshare", *([] if root else ["--user", "--map-root-user"]), "--mount", *rest]
    # the harness's steps: confine(), then, without root, the worker's own user namespace
    nested = "" if root else "\nassert libc.unshare(0x10000000) == 0"
    probe = (f"libc = ctypes.CDLL(None, use_errno=True)\nproc = confine({SCRATCH!r}, -1, (), 1 << 20, libc)"
             f"{nested}\nprint(int(proc))")
    try:
        out = subprocess.run([*nnp, *ns, sys.executable, "-S", "-s", "-P", "-c", _CONFINE + probe],
                             capture_output=True, text=True, timeout=10)
        confined, proc = out.returncode == 0, out.stdout.strip() == "1"
    except (OSError, subprocess.SubprocessError):
        confined = proc = False
    if not confined:  # the namespaces without the filesystem's confinement, if they work
        ns = ["unshare", *([] if root else ["--user"]), *rest]
        ns = ns if works([*ns, "true"]) else []
    return (*nnp, *ns), {"uid_switch": root, "filesystem": confined, "private_proc": proc,
                         "network": bool(ns), "pid_namespace": bool(ns),
                         "no_new_privs": bool(nnp)}


def isolation() -> dict[str, bool]:
    """Which protections are active here: ``uid_switch`` (needs root), ``filesystem``
    (a read-only view of the files with private scratch space, see the module
    docstring), ``private_proc`` (a /proc of the sandbox's processes alone; where the
    kernel refuses it, as in containers that mask parts of /proc, the host's stays),
    ``network`` (a new network namespace), ``pid_namespace`` and ``no_new_privs``.
    Probed once."""
    return dict(_isolation()[1])


UNCONFINED = "TEXT_GYM_SANDBOX_UNCONFINED"  # "1": run programs even where nothing confines them


class SandboxUnavailable(RuntimeError):
    """Nothing on this machine can confine generated programs (see ``check_confinement``)."""


def check_confinement() -> None:
    """Raise unless programs can be kept out of the caller's files and process here: by a
    uid of their own (root) or a confined filesystem (user namespaces), or the user has
    accepted the risk (``TEXT_GYM_SANDBOX_UNCONFINED=1``).

    Raises:
        SandboxUnavailable: (a RuntimeError) neither is available; the message says how
            to fix it.
    """
    info = _isolation()[1]
    if info["uid_switch"] or info["filesystem"] or os.environ.get(UNCONFINED) == "1":
        return
    raise SandboxUnavailable(
        "the code sandbox cannot confine programs on this machine: this process is not root "
        "and user namespaces cannot confine the filesystem here (unshare --user "
        "--map-root-user --mount with a read-only remount failed), "
        "so a generated program could write your files and read this process's memory. "
        "Run as root, allow unprivileged user namespaces (sysctl "
        "kernel.unprivileged_userns_clone=1; on Ubuntu also "
        f"kernel.apparmor_restrict_unprivileged_userns=0), or set {UNCONFINED}=1 to run "
        f"programs unconfined anyway (isolation() = {info})"
    )


@lru_cache(maxsize=None)
def _masks() -> tuple[str, ...]:
    """Folders confine() hides: every site-packages (the stdlib is all programs get;
    installed packages may hold answers, such as HumanEval's) and the caller's home."""
    import site
    import sysconfig

    paths = {sysconfig.get_paths(vars={"base": b, "platbase": b})[key]
             for b in {sys.prefix, sys.base_prefix} for key in ("purelib", "platlib")}
    paths |= {*site.getsitepackages(), site.getusersitepackages(), os.path.expanduser("~")}
    return tuple(sorted(os.path.realpath(p) for p in paths if os.path.isabs(p) and p != "/"))


def network_isolated() -> bool:
    """Whether sandboxed programs run without network access."""
    return _isolation()[1]["network"]


_slots, _busy = threading.Condition(), set()


def _uid(slot: int) -> int:
    """The uid of a slot of this process: unique among live processes and running programs."""
    return UID_BASE + (os.getpid() % (1 << 22)) * SLOTS + slot  # < 2**31 for any pid_max


def _collect(proc: subprocess.Popen, rfd: int, limits: Limits, deadline: float,
             report_cap: int) -> tuple[str | None, list[bytearray]]:
    """Read stdout, stderr and the report until the sandbox ends or breaks a limit.

    A sandbox that breaks a limit is killed, then given up to a second for all its
    processes (which hold the pipes) to be gone. Returns the limit broken (or None),
    the stdout and stderr tails and the report.
    """
    bufs, used, why, grace = [bytearray(), bytearray(), bytearray()], 0, None, None
    sel, pidfd = selectors.DefaultSelector(), os.pidfd_open(proc.pid)
    try:
        for i, fd in enumerate((proc.stdout.fileno(), proc.stderr.fileno(), rfd, pidfd)):
            os.set_blocking(fd, False)
            sel.register(fd, selectors.EVENT_READ, i)
        while len(sel.get_map()) > (grace is None):  # until only the pidfd is left
            now = monotonic()
            why = why or ("timeout" if now >= deadline else None)
            if why and grace is None:  # kill; pgid == pid (start_new_session), unreaped
                os.killpg(proc.pid, signal.SIGKILL)
                sel.unregister(pidfd)
                grace = now + 1.0
            if grace and now >= grace:
                break
            events = [key for key, _ in sel.select((grace or deadline) - now)]
            exited = grace is None and any(key.data == 3 for key in events)
            for key in list(sel.get_map().values()) if exited else events:
                while key.data < 3:  # after the exit, read what is left
                    try:
                        chunk = os.read(key.fd, 65536)
                    except BlockingIOError:
                        break
                    if not chunk:
                        sel.unregister(key.fd)
                        break
                    if why:
                        continue  # killed: only wait for the end
                    buf = bufs[key.data]
                    buf += chunk
                    if key.data == 2:
                        why = "sandbox_error" if len(buf) > report_cap else None
                    else:
                        used += len(chunk)
                        del buf[:-TAIL_BYTES]
                        why = "output_limit" if used > limits.output_bytes else None
            if exited:
                break
    finally:
        sel.close()
        os.close(pidfd)
    return why, bufs


def _verdict(report: bytes, nonce: bytes, why: str | None, status: int, n: int,
             limits: Limits, err: str) -> tuple[tuple[bool, ...], str, str]:
    """Turn the report's records (or their absence) into ``(passed, reason, detail)``."""
    passed, started, reason, detail, end = [], False, None, "", None
    for line in report.splitlines():
        if line.startswith(nonce + b" "):  # else not written by the harness
            tag, _, rest = line[len(nonce) + 1:].decode("utf-8", "replace").partition(" ")
            started |= tag == "S"
            if tag in ("P", "F") and started and reason is None and len(passed) < n:
                passed.append(tag == "P")
            elif tag == "R" and started and reason is None:
                reason, _, detail = rest.partition(" ")
            elif tag == "X" and len(rest.split()) == 3:
                end = rest.split()
    if why:
        reason, detail = why, {
            "timeout": f"wall-clock limit of {limits.wall_seconds} s exceeded",
            "output_limit": f"stdout+stderr exceeded {limits.output_bytes} bytes",
            "sandbox_error": "the report pipe was flooded (by the program?)"}[why]
    elif not started:
        last = (err.strip().splitlines() or [""])[-1]
        reason, detail = "sandbox_error", f"the sandbox did not start (status {status}): {last}"
    elif reason not in REASONS:  # the worker died before it could say why
        code, sig, cpu = (int(end[0]), int(end[1]), float(end[2])) if end else (
            max(status, 0), max(-status, 0), 0.0)
        if sig == signal.SIGXCPU or sig == signal.SIGKILL and cpu >= limits.cpu_seconds:
            reason, detail = "timeout", f"CPU limit of {limits.cpu_seconds} s exceeded"
        elif sig:
            reason, detail = "crash", f"killed by {signal.Signals(sig).name}"
        else:
            reason, detail = "exit", (f"exited with status {code} after reporting "
                                      f"{len(passed)} of {n} test results")
    return (*passed, *[False] * (n - len(passed))), reason, detail


class _PlainCalls(ast.NodeTransformer):
    def visit_Call(self, node: ast.Call) -> ast.Call:
        self.generic_visit(node)
        return ast.copy_location(ast.Call(ast.Name(PLAIN, ast.Load()), [node], []), node)


@lru_cache(maxsize=8192)  # a task's snippets recur in every batch
def plain_calls(source: str) -> str:
    """``source`` with every call's result passed through the harness's plain-data check
    (``f(x) == 1`` becomes ``_sandbox_plain_(f(x)) == 1``); unchanged if it does not parse,
    so that the sandbox reports the syntax error.

    >>> plain_calls("assert abs(f(x) - 1) < 1e-6")
    'assert _sandbox_plain_(abs(_sandbox_plain_(f(x)) - 1)) < 1e-06'
    """
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return source
    return ast.unparse(ast.fix_missing_locations(_PlainCalls().visit(tree)))


@lru_cache(maxsize=8192)
def imported_modules(source: str) -> tuple[str, ...]:
    """The absolute imports of ``source`` (``import a.b``, ``from c import d``).

    >>> imported_modules("import math, os.path; from collections import Counter; from . import x")
    ('math', 'os.path', 'collections')
    """
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return ()
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.append(node.module)
    return tuple(dict.fromkeys(names))


def _run_one(program: str, setup: str | None, tests: Sequence[str], limits: Limits,
             slot: int, modules: Sequence[str] = ()) -> TestRun:
    """Run one program in a fresh sandbox (see the module docstring)."""
    start, (prefix, info) = monotonic(), _isolation()
    uid = _uid(slot) if info["uid_switch"] else -1
    tmp = tempfile.mkdtemp(prefix=f"text_gym_sandbox_{os.getpid()}_")
    (rfd, wfd), proc, nonce = os.pipe(), None, os.urandom(8).hex().encode()
    confined, home = None, tmp  # the program's folder: ours, or a fresh one inside
    if info["filesystem"]:
        confined, home = (SCRATCH, uid, _masks(), max(16 * limits.file_bytes, 1 << 20)), SCRATCH
    try:
        if uid >= 0:
            os.chown(tmp, uid, uid)
        proc = subprocess.Popen(
            [*prefix, sys.executable, "-S", "-s", "-P", "-c", _HARNESS, str(wfd)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            pass_fds=(wfd,), cwd=tmp, start_new_session=True,
            env={"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": home,
                 "TMPDIR": home, "PYTHONHASHSEED": "0", "PYTHONDONTWRITEBYTECODE": "1"})
        os.close(wfd)
        wfd = -1
        limit_values = (max(1, math.ceil(limits.cpu_seconds)), limits.memory_bytes,
                        limits.file_bytes, limits.processes + (1 if uid >= 0 else 2),
                        limits.open_files)
        try:
            job = (str(program), None if setup is None else str(setup), tuple(map(str, tests)),
                   tuple(modules), uid, limit_values, nonce, confined)
            proc.stdin.write(marshal.dumps(job))  # exact strs only
            proc.stdin.close()
        except BrokenPipeError:
            pass
        why, (out, err, report) = _collect(proc, rfd, limits, start + limits.wall_seconds,
                                           1024 + 32 * len(tests))
    finally:
        if proc is not None:
            try:  # a no-op unless _collect failed; the unreaped leader keeps the pgid
                os.killpg(proc.pid, signal.SIGKILL)
            except OSError:
                pass
            proc.wait()
            for f in (proc.stdin, proc.stdout, proc.stderr):
                f.close()
        for fd in (rfd, wfd):
            if fd >= 0:
                os.close(fd)
        shutil.rmtree(tmp, ignore_errors=True)
    out, err = (b.decode("utf-8", "replace") for b in (out, err))
    verdict = _verdict(bytes(report), nonce, why, proc.returncode, len(tests), limits, err)
    return TestRun(*verdict, out, err, monotonic() - start)


def run_tests(programs: Sequence[str], tests: Sequence[Sequence[str]], *,
              setup: Sequence[str | None] | None = None, limits: Limits = Limits(),
              workers: int | None = None, plain_results: bool = True) -> list[TestRun]:
    """Run each program, then its setup snippet, then each of its test snippets, sandboxed.

    Programs run in up to ``workers`` sandboxes at once; one program's failure (even a
    crash of its interpreter) never affects another's result.

    Args:
        programs: Python sources, e.g. a HumanEval prompt plus its completion.
        tests: For each program, its test snippets, e.g. ``["assert candidate(1) == 2"]``.
        setup: For each program, a snippet run after it and before its tests (e.g.
            ``"candidate = add"``), or None.
        limits: Limits for every program.
        workers: Programs run at once (default: the CPUs this process may use).
        plain_results: Every call in the setup and tests must return plain data (see
            the module docstring), else that snippet fails: an object of the program's
            making, whose ``__eq__`` or ``__lt__`` says yes to anything, passes nothing.
            False for tests that compare objects of the program's own classes.

    Returns:
        One ``TestRun`` per program, in order.

    Raises:
        ValueError: On mismatched lengths or ``workers < 1``.
        TypeError: If a program, setup or test is not a str.

    >>> run = run_tests(["import sys\\nsys.exit(0)"], [["pass"]])[0]
    >>> run.passed, run.reason, run.fraction
    ((False,), 'exit', 0.0)
    """
    setup = [None] * len(programs) if setup is None else setup
    if not len(programs) == len(tests) == len(setup):
        raise ValueError(f"got {len(programs)} programs, {len(tests)} test lists and "
                         f"{len(setup)} setup snippets; pass one of each per program")
    for i, (p, ts, s) in enumerate(zip(programs, tests, setup)):
        if isinstance(ts, str):
            raise TypeError(f"tests[{i}] must be a sequence of snippets, not a str; "
                            f"wrap it: [{ts[:40]!r}]")
        if not all(isinstance(x, str) for x in (p, *ts)) or not isinstance(s, (str, type(None))):
            raise TypeError(f"program {i}, its setup and its tests must be str")
    workers = len(os.sched_getaffinity(0)) if workers is None else workers
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    check_confinement()
    modules = [()] * len(programs)
    if plain_results:
        modules = [tuple(dict.fromkeys(m for x in (s or "", *ts) for m in imported_modules(x)))
                   for s, ts in zip(setup, tests)]
        setup = [None if x is None else plain_calls(x) for x in setup]
        tests = [[plain_calls(x) for x in ts] for ts in tests]

    def one(i: int) -> TestRun:
        with _slots:  # the lowest free slot; wait if all are busy
            _slots.wait_for(lambda: len(_busy) < SLOTS)
            slot = min(set(range(SLOTS)) - _busy)
            _busy.add(slot)
        try:
            return _run_one(programs[i], setup[i], tests[i], limits, slot, modules[i])
        except Exception as e:  # a broken sandbox fails this program only
            return TestRun((False,) * len(tests[i]), "sandbox_error", f"{type(e).__name__}: {e}",
                           "", "", 0.0)
        finally:
            with _slots:
                _busy.discard(slot)
                _slots.notify()

    if workers == 1 or len(programs) <= 1:
        return [one(i) for i in range(len(programs))]
    with ThreadPoolExecutor(min(workers, len(programs))) as pool:
        return list(pool.map(one, range(len(programs))))
