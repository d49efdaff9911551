"""Run untrusted Python programs against unit tests, each in a fresh, confined process.

Threat model: generated code is hostile. It may loop, fork, allocate, write or print
without end, crash its interpreter, read secrets, reach the network, signal other
processes or fake its own results. ``run_tests`` never runs it in the library's
process: each program gets a new ``python -S -s -P`` (stdlib only) with an
environment built from scratch (PATH, LANG, HOME = TMPDIR = its own scratch folder,
removed afterwards; ``PYTHONHASHSEED=0`` for determinism), in a new session, under
``setpriv --no-new-privs`` and ``unshare --mount --net --ipc --pid`` (with ``--user
--map-root-user`` when we are not root) where allowed (``isolation()`` says what is
active). There a monitor (pid 1 of the pid namespace; runs no program code) confines
the filesystem, then forks the worker, which sets rlimits, drops to a uid of its own
when we are root (else enters a user namespace of its own, with no power over the
monitor's mounts), then runs the program. The setup snippet and each test snippet (a
test passes if it raises nothing) then run in the monitor, the judge, and call the
program's functions in the worker (``plain_results``, the default; below), or, with
``plain_results=False``, run in the worker after the program.

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
  per-run nonce; a test counts only if its record arrives, and the monitor says how
  the worker ended. Closing stdout, printing or spraying fake records, replacing
  builtins or ``sys.modules``, ``sys.exit`` and ``os._exit`` never turn a test into a
  pass;
* the tests' judgement (``plain_results``, on by default): the setup and tests run in the
  monitor, which no program code reaches, and only it writes the records; the worker
  never holds the tests (they reach the monitor after the fork), so a program that
  reads its own memory finds no expected answers. The tests' namespace has the
  program's names, less those that would hide a builtin: plain values as copies,
  modules imported anew in the monitor (from the stdlib, less a few that act when
  imported), and for anything else (functions, classes) a stand-in that calls it in the
  worker. A call's arguments go to the worker and its result comes back as plain data:
  numbers, strings, bytes, None, builtin classes (``type(r) is int``), and lists,
  tuples, sets, dicts, ranges and a dict's views of them (a subclass, such as a
  ``Counter`` or a named tuple, goes as its value in the base type); an iterator (a
  generator, ``map``) as a stand-in whose items come the same way; anything else fails
  the snippet (``NotPlain``, past ``except Exception``). The wire is a small text format
  the monitor parses with builtins alone. So an object whose ``__eq__``, ``__lt__`` or
  ``__contains__`` says yes to anything passes nothing, however the program rewrites
  its own interpreter (``ctypes``, frames, ``gc``). Lists, dicts, sets and bytearrays
  passed to a call get the call's changes back (in-place sorts pass); an exception
  comes back as the first builtin class it derives from, with its message. The tests'
  functions and objects passed to a call stay in the monitor: the program can call
  them, iterate them, and read the public attributes of the tests' own classes' objects
  (a tree's ``node.left``). The program's stand-ins can be called and iterated, nothing
  more (a truth test on one fails the snippet).

Where neither a uid switch (root) nor the filesystem's confinement (user namespaces)
is available, nothing would keep a program out of the caller's files and process:
``run_tests`` and ``CodeTask`` raise ``SandboxUnavailable`` (a ``RuntimeError``) saying
how to fix it, unless ``TEXT_GYM_SANDBOX_UNCONFINED=1`` says to run anyway.

Not protected: a helper of the program's own that the tests trust (HumanEval/32's
``poly``, /38's ``encode_cyclic`` are the program's, prompt included) answers as the
program wrote it. The program's CPU limit does not cover the tests' own work in the
monitor (the wall-clock deadline does). Program globals reach the tests as they were
once the program ran. With ``plain_results=False`` the tests run in the program's
process, and a program that digs into its own interpreter (frames, ``gc``, ``ctypes``)
can sway them. A Unix socket file outside the hidden folders can be connected to despite the
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

# The judge's link (``plain_results``): the setup and tests run in the monitor, the
# program in the worker. Calls cross a pair of pipes as length-prefixed messages of plain
# data; an object that is not plain data stays on its side, and the other side gets a
# stand-in for it (a handle): the judge's can be called and iterated, nothing more; the
# worker's (for the tests' objects) can also read their public attributes.
#
# The wire (text, sent as UTF-8): ``n`` ``T`` ``F`` (None, True, False); a tag, a head and
# ``:``: ``i<int>:`` ``f<float repr>:`` ``h<handle>:`` (the sender's object) ``o<handle>:``
# (the receiver's own) ``y<name>:`` (a builtin class); ``s<n>:`` then n characters (``b``
# bytes, ``a`` bytearray: as latin-1); a container's tag, its size, ``:`` and its items:
# ``l`` list, ``t`` tuple, ``e`` set, ``z`` frozenset, ``d`` dict (keys and values in
# turn), ``K`` ``V`` ``I`` a dict's keys, values, items, ``c`` complex, ``r`` range. The
# judge parses it with builtins alone: no json (whose import costs more than a program's
# run), no marshal or pickle (not safe on hostile data).
_LINK = r"""
import select
LINK_BYTES = 1 << 24  # the most one message may carry

class NotPlain(BaseException):  # past a test's "except Exception"
    pass

class Broken(BaseException):  # the worker ended, or broke the link
    pass

class RemoteError(Exception):  # the program raised something the judge cannot name
    pass

KEYS, VALUES, ITEMS = type({}.keys()), type({}.values()), type({}.items())
MAPPING = type(type.__dict__)  # mappingproxy: a read-only dict, in C
CONTAINERS = {list: "l", tuple: "t", set: "e", frozenset: "z", KEYS: "K", VALUES: "V",
              ITEMS: "I", complex: "c", range: "r"}
BUILD = {"l": list, "t": tuple, "e": set, "z": frozenset, "K": lambda v: dict.fromkeys(v).keys(),
         "V": lambda v: dict(enumerate(v)).values(), "I": lambda v: dict(v).items(),
         "c": lambda v: complex(*v), "r": lambda v: range(*v)}
CONSTANTS = {"n": None, "T": True, "F": False}
BASES = (dict, list, tuple, set, frozenset, str, bytes, bytearray, int, float, complex)
MUTABLE = (list, dict, set, bytearray)  # what a call may change in its arguments

class Remote:  # the judge's stand-in for an object of the program
    __slots__ = ("_h", "_link")
    def __init__(self, h, link):
        self._h, self._link = h, link
    def __call__(self, *args, **kwargs):
        return self._link.call(self._h, args, kwargs)
    def __iter__(self):
        return self._link.ask(["iter", self._h])[1]
    def __next__(self):
        return self._link.ask(["next", self._h])[1]
    def __bool__(self):
        raise NotPlain("an object of the program was used as a truth value")
    def __repr__(self):
        return "<object %d of the program>" % self._h

class Handle(Remote):  # the worker's stand-in for an object of the tests
    __slots__ = ()
    def __getattr__(self, name):
        return self._link.ask(["attr", self._h, name])[1]
    def __bool__(self):
        return True
    def __repr__(self):
        return "<object %d of the tests>" % self._h

def update(old, new):  # put a container's contents after a call into it, in place
    if type(old) is not type(new) or type(old) not in MUTABLE:
        return
    if type(old) is list and len(old) == len(new):
        for i, (a, b) in enumerate(zip(old, new)):
            if type(a) in MUTABLE and type(a) is type(b):
                update(a, b)
            elif a is not b:
                old[i] = b
    elif type(old) in (list, bytearray):
        old[:] = new
    else:
        old.clear(), old.update(new)

class Link:
    def __init__(self, rfd, wfd, names, pidfd=-1):
        self.rfd, self.wfd, self.names, self.pidfd = rfd, wfd, names, pidfd
        self.judge = pidfd >= 0  # the monitor's end (it watches the worker's pidfd)
        self.stub = Remote if self.judge else Handle
        self.objects, self.ids, self.stubs = [], {}, {}  # ours by handle; handle by id; theirs
        self.classes = {}  # the judge: id -> class, of the tests' classes

    def share(self, x):  # a handle to one of our objects (kept alive: its id stays its own)
        h = self.ids.get(id(x))
        if h is None:
            h = self.ids[id(x)] = len(self.objects)
            self.objects.append(x)
        return "h%d:" % h

    def result(self, x):  # the worker's results: plain data, or an iterator over some
        if self.judge or hasattr(type(x), "__next__"):
            return self.share(x)
        raise NotPlain("a call returned a %s object, not plain data" % type(x).__name__)

    def encode(self, x, other):  # plain data on the wire; other(x) for anything else
        t = type(x)
        if x is None or t is bool:
            return "T" if x is True else "F" if x is False else "n"
        if t is int:
            return "i%d:" % x
        if t is float:
            return "f%r:" % x
        if t is str or t is bytes or t is bytearray:
            text = x if t is str else x.decode("latin-1")
            return "%s%d:%s" % ("s" if t is str else "b" if t is bytes else "a", len(text), text)
        if t is dict or t is MAPPING:
            return "d%d:%s" % (len(x), "".join(self.encode(k, other) + self.encode(v, other)
                                               for k, v in x.items()))
        if t in CONTAINERS:
            items = (x.real, x.imag) if t is complex else (x.start, x.stop, x.step) if t is range else x
            items = [self.encode(v, other) for v in items]
            return "%s%d:%s" % (CONTAINERS[t], len(items), "".join(items))
        if t is self.stub:  # theirs, going home
            return "o%d:" % x._h
        if t is type and self.names.get(x.__name__) is x:  # a builtin class: int, ValueError
            return "y%s:" % x.__name__
        for base in BASES:  # a subclass (Counter, a named tuple, an IntEnum): its value
            if isinstance(x, base):
                y = base(x)
                if type(y) is base:
                    return self.encode(y, other)
                break
        return other(x)

    def parse(self, s):  # the value of wire text s; raises on anything malformed
        pos = 0

        def value():
            nonlocal pos
            tag = s[pos]
            if tag in CONSTANTS:
                pos += 1
                return CONSTANTS[tag]
            end = s.index(":", pos + 1)
            head, pos = s[pos + 1:end], end + 1
            if tag in "sba":
                n, start = int(head), pos
                pos += n
                if not 0 <= n <= len(s) - start:
                    raise ValueError("a short string")
                text = s[start:pos]
                return text if tag == "s" else (bytes if tag == "b" else bytearray)(text, "latin-1")
            if tag == "i":
                return int(head)
            if tag == "f":
                return float(head)
            if tag == "h":
                h, stub = int(head), None
                stub = self.stubs.get(h)
                if stub is None:
                    stub = self.stubs[h] = self.stub(h, self)
                return stub
            if tag == "o":
                h = int(head)
                if not 0 <= h < len(self.objects):
                    raise ValueError("no such object")
                return self.objects[h]
            if tag == "y":
                if type(self.names.get(head)) is not type:
                    raise ValueError("no such class")
                return self.names[head]
            if tag == "d":
                items = [value() for _ in range(2 * int(head))]
                return {items[i]: items[i + 1] for i in range(0, len(items), 2)}
            return BUILD[tag]([value() for _ in range(int(head))])

        v = value()
        if pos != len(s):
            raise ValueError("trailing data")
        return v

    def send(self, wire):
        data = wire.encode("utf-8", "surrogatepass")
        if len(data) > LINK_BYTES:
            raise NotPlain("a value of %d bytes, more than the judge takes (%d)" % (len(data), LINK_BYTES))
        data = memoryview(len(data).to_bytes(4, "big") + data)
        try:
            while data:
                data = data[os.write(self.wfd, data):]
        except OSError as e:
            raise Broken("the link is closed (%s)" % e)

    def read(self, n):
        buf = bytearray()
        while len(buf) < n:  # the judge: until the worker writes or ends
            if self.judge and self.rfd not in select.select([self.rfd, self.pidfd], [], [])[0]:
                raise Broken("the program's process ended")
            chunk = os.read(self.rfd, n - len(buf))
            if not chunk:
                raise Broken("the program closed the link")
            buf += chunk
        return bytes(buf)

    def receive(self):
        n = int.from_bytes(self.read(4), "big")
        if n > LINK_BYTES:
            raise Broken("the program sent a message of %d bytes" % n)
        data = self.read(n)
        try:
            message = self.parse(data.decode("utf-8", "surrogatepass"))
        except Exception as e:
            raise NotPlain("the program sent malformed data (%s)" % type(e).__name__)
        if type(message) is not list or not message or type(message[0]) is not str:
            raise NotPlain("the program sent malformed data")
        return message

    def ask(self, message):  # a request; serve the other side's until the answer comes
        self.send(self.encode(message, self.share))
        while True:
            m = self.receive()
            if m[0] == "ok" and len(m) >= 2:
                return m
            if m[0] == "np":
                raise NotPlain(str(m[1]) if len(m) > 1 else "")
            if m[0] == "err" and len(m) == 3:
                self.throw(str(m[1]), str(m[2]))
            self.serve(m)

    def call(self, h, args, kwargs):
        sync = any(type(a) in MUTABLE for a in (*args, *kwargs.values()))
        m = self.ask(["call", h, list(args), kwargs, sync])
        if sync and len(m) == 3 and type(m[2]) is list and len(m[2]) == 2:
            new_args, new_kwargs = m[2]
            if type(new_args) is list and len(new_args) == len(args) and type(new_kwargs) is dict:
                for old, new in zip(args, new_args):
                    update(old, new)
                for key, old in kwargs.items():
                    update(old, new_kwargs.get(key))
        return m[1]

    def throw(self, name, text):  # raise what the other side raised, as a builtin type
        cls = self.names.get(name)
        if type(cls) is type and issubclass(cls, BaseException):
            try:
                e = cls(text)
            except Exception:
                e = None
            if type(e) is cls:
                raise e
        raise RemoteError("%s: %s" % (name, text))

    def serve(self, m):  # run the other side's request on one of our objects and answer
        try:
            h = m[1] if len(m) > 1 else None
            if type(h) is not int or not 0 <= h < len(self.objects):
                raise ValueError("no object %r here" % (h,))
            x, answer = self.objects[h], None
            if m[0] == "call" and len(m) == 5 and type(m[2]) is list and type(m[3]) is dict:
                value, other = x(*m[2], **m[3]), self.result
                if m[4]:
                    answer = self.encode([m[2], m[3]], self.share)
            elif m[0] == "attr" and len(m) == 3 and type(m[2]) is str:
                if self.judge and (m[2][:1] == "_" or id(type(x)) not in self.classes):
                    raise AttributeError("the program may read public attributes of the "
                                         "tests' objects only, not %r of a %s" % (m[2], type(x).__name__))
                value, other = getattr(x, m[2]), self.share
            elif m[0] == "iter" and len(m) == 2:
                value, other = iter(x), self.share
            elif m[0] == "next" and len(m) == 2:
                value, other = next(x), self.result
            else:
                raise ValueError("a bad request")
            reply = ["s2:ok", self.encode(value, other)] + ([] if answer is None else [answer])
            self.send("l%d:%s" % (len(reply), "".join(reply)))
        except Broken:
            raise
        except NotPlain as e:
            self.send(self.encode(["np", str(e)], self.share))
        except BaseException as e:  # SystemExit and MemoryError too: the judge says what they mean
            try:
                text = str(e)[:1000]
            except BaseException:
                text = "unprintable"
            name = next(c.__name__ for c in type(e).__mro__ if self.names.get(c.__name__) is c)
            if name != type(e).__name__:
                text = "%s: %s" % (type(e).__name__, text)
            self.send(self.encode(["err", name, text], self.share))
"""

# Run as ``python -c _BOOT <report fd>``: stdin brings the harness compiled (``_harness``),
# then the job. Everything the harness calls after user code has run in its process is
# bound before (default arguments), beyond that code's reach.
_HARNESS = _CONFINE + _LINK + r"""
import builtins, marshal, os, resource as R, sys
# stdlib modules that act when imported (or launch programs): the judge does not import
# them for a program that did
UNSAFE_IMPORTS = ("antigravity", "this", "idlelib", "turtledemo", "test", "tkinter", "turtle",
                  "webbrowser", "pydoc")
sys.set_int_max_str_digits(0)

def judge(link, setup, tests, say, run, describe, names):
    # The monitor's part under plain_results: the setup and tests run here, in a namespace
    # of the program's names (plain values copied, modules imported anew, anything else
    # a stand-in that calls it in the worker) and the builtins. Returns without a verdict
    # when the worker ended: how it ended says why.
    def finish(reason, detail):
        for f in (sys.stdout, sys.stderr):
            f.flush()
        say("R %s %s" % (reason, detail))

    def gone():  # None if the worker ended by itself; else the verdict for breaking the link
        if select.select([link.pidfd], [], [], 1.0)[0]:  # (its pipe closes as it ends)
            return None
        return finish("crash", "the program broke the judge's link")

    try:
        if link.receive() != ["started"]:
            return gone()
        say("S")
        m = link.receive()
    except (Broken, NotPlain):
        return gone()
    if m[0] == "bad" and len(m) == 3:
        reason = m[1] if m[1] in ("syntax_error", "exception", "exit", "memory") else "exception"
        return finish(reason, str(m[2])[:200])
    if m[0] != "ready" or len(m) != 3 or type(m[1]) is not dict or type(m[2]) is not dict:
        return gone()

    def build_class(*args, build=builtins.__build_class__, **kwargs):
        cls = build(*args, **kwargs)  # the tests' classes: the program may read their
        link.classes[id(cls)] = cls  # objects' public attributes
        return cls

    g = {k: v for k, v in m[1].items() if type(k) is str and k not in names and k[:2] != "__"}
    for k, name in m[2].items():
        top = str(name).partition(".")[0]
        if (type(k) is str and k not in names and type(name) is str and top not in UNSAFE_IMPORTS
                and top in sys.stdlib_module_names and "__main__" not in name.split(".")):
            try:
                __import__(name)
                g[k] = sys.modules[name]
            except BaseException:
                pass
    g.update(__name__="__main__", __builtins__=dict(names, __build_class__=build_class))
    bad = setup is not None and run(setup, "<setup>", g)
    if bad:
        if type(bad[1]) is Broken:
            return gone()
        return finish("exception" if bad[0] == "syntax_error" else bad[0], describe(bad[1], "setup: "))
    first = ""
    for i, test in enumerate(tests):
        bad = run(test, "<test %d>" % i, g)
        if bad and type(bad[1]) is Broken:
            return gone()
        say("F" if bad else "P")
        if bad:
            first = first or describe(bad[1], "test %d: " % i)
            if bad[0] in ("exit", "memory"):
                return finish(bad[0], describe(bad[1], "test %d: " % i))
    finish("ok", first)

def work(link, program, run, describe, g, names):
    # The worker's part under plain_results: run the program, tell the judge its names,
    # then answer the judge's calls until it closes the link.
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
    for k, v in values.items():  # by value if plain and not too big; else a stand-in
        try:
            value = link.encode(v, link.share)
            value = value if len(value) <= 1 << 20 else link.share(v)
        except Exception:
            value = link.share(v)
        wire.append(link.encode(k, link.share) + value)
    link.send("l3:s5:readyd%d:%s%s" % (len(wire), "".join(wire), link.encode(modules, link.share)))
    while True:
        link.serve(link.receive())

def main(rfd, write=os.write, fstat=os.fstat, getpid=os.getpid, exit=os._exit, str=str,
         type=type, exec=exec, compile=compile, enumerate=enumerate, BE=BaseException,
         SE=SystemExit, ME=MemoryError, OE=OSError, settrace=sys.settrace,
         setprofile=sys.setprofile, streams=(sys.stdout, sys.stderr), dict=dict):
    pristine = dict(vars(builtins))  # a local: the program cannot reach it through main

    def take(n):  # n bytes of the job, on stdin (unbuffered: the rest stays in the pipe)
        buf = b""
        while len(buf) < n:
            chunk = os.read(0, n - len(buf))
            if not chunk:
                break
            buf += chunk
        return buf

    # The job's head; under plain_results the setup and tests follow, for the monitor alone
    # (never in the worker's memory, where a program could read the expected answers).
    (program, setup, tests, uid, limits, nonce, confined,
     judged) = marshal.loads(take(int.from_bytes(take(4), "big")))
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
    if judged:  # the judge's link: one pipe each way
        (down, to_worker), (from_worker, up) = os.pipe(), os.pipe()

    def describe(e, where):
        try:
            name, msg = type(e).__name__, str(e)
            return str.replace("%s%s: %s" % (where, name, msg) if msg else where + name,
                               "\n", " ")[:200]
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

    pid = os.fork()
    if pid:  # the monitor: runs nothing of the user's; under plain_results, judges
        if confined:  # no ptrace or /proc/<pid>/mem for the worker (it has our kernel uid
            libc.prctl(4, 0, 0, 0, 0)  # without root): PR_SET_DUMPABLE 0
        if judged:
            os.close(down), os.close(up)
            pidfd = os.pidfd_open(pid)
            setup, tests = marshal.loads(take(1 << 30))

            def say(line):  # one line, whatever the program's messages in it hold
                line = " ".join(str.splitlines(line)).encode("utf-8", "replace")[:300]
                write(rep, nonce + b" " + line + b"\n")

            link = Link(from_worker, to_worker, pristine, pidfd)
            judge(link, setup, tests, say, run, describe, pristine)
            for f in streams:
                f.flush()
            os.close(to_worker)  # the worker's cue to flush its output and end
            if not select.select([pidfd], [], [], 1.0)[0]:
                os.kill(pid, 9)
        _, status, ru = os.wait4(pid, 0)
        code = os.waitstatus_to_exitcode(status)
        write(rep, b"%s X %d %d %.3f\n" % (nonce, max(code, 0), max(-code, 0),
                                           ru.ru_utime + ru.ru_stime))
        exit(0)
    pid, ino = getpid(), fstat(rep).st_ino
    os.close(0)  # the job's tail (the tests) is the monitor's
    try:
        os.open(os.devnull, os.O_RDONLY)  # as stdin (fd 0: the lowest free)
    except OSError:
        pass
    if judged:  # the worker speaks to the judge only
        os.close(rep), os.close(to_worker), os.close(from_worker)
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
    g = {"__name__": "__main__", "__builtins__": builtins}

    def flush():
        for f in streams:
            try:
                f.flush()
            except BE:
                pass

    if judged:
        try:
            work(Link(down, up, pristine), program, run, describe, g, pristine)
        except Broken:  # the judge closed the link: it has its verdict
            pass
        flush()
        exit(0)

    def say(line):
        if getpid() != pid:  # a fork of the worker never speaks for it
            exit(0)
        try:
            if fstat(rep).st_ino != ino:  # the report pipe was closed or replaced
                exit(113)
            write(rep, nonce + b" " + str.encode(line, "utf-8", "replace")[:300] + b"\n")
        except OE:
            exit(113)

    def finish(reason, detail):
        flush()
        say("R %s %s" % (reason, detail))
        exit(0)

    say("S")
    bad = run(program, "<program>", g)
    if bad:
        finish(bad[0], describe(bad[1], ""))
    # The setup and tests run in a namespace of their own: the program's names, less those
    # that hide a builtin, and the builtins as they were before the program ran.
    g = {k: v for k, v in dict.items(g) if k not in pristine}
    g.update(__name__="__main__", __builtins__=pristine)
    bad = setup is not None and run(setup, "<setup>", g)
    if bad:
        finish("exception" if bad[0] == "syntax_error" else bad[0], describe(bad[1], "setup: "))
    first = ""
    for i, test in enumerate(tests):
        bad = run(test, "<test %d>" % i, g)
        say("F" if bad else "P")
        if bad:
            first = first or describe(bad[1], "test %d: " % i)
            if bad[0] in ("exit", "memory"):
                finish(bad[0], describe(bad[1], "test %d: " % i))
    finish("ok", first)
main(int(sys.argv[1]))
"""
_BOOT = ("import marshal, os\nn, code = int.from_bytes(os.read(0, 4), 'big'), b''\n"
         "while len(code) < n and (chunk := os.read(0, n - len(code))):\n    code += chunk\n"
         "exec(marshal.loads(code))\n")


@lru_cache(maxsize=None)
def _harness() -> bytes:
    """The harness compiled once, as the boot loader reads it (compiling it costs each run
    about as much as a small program's whole test run)."""
    code = marshal.dumps(compile(_HARNESS, "<sandbox harness>", "exec"))
    return len(code).to_bytes(4, "big") + code


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


def _run_one(program: str, setup: str | None, tests: Sequence[str], limits: Limits,
             slot: int, judged: bool = True) -> TestRun:
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
            [*prefix, sys.executable, "-S", "-s", "-P", "-c", _BOOT, str(wfd)],
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
            setup, tests = None if setup is None else str(setup), tuple(map(str, tests))
            head = marshal.dumps((str(program), *((None, ()) if judged else (setup, tests)), uid,
                                  limit_values, nonce, confined, bool(judged)))  # exact strs only
            proc.stdin.write(_harness() + len(head).to_bytes(4, "big") + head)
            proc.stdin.write(marshal.dumps((setup, tests)) if judged else b"")
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
        plain_results: Judge in the monitor (see the module docstring): the setup and
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

    def one(i: int) -> TestRun:
        with _slots:  # the lowest free slot; wait if all are busy
            _slots.wait_for(lambda: len(_busy) < SLOTS)
            slot = min(set(range(SLOTS)) - _busy)
            _busy.add(slot)
        try:
            return _run_one(programs[i], setup[i], tests[i], limits, slot, plain_results)
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
