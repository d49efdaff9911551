"""The judge's link: how values cross between the tests (in the monitor) and the program.

Part of the code that runs in each sandbox (see docs/sandbox.md): ``sandbox`` compiles this
file and ``_harness.py`` once and the child runs both, this one first, in one namespace, so
the harness finds these names among its own globals. Imported as a module (by
``_harness.py`` when it is imported itself, and by the tests), it only defines them.
Standard library only, and little of it: every import costs every run.
"""

import os
import select

LINK_BYTES = 1 << 24  # the most one message on the judge's link may carry
STUBS = 1 << 16  # the most stand-ins one end keeps for the other's objects


class NotPlain(BaseException):  # past a test's "except Exception"
    pass


class Broken(BaseException):  # the worker ended, or broke the link
    pass


class RemoteError(Exception):  # the program raised something the judge cannot name
    pass


KEYS, VALUES, ITEMS = type({}.keys()), type({}.values()), type({}.items())
MAPPING = type(type.__dict__)  # mappingproxy: a read-only dict, in C
CONTAINERS = {list: "l", tuple: "t", set: "e", frozenset: "z", KEYS: "K", VALUES: "V", ITEMS: "I"}
CONTAINERS.update({complex: "c", range: "r"})
BUILD = {"l": list, "t": tuple, "e": set, "z": frozenset, "c": lambda v: complex(*v), "r": lambda v: range(*v)}
BUILD.update(K=lambda v: dict.fromkeys(v).keys(), V=lambda v: dict(enumerate(v)).values(), I=lambda v: dict(v).items())
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


def frame(*parts):  # a list on the wire, from its items already on the wire
    return "l%d:%s" % (len(parts), "".join(parts))


class Link:
    """One end of the judge's link: the monitor's (``pidfd``: the worker's, watched while it
    waits) or the worker's; ``names``: the builtins, by which classes and exceptions cross.
    Length-prefixed messages of plain data cross a pair of pipes; an object that is not
    plain data stays on its side, and the other side gets a stand-in (a handle). Requests:
    ``call``, ``attr``, ``iter``, ``next`` on a handle; answers: ``ok`` (and the arguments'
    new contents), ``np`` (not plain data), ``err`` (an exception).

    The wire (text, sent as UTF-8): ``n`` ``T`` ``F`` (None, True, False); a tag, a head and
    ``:``: ``i<hex int>:`` ``f<float repr>:`` ``h<handle>:`` (the sender's object)
    ``o<handle>:`` (the receiver's own) ``y<name>:`` (a builtin class); ``s<n>:`` then n
    characters (``b`` bytes, ``a`` bytearray: as latin-1); a container's tag, its size, ``:``
    and its items: ``l`` list, ``t`` tuple, ``e`` set, ``z`` frozenset, ``d`` dict (keys and
    values in turn), ``K`` ``V`` ``I`` a dict's keys, values, items, ``c`` complex, ``r``
    range. Parsed with builtins alone: no json (its import costs more than a program's run),
    no marshal or pickle (not safe on hostile data)."""

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

    def refuse(self, x):  # for what must be plain data through and through
        raise NotPlain("%s is not plain data" % type(x).__name__)

    def result(self, x):  # the worker's results: plain data, or an iterator over some
        if self.judge or hasattr(type(x), "__next__"):
            return self.share(x)
        raise NotPlain("a call returned a %s object, not plain data" % type(x).__name__)

    def encode(self, x, other):  # plain data on the wire; other(x) for anything else
        t = type(x)
        if x is None or t is bool:
            return "T" if x is True else "F" if x is False else "n"
        if t is int:
            return "i%x:" % x  # hex: linear time both ways, for any size
        if t is float:
            return "f%r:" % x
        if t is str or t is bytes or t is bytearray:
            text = x if t is str else x.decode("latin-1")
            return "%s%d:%s" % ("s" if t is str else "b" if t is bytes else "a", len(text), text)
        if t is dict or t is MAPPING:
            return "d%d:%s" % (len(x), "".join(self.encode(k, other) + self.encode(v, other) for k, v in x.items()))
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
                return self.encode(y, other) if type(y) is base else other(x)
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
            head, pos = s[pos + 1 : end], end + 1
            if len(head) > 64 and tag != "i":  # a size, handle, name or float: short
                raise ValueError("a long head")
            if tag in "sba":
                n, start = int(head), pos
                pos += n
                if not 0 <= n <= len(s) - start:
                    raise ValueError("a short string")
                text = s[start:pos]
                return text if tag == "s" else (bytes if tag == "b" else bytearray)(text, "latin-1")
            if tag == "i":
                return int(head, 16)
            if tag == "f":
                return float(head)
            if tag == "h":
                h = int(head)
                if h not in self.stubs:
                    if len(self.stubs) >= STUBS:
                        raise ValueError("more than %d handles" % STUBS)
                    self.stubs[h] = self.stub(h, self)
                return self.stubs[h]
            if tag == "o":
                if not 0 <= int(head) < len(self.objects):
                    raise ValueError("no such object")
                return self.objects[int(head)]
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
                data = data[os.write(self.wfd, data) :]
        except OSError as e:
            raise Broken("the link is closed (%s)" % e) from e

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
            raise NotPlain("the program sent malformed data (%s)" % type(e).__name__) from e
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
            if m[0] == "err" and len(m) == 4:
                self.throw(str(m[1]), str(m[2]), m[3])
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

    def throw(self, name, text, args):  # raise what the other side raised, as a builtin
        cls = self.names.get(name)  # type, from its args if plain, else its message
        if type(cls) is type and issubclass(cls, BaseException):
            try:
                e = cls(*args) if type(args) is tuple else cls(text)
            except Exception:
                e = None
            if type(e) is cls:
                raise e
        raise RemoteError("%s: %s" % (name, text))

    def serve(self, m):  # run the other side's request on one of our objects and answer
        try:
            h, kind = (m[1] if len(m) > 1 else None), m[0]
            if type(h) is not int or not 0 <= h < len(self.objects):
                raise ValueError("no object %r here" % (h,))
            x, answer = self.objects[h], ()
            if kind == "call" and len(m) == 5 and type(m[2]) is list and type(m[3]) is dict:
                value, other = x(*m[2], **m[3]), self.result
                answer = (self.encode([m[2], m[3]], self.share),) if m[4] else ()
            elif kind == "attr" and len(m) == 3 and type(m[2]) is str:
                if self.judge and (m[2][:1] == "_" or id(type(x)) not in self.classes):
                    why = "the program may read public attributes of the tests' objects only, not %r of a %s"
                    raise AttributeError(why % (m[2], type(x).__name__))
                value, other = getattr(x, m[2]), self.share
            elif kind in ("iter", "next") and len(m) == 2:
                value, other = (iter(x), self.share) if kind == "iter" else (next(x), self.result)
            else:
                raise ValueError("a bad request")
            self.send(frame(self.encode("ok", None), self.encode(value, other), *answer))
        except Broken:
            raise
        except NotPlain as e:
            self.send(self.encode(["np", str(e)], self.share))
        except BaseException as e:  # SystemExit and MemoryError too: the judge says what they mean
            self.send(self.error(e))

    def error(self, e):  # an exception on the wire, as the first builtin class it derives from
        try:
            text = str(e)[:1000]
        except BaseException:
            text = "unprintable"
        name = next(c.__name__ for c in type(e).__mro__ if self.names.get(c.__name__) is c)
        try:  # rebuilt from its args where they are plain data, else from its message
            args = self.encode(tuple(e.args), self.refuse)
        except BaseException:
            args = "n"
            if name != type(e).__name__:
                text = "%s: %s" % (type(e).__name__, text)
        return frame(self.encode("err", None), self.encode(name, None), self.encode(text, None), args)
