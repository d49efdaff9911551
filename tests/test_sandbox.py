"""The code sandbox: verdicts for ordinary programs, then a battery of hostile ones.

Every hostile test ends with a failing result, a clear reason, and the machine
unharmed: no sandbox process left, no temporary directory left, the parent alive.
"""

from __future__ import annotations

import ctypes
import doctest
import json
import os
import shutil
import socket
import stat
import subprocess
import sysconfig
import tempfile
import threading
import time
import tracemalloc
from pathlib import Path

import pytest

from text_gym.rewards import sandbox
from text_gym.rewards.sandbox import REASONS, SLOTS, Limits, TestRun, isolation, run_tests

FAST = Limits(cpu_seconds=1, wall_seconds=2)
ADD = "def add(a, b):\n    return a + b\n"
ROOT = os.geteuid() == 0


def leftovers() -> list[str]:
    """Live processes run as one of this process's sandbox uids, or children of it."""
    found = []
    mine = {*range(sandbox._uid(0), sandbox._uid(SLOTS)), *range(sandbox._judge_uid(0), sandbox._judge_uid(SLOTS))}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/status") as f:
                fields = dict(line.split(":", 1) for line in f if ":" in line)
        except OSError:
            continue  # gone meanwhile
        uid, ppid = int(fields["Uid"].split()[0]), int(fields["PPid"])
        if (uid in mine or ppid == os.getpid()) and fields["State"].split()[0] not in "ZX":
            found.append(f"{pid} {fields['Name'].strip()} uid={uid} ppid={ppid}")
    return found


def sandbox_dirs() -> set[str]:
    mine = f"text_gym_sandbox_{os.getpid()}_"
    return {d for d in os.listdir(tempfile.gettempdir()) if d.startswith(mine)}


@pytest.fixture
def unharmed():
    """Check, after the test, that no process or temporary directory was left behind."""
    dirs = sandbox_dirs()
    yield
    deadline = time.monotonic() + 2  # killed processes may take a moment to go
    while leftovers() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert leftovers() == []
    assert sandbox_dirs() <= dirs


def run_one(program: str, tests=("assert add(1, 2) == 3",), limits=FAST, **kw) -> TestRun:
    run = run_tests([program], [list(tests)], limits=limits, **kw)[0]
    assert run.reason in REASONS
    return run


def assert_failed(run: TestRun, reason: str, *words: str) -> None:
    assert run.reason == reason, run
    assert not any(run.passed) and run.fraction == 0.0, run
    for word in words:
        assert word in run.detail, run


# --- ordinary programs -------------------------------------------------------------


def test_doctests():
    result = doctest.testmod(sandbox)
    assert result.failed == 0 and result.attempted > 0


def test_pass_fail_and_partial():
    tests = [
        ["assert add(1, 2) == 3", "assert add(2, 2) == 4"],
        ["assert add(1, 2) == 3", "assert add(1, 1) == 3", "assert add(0, 0) == 0"],
        ["assert add(1, 1) == 3"],
    ]
    runs = run_tests([ADD] * 3, tests, limits=FAST)
    assert [r.passed for r in runs] == [(True, True), (True, False, True), (False,)]
    assert [r.fraction for r in runs] == [1.0, 2 / 3, 0.0]
    assert [r.reason for r in runs] == ["ok"] * 3
    assert runs[0].detail == "" and runs[1].detail == "test 1: AssertionError"


def test_setup_binds_candidate_and_tests_share_globals():
    runs = run_tests(
        [ADD, ADD],
        [["assert candidate(2, 3) == 5", "y = 1", "assert y == 1"]] * 2,
        setup=["candidate = add", "candidate = missing"],
        limits=FAST,
    )
    assert runs[0].passed == (True, True, True) and runs[0].reason == "ok"
    assert_failed(runs[1], "exception", "setup: NameError")


def test_no_tests_and_output_capture():
    run = run_one("import sys\nprint('out')\nprint('err', file=sys.stderr)", tests=())
    assert (run.passed, run.fraction, run.reason) == ((), 0.0, "ok")
    assert (run.stdout, run.stderr) == ("out\n", "err\n")


def test_syntax_error_and_exception():
    assert_failed(run_one("def add(a, b) return a"), "syntax_error", "SyntaxError")
    assert_failed(run_one(ADD + "raise ValueError('boom')"), "exception", "ValueError: boom")
    run = run_one(ADD, tests=["assert add(1, 2) == 3", "def (", "1 / 0"])
    assert run.passed == (True, False, False) and run.reason == "ok"


def test_order_workers_and_determinism():
    """Batch results do not depend on workers; set order is fixed (PYTHONHASHSEED=0)."""
    programs = [f"print(sorted({{{i}}}), list({{'apple', 'pear', 'fig', 'kiwi'}}))" for i in range(6)]
    tests = [[f"assert {i} % 2 == 0"] for i in range(6)]
    one, two = (run_tests(programs, tests, limits=FAST, workers=w) for w in (1, 2))
    key = [(r.passed, r.reason, r.stdout) for r in one]
    assert key == [(r.passed, r.reason, r.stdout) for r in two]
    assert [r.passed for r in one] == [(i % 2 == 0,) for i in range(6)]
    assert len({r.stdout.split("] ")[1] for r in one}) == 1


def test_bad_arguments():
    with pytest.raises(ValueError, match="2 programs, 1 test lists"):
        run_tests(["", ""], [[]])
    with pytest.raises(TypeError, match=r"tests\[0\] must be a sequence"):
        run_tests([""], ["assert True"])
    with pytest.raises(TypeError, match="must be str"):
        run_tests([b"x = 1"], [[]])
    with pytest.raises(ValueError, match="workers must be >= 1"):
        run_tests([""], [[]], workers=0)
    with pytest.raises(ValueError, match="Limits.wall_seconds must be > 0"):
        Limits(wall_seconds=0)
    assert run_tests([], []) == []


def test_isolation_report():
    info = isolation()
    assert set(info) == {"uid_switch", "filesystem", "private_proc", "network", "pid_namespace", "no_new_privs"}
    assert sandbox.network_isolated() == info["network"]
    run = run_one("import os\nprint(os.getuid(), os.getgid(), os.getgroups())", tests=())
    if ROOT:
        uid = int(run.stdout.split()[0])
        assert uid in range(sandbox._uid(0), sandbox._uid(SLOTS)) and f" {uid} " in run.stdout
        assert run.stdout.endswith("[]\n")


# --- hostile programs ----------------------------------------------------------------


def test_infinite_loop_times_out(unharmed):
    assert_failed(run_one("while True:\n    pass"), "timeout", "CPU limit")
    run = run_one("import time\ntime.sleep(60)", limits=Limits(wall_seconds=1))
    assert_failed(run, "timeout", "wall-clock")
    assert run.seconds < 3


def test_timeout_in_a_test_keeps_earlier_results(unharmed):
    program = ADD + "def spin():\n    while True:\n        pass\n"
    run = run_one(program, tests=["assert add(1, 2) == 3", "spin()", "pass"])
    assert run.passed == (True, False, False) and run.reason == "timeout", run
    assert "CPU limit" in run.detail, run
    # The tests' own loops run in the judge, which has the same CPU limit.
    run = run_one(
        ADD, tests=["assert add(1, 2) == 3", "while True: pass", "pass"], limits=Limits(cpu_seconds=1, wall_seconds=6)
    )  # (room for a busy machine)
    assert run.passed == (True, False, False) and run.reason == "timeout", run
    assert run.detail == "the judge's CPU limit of 1 s exceeded", run


def test_fork_and_threads_refused(unharmed):
    assert_failed(run_one("import os\nos.fork()"), "exception", "BlockingIOError")
    run = run_one("import threading\nthreading.Thread(target=print).start()")
    assert_failed(run, "exception", "can't start new thread")


def test_fork_bomb_is_bounded(unharmed):
    bomb = "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass"
    run = run_one(bomb, limits=Limits(cpu_seconds=1, wall_seconds=1.5, processes=3))
    assert_failed(run, "timeout")


def test_memory_hog(unharmed):
    assert_failed(run_one("x = bytearray(10 * 2**30)"), "memory", "MemoryError")


def test_huge_file(unharmed):
    program = "with open('big', 'wb') as f:\n    for _ in range(10 * 1024):\n        f.write(bytes(2**20))"
    assert_failed(run_one(program), "exception", "File too large")


@pytest.mark.skipif(not (ROOT or isolation()["filesystem"]), reason="nothing confines files here")
@pytest.mark.parametrize(
    "attack",
    [
        "open({canary!r}, 'w').write('pwned')",
        "import os\nos.remove({canary!r})",
        "open({canary!r} + '.new', 'w')",
        "import shutil\nshutil.rmtree({home!r})",
    ],
)
def test_files_outside_are_safe(tmp_path, attack, unharmed):
    home = tmp_path / "home"
    home.mkdir(mode=0o755)
    (canary := home / "canary.txt").write_text("intact")
    run = run_one(attack.format(canary=str(canary), home=str(home)))
    assert_failed(run, "exception")  # hidden (a private /tmp), read-only or not its uid's
    assert run.detail.startswith(("FileNotFoundError", "OSError: [Errno 30]", "PermissionError")), run
    assert canary.read_text() == "intact" and os.listdir(home) == ["canary.txt"]


@pytest.mark.skipif(not (ROOT or isolation()["filesystem"]), reason="nothing confines files here")
def test_secret_files_unreadable(tmp_path, monkeypatch, unharmed):
    ssh = tmp_path / "home" / ".ssh"
    ssh.mkdir(parents=True)
    key = ssh / "id_ed25519"
    key.write_text("SECRET-KEY-42")
    key.chmod(stat.S_IRUSR)
    ssh.chmod(stat.S_IRWXU)
    (tmp_path / "home").chmod(0o755)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    run = run_one(f"print(open({str(key)!r}).read())")
    assert_failed(run, "exception")  # not its uid's, or hidden (a private /tmp)
    assert run.detail.startswith(("PermissionError", "FileNotFoundError")), run
    run = run_one("import os\nprint(open(os.path.expanduser('~/.ssh/id_ed25519')).read())")
    assert_failed(run, "exception", "FileNotFoundError")
    assert "SECRET" not in run.stdout + run.stderr


CONFINED = pytest.mark.skipif(not isolation()["filesystem"], reason="no mount namespace here")


def visible(path: Path) -> bool:
    """Whether confine() leaves ``path`` in view (not under /tmp and the like, or a mask)."""
    real = os.path.realpath(path) + "/"
    return not any(
        real.startswith(h.rstrip("/") + "/") for h in ("/tmp", "/var/tmp", "/dev/shm", "/run", *sandbox._masks())
    )


@pytest.fixture
def open_dir():
    """A world-writable folder that confine() leaves in view and any user can reach."""
    for base in (Path(__file__).parent, Path("/srv"), Path("/opt"), Path("/mnt"), Path("/var/lib")):
        base = base.resolve()
        if (
            base.is_dir()
            and os.access(base, os.W_OK)
            and visible(base)
            and all(q.stat().st_mode & 0o001 for q in (base, *base.parents))
        ):
            break
    else:
        pytest.skip("no writable folder here is outside /tmp and the like and open to all")
    path = base / f".text_gym_sandbox_{os.getpid()}_{threading.get_ident()}"
    path.mkdir()
    path.chmod(0o777)
    yield path
    shutil.rmtree(path)


@CONFINED
def test_files_are_read_only_even_where_anyone_may_write(open_dir, unharmed):
    run = run_one(f"open({str(open_dir / 'x')!r}, 'w')")
    assert_failed(run, "exception", "Read-only file system")
    assert list(open_dir.iterdir()) == []


@CONFINED
def test_shared_scratch_places_are_private_and_bounded(tmp_path, unharmed):
    mark = f"text_gym_leak_{os.getpid()}"
    (tmp_path / "host.txt").write_text("host")  # tmp_path is under /tmp
    program = (
        "import os\n"
        "for d in ('/tmp', '/var/tmp', '/dev/shm', '/run', os.getcwd()):\n"
        f"    open(os.path.join(d, {mark!r}), 'w').write('x')\n"
        f"print(os.path.exists({str(tmp_path / 'host.txt')!r}))\n"
        "print(sorted(p for p in os.listdir('/proc') if p.isdigit()))\n"
        f"p = {sysconfig.get_paths()['purelib']!r}\n"
        "print(os.listdir(p) if os.path.isdir(p) else 'hidden')\n"
        "import sys\n"  # the site-packages beside the stdlib, through its directory fd
        "print([os.listdir(os.path.join(d, 'site-packages')) for d in sys.path\n"
        "       if os.path.isdir(os.path.join(d, 'site-packages'))])\n"
        "try:\n"
        "    for i in range(100):\n"
        "        for d in ('/dev/shm', '/var/tmp', '/run', '.'):\n"
        "            open('%s/%d' % (d, i), 'wb').write(bytes(2**18 - 1))\n"
        "except OSError as e:\n"
        "    print(i, e.errno)\n"
    )
    run = run_one(program, tests=())
    assert run.reason == "ok", run
    lines = run.stdout.splitlines()  # site-packages: empty, or hidden with all /tmp
    proc = "['1', '2']" if isolation()["private_proc"] else lines[1]
    assert lines[:2] == ["False", proc] and lines[2] in ("[]", "hidden") and lines[3] in ("[]", "[[]]"), run
    # one budget for all of them: 16 x file_bytes (1 MiB), then ENOSPC
    assert lines[4].endswith(" 28") and 14 <= int(lines[4].split()[0]) <= 16, run
    assert not any(os.path.exists(os.path.join(d, mark)) for d in ("/tmp", "/var/tmp", "/dev/shm", "/run"))


SYSTEM_PYTHON = "/usr/bin/python3"  # one that uid 65534 may run (ours may live under /root)
# Run by uid 65534 from a folder holding a copy of sandbox.py (it needs only the stdlib).
NOBODY_SCRIPT = r"""
import json, os, sys
sys.path.insert(0, os.getcwd())
import sandbox
program = (
    "import ctypes, os\n"
    "def add(a, b):\n"
    "    return a + b\n"
    f"for path in ({os.getcwd() + '/victim.txt'!r}, {os.getcwd() + '/new.txt'!r}):\n"
    "    try:\n"
    "        open(path, 'a').write('pwned')\n"
    "        print('wrote', path)\n"
    "    except OSError as e:\n"
    "        print(type(e).__name__, e.errno)\n"
    "try:\n"
    f"    print(open({os.environ['HOME'] + '/key'!r}).read())\n"
    "except OSError as e:\n"
    "    print(type(e).__name__)\n"
    "try:\n"
    "    print(open('/proc/1/environ').read())\n"
    "except OSError as e:\n"
    "    print('environ', type(e).__name__)\n"
    "libc = ctypes.CDLL(None, use_errno=True)\n"
    "print(libc.umount2(b'/tmp', 2), libc.mount(None, b'/', None, 32 | 4096 | 16384, None))\n"
    "os.kill(1, 2)  # SIGINT to the monitor (the same kernel uid here): it ignores it\n"
    "os.kill(1, 24)  # SIGXCPU: the judge checks its CPU time before it believes one\n"
)
info = sandbox.isolation()
run = sandbox.run_tests([program], [["assert add(1, 2) == 3"]])[0] if info["filesystem"] else None
print(json.dumps([info, run and (run.reason, run.passed, run.stdout, run.stderr)]))
"""


@pytest.mark.skipif(
    not (ROOT and shutil.which("setpriv") and os.access(SYSTEM_PYTHON, os.X_OK)),
    reason="needs root (to become uid 65534), setpriv and /usr/bin/python3",
)
def test_without_root_user_namespaces_keep_the_callers_files(open_dir):
    """The sandbox run by uid 65534: its programs have that kernel uid too, so only the
    read-only view and the hidden home keep them out of the caller's files."""
    shutil.copy(sandbox.__file__, open_dir / "sandbox.py")
    for path in sandbox.HARNESS:
        shutil.copy(path, open_dir)
    (open_dir / "victim.txt").write_text("intact")
    (open_dir / "home").mkdir()
    (open_dir / "home" / "key").write_text("SECRET")
    for path in (open_dir, *open_dir.iterdir(), open_dir / "home" / "key"):
        os.chown(path, 65534, 65534)
    out = subprocess.run(
        [
            "setpriv",
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=-all",
            "--bounding-set=-all",
            SYSTEM_PYTHON,
            "-B",
            "-c",
            NOBODY_SCRIPT,
        ],
        cwd=open_dir,
        env={"PATH": os.environ["PATH"], "HOME": str(open_dir / "home")},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    info, run = json.loads(out.stdout)
    if not info["filesystem"]:
        pytest.skip(f"unprivileged user namespaces cannot confine files here: {info}")
    reason, passed, stdout, stderr = run
    assert reason == "ok" and passed == [True], run
    # the caller's files are read-only, its home hidden, the monitor out of reach
    assert stdout.splitlines() == ["OSError 30", "OSError 30", "FileNotFoundError", "environ PermissionError", "-1 -1"]
    assert (open_dir / "victim.txt").read_text() == "intact"
    assert sorted(os.listdir(open_dir)) == ["_harness.py", "_wire.py", "home", "sandbox.py", "victim.txt"]


def test_unconfined_machines_refuse_to_run_programs(monkeypatch):
    nothing = dict.fromkeys(
        ("uid_switch", "filesystem", "private_proc", "network", "pid_namespace", "no_new_privs"), False
    )
    monkeypatch.setattr(sandbox, "_isolation", lambda: ((), nothing))
    monkeypatch.delenv(sandbox.UNCONFINED, raising=False)
    with pytest.raises(RuntimeError, match="not root.*TEXT_GYM_SANDBOX_UNCONFINED=1"):
        run_tests([ADD], [["assert add(1, 2) == 3"]])
    from text_gym.tasks.code import CodeTask

    with pytest.raises(RuntimeError, match="cannot confine"):
        CodeTask(dataset="easy", max_samples=1)
    monkeypatch.setenv(sandbox.UNCONFINED, "1")  # the user's informed choice
    assert run_one(ADD).passed == (True,)


KEYCTL, ADD_KEY = {"x86_64": (250, 248), "aarch64": (219, 217)}.get(os.uname().machine, (None, None))


@pytest.mark.skipif(KEYCTL is None, reason="keyctl's syscall number is known for x86_64 and aarch64")
def test_callers_keyring_out_of_reach(unharmed):
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.syscall(KEYCTL, ctypes.c_long(1), b"text_gym_test") < 0:  # a session keyring of ours
        pytest.skip("no kernel keyrings here")
    secret = b"CALLER-SECRET-42"
    mine = libc.syscall(ADD_KEY, b"user", b"text_gym_token", secret, ctypes.c_size_t(len(secret)), ctypes.c_int(-3))
    program = (  # look for the caller's key, and leave one in the session and user keyrings
        "import ctypes\nlibc = ctypes.CDLL(None)\n"
        f"print(libc.syscall({KEYCTL}, 10, -3, b'user', b'text_gym_token', 0))\n"
        f"libc.syscall({ADD_KEY}, b'user', b'left', b'x', 1, -3)\n"
        f"libc.syscall({ADD_KEY}, b'user', b'left', b'x', 1, -4)\n"
        f"print(libc.syscall({KEYCTL}, 10, -4, b'user', b'left', 0) > 0)\n"
    )
    later = f"import ctypes\nprint(ctypes.CDLL(None).syscall({KEYCTL}, 10, -4, b'user', b'left', 0))\n"
    first, second = run_tests([program, later], [[], []], workers=1)  # one slot, one uid
    assert first.stdout.split() == ["-1", "True"] and second.stdout.split() == ["-1"], (first, second)
    found = libc.syscall(KEYCTL, ctypes.c_long(10), ctypes.c_long(-3), b"user", b"text_gym_token", ctypes.c_long(0))
    assert (
        found == mine
        and libc.syscall(KEYCTL, ctypes.c_long(10), ctypes.c_long(-3), b"user", b"left", ctypes.c_long(0)) == -1
    )


def test_parent_environment_hidden(monkeypatch, unharmed):
    monkeypatch.setenv("TEXT_GYM_SECRET", "hunter2")
    run = run_one(
        "import os\nprint(dict(os.environ))\nprint(open('/proc/self/environ').read())\n"
        f"print(open('/proc/{os.getpid()}/environ').read())"
    )
    assert "hunter2" not in run.stdout + run.stderr and "PATH" in run.stdout
    assert_failed(run, "exception", "Error")


def test_network_blocked(unharmed):
    if not sandbox.network_isolated():
        pytest.skip("no network namespace here (unshare refused): network is not isolated")
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        run = run_one(f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=1)")
        server.settimeout(0.2)
        with pytest.raises(TimeoutError):
            server.accept()
    assert_failed(run, "exception", "Network is unreachable")


def test_sysv_ipc_stays_inside(unharmed):
    if not isolation()["network"]:  # the same unshare call makes the IPC namespace
        pytest.skip("no namespaces here (unshare refused)")
    key = 0x7E57_0000 + os.getpid() % 0xFFFF
    program = (
        f"import ctypes\nid = ctypes.CDLL(None).shmget({key}, 4096, 0o1666)\n"
        "assert id >= 0\nraise RuntimeError('made shm %d' % id)"
    )
    assert_failed(run_one(program), "exception", "made shm")
    with open("/proc/sysvipc/shm") as f:
        assert str(key) not in [line.split()[0] for line in f.readlines()[1:]]


def test_kill_parent_refused(unharmed):
    run = run_one(f"import os, signal\nos.kill({os.getpid()}, signal.SIGKILL)")
    assert_failed(run, "exception")
    assert run.detail.startswith(("ProcessLookupError", "PermissionError")), run


@pytest.mark.parametrize(
    "program, reason",
    [
        ("import sys\nsys.exit(0)", "exit"),
        ("import os\nos._exit(0)", "exit"),
        ("import sys\nprint('S\\nP\\nR ok ')\nraise SystemExit", "exit"),
        (
            "import os\nfor fd in range(3, 1024):\n    try:\n        os.write(fd, b'S\\nP\\nR ok \\n')\n"
            "    except OSError:\n        pass\nos._exit(0)",
            "exit",
        ),
    ],
)
def test_exit_before_tests_never_passes(program, reason, unharmed):
    assert_failed(run_one(program), reason)


def test_exit_during_tests_stops_there(unharmed):
    program = ADD + "import os, sys\ndef stop():\n    sys.exit(0)\ndef leave():\n    os._exit(0)\n"
    run = run_one(program, tests=["assert add(1, 2) == 3", "stop()", "pass"])
    assert run.passed == (True, False, False) and run.reason == "exit"
    assert_failed(run_one(program, tests=["leave()", "pass"]), "exit", "after reporting 0 of 2")
    run = run_one(program, tests=["assert add(1, 2) == 3", "leave()", "pass"], plain_results=False)
    assert run.passed == (True, False, False) and run.reason == "exit"


def test_overwritten_builtins_and_modules_fake_nothing(unharmed):
    program = (
        "import builtins, os, sys\n"
        "for name in ('exec', 'compile', 'str', 'type', 'BaseException', 'Exception',\n"
        "             'AssertionError', 'print', 'len', 'enumerate'):\n"
        "    setattr(builtins, name, None)\n"
        "os.write = os.fstat = os.getpid = os._exit = lambda *a: None\n"
        "sys.modules.clear()\n"
        "sys.settrace(lambda *a: None)\n"
    )
    tests = ["assert 1 == 2", "pass", "raise SystemExit(0)", "pass"]
    # Judged in the monitor, the program broke only its own side of the link.
    run = run_one(program, tests)
    assert run.passed == (False,) * 4 and run.reason in ("exit", "crash"), run
    # Judged in the program's process, the harness's records still cannot be faked.
    run = run_one(program, tests, plain_results=False)
    assert run.passed == (False, True, False, False) and run.reason == "exit", run
    assert run.detail == "test 2: SystemExit: 0", run


YES = (
    "class Yes:  # says yes to any comparison, and survives arithmetic\n"
    "    __eq__ = __lt__ = __le__ = __gt__ = __ge__ = lambda s, o: True\n"
    "    __ne__ = lambda s, o: False\n"
    "    __contains__ = __bool__ = lambda s, *o: True\n"
    "    __abs__ = __neg__ = __getitem__ = __sub__ = __rsub__ = lambda s, *o: s\n"
    "    __len__ = __hash__ = lambda s: 1\n"
    "def add(a, b):\n    return Yes()\n"
)
YES_TESTS = [
    "assert add(1, 2) == 3",
    "assert abs(add(1, 2) - 3) < 1e-9",
    "assert 3 in add(1, 2)",
    "assert not add(1, 2) != 3",
    "assert add(1, 2)[0] == 3",
    "assert sorted([add(1, 2)]) == [3]",
]


def test_objects_that_say_yes_to_anything_pass_nothing(unharmed):
    run = run_one(YES, YES_TESTS)
    assert run.passed == (False,) * 6 and run.reason == "ok", run
    assert run.detail == "test 0: NotPlain: a call returned a Yes object, not plain data", run
    # Without the check, tests trust the program's objects: honest ones, and this one.
    honest = (
        "class V:\n    def __init__(s, x):\n        s.x = x\n    def __eq__(s, o):\n        return s.x == o.x\n"
        "def add(a, b):\n    return V(a + b)\n"
    )
    assert run_one(honest, ["assert add(1, 2) == add(3, 0)"], plain_results=False).passed == (True,)
    assert run_one(honest, ["assert add(1, 2) == add(3, 0)"]).passed == (False,)
    assert run_one(YES, YES_TESTS, plain_results=False).passed == (True,) * 6
    # Inside a list, past rebound builtins, or out of an iterator taken apart without a call.
    inside = YES.replace(
        "return Yes()", "import builtins\n    builtins.list = builtins.dict = None\n    return [Yes()]"
    )
    assert run_one(inside, ["assert add(1, 2) == [3]", "assert add(1, 2)[0] == 3"]).passed == (False, False)
    lazy = YES.replace("return Yes()", "return (y for y in [Yes()])")
    tests = ["assert [*add(1, 2)] == [3]", "assert 3 in add(1, 2)", "for v in add(1, 2):\n    assert v == 3"]
    assert run_one(lazy, tests).passed == (False, False, False)
    assert run_one(lazy, tests, plain_results=False).passed == (True, True, True)


def test_containers_are_rebuilt_from_plain_items(unharmed):
    program = (
        "import types\n"
        "class I(int):\n    __eq__ = lambda s, o: True\n    __hash__ = int.__hash__\n"
        "class S(str):\n    __eq__ = lambda s, o: True\n    __hash__ = str.__hash__\n"
        "def add(a, b):\n    return [I(0)] * 3\n"
        "def name(x):\n    return (S('a'), {1: [I(0)]})\n"
        "def proxy():\n    return types.MappingProxyType({1: I(0)})\n"
        "import collections\n"
        "def ordered():\n    return collections.OrderedDict(a=I(0))\n"
        "def values():\n    return {0: I(0), 1: I(0)}.values()\n"
        "class C:\n    __class_getitem__ = classmethod(lambda c, i: I(0))\n"
        "def klass():\n    return C\n"
    )
    tests = [
        "assert add(1, 2) == [1, 2, 3]",
        "assert sorted(add(1, 2)) == [1, 2, 3]",
        "assert name(0) == ('b', {1: [7]})",
        "assert proxy() == {1: 5}",
        "assert ordered() == {'a': 5}",
        "assert 3 in values()",
        "assert klass()[0] == 5",
        "assert add(1, 2) == [0, 0, 0]",
        "assert {0: 1}.keys() == {0} and list({0: 1}.items()) == [(0, 1)]",
        "assert type(add(1, 2)) is list and type(ordered()) is dict",
    ]
    assert run_one(program, tests).passed == (False,) * 7 + (True,) * 3


def test_tests_builtins_are_out_of_the_programs_reach(unharmed):
    program = (
        "import __main__\n"  # the harness's globals, and the defaults of each of its functions
        "found = [d for f in vars(__main__).values() for d in getattr(f, '__defaults__', 0) or ()]\n"
        "for d in [vars(__main__), *found]:\n"
        "    if type(d) is dict and 'abs' in d:\n"
        "        d['abs'] = lambda x: 0\n"
        "def area(r):\n    return 3 * r * r\n"
    )
    for plain in (True, False):
        run = run_one(program, ["assert abs(area(2) - 12.566) < 1e-3"], plain_results=plain)
        assert run.passed == (False,) and run.reason == "ok", run


def test_program_cannot_change_the_names_tests_use(unharmed):
    program = (
        ADD.replace("a + b", "a + b + 1") + "import builtins\nbuiltins.abs = lambda x: 0\n"
        "def type(x):\n    return str\nisinstance = lambda *a: True\n"
    )
    tests = [
        "assert abs(add(1, 2) - 3) < 1e-9",
        "assert type(add(1, 2)) is str",
        "assert isinstance(add(1, 2), str)",
        "assert add(1, 2) == 4",
        "assert abs(-1) == 1",
    ]
    assert run_one(program, tests).passed == (False, False, False, True, True)


def test_plain_results_keep_honest_values(unharmed):
    program = (
        "import collections\n"
        "def counts(s):\n    return collections.Counter(s)\n"
        "def point(x, y):\n    return collections.namedtuple('P', 'x y')(x, y)\n"
        "def squares(n):\n    return (i * i for i in range(n))\n"
        "def pairs(n):\n    return map(lambda i: (i, -i), range(n))\n"
        "def value(node):\n    return node.value\n"
    )
    setup = "import random\nrng = random.Random(0)\nclass Node:\n    def __init__(self, v):\n        self.value = v\n"
    tests = [
        "assert counts('aab') == {'a': 2, 'b': 1}",
        "assert point(1, 2) == (1, 2)",
        "assert list(squares(3)) == [0, 1, 4]",
        "assert dict(pairs(2)) == {0: 0, 1: -1}",
        "assert value(Node(rng.randint(1, 1))) == 1",
        "assert [(1, {2: [3.0]})] == [(1, {2: [3]})]",
    ]
    run = run_one(program, tests, setup=[setup])
    assert run.passed == (True,) * 6 and run.reason == "ok", run


def test_judge_and_program_trade_plain_values_exactly(unharmed):
    program = (
        "import sys\n"
        "LIMIT = [1, (2, 3)]\n"
        "def echo(x):\n    return x\n"
        "def kinds():\n"
        "    return (b'\\x00b', bytearray(b'a'), 1 - 2j, range(1, 9, 3), {1, 2}, frozenset({3}),\n"
        "            {(1, 'a'): [None, True]}, 10 ** 400, float('inf'), -0.0, int, ValueError)\n"
        "def views():\n    d = {'b': 1, 'a': 2}\n    return d.keys(), d.values(), d.items()\n"
        "def fail(kind):\n"
        "    class Mine(KeyError):\n        pass\n"
        "    raise {'value': ValueError('bad value'), 'mine': Mine('x'), 'stop': StopIteration}[kind]\n"
        "def sort_in_place(xs, table):\n    xs.sort()\n    xs[0].append(9)\n    table['seen'] = len(xs)\n"
        "def apply(f, *args, **kwargs):\n    return f(*args, **kwargs)\n"
        "def naturals():\n    n = 0\n    while True:\n        yield n\n        n += 1\n"
        "def value(node):\n    return node.value, node.left is None, node\n"
        "def private(node):\n    return node._secret\n"
        "def huge():\n    return 'x' * (1 << 25)\n"
        "class Opaque:\n    pass\n"
        "def opaque():\n    return Opaque()\n"
    )
    setup = "class Node:\n    def __init__(self, v):\n        self.value, self.left, self._secret = v, None, 7\n"
    tests = [
        "assert kinds() == (b'\\x00b', bytearray(b'a'), 1 - 2j, range(1, 9, 3), {1, 2}, frozenset({3}),"
        " {(1, 'a'): [None, True]}, 10 ** 400, float('inf'), -0.0, int, ValueError)",
        "import math\nassert math.copysign(1, kinds()[9]) == -1 and math.isnan(echo(math.nan))",
        "k, v, i = views()\nassert list(k) == ['b', 'a'] and list(v) == [1, 2] and list(i) == [('b', 1), ('a', 2)]\n"
        "assert type(k) is type({}.keys()) and k == {'a', 'b'}",
        "try:\n    fail('value')\nexcept ValueError as e:\n    assert str(e) == 'bad value'\nelse:\n    assert False",
        "try:\n    fail('mine')\nexcept KeyError as e:\n"
        "    assert e.args == ('x',) and str(e) == \"'x'\"\nelse:\n    assert False",
        "xs, table = [[3], [1], [2]], {}\nsort_in_place(xs, table)\n"
        "assert xs == [[1, 9], [2], [3]] and table == {'seen': 3}",
        "assert apply(lambda x, y=0: x * 2 + y, 3, y=1) == 7 and apply(sorted, [2, 1], key=lambda x: -x) == [2, 1]",
        "g = naturals()\nassert next(g) == 0 and next(g) == 1 and [n for _, n in zip(range(3), g)] == [2, 3, 4]",
        "node = Node(5)\nv, no_left, same = value(node)\nassert (v, no_left) == (5, True) and same is node",
        "assert LIMIT == [1, (2, 3)] and sys.maxsize > 0",
        "private(Node(1))",
        "huge()",
        "assert opaque()",
        "assert naturals()",
    ]
    run = run_one(program, tests, setup=[setup], limits=Limits(cpu_seconds=5, wall_seconds=10))
    assert run.passed == (True,) * 10 + (False,) * 4, run
    # A program's own object is never truthy or comparable to plain data, and is not sent.
    run = run_one(program, ["assert opaque()"], setup=[setup])
    assert run.detail == "test 0: NotPlain: a call returned a Opaque object, not plain data", run


def test_the_wire_carries_plain_data_and_refuses_the_rest():
    """The judge's link format, in this process: the worker's end encodes, the judge's parses."""
    from text_gym.rewards import _harness, _wire

    # imported as a module, the harness takes the link's names from _wire (in the sandbox
    # the boot loader runs _wire.py ahead of it, in one namespace)
    assert (_harness.Link, _harness.Broken, _harness.NotPlain) == (_wire.Link, _wire.Broken, _wire.NotPlain)
    names = dict(vars(__import__("builtins")))
    worker, judge = _wire.Link(-1, -1, names), _wire.Link(-1, -1, names, pidfd=0)
    d = {"b": 1, "a": [2.5, None]}
    values = [
        None,
        True,
        False,
        0,
        -7,
        10**500,
        1.5,
        -0.0,
        float("inf"),
        "",
        "a:b\n\udc80é",
        b"\x00\xff",
        bytearray(b"xy"),
        2 - 3j,
        range(0, 10, 3),
        [1, [2, (3, "4")]],
        (),
        {1, 2},
        frozenset({"x"}),
        {(1, 2): {"k": []}},
        d.keys(),
        d.values(),
        d.items(),
        int,
        ZeroDivisionError,
    ]
    for value in values:
        back = judge.parse(worker.encode(value, worker.result))
        assert type(back) is type(value) and (back == value or list(back) == list(value)), (value, back)
    nan = judge.parse(worker.encode(float("nan"), worker.result))
    assert nan != nan
    # Subclasses go as their base value; what is not plain data is refused, or sent as a
    # stand-in when the policy allows (iterators, from the worker).
    counter = __import__("collections").Counter("aab")
    assert type(judge.parse(worker.encode(counter, worker.result))) is dict
    with pytest.raises(_wire.NotPlain, match="a call returned a object object"):
        worker.encode(object(), worker.result)
    stub = judge.parse(worker.encode(iter([1]), worker.result))
    assert type(stub) is _wire.Remote and judge.parse(worker.encode(iter([1]), worker.result)) is not stub
    with pytest.raises(_wire.NotPlain):
        bool(stub)
    with pytest.raises(ValueError, match="long head"):
        judge.parse("s" + "9" * 100 + ":")
    many = "".join("h%d:" % h for h in range(_wire.STUBS + 1))
    with pytest.raises(ValueError, match="handles"):
        judge.parse("l%d:%s" % (_wire.STUBS + 1, many))
    # Malformed or hostile text never parses into anything.
    for bad in [
        "",
        "l2:i1:",
        "s5:abc",
        "x1:",
        "i1",
        "nn",
        "o0:",
        "yopen:",
        "ynot_a_name:",
        "d1:i1:",
        "e1:l0:",
        "b2:\u0100\u0100",
        "c1:s1:x",
        "r1:f1.0:",
        "l1:" * 5000 + "l0:",
    ]:
        with pytest.raises((ValueError, IndexError, KeyError, TypeError, RecursionError)):
            judge.parse(bad)


@pytest.mark.skipif(not (ROOT or isolation()["filesystem"]), reason="nothing confines files here")
def test_the_tests_cannot_undo_the_confinement(unharmed):
    """The setup and tests run in the judge, which keeps no power to mount (so none to
    make the read-only mounts writable again) and, as root, takes a uid of its own."""
    probe = (
        "import ctypes, os\nlibc = ctypes.CDLL(None, use_errno=True)\n"
        "rc = libc.mount(b'none', b'/tmp', b'tmpfs', 0, None)\n"
        "print(os.getuid(), rc, ctypes.get_errno())\n"
    )
    run = run_one(ADD, ["assert add(1, 2) == 3"], setup=[probe])
    uid, rc, errno = map(int, run.stdout.split())
    assert (rc, errno, run.passed) == (-1, 1, (True,)), run  # EPERM
    assert uid != 0 if ROOT else True
    if ROOT:
        assert uid in range(sandbox._judge_uid(0), sandbox._judge_uid(SLOTS)), uid
    # The worker cannot mount either (it never could).
    run = run_one(ADD + probe, tests=())
    assert run.stdout.split()[1:] == ["-1", "1"], run


@pytest.mark.skipif(not isolation()["filesystem"], reason="nothing confines files here")
def test_the_stdlib_leads_nowhere_else(unharmed):
    """The program reaches the stdlib through read-only bind mounts of its folders, so
    ``..`` from them finds only the other bind mounts (through directory fds, it climbed
    to the interpreter's whole installation: pyenv's other versions, their packages)."""
    program = (
        "import os, sys\n"
        "print(sorted({n for p in sys.path for n in os.listdir(os.path.join(p, '..'))}))\n"
        "print(sorted({n for p in sys.path for n in os.listdir(os.path.join(p, '..', '..'))}))\n"
    )
    run = run_one(program, tests=())
    up, up2 = run.stdout.splitlines()
    assert eval(up) == [str(i) for i in range(len(eval(up)))] and ".lib" in eval(up2), run
    assert run_one("import json, collections.abc, decimal, math\n" + ADD).passed == (True,)


def test_honest_programs_that_a_judge_might_trip_on(unharmed):
    """A completion's own ``__main__`` block (skipped: the program is module ``solution``),
    a big module-level table (sent as a stand-in, not encoded), exceptions with their
    args."""
    program = (
        ADD + "import sys\n"
        "SIEVE = [True] * 10 ** 7\n"
        "def sieve(k):\n    return SIEVE[k]\n"
        "def fail():\n    raise ValueError(1, 2)\n"
        "if __name__ == '__main__':\n    print(add(int(input()), 1))\n    sys.exit(1)\n"
    )
    tests = [
        "assert add(1, 2) == 3",
        "assert sieve(5) is True",
        "try:\n    fail()\nexcept ValueError as e:\n    assert e.args == (1, 2)\nelse:\n    assert False",
    ]
    run = run_one(program, tests, limits=Limits(cpu_seconds=2, wall_seconds=4))
    assert run.passed == (True, True, True) and run.stdout == "", run


def test_the_judge_keeps_to_itself(unharmed):
    """The judge does not import what reads files named by the environment (readline's
    ~/.inputrc, which the program could write), starts away from the program's folder,
    and reads any integer the program sends in linear time (a 2-million-digit one)."""
    program = (
        ADD + "import os, readline\n"
        "open(os.path.expanduser('~/.inputrc'), 'w').write('$include /proc/self/environ\\n')\n"
        "def big():\n    return 10 ** 2_000_000\n"
    )
    tests = [
        "assert 'readline' not in globals() and 'readline' not in __import__('sys').modules",
        "import os\nassert (os.environ['HOME'], os.getcwd()) == ('/nonexistent', '/')",
        "assert big() == 10 ** 2_000_000",
    ]
    run = run_one(program, tests, limits=Limits(cpu_seconds=2, wall_seconds=4))
    assert run.passed == (True, True, True) and run.stderr == "", run


MEMORY_SCAN = (  # does the program's process hold a test's text? (the pattern does not match itself)
    "import ctypes, re\n"
    "def add(a, b):\n    return a + b\n"
    "found = False\n"
    "with open('/proc/self/maps') as maps:\n"
    "    for line in maps:\n"
    "        span, perms, *rest = line.split()\n"
    "        lo, hi = (int(x, 16) for x in span.split('-'))\n"
    "        if perms[0] == 'r' and hi - lo <= 1 << 26 and not rest[-1].startswith('[v'):\n"
    "            found = found or re.search(rb'EXPECTED_[0-9]{6}', ctypes.string_at(lo, hi - lo)) is not None\n"
    "print('found' if found else 'absent')\n"
)


def test_the_programs_process_never_holds_the_tests(unharmed):
    """A program that reads the tests (its memory, gc, frames) could answer each call with
    the expected value; under the judge they reach only the monitor."""
    tests = ["assert add(1, 2) == 3  # EXPECTED_123456"]
    run = run_one(MEMORY_SCAN, tests, setup=["# EXPECTED_654321"], limits=Limits(cpu_seconds=5, wall_seconds=10))
    assert (run.stdout, run.passed) == ("absent\n", (True,)), run
    # Judged in the program's process, the same scan finds them.
    run = run_one(MEMORY_SCAN, tests, limits=Limits(cpu_seconds=5, wall_seconds=10), plain_results=False)
    assert (run.stdout, run.passed) == ("found\n", (True,)), run


def test_programs_that_dig_into_their_process_fake_nothing(unharmed):
    """Clearing a class's heap-type flag with ctypes, or rebinding the harness's names
    through frames, defeated the check when it ran in the program's process."""
    yes = YES.replace("def add(a, b):\n    return Yes()\n", "")
    flag = yes + (
        "import ctypes\n"  # tp_flags of CPython 3.11's type objects
        "flags = ctypes.c_ulong.from_address(id(Yes) + 168)\n"
        "if flags.value == Yes.__flags__:\n    flags.value &= ~512\n"
        "def add(a, b):\n    return Yes()\n"
    )
    frames = yes + (
        "import sys\n"
        "def add(a, b):\n"
        "    f = sys._getframe(1)\n"
        "    while f is not None:\n"
        "        for k in ('_sandbox_plain_', 'plain', 'say'):\n"
        "            if k in f.f_globals:\n"
        "                f.f_globals[k] = lambda *x: x[0] if x else None\n"
        "        f = f.f_back\n"
        "    return Yes()\n"
    )
    link = yes + (
        "import os\n"  # write a reply of its own choosing, then garbage, on every fd
        "def add(a, b):\n"
        "    for fd in range(3, 64):\n"
        "        for data in (b'\\x00\\x00\\x00\\x0b[\"ok\",true]', b'\\xff' * 8):\n"
        "            try:\n                os.write(fd, data)\n            except OSError:\n                pass\n"
        "    return Yes()\n"
    )
    for program in (flag, frames, link):
        run = run_one(program, YES_TESTS)
        assert not any(run.passed) and run.reason in ("ok", "crash"), run


def test_print_flood(unharmed):
    tracemalloc.start()
    try:
        run = run_one("import sys\nfor _ in range(100):\n    sys.stdout.write('x' * 2**20)")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert_failed(run, "output_limit")
    assert len(run.stdout) <= sandbox.TAIL_BYTES and peak < 4 << 20


def test_deep_recursion(unharmed):
    run = run_one("def f(n):\n    return f(n + 1)\nf(0)")
    assert_failed(run, "exception", "RecursionError")
    run = run_one("import sys\nsys.setrecursionlimit(10**8)\ndef f(n):\n    return f(n + 1)\nf(0)")
    assert not any(run.passed) and run.reason in ("crash", "memory", "timeout", "exception"), run


def test_closed_stdout_and_stderr(unharmed):
    run = run_one("import os\nos.close(1)\nos.close(2)\n" + ADD)
    assert run.passed == (True,) and run.reason == "ok"


def test_ctypes_crash(unharmed):
    assert_failed(run_one("import ctypes\nctypes.string_at(0)"), "crash", "SIGSEGV")


@pytest.mark.parametrize("killer", ["os.kill(os.getpid(), 9)", "os.kill(-1, 9)", "os.killpg(0, 9)"])
def test_death_mid_batch_spares_others(killer, unharmed):
    programs = [ADD] * 3 + [ADD + "import os\n" + killer] + [ADD] * 3
    runs = run_tests(programs, [["assert add(1, 2) == 3"]] * 7, limits=FAST, workers=2)
    assert [r.reason for r in runs[:3] + runs[4:]] == ["ok"] * 6
    assert all(r.passed == (True,) for r in runs[:3] + runs[4:])
    assert runs[3].passed == (False,) and runs[3].reason in ("crash", "exception"), runs[3]


def test_concurrent_calls_share_nothing(unharmed):
    """Two threads scoring batches at once get their own slots (uids) and results."""
    out = {}

    def score(key):
        out[key] = run_tests([ADD + f"print({key})"] * 4, [["assert add(1, 2) == 3"]] * 4, limits=FAST, workers=2)

    threads = [threading.Thread(target=score, args=(k,)) for k in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for key, runs in out.items():
        assert [(r.passed, r.stdout) for r in runs] == [((True,), f"{key}\n")] * 4
