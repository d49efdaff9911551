"""The templates of the generated easy code suite (:mod:`text_gym.tasks.code_easy`).

Each template is a function that draws one problem from a seeded ``random.Random`` and a
level's shared draws (a constant, parameter names): its name, parameters, return type,
docstring sentence, reference body, an oracle, the argument tuples to test, and the drawn
constants that shape what it computes. ``TEMPLATES`` lists them per level, in drawing order.
"""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

_WORDS = tuple("apple banana level python rotor gym hello world noon token civic robot queue stats zebra".split())


class Problem(NamedTuple):
    """One drawn problem: ``def name(params) -> returns`` with docstring ``doc``, solved by
    ``body``; ``oracle(*args)`` is the expected result for each tuple of ``inputs``.
    ``consts`` are the drawn constants that shape what the function computes (empty for a
    template whose every draw computes the same function)."""

    name: str
    params: str
    returns: str
    doc: str
    body: str
    oracle: Callable[..., Any]
    inputs: list[tuple]
    consts: tuple = ()


def _ints(r: random.Random, n: int, lo: int, hi: int) -> list[int]:
    return [r.randint(lo, hi) for _ in range(n)]


def _lists(r: random.Random, n: int, lo: int = -20, hi: int = 20) -> list[tuple]:
    return [(_ints(r, r.randint(1, 7), lo, hi),) for _ in range(n)]


def _strs(r: random.Random, n: int) -> list[tuple]:
    return [(w + r.choice(("", "", " " + r.choice(_WORDS))),) for w in r.sample(_WORDS, n)]


def _pick(r: random.Random, *options: str) -> str:
    return r.choice(options)


# ---------------------------------------------------------------------------- level 1


class _Level1(NamedTuple):
    k: int  # a constant in 2..20
    x: str  # an int parameter's name
    s: str  # a str parameter's name
    xs: str  # a list parameter's name
    a: str  # two int parameters' names
    b: str


def _level1(r: random.Random) -> _Level1:
    k, x, s, xs = (
        r.randint(2, 20),
        _pick(r, "x", "n", "v"),
        _pick(r, "s", "text", "word"),
        _pick(r, "xs", "nums", "values"),
    )
    a, b = r.choice((("a", "b"), ("x", "y"), ("m", "n")))
    return _Level1(k, x, s, xs, a, b)


def _add_k(r: random.Random, d: _Level1) -> Problem:
    name, inputs = f"{_pick(r, 'add', 'plus')}_{d.k}", [(v,) for v in _ints(r, 5, -50, 50)]
    return Problem(
        name,
        f"{d.x}: int",
        "int",
        f"Return {d.x} plus {d.k}.",
        f"return {d.x} + {d.k}",
        lambda v: v + d.k,
        inputs,
        (d.k,),
    )


def _add(r: random.Random, d: _Level1) -> Problem:
    name, inputs = _pick(r, "add", "sum_two", "plus"), list(zip(_ints(r, 5, -99, 99), _ints(r, 5, -99, 99)))
    return Problem(
        name,
        f"{d.a}: int, {d.b}: int",
        "int",
        f"Return the sum of {d.a} and {d.b}.",
        f"return {d.a} + {d.b}",
        lambda p, q: p + q,
        inputs,
    )


def _subtract(r: random.Random, d: _Level1) -> Problem:
    name, inputs = _pick(r, "subtract", "minus", "difference"), list(zip(_ints(r, 5, -99, 99), _ints(r, 5, -99, 99)))
    return Problem(
        name,
        f"{d.a}: int, {d.b}: int",
        "int",
        f"Return {d.a} minus {d.b}.",
        f"return {d.a} - {d.b}",
        lambda p, q: p - q,
        inputs,
    )


def _times_k(r: random.Random, d: _Level1) -> Problem:
    name, inputs = f"{_pick(r, 'times', 'multiply_by')}_{d.k}", [(v,) for v in _ints(r, 5, -30, 30)]
    return Problem(
        name,
        f"{d.x}: int",
        "int",
        f"Return {d.x} multiplied by {d.k}.",
        f"return {d.x} * {d.k}",
        lambda v: v * d.k,
        inputs,
        (d.k,),
    )


def _divisible_by_k(r: random.Random, d: _Level1) -> Problem:
    k = d.k
    name = f"{_pick(r, 'is_multiple_of', 'divisible_by')}_{k}"
    # k itself, which no larger multiple divides, and k / p for each prime p of k, which
    # every smaller divisor divides: the tests tell k from every other divisor
    primes = [p for p in (2, 3, 5, 7, 11, 13, 17, 19) if k % p == 0]
    inputs = [(k,), *((k // p,) for p in primes), *((k * v,) for v in _ints(r, 2, -9, 9))]
    inputs += [(k * v + 1,) for v in _ints(r, 2, 0, 9)]
    doc = f"Return True if {d.x} is divisible by {k}, else False."
    return Problem(name, f"{d.x}: int", "bool", doc, f"return {d.x} % {k} == 0", lambda v: v % k == 0, inputs, (k,))


def _reverse(r: random.Random, d: _Level1) -> Problem:
    name, inputs = _pick(r, "reverse", "reverse_string", "backwards"), _strs(r, 5)
    return Problem(
        name,
        f"{d.s}: str",
        "str",
        f"Return the string {d.s} reversed.",
        f"return {d.s}[::-1]",
        lambda t: t[::-1],
        inputs,
    )


def _largest(r: random.Random, d: _Level1) -> Problem:
    name, inputs = _pick(r, "largest", "max_element", "biggest"), _lists(r, 5)
    doc = f"Return the largest element of the non-empty list {d.xs}."
    return Problem(name, f"{d.xs}: list", "int", doc, f"return max({d.xs})", max, inputs)


def _smallest(r: random.Random, d: _Level1) -> Problem:
    name, inputs = _pick(r, "smallest", "min_element", "least"), _lists(r, 5)
    doc = f"Return the smallest element of the non-empty list {d.xs}."
    return Problem(name, f"{d.xs}: list", "int", doc, f"return min({d.xs})", min, inputs)


def _last(r: random.Random, d: _Level1) -> Problem:
    name, inputs = _pick(r, "last", "last_element", "final_item"), _lists(r, 5)
    doc = f"Return the last element of the non-empty list {d.xs}."
    return Problem(name, f"{d.xs}: list", "int", doc, f"return {d.xs}[-1]", lambda v: v[-1], inputs)


def _repeat_k(r: random.Random, d: _Level1) -> Problem:
    k = r.randint(2, 6)  # its own count: long repeats would make long prompts
    doc = f"Return the string {d.s} repeated {k} times."
    body, inputs = f"return {d.s} * {k}", _strs(r, 4)
    return Problem(f"repeat_{k}", f"{d.s}: str", "str", doc, body, lambda t: t * k, inputs, (k,))


def _upper(r: random.Random, d: _Level1) -> Problem:
    name, inputs = _pick(r, "shout", "to_upper", "upper_case"), _strs(r, 4)
    return Problem(
        name, f"{d.s}: str", "str", f"Return {d.s} in upper case.", f"return {d.s}.upper()", str.upper, inputs
    )


def _square(r: random.Random, d: _Level1) -> Problem:
    name, inputs = _pick(r, "square", "squared"), [(v,) for v in _ints(r, 5, -40, 40)]
    return Problem(
        name, f"{d.x}: int", "int", f"Return {d.x} squared.", f"return {d.x} * {d.x}", lambda v: v * v, inputs
    )


def _subtract_k(r: random.Random, d: _Level1) -> Problem:
    name, inputs = f"{_pick(r, 'minus', 'subtract')}_{d.k}", [(v,) for v in _ints(r, 5, -50, 50)]
    doc, body = f"Return {d.x} minus {d.k}.", f"return {d.x} - {d.k}"
    return Problem(name, f"{d.x}: int", "int", doc, body, lambda v: v - d.k, inputs, (d.k,))


def _power_k(r: random.Random, d: _Level1) -> Problem:
    p = r.randint(2, 5)
    name, inputs = f"{_pick(r, 'power', 'to_the')}_{p}", [(v,) for v in r.sample(range(-9, 10), 5)]
    doc, body = f"Return {d.x} to the power {p}.", f"return {d.x} ** {p}"
    return Problem(name, f"{d.x}: int", "int", doc, body, lambda v: v**p, inputs, (p,))


# ---------------------------------------------------------------------------- level 2


class _Level2(NamedTuple):
    k: int  # a threshold in -12..12
    c: str  # a letter to count
    s: str  # a str parameter's name
    xs: str  # a list parameter's name
    p: int  # FizzBuzz's two divisors and words
    q: int
    w1: str
    w2: str
    lo: int  # a clamp range
    hi: int


def _level2(r: random.Random) -> _Level2:
    k, c, s, xs = (
        r.randint(-12, 12),
        r.choice("abeilmnorstu"),
        _pick(r, "s", "text", "sentence"),
        _pick(r, "xs", "nums", "items"),
    )
    (p, q), (w1, w2), lo = (
        r.choice(((3, 5), (2, 7), (3, 7), (4, 5), (2, 5), (3, 4), (5, 7), (2, 9))),
        r.choice((("Fizz", "Buzz"), ("Foo", "Bar"), ("Ping", "Pong"), ("Tic", "Tac"))),
        r.randint(-10, 0),
    )
    return _Level2(k, c, s, xs, p, q, w1, w2, lo, lo + r.randint(5, 20))


def _count_vowels(r: random.Random, d: _Level2) -> Problem:
    name, inputs = _pick(r, "count_vowels", "vowel_count"), _strs(r, 5)
    doc = f"Return the number of vowels (a, e, i, o, u, either case) in {d.s}."
    body = f'return sum(1 for c in {d.s}.lower() if c in "aeiou")'
    return Problem(name, f"{d.s}: str", "int", doc, body, lambda t: sum(ch in "aeiou" for ch in t.lower()), inputs)


def _total(r: random.Random, d: _Level2) -> Problem:
    name, inputs = _pick(r, "total", "sum_list", "list_sum"), _lists(r, 4) + [([],)]
    doc = f"Return the sum of the numbers in {d.xs} (0 if empty)."
    return Problem(name, f"{d.xs}: list", "int", doc, f"return sum({d.xs})", sum, inputs)


def _count_letter(r: random.Random, d: _Level2) -> Problem:
    c, s = d.c, d.s
    doc = f"Return how many times the letter {c!r} occurs in {s}."
    # one input holds the letter three times or more: the tests tell it from every other letter
    body, inputs = f"return {s}.count({c!r})", [*_strs(r, 4), (f"{c}{c} {r.choice(_WORDS)} {c}",)]
    return Problem(f"count_{c}", f"{s}: str", "int", doc, body, lambda t: t.count(c), inputs, (c,))


def _fizzbuzz(r: random.Random, d: _Level2) -> Problem:
    p, q, w1, w2 = d.p, d.q, d.w1, d.w2
    name = _pick(r, "fizzbuzz", "fizz_buzz")
    doc = (
        f"Return {w1 + w2!r} if n is divisible by {p} and {q}, {w1!r} if only by {p}, {w2!r} if only by {q}, "
        "else n as a string."
    )
    body = (
        f"if n % {p * q} == 0:\n    return {w1 + w2!r}\nif n % {p} == 0:\n    return {w1!r}\n"
        f"if n % {q} == 0:\n    return {w2!r}\nreturn str(n)"
    )
    inputs = [(p * q * r.randint(1, 3),), (p,), (q,), (p * q + 1,), (r.randint(1, 99),)]
    return Problem(name, "n: int", "str", doc, body, lambda n: _fizz(n, p, q, w1, w2), inputs, (p, q, w1, w2))


def _fizz(n: int, p: int, q: int, w1: str, w2: str) -> str:
    return w1 + w2 if n % p == 0 and n % q == 0 else w1 if n % p == 0 else w2 if n % q == 0 else str(n)


def _factorial(r: random.Random, d: _Level2) -> Problem:
    name, inputs = _pick(r, "factorial", "fact"), [(v,) for v in (*_ints(r, 3, 2, 12), 0, 1)]
    body = "result = 1\nfor i in range(2, n + 1):\n    result *= i\nreturn result"
    return Problem(name, "n: int", "int", "Return n! for n >= 0.", body, math.factorial, inputs)


def _palindrome(r: random.Random, d: _Level2) -> Problem:
    name, inputs = _pick(r, "is_palindrome", "reads_same_backwards"), _strs(r, 5) + [("noon",), ("gym",)]
    doc = f"Return True if {d.s} reads the same forwards and backwards."
    return Problem(name, f"{d.s}: str", "bool", doc, f"return {d.s} == {d.s}[::-1]", lambda t: t == t[::-1], inputs)


def _greater_than_k(r: random.Random, d: _Level2) -> Problem:
    k, xs = d.k, d.xs
    doc = f"Return the elements of {xs} greater than {k}, in order."
    body = f"return [v for v in {xs} if v > {k}]"
    name = f"greater_than_{k}".replace("-", "minus_")
    # k - 3 .. k + 3 in one list: the tests tell k from every other threshold
    oracle, inputs = (lambda v: [e for e in v if e > k]), [*_lists(r, 4, -10, 10), (r.sample(range(k - 3, k + 4), 7),)]
    return Problem(name, f"{xs}: list", "list", doc, body, oracle, inputs, (k,))


def _digit_sum(r: random.Random, d: _Level2) -> Problem:
    name, inputs = _pick(r, "digit_sum", "sum_of_digits"), [(v,) for v in _ints(r, 5, 0, 99999)]
    doc, body = "Return the sum of the decimal digits of n >= 0.", "return sum(int(d) for d in str(n))"
    return Problem(name, "n: int", "int", doc, body, lambda n: sum(map(int, str(n))), inputs)


def _count_words(r: random.Random, d: _Level2) -> Problem:
    name, inputs = _pick(r, "count_words", "word_count"), _strs(r, 5)
    doc = f"Return the number of space-separated words in {d.s}."
    return Problem(name, f"{d.s}: str", "int", doc, f"return len({d.s}.split())", lambda t: len(t.split()), inputs)


def _squares(r: random.Random, d: _Level2) -> Problem:
    name, inputs = _pick(r, "squares", "square_all"), _lists(r, 5)
    doc, body = f"Return the squares of the elements of {d.xs}, in order.", f"return [v * v for v in {d.xs}]"
    return Problem(name, f"{d.xs}: list", "list", doc, body, lambda v: [e * e for e in v], inputs)


def _clamp(r: random.Random, d: _Level2) -> Problem:
    lo, hi = d.lo, d.hi
    name, inputs = _pick(r, "clamp", "clip"), [(lo - 3,), (hi + 2,), *[(v,) for v in _ints(r, 3, lo, hi)]]
    doc, body = f"Return x limited to the range [{lo}, {hi}].", f"return max({lo}, min({hi}, x))"
    return Problem(name, "x: int", "int", doc, body, lambda v: max(lo, min(hi, v)), inputs, (lo, hi))


def _scale_all(r: random.Random, d: _Level2) -> Problem:
    k = r.randint(2, 12)
    name, inputs = f"{_pick(r, 'scale', 'multiply_all')}_{k}", _lists(r, 5)
    doc, body = f"Return the elements of {d.xs} multiplied by {k}, in order.", f"return [v * {k} for v in {d.xs}]"
    return Problem(name, f"{d.xs}: list", "list", doc, body, lambda v: [e * k for e in v], inputs, (k,))


def _count_multiples(r: random.Random, d: _Level2) -> Problem:
    k = r.randint(2, 9)
    name, inputs = f"{_pick(r, 'count_multiples_of', 'how_many_divisible_by')}_{k}", _lists(r, 5, 0, 40)
    doc = f"Return how many elements of {d.xs} are divisible by {k}."
    body = f"return sum(1 for v in {d.xs} if v % {k} == 0)"
    return Problem(name, f"{d.xs}: list", "int", doc, body, lambda v: sum(e % k == 0 for e in v), inputs, (k,))


# ---------------------------------------------------------------------------- level 3


class _Level3(NamedTuple):
    k: int  # a constant in 1..25
    xs: str  # a list parameter's name


def _level3(r: random.Random) -> _Level3:
    return _Level3(r.randint(1, 25), _pick(r, "xs", "nums", "items"))


def _fibonacci(r: random.Random, d: _Level3) -> Problem:
    name, inputs = _pick(r, "fibonacci", "fib"), [(v,) for v in (*_ints(r, 4, 2, 20), 0, 1)]
    doc = "Return the n-th Fibonacci number (fib(0) = 0, fib(1) = 1)."
    body = "a, b = 0, 1\nfor _ in range(n):\n    a, b = b, a + b\nreturn a"
    return Problem(name, "n: int", "int", doc, body, _fib, inputs)


def _fib(n: int) -> int:
    a, b = 0, 1
    for _ in range(n):
        a, b = b, a + b
    return a


def _prime(r: random.Random, d: _Level3) -> Problem:
    name, inputs = _pick(r, "is_prime", "prime"), [(v,) for v in (*_ints(r, 5, 3, 200), 1, 2)]
    body = "if n < 2:\n    return False\nreturn all(n % d for d in range(2, int(n ** 0.5) + 1))"
    return Problem(name, "n: int", "bool", "Return True if n is a prime number.", body, _is_prime, inputs)


def _is_prime(n: int) -> bool:
    return n > 1 and all(n % d for d in range(2, int(n**0.5) + 1))


def _run_length(r: random.Random, d: _Level3) -> Problem:
    name = _pick(r, "run_length", "rle_encode")
    doc = "Run-length encode s: each run of a character becomes the character and the run's length."
    body = (
        'out = ""\ni = 0\nwhile i < len(s):\n    j = i\n    while j < len(s) and s[j] == s[i]:\n        j += 1\n'
        "    out += s[i] + str(j - i)\n    i = j\nreturn out"
    )
    inputs = [("".join(r.choice("ab") * r.randint(1, 3) for _ in range(r.randint(1, 4))),) for _ in range(4)] + [("",)]
    return Problem(name, "s: str", "str", doc, body, _rle, inputs)


def _rle(t: str) -> str:
    return "".join(f"{ch}{len(list(g))}" for ch, g in itertools.groupby(t))


def _second_largest(r: random.Random, d: _Level3) -> Problem:
    name, inputs = _pick(r, "second_largest", "runner_up"), [(v + [max(v) + 1],) for (v,) in _lists(r, 5)]
    doc = f"Return the second largest distinct value in {d.xs} (it has at least two)."
    body = f"return sorted(set({d.xs}))[-2]"
    return Problem(name, f"{d.xs}: list", "int", doc, body, lambda v: sorted(set(v))[-2], inputs)


def _gcd(r: random.Random, d: _Level3) -> Problem:
    name = _pick(r, "gcd", "greatest_common_divisor")
    inputs = [(d.k * p, d.k * q) for p, q in zip(_ints(r, 5, 1, 30), _ints(r, 5, 1, 30))]
    doc = "Return the greatest common divisor of the positive integers a and b."
    return Problem(name, "a: int, b: int", "int", doc, "while b:\n    a, b = b, a % b\nreturn a", math.gcd, inputs)


def _to_binary(r: random.Random, d: _Level3) -> Problem:
    name, inputs = _pick(r, "to_binary", "binary"), [(v,) for v in (*_ints(r, 4, 1, 1000), 0)]
    doc = "Return n >= 0 written in binary, without a prefix."
    return Problem(name, "n: int", "str", doc, "return bin(n)[2:]", lambda n: format(n, "b"), inputs)


def _anagram(r: random.Random, d: _Level3) -> Problem:
    name = _pick(r, "is_anagram", "anagrams")
    inputs = [(w, "".join(r.sample(w, len(w)))) for w in r.sample(_WORDS, 3)]
    inputs += [(w, w[:-1] + "x") for w in r.sample(_WORDS, 2)]
    doc, body = "Return True if a and b contain the same letters, each as often.", "return sorted(a) == sorted(b)"
    return Problem(name, "a: str, b: str", "bool", doc, body, lambda p, q: sorted(p) == sorted(q), inputs)


def _unique(r: random.Random, d: _Level3) -> Problem:
    name, inputs = _pick(r, "unique", "dedupe"), _lists(r, 5, 0, 4)
    doc = f"Return the elements of {d.xs} without repeats, in order of first appearance."
    body = f"seen = []\nfor v in {d.xs}:\n    if v not in seen:\n        seen.append(v)\nreturn seen"
    return Problem(name, f"{d.xs}: list", "list", doc, body, lambda v: list(dict.fromkeys(v)), inputs)


def _shift_k(r: random.Random, d: _Level3) -> Problem:
    k = d.k
    doc = f"Shift each lowercase letter of s by {k} places in the alphabet, wrapping around."
    body = f'return "".join(chr((ord(c) - 97 + {k}) % 26 + 97) for c in s)'
    inputs = [(w,) for w in r.sample(_WORDS, 5)]
    return Problem(
        f"shift_{k}",
        "s: str",
        "str",
        doc,
        body,
        lambda t: "".join(chr((ord(ch) - 97 + k) % 26 + 97) for ch in t),
        inputs,
        (k,),
    )


def _collatz_steps(r: random.Random, d: _Level3) -> Problem:
    name, inputs = _pick(r, "collatz_steps", "steps_to_one"), [(v,) for v in (*_ints(r, 4, 2, 100), 1)]
    doc = "Return how many Collatz steps (n/2 if even, else 3n+1) take n >= 1 to 1."
    body = "steps = 0\nwhile n != 1:\n    n = n // 2 if n % 2 == 0 else 3 * n + 1\n    steps += 1\nreturn steps"
    return Problem(name, "n: int", "int", doc, body, _collatz, inputs)


def _collatz(n: int) -> int:
    if n < 1:
        raise ValueError(f"collatz steps need n >= 1, not {n}")  # the sequence never reaches 1
    steps = 0
    while n != 1:
        n = n // 2 if n % 2 == 0 else 3 * n + 1
        steps += 1
    return steps


def _to_base(r: random.Random, d: _Level3) -> Problem:
    b = r.randint(3, 9)
    name, inputs = f"{_pick(r, 'to_base', 'in_base')}_{b}", [(v,) for v in (*_ints(r, 4, 1, 2000), 0)]
    doc = f"Return n >= 0 written in base {b}, most significant digit first."
    body = f'digits = ""\nwhile n:\n    digits = str(n % {b}) + digits\n    n //= {b}\nreturn digits or "0"'
    return Problem(name, "n: int", "str", doc, body, lambda n: _base(n, b), inputs, (b,))


def _base(n: int, b: int) -> str:
    if n < 0:
        raise ValueError(f"base digits need n >= 0, not {n}")  # the reference loops forever
    digits = ""
    while n:
        n, digit = divmod(n, b)
        digits = str(digit) + digits
    return digits or "0"


def _sum_multiples(r: random.Random, d: _Level3) -> Problem:
    k = r.randint(2, 12)
    name, inputs = f"{_pick(r, 'sum_multiples_of', 'multiples_sum')}_{k}", [(v,) for v in (*_ints(r, 4, 1, 100), 0)]
    doc = f"Return the sum of the positive multiples of {k} below n."
    body = f"total = 0\nfor v in range({k}, n, {k}):\n    total += v\nreturn total"
    return Problem(name, "n: int", "int", doc, body, lambda n: sum(range(k, max(n, 0), k)), inputs, (k,))


# level -> (its shared draws, its templates in drawing order). The order is part of the
# suite: moving a template or one of its draws changes every problem drawn after it.
TEMPLATES: dict[int, tuple[Callable[[random.Random], Any], Sequence[Callable[[random.Random, Any], Problem]]]] = {
    1: (
        _level1,
        (
            _add_k,
            _add,
            _subtract,
            _times_k,
            _divisible_by_k,
            _reverse,
            _largest,
            _smallest,
            _last,
            _repeat_k,
            _upper,
            _square,
            _subtract_k,
            _power_k,
        ),
    ),
    2: (
        _level2,
        (
            _count_vowels,
            _total,
            _count_letter,
            _fizzbuzz,
            _factorial,
            _palindrome,
            _greater_than_k,
            _digit_sum,
            _count_words,
            _squares,
            _clamp,
            _scale_all,
            _count_multiples,
        ),
    ),
    3: (
        _level3,
        (
            _fibonacci,
            _prime,
            _run_length,
            _second_largest,
            _gcd,
            _to_binary,
            _anagram,
            _unique,
            _shift_k,
            _collatz_steps,
            _to_base,
            _sum_multiples,
        ),
    ),
}
