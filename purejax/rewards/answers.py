"""Finding the final answer in a response, and refusing answers no grader should parse.

Everything here is plain string scanning, linear in the text length: it runs on
untrusted model output before anything reaches sympy.
"""

from __future__ import annotations

import re

_BOX_COMMANDS = ("\\boxed", "\\fbox")
# Longest answer handed to the parser. The longest MATH500 gold is ~80 characters;
# 1000 leaves room for matrices and long expressions while keeping parse time small.
MAX_ANSWER_CHARS = 1000
# Deepest {[( nesting handed to the parser; MATH500 golds need at most 4. The ANTLR
# LaTeX parser recurses per level, so thousands of levels cost seconds or the stack.
MAX_ANSWER_NESTING = 24
_TOWER = re.compile(r"\^\s*\{[^{}]*[\^!]|\^\s*\{[^{}]*\{[^{}]*\^")


def extract_answer(text: str) -> str | None:
    """The content of the last `\\boxed{...}` or `\\fbox{...}` in `text`, else None.

    Braces nest (`\\boxed{\\frac{1}{2}}` -> `\\frac{1}{2}`); escaped braces `\\{`
    `\\}` are literal characters and do not open or close the box. Like the
    Hendrycks MATH grader, `\\boxed 5` (a space, no braces) yields the text up
    to the next `$` or line end. An unclosed last box (a response truncated
    inside its answer) yields None: a later, broken answer is not replaced by an
    earlier one.
    """
    if not isinstance(text, str):
        return None
    start, command = -1, ""
    for name in _BOX_COMMANDS:
        pos = text.rfind(name)
        # `\boxed` must not be the prefix of a longer macro name (`\boxedfoo`).
        while pos >= 0 and pos + len(name) < len(text) and text[pos + len(name)].isalpha():
            pos = text.rfind(name, 0, pos)
        if pos > start:
            start, command = pos, name
    if start < 0:
        return None
    i = start + len(command)
    if i < len(text) and text[i] == " " and command == "\\boxed":
        rest = text[i:].lstrip(" ")
        if rest.startswith("{"):
            i = len(text) - len(rest)
        else:
            answer = re.split(r"[$\n]", rest, maxsplit=1)[0].strip()
            return answer or None
    while i < len(text) and text[i] in " \t":
        i += 1
    if i >= len(text) or text[i] != "{":
        return None
    return _braced_group(text, i)


def _braced_group(text: str, open_pos: int) -> str | None:
    """The text inside the group opened at text[open_pos] == '{', or None if unclosed."""
    depth = 0
    i = open_pos
    n = len(text)
    while i < n:
        c = text[i]
        if c == "\\":
            i += 2  # `\{`, `\}`, `\\`: an escaped character never changes the depth.
            continue
        if c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
            if depth == 0:
                return text[open_pos + 1 : i]
        i += 1
    return None


def has_boxed_answer(text: str) -> bool:
    """True if `text` holds a closed, non-empty final `\\boxed{...}` (the `format` reward)."""
    answer = extract_answer(text)
    return answer is not None and answer.strip() != ""


def answer_rejection(answer: str) -> str | None:
    """Why `answer` must not reach the parser (a short reason), or None if it may.

    Refused: over MAX_ANSWER_CHARS characters, nesting deeper than
    MAX_ANSWER_NESTING, and power towers / factorials of powers (`9^{9^{9^9}}`,
    `(10^{100})!`), whose comparison would materialise astronomically large
    integers. These are cheap checks; the verifier's time limit covers the rest.
    """
    if len(answer) > MAX_ANSWER_CHARS:
        return f"longer than {MAX_ANSWER_CHARS} characters"
    depth = deepest = 0
    for c in answer:
        if c in "{[(":
            depth += 1
            deepest = max(deepest, depth)
        elif c in "}])":
            depth -= 1
    if deepest > MAX_ANSWER_NESTING:
        return f"nested deeper than {MAX_ANSWER_NESTING} levels"
    if _TOWER.search(answer) or re.search(r"\^\s*\d+\s*\^", answer) or _factorial_of_power(answer):
        return "power tower or factorial of a power"
    return None


def _factorial_of_power(answer: str) -> bool:
    """`a^{b}!` or `(...^...)!`: factorials of numbers that are already huge."""
    for match in re.finditer(r"!", answer):
        before = answer[: match.start()].rstrip()
        if before.endswith("}") or before.endswith(")"):
            opener = "{" if before.endswith("}") else "("
            closer = before[-1]
            depth, j = 0, len(before) - 1
            while j >= 0:
                if before[j] == closer:
                    depth += 1
                elif before[j] == opener:
                    depth -= 1
                    if depth == 0:
                        break
                j -= 1
            if "^" in before[max(j - 2, 0) :]:
                return True
        elif re.search(r"\d{5,}$", before):  # 10000! has 35,660 digits; graders never need it.
            return True
    return False
