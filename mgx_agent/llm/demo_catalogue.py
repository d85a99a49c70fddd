"""The tasks the offline demo model recognises, each with working code and passing tests.

A task the catalogue does not recognise gets a generic solution: a function named after the
task that echoes its input, with tests that hold for it. That keeps every demo run runnable
end to end while being honest that nothing real was implemented.
"""

from __future__ import annotations

import keyword
import re
from dataclasses import dataclass


@dataclass(frozen=True)
class DemoSolution:
    key: str
    complexity: str
    module: str  # file name without .py
    summary: str
    code: str
    tests: tuple[str, ...]  # each one complete pytest function
    generic: bool = False

    def test_module(self, count: int) -> str:
        chosen = self.tests[: max(1, min(count, len(self.tests)))]
        header = f"from {self.module} import *  # noqa: F403\nimport pytest\n\n\n"
        return header + "\n\n".join(test.strip() + "\n" for test in chosen)


_DURATION_CODE = '''"""Parse ISO-8601 durations (PnW, PnDTnHnMnS) into datetime.timedelta."""

import re
from datetime import timedelta

_WEEKS = re.compile(r"^P(?P<weeks>\\d+(?:\\.\\d+)?)W$")
_DURATION = re.compile(
    r"^P(?:(?P<days>\\d+(?:\\.\\d+)?)D)?"
    r"(?:T(?:(?P<hours>\\d+(?:\\.\\d+)?)H)?(?:(?P<minutes>\\d+(?:\\.\\d+)?)M)?"
    r"(?:(?P<seconds>\\d+(?:\\.\\d+)?)S)?)?$"
)


def parse_duration(text: str) -> timedelta:
    """Return the timedelta for an ISO-8601 duration such as 'P1DT2H30M' or 'PT0.5S'.

    Years and months are rejected because their length depends on a calendar date.
    Raises ValueError for anything that is not a valid duration.
    """
    if not isinstance(text, str):
        raise ValueError("duration must be a string")
    value = text.strip().upper()
    weeks = _WEEKS.match(value)
    if weeks:
        return timedelta(weeks=float(weeks.group("weeks")))
    match = _DURATION.match(value)
    if not match or value in ("P", "PT") or value.endswith("T"):
        raise ValueError(f"not an ISO-8601 duration: {text!r}")
    parts = {name: float(number) for name, number in match.groupdict().items() if number}
    if not parts:
        raise ValueError(f"not an ISO-8601 duration: {text!r}")
    return timedelta(**parts)
'''

_DURATION_TESTS = (
    "def test_days_hours_minutes():\n"
    "    from datetime import timedelta\n"
    "    assert parse_duration('P1DT2H30M') == timedelta(days=1, hours=2, minutes=30)\n",
    "def test_fractional_seconds():\n"
    "    from datetime import timedelta\n"
    "    assert parse_duration('PT0.5S') == timedelta(seconds=0.5)\n",
    "def test_weeks():\n"
    "    from datetime import timedelta\n"
    "    assert parse_duration('P2W') == timedelta(weeks=2)\n",
    "def test_rejects_garbage():\n"
    "    with pytest.raises(ValueError):\n"
    "        parse_duration('one hour')\n",
    "def test_rejects_empty_time_part():\n"
    "    with pytest.raises(ValueError):\n"
    "        parse_duration('PT')\n",
    "def test_lowercase_accepted():\n"
    "    from datetime import timedelta\n"
    "    assert parse_duration('pt15m') == timedelta(minutes=15)\n",
)

_FIZZBUZZ_CODE = '''"""FizzBuzz."""


def fizzbuzz(n: int) -> list[str]:
    """Return the FizzBuzz sequence for 1..n."""
    if n < 0:
        raise ValueError("n must be non-negative")
    result = []
    for i in range(1, n + 1):
        word = ("Fizz" if i % 3 == 0 else "") + ("Buzz" if i % 5 == 0 else "")
        result.append(word or str(i))
    return result
'''

_FIZZBUZZ_TESTS = (
    "def test_first_fifteen():\n"
    "    assert fizzbuzz(15)[-1] == 'FizzBuzz'\n"
    "    assert fizzbuzz(5) == ['1', '2', 'Fizz', '4', 'Buzz']\n",
    "def test_zero_is_empty():\n    assert fizzbuzz(0) == []\n",
    "def test_negative_rejected():\n"
    "    with pytest.raises(ValueError):\n"
    "        fizzbuzz(-1)\n",
    "def test_length():\n    assert len(fizzbuzz(100)) == 100\n",
)

_REVERSE_CODE = '''"""Reverse a string."""


def reverse_string(text: str) -> str:
    """Return text reversed, character by character."""
    return text[::-1]
'''

_REVERSE_TESTS = (
    "def test_reverse_word():\n    assert reverse_string('hello') == 'olleh'\n",
    "def test_empty():\n    assert reverse_string('') == ''\n",
    "def test_unicode():\n    assert reverse_string('abc\\u00e9') == '\\u00e9cba'\n",
    "def test_twice_is_identity():\n    assert reverse_string(reverse_string('mgx')) == 'mgx'\n",
)

_PRIME_CODE = '''"""Primality test."""


def is_prime(n: int) -> bool:
    """Return True when n is a prime number."""
    if n < 2:
        return False
    if n % 2 == 0:
        return n == 2
    divisor = 3
    while divisor * divisor <= n:
        if n % divisor == 0:
            return False
        divisor += 2
    return True
'''

_PRIME_TESTS = (
    "def test_small_primes():\n    assert [n for n in range(20) if is_prime(n)] == [2, 3, 5, 7, 11, 13, 17, 19]\n",
    "def test_negative_and_one():\n    assert not is_prime(-7) and not is_prime(1)\n",
    "def test_large_prime():\n    assert is_prime(7919)\n",
    "def test_square_of_prime():\n    assert not is_prime(49)\n",
)

_FIBONACCI_CODE = '''"""Fibonacci numbers."""


def fibonacci(n: int) -> int:
    """Return the n-th Fibonacci number (fibonacci(0) == 0)."""
    if n < 0:
        raise ValueError("n must be non-negative")
    a, b = 0, 1
    for _ in range(n):
        a, b = b, a + b
    return a


def fibonacci_sequence(count: int) -> list[int]:
    """Return the first count Fibonacci numbers."""
    return [fibonacci(i) for i in range(count)]
'''

_FIBONACCI_TESTS = (
    "def test_first_values():\n    assert fibonacci_sequence(8) == [0, 1, 1, 2, 3, 5, 8, 13]\n",
    "def test_large():\n    assert fibonacci(90) == 2880067194370816120\n",
    "def test_negative_rejected():\n"
    "    with pytest.raises(ValueError):\n"
    "        fibonacci(-1)\n",
    "def test_zero():\n    assert fibonacci(0) == 0\n",
)

_SLUGIFY_CODE = '''"""Turn text into URL slugs."""

import re
import unicodedata


def slugify(text: str) -> str:
    """Return a lowercase ASCII slug with words joined by '-'."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    words = re.findall(r"[a-z0-9]+", ascii_text.lower())
    return "-".join(words)
'''

_SLUGIFY_TESTS = (
    "def test_basic():\n    assert slugify('Hello, World!') == 'hello-world'\n",
    "def test_accents():\n    assert slugify('Cr\\u00e8me Br\\u00fbl\\u00e9e') == 'creme-brulee'\n",
    "def test_empty():\n    assert slugify('  ') == ''\n",
    "def test_collapses_separators():\n    assert slugify('a -- b__c') == 'a-b-c'\n",
)

_WORD_COUNT_CODE = '''"""Count words in text."""

import re
from collections import Counter


def word_count(text: str) -> dict[str, int]:
    """Return how often each word occurs, case-insensitively."""
    return dict(Counter(re.findall(r"[a-z0-9']+", text.lower())))
'''

_WORD_COUNT_TESTS = (
    "def test_counts():\n    assert word_count('the cat and the hat') == {'the': 2, 'cat': 1, 'and': 1, 'hat': 1}\n",
    "def test_case_insensitive():\n    assert word_count('Go go GO') == {'go': 3}\n",
    "def test_empty():\n    assert word_count('') == {}\n",
    "def test_punctuation_ignored():\n    assert word_count('hi, hi!') == {'hi': 2}\n",
)

_PALINDROME_CODE = '''"""Palindrome check."""


def is_palindrome(text: str) -> bool:
    """Return True when text reads the same both ways, ignoring case and non-alphanumerics."""
    letters = [c.lower() for c in text if c.isalnum()]
    return letters == letters[::-1]
'''

_PALINDROME_TESTS = (
    "def test_sentence():\n    assert is_palindrome('A man, a plan, a canal: Panama')\n",
    "def test_not_palindrome():\n    assert not is_palindrome('mgx')\n",
    "def test_empty():\n    assert is_palindrome('')\n",
)

CATALOGUE: tuple[tuple[tuple[str, ...], DemoSolution], ...] = (
    (("duration",), DemoSolution("iso_duration", "S", "durations", "Parse ISO-8601 durations into timedelta", _DURATION_CODE, _DURATION_TESTS)),
    (("fizzbuzz", "fizz buzz"), DemoSolution("fizzbuzz", "XS", "fizzbuzz", "FizzBuzz sequence", _FIZZBUZZ_CODE, _FIZZBUZZ_TESTS)),
    (("palindrome",), DemoSolution("palindrome", "XS", "palindrome", "Palindrome check", _PALINDROME_CODE, _PALINDROME_TESTS)),
    (("reverse",), DemoSolution("reverse", "XS", "reverse", "Reverse a string", _REVERSE_CODE, _REVERSE_TESTS)),
    (("prime",), DemoSolution("prime", "XS", "primes", "Primality test", _PRIME_CODE, _PRIME_TESTS)),
    (("fibonacci",), DemoSolution("fibonacci", "XS", "fibonacci", "Fibonacci numbers", _FIBONACCI_CODE, _FIBONACCI_TESTS)),
    (("slug",), DemoSolution("slugify", "S", "slugify", "URL slugs", _SLUGIFY_CODE, _SLUGIFY_TESTS)),
    (("word count", "count words", "word frequenc"), DemoSolution("word_count", "S", "word_count", "Word counting", _WORD_COUNT_CODE, _WORD_COUNT_TESTS)),
)  # fmt: skip

_STOPWORDS = frozenset(
    "a an the to of for and or in on with that which write create implement build make "
    "function python program code please simple small me my some".split()
)


def generic_function_name(task: str) -> str:
    words = [word for word in re.findall(r"[a-z][a-z0-9]*", task.lower()) if word not in _STOPWORDS]
    name = "_".join(words[:4]) or "solve_task"
    return f"{name}_task" if keyword.iskeyword(name) else name


def generic_solution(task: str) -> DemoSolution:
    name = generic_function_name(task)
    words = len(task.split())
    complexity = "S" if words <= 12 else "M" if words <= 40 else "L"
    code = (
        f'"""Demo stand-in for the task: {task.strip()[:200]!r}.\n\n'
        "Generated by the offline demo model, which does not implement arbitrary tasks; it\n"
        'returns a description of the call so the pipeline can be exercised end to end.\n"""\n\n'
        f"TASK = {task.strip()!r}\n\n\n"
        f"def {name}(*args, **kwargs):\n"
        '    """Return the task with the arguments it was called with (demo stand-in)."""\n'
        '    return {"task": TASK, "args": list(args), "kwargs": dict(kwargs)}\n'
    )
    tests = (
        f"def test_{name}_names_the_task():\n    assert {name}()['task'] == TASK\n",
        f"def test_{name}_echoes_arguments():\n    assert {name}(1, x=2)['args'] == [1]\n"
        f"    assert {name}(1, x=2)['kwargs'] == {{'x': 2}}\n",
    )
    module = "solution"
    return DemoSolution("generic", complexity, module, f"Demo stand-in for: {task.strip()[:80]}", code, tests, True)


def solution_for(task: str) -> DemoSolution:
    text = task.lower()
    for keywords, solution in CATALOGUE:
        if any(keyword in text for keyword in keywords):
            return solution
    return generic_solution(task)
