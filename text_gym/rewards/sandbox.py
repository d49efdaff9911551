"""Run untrusted Python programs against unit tests, each in a fresh, confined process.

``run_tests(programs, tests)`` runs each program in a sandbox of its own, then its setup
snippet and each of its test snippets (a test passes if it raises nothing), and returns a
``TestRun`` per program: which tests passed, a ``reason`` from ``REASONS`` (``"ok"`` or how
the run stopped: timeout, memory, output_limit, exit, crash, ...) and the tails of its
stdout and stderr. ``Limits`` sets the limits, ``isolation()`` says which protections are
active on this machine. docs/sandbox.md has the threat model: what runs where, how each
protection works, and what is not protected.

Generated code is treated as hostile; the library's process never runs it. In brief:

* each program gets a new ``python -S -s -P`` (stdlib only), an environment built from
  scratch, new mount, network, IPC and pid namespaces and ``no_new_privs`` where the kernel
  allows, and, when we are root, a uid of its own;
* CPU time, wall-clock time, memory, file size, processes, open files and output are
  limited; a program past a limit is killed and its ``reason`` says which;
* every file is read-only but a private, size-limited scratch space; site-packages and the
  caller's home are hidden; the network is unreachable;
* a test counts only if the harness reports it: exiting early, crashing, printing fake
  results or rewriting builtins never turns a test into a pass. With ``plain_results``
  (the default) the tests run in another process, which no program code reaches, and the
  program's functions return plain data to them: an object whose ``__eq__`` says yes to
  anything passes nothing;
* one program's failure never affects another's result.

Where neither a uid switch (root) nor user namespaces can confine programs, ``run_tests``
and ``CodeTask`` raise ``SandboxUnavailable`` unless ``TEXT_GYM_SANDBOX_UNCONFINED=1``.
Linux only (kernel >= 5.12).

>>> [r.passed for r in run_tests(["def f(x):\\n    return 2 * x"],
...                               [["assert f(2) == 4", "assert f(3) == 5"]])]
[(True, False)]
"""

from __future__ import annotations

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
from functools import cache
from time import monotonic

__all__ = [
    "REASONS",
    "UNCONFINED",
    "Limits",
    "SandboxUnavailable",
    "TestRun",
    "check_confinement",
    "isolation",
    "network_isolated",
    "run_tests",
]

REASONS = ("ok", "syntax_error", "exception", "timeout", "memory", "output_limit", "exit", "crash", "sandbox_error")
UID_BASE = 1_800_000_000  # workers run as uids from here on (a range nothing else uses)
SLOTS = 64  # programs one process runs at once, each as its own uid (see _uid)
TAIL_BYTES = 4096  # how much of stdout and of stderr a TestRun keeps (the end)

SCRATCH = "/tmp/sandbox"  # the program's folder (its cwd, HOME and TMPDIR) when confined
# The code that runs in each sandbox (monitor, judge and worker): the judge's link in
# ``_wire.py``, the rest in ``_harness.py``, sent compiled over stdin to
# ``python -c _BOOT <report fd>``, then the job. The boot loader runs them in that order.
HARNESS = tuple(os.path.join(os.path.dirname(os.path.abspath(__file__)), f) for f in ("_wire.py", "_harness.py"))
_BOOT = (
    "import marshal, os\nn, code = int.from_bytes(os.read(0, 4), 'big'), b''\n"
    "while len(code) < n and (chunk := os.read(0, n - len(code))):\n    code += chunk\n"
    "for part in marshal.loads(code):\n    exec(part)\n"
)


@cache
def _harness() -> bytes:
    """``HARNESS`` compiled once, as the boot loader reads it (compiling it costs each run
    about as much as a small program's whole test run): one code object per file, each
    with its own file name and line numbers for tracebacks, run in turn in one namespace
    (``__main__``'s), so the harness's globals include the wire's names as one program's."""
    parts = []
    for path in HARNESS:
        with open(path, encoding="utf-8") as f:
            parts.append(compile(f.read(), path, "exec"))
    code = marshal.dumps(tuple(parts))
    return len(code).to_bytes(4, "big") + code


@dataclass(frozen=True)
class Limits:
    """Limits for each program (docs/sandbox.md says how each is enforced).

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
        for name, low in (
            ("cpu_seconds", 0),
            ("wall_seconds", 0),
            ("memory_bytes", 0),
            ("file_bytes", 0),
            ("processes", -1),
            ("open_files", 7),
            ("output_bytes", -1),
        ):
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


@cache
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
    probe = [sys.executable, "-S", "-s", "-P", "-c", _BOOT, "probe", SCRATCH, str(int(not root))]
    try:
        out = subprocess.run([*nnp, *ns, *probe], input=_harness(), capture_output=True, timeout=10)
        confined, proc = out.returncode == 0, out.stdout.strip() == b"1"
    except (OSError, subprocess.SubprocessError):
        confined = proc = False
    if not confined:  # the namespaces without the filesystem's confinement, if they work
        ns = ["unshare", *([] if root else ["--user"]), *rest]
        ns = ns if works([*ns, "true"]) else []
    return (*nnp, *ns), {
        "uid_switch": root,
        "filesystem": confined,
        "private_proc": proc,
        "network": bool(ns),
        "pid_namespace": bool(ns),
        "no_new_privs": bool(nnp),
    }


def isolation() -> dict[str, bool]:
    """Which protections are active here: ``uid_switch`` (needs root), ``filesystem``
    (a read-only view of the files with private scratch space, see docs/sandbox.md),
    ``private_proc`` (a /proc of the sandbox's processes alone; where the
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


@cache
def _masks() -> tuple[str, ...]:
    """Folders confine() hides: every site-packages (the stdlib is all programs get;
    installed packages may hold answers, such as HumanEval's) and the caller's home."""
    import site
    import sysconfig

    paths = {
        sysconfig.get_paths(vars={"base": b, "platbase": b})[key]
        for b in {sys.prefix, sys.base_prefix}
        for key in ("purelib", "platlib")
    }
    paths |= {*site.getsitepackages(), site.getusersitepackages(), os.path.expanduser("~")}
    return tuple(sorted(os.path.realpath(p) for p in paths if os.path.isabs(p) and p != "/"))


def network_isolated() -> bool:
    """Whether sandboxed programs run without network access."""
    return _isolation()[1]["network"]


_slots, _busy = threading.Condition(), set()


def _uid(slot: int) -> int:
    """The uid of a slot of this process: unique among live processes and running programs."""
    return UID_BASE + (os.getpid() % (1 << 22)) * SLOTS + slot  # < 2**31 for any pid_max


def _judge_uid(slot: int) -> int:
    """The uid the slot's judge (the monitor, running the tests) takes as root: 2**28 below
    its worker's, in a range of its own."""
    return _uid(slot) - (1 << 28)


def _collect(
    proc: subprocess.Popen, rfd: int, limits: Limits, deadline: float, report_cap: int
) -> tuple[str | None, list[bytearray]]:
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


def _verdict(
    report: bytes, nonce: bytes, why: str | None, status: int, n: int, limits: Limits, err: str
) -> tuple[tuple[bool, ...], str, str]:
    """Turn the report's records (or their absence) into ``(passed, reason, detail)``."""
    passed, started, reason, detail, end = [], False, None, "", None
    for line in report.splitlines():
        if line.startswith(nonce + b" "):  # else not written by the harness
            tag, _, rest = line[len(nonce) + 1 :].decode("utf-8", "replace").partition(" ")
            started |= tag == "S"
            if tag in ("P", "F") and started and reason is None and len(passed) < n:
                passed.append(tag == "P")
            elif tag == "R" and started and reason is None:
                reason, _, detail = rest.partition(" ")
            elif tag == "X" and len(rest.split()) == 3:
                end = rest.split()
    if why:
        reason, detail = (
            why,
            {
                "timeout": f"wall-clock limit of {limits.wall_seconds} s exceeded",
                "output_limit": f"stdout+stderr exceeded {limits.output_bytes} bytes",
                "sandbox_error": "the report pipe was flooded (by the program?)",
            }[why],
        )
    elif not started:
        last = (err.strip().splitlines() or [""])[-1]
        reason, detail = "sandbox_error", f"the sandbox did not start (status {status}): {last}"
    elif reason not in REASONS:  # the worker died before it could say why
        code, sig, cpu = (int(end[0]), int(end[1]), float(end[2])) if end else (max(status, 0), max(-status, 0), 0.0)
        if sig == signal.SIGXCPU or sig == signal.SIGKILL and cpu >= limits.cpu_seconds:
            reason, detail = "timeout", f"CPU limit of {limits.cpu_seconds} s exceeded"
        elif sig:
            reason, detail = "crash", f"killed by {signal.Signals(sig).name}"
        else:
            reason, detail = "exit", (f"exited with status {code} after reporting {len(passed)} of {n} test results")
    return (*passed, *[False] * (n - len(passed))), reason, detail


def _run_one(
    program: str, setup: str | None, tests: Sequence[str], limits: Limits, slot: int, judged: bool = True
) -> TestRun:
    """Run one program in a fresh sandbox (docs/sandbox.md says what runs where)."""
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
            [*prefix, sys.executable, "-S", "-s", "-P", "-c", _BOOT, str(wfd)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            pass_fds=(wfd,),
            cwd=tmp,
            start_new_session=True,
            env={
                "PATH": "/usr/local/bin:/usr/bin:/bin",
                "LANG": "C.UTF-8",
                "HOME": home,
                "TMPDIR": home,
                "PYTHONHASHSEED": "0",
                "PYTHONDONTWRITEBYTECODE": "1",
            },
        )
        os.close(wfd)
        wfd = -1
        limit_values = (
            max(1, math.ceil(limits.cpu_seconds)),
            limits.memory_bytes,
            limits.file_bytes,
            limits.processes + (1 if uid >= 0 else 2),
            limits.open_files,
        )
        try:
            setup, tests = None if setup is None else str(setup), tuple(map(str, tests))
            head = marshal.dumps(
                (
                    str(program),
                    *((None, ()) if judged else (setup, tests)),
                    uid,
                    limit_values,
                    nonce,
                    confined,
                    bool(judged),
                    _judge_uid(slot) if uid >= 0 else -1,
                )
            )  # exact strs only
            proc.stdin.write(_harness() + len(head).to_bytes(4, "big") + head)
            proc.stdin.write(marshal.dumps((setup, tests)) if judged else b"")
            proc.stdin.close()
        except BrokenPipeError:
            pass
        why, (out, err, report) = _collect(proc, rfd, limits, start + limits.wall_seconds, 1024 + 32 * len(tests))
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


def run_tests(
    programs: Sequence[str],
    tests: Sequence[Sequence[str]],
    *,
    setup: Sequence[str | None] | None = None,
    limits: Limits = Limits(),
    workers: int | None = None,
    plain_results: bool = True,
) -> list[TestRun]:
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
        plain_results: Judge in the monitor (see docs/sandbox.md): the setup and
            tests run outside the program's process, and every call to the program
            returns plain data, else that snippet fails: an object of the program's
            making, whose ``__eq__`` or ``__lt__`` says yes to anything, passes nothing.
            False runs them in the program's process, for tests that use objects of the
            program's own classes (and trust them).

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
        raise ValueError(
            f"got {len(programs)} programs, {len(tests)} test lists and "
            f"{len(setup)} setup snippets; pass one of each per program"
        )
    for i, (p, ts, s) in enumerate(zip(programs, tests, setup)):
        if isinstance(ts, str):
            raise TypeError(f"tests[{i}] must be a sequence of snippets, not a str; wrap it: [{ts[:40]!r}]")
        if not all(isinstance(x, str) for x in (p, *ts)) or not isinstance(s, (str, type(None))):
            raise TypeError(f"program {i}, its setup and its tests must be str")
    workers = len(os.sched_getaffinity(0)) if workers is None else workers
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    check_confinement()

    def one(i: int) -> TestRun:
        with _slots:  # the lowest free slot; wait if all are busy
            _slots.wait_for(lambda: len(_busy) < SLOTS)
            slot = min(set(range(SLOTS)) - _busy)
            _busy.add(slot)
        try:
            return _run_one(programs[i], setup[i], tests[i], limits, slot, plain_results)
        except Exception as e:  # a broken sandbox fails this program only
            return TestRun((False,) * len(tests[i]), "sandbox_error", f"{type(e).__name__}: {e}", "", "", 0.0)
        finally:
            with _slots:
                _busy.discard(slot)
                _slots.notify()

    if workers == 1 or len(programs) <= 1:
        return [one(i) for i in range(len(programs))]
    with ThreadPoolExecutor(min(workers, len(programs))) as pool:
        return list(pool.map(one, range(len(programs))))
