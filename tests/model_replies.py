"""Replies shaped like what real models send, for the fake LLM server to serve.

Each sample copies a habit of a real model family: DeepSeek-R1 / QwQ served without a
reasoning parser (a leading <think> block, drafts of code inside it, or only the closing tag
when the chat template opened the block), GPT-4o and Claude (prose around the code, an
example block, CRLF through some proxies), and a reply cut off at the token limit.
"""

from __future__ import annotations

TASK = "Write fizzbuzz(n) returning the FizzBuzz sequence"

FIZZBUZZ_CODE = '''def fizzbuzz(n: int) -> list[str]:
    """Return the FizzBuzz sequence for 1..n."""
    if n < 0:
        raise ValueError("n must be non-negative")
    return [("Fizz" * (i % 3 == 0) + "Buzz" * (i % 5 == 0)) or str(i) for i in range(1, n + 1)]
'''

# DeepSeek-R1 answering WriteCode: a draft in the thinking, the real file after it.
R1_CODE_WITH_DRAFT = f"""<think>
Okay, the user wants a fizzbuzz function. Let me start with a quick draft:

```python
def fizzbuzz(n):
    for i in range(n):
        print(i)
```

Hmm, wait, that prints instead of returning, and starts at 0. The plan says return a list of
strings. Also negative n should raise. Let me write the final version.
- handle n = 0
- multiples of 15 give FizzBuzz
</think>

```python
# file: fizzbuzz.py
{FIZZBUZZ_CODE.rstrip()}
```"""

# DeepSeek-R1 answering AnalyzeTask: the musing names complexities the answer does not.
R1_ANALYZE = """<think>
The task is fizzbuzz. Complexity: XS? no, maybe S because of the negative case... Actually
it is one small function, so XS.
</think>

COMPLEXITY: XS
A single small function with a couple of edge cases."""

# QwQ / Qwen3 through a chat template that opened the <think> block in the prompt: only the
# closing tag is in the reply, and the thinking has bullet lines.
QWEN_REVIEW_ORPHAN_CLOSE = """Let me check the code against the task.
- The loop starts at 1, good.
- Maybe the tests are wrong about zero? No, fizzbuzz(0) == [] is right.
</think>

VERDICT: APPROVED
- The implementation matches the task and every test passes."""

# GPT-4o through a proxy that turns line endings into CRLF: prose, the file, then an example.
GPT4O_CRLF_CODE = (
    "Here is the implementation:\r\n\r\n"
    "```python\r\n# file: fizzbuzz.py\r\n"
    + FIZZBUZZ_CODE.replace("\n", "\r\n")
    + "```\r\n\r\nYou can try it like this:\r\n\r\n"
    "```bash\r\npython -c \"from fizzbuzz import fizzbuzz; print(fizzbuzz(15))\"\r\n```\r\n\r\n"
    "Let me know if you need anything else.\r\n"
)

# Claude: a heading caption above the block and a bare '# name.py' first line on another.
CLAUDE_CAPTIONED_CODE = f"""I'll implement this as a single module.

**Filename:** `fizzbuzz.py`

```python
{FIZZBUZZ_CODE.rstrip()}
```

And a tiny helper module for the output:

```python
# printing.py
from fizzbuzz import fizzbuzz


def print_fizzbuzz(n: int) -> None:
    print("\\n".join(fizzbuzz(n)))
```
"""

# A code reply cut off at the output token limit (sent with finish_reason "length").
TRUNCATED_CODE = """```python
# file: fizzbuzz.py
def fizzbuzz(n: int) -> list[str]:
    \"\"\"Return the FizzBuzz sequence for 1..n.\"\"\"
    result = []
    for i in range(1, n + 1):
        if i % 15 == 0:
            result.append("Fizz"""

# Bob's tests with one wrong expectation: 3 is "Fizz", not "3".
WRONG_TESTS = """I'll cover the main cases.

```python
# file: test_fizzbuzz.py
from fizzbuzz import fizzbuzz


def test_first_two_are_numbers():
    assert fizzbuzz(2) == ["1", "2"]


def test_three_is_a_number():
    assert fizzbuzz(3) == ["1", "2", "3"]
```
"""

REVIEW_WRONG_TEST = """VERDICT: CHANGES_REQUIRED
FIX: tests
- test_three_is_a_number expects "3", but the task says multiples of 3 are "Fizz": the test is wrong, the code is right."""

APPROVAL_DESPITE_FAILURE = """VERDICT: APPROVED
- The code is clean and matches the task."""
