"""The ``--where`` filter: a small grammar over run fields, parsed by hand.

An expression is read by a tokenizer and a recursive-descent parser into a
tree of tuples, and the tree is walked to test one run at a time. Nothing is
ever handed to ``eval``: ``__import__('os')`` is only a syntax error.

Grammar (lowest precedence first)::

    expression := or_expr
    or_expr    := and_expr ( ('or' | '||') and_expr )*
    and_expr   := not_expr ( ('and' | '&&') not_expr )*
    not_expr   := ('not' | '!') not_expr  |  '(' or_expr ')'  |  condition
    condition  := value [ op value ]        a value alone is tested for truth
    op         := '==' | '!=' | '<' | '<=' | '>' | '>=' | 'in' | 'not in'
    value      := name | number | string | 'true' | 'false' | 'null' | list
    list       := '[' [ literal ( ',' literal )* [','] ] ']'

Names are dotted (``optimizer.lr``, ``model.layers.1.units``,
``param.optimizer.name``, ``metric.val_accuracy``); numbers are ints or
floats (``3``, ``-0.5``, ``1e-3``); strings take single or double quotes, a
backslash makes the next character literal (``'it\\'s'``). ``True``,
``False`` and ``None`` are accepted too. Keywords are lowercase. Comparisons
do not chain: ``a < b < c`` is an error (write ``a < b and b < c``).

Semantics, chosen so that a filter never raises on odd data:

* a missing field (absent, ``None`` or NaN) is only equal to ``null``; it is
  never ``<``, ``>``, ``<=`` or ``>=`` anything, and ``!=`` is ``not ==``;
* ints and floats compare numerically; booleans are not numbers
  (``true == 1`` is false); strings compare with strings, case-sensitively;
  a number and a string are never equal and never ordered (false, no error);
* ``x in [..]`` is membership; ``'adam' in tags`` tests a list field;
  ``'mlp' in name`` is a substring test when both sides are strings.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping

from ..errors import ConfigError
from ..tracking import live_status
from ..values import is_missing, is_number, plain


class FilterError(ConfigError):
    """An invalid ``--where`` expression (exit code 2)."""


class _Missing:
    """The value of a field a run does not have."""

    def __repr__(self) -> str:
        return "MISSING"


MISSING = _Missing()

# The fields every record has at top level (possibly with a missing value).
TOP_LEVEL = ("id", "name", "status", "sweep", "trial", "seed", "tags", "note", "dataset", "start_time", "started",
             "path")

MAX_DEPTH = 64  # nesting of parentheses and 'not'; deeper is an error, not a RecursionError

_KEYWORDS = {"and": "AND", "or": "OR", "not": "NOT", "in": "IN"}
_LITERAL_WORDS = {"true": True, "True": True, "false": False, "False": False, "null": None, "None": None}
_COMPARISONS = ("==", "!=", "<=", ">=", "<", ">")
_DIGITS = "0123456789"
_NAME_START = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_"
_NAME_CHARS = _NAME_START + _DIGITS


# --------------------------------------------------------------------------- tokenizer


@dataclass(frozen=True)
class Token:
    kind: str  # NAME NUMBER STRING LITERAL OP AND OR NOT IN ( ) [ ] , END
    text: str  # as written (for messages)
    pos: int  # 0-based offset into the expression
    value: Any = None  # parsed value of NUMBER, STRING and LITERAL tokens


def _error(text: str, pos: int | None, message: str, hint: str = "") -> FilterError:
    """A FilterError: ``--where: <message> at column <c>[; <hint>]``, then the
    expression with a caret under column c."""
    if pos is None:
        return FilterError(f"--where: {message}")
    hint = f"; {hint}" if hint else ""
    # Control characters would break the caret's alignment; show them as spaces.
    shown = "".join(ch if ch.isprintable() else " " for ch in text)
    return FilterError(f"--where: {message} at column {pos + 1}{hint}\n  {shown}\n  {' ' * pos}^")


def tokenize(text: str) -> list[Token]:
    """Split ``text`` into tokens, ending with an END token; FilterError on a bad character."""
    tokens: list[Token] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch.isspace():
            i += 1
        elif ch in "'\"":
            i = _read_string(text, i, tokens)
        elif _starts_number(text, i):
            i = _read_number(text, i, tokens)
        elif ch in _NAME_START:
            i = _read_name(text, i, tokens)
        elif text.startswith(("&&", "||"), i):
            tokens.append(Token("AND" if ch == "&" else "OR", text[i:i + 2], i))
            i += 2
        elif text.startswith(_COMPARISONS, i):
            op = next(op for op in _COMPARISONS if text.startswith(op, i))
            tokens.append(Token("OP", op, i))
            i += len(op)
        elif ch == "!":
            tokens.append(Token("NOT", "!", i))
            i += 1
        elif ch == "=":
            raise _error(text, i, "unexpected '='", "use '==' to compare")
        elif ch in "()[],":
            tokens.append(Token(ch, ch, i))
            i += 1
        elif ch in "&|":
            raise _error(text, i, f"unexpected '{ch}'", f"use '{ch * 2}' or '{'and' if ch == '&' else 'or'}'")
        elif ch == "-":
            raise _error(text, i, "unexpected '-'", "'-' only starts a negative number (there is no arithmetic)")
        else:
            raise _error(text, i, f"unexpected character {ch!r}")
    tokens.append(Token("END", "end of expression", n))
    return tokens


def _starts_number(text: str, i: int) -> bool:
    """A digit, or '-' / '.' / '-.' followed by a digit ('-' is only ever a sign: no arithmetic)."""
    j = i + 1 if text[i] == "-" else i
    if text[j:j + 1] == ".":
        j += 1
    return text[j:j + 1] != "" and text[j] in _DIGITS


def _read_string(text: str, start: int, tokens: list[Token]) -> int:
    quote, i, chars = text[start], start + 1, []
    while i < len(text):
        ch = text[i]
        if ch == "\\" and i + 1 < len(text):
            chars.append(text[i + 1])  # a backslash makes the next character literal
            i += 2
        elif ch == quote:
            tokens.append(Token("STRING", text[start:i + 1], start, "".join(chars)))
            return i + 1
        else:
            chars.append(ch)
            i += 1
    raise _error(text, start, "unterminated string starting", f"no closing {quote}")


def _read_number(text: str, start: int, tokens: list[Token]) -> int:
    i, n = start, len(text)
    if text[i] == "-":
        i += 1
    while i < n and text[i] in _DIGITS:
        i += 1
    is_float = False
    if i < n and text[i] == ".":
        is_float = True
        i += 1
        while i < n and text[i] in _DIGITS:
            i += 1
    if i < n and text[i] in "eE":
        j = i + 1
        if j < n and text[j] in "+-":
            j += 1
        if j < n and text[j] in _DIGITS:
            is_float = True
            i = j
            while i < n and text[i] in _DIGITS:
                i += 1
    word = text[start:i]
    if i < n and (text[i] in _NAME_CHARS or text[i] == "."):
        # '1abc', '1.2.3', '1e': a name cannot start with a digit, and this is no number
        end = i
        while end < n and (text[end] in _NAME_CHARS or text[end] in ".+-"):
            end += 1
        raise _error(text, start, f"invalid number {text[start:end]!r}")
    try:
        value = float(word) if is_float else int(word)
    except ValueError:  # an integer longer than Python converts (4,300 digits)
        raise _error(text, start, f"the number {word[:20]}... has too many digits ({len(word):,})") from None
    tokens.append(Token("NUMBER", word, start, value))
    return i


def _read_name(text: str, start: int, tokens: list[Token]) -> int:
    i, n = start, len(text)
    while True:
        while i < n and text[i] in _NAME_CHARS:
            i += 1
        if i < n and text[i] == ".":
            if i + 1 < n and text[i + 1] in _NAME_CHARS:
                i += 1  # 'model.layers.1.units': a segment after a dot may start with a digit
                continue
            raise _error(text, i, f"a name cannot end with '.' ({text[start:i + 1]!r})")
        break
    word = text[start:i]
    if word in _KEYWORDS:
        tokens.append(Token(_KEYWORDS[word], word, start))
    elif word in _LITERAL_WORDS:
        tokens.append(Token("LITERAL", word, start, _LITERAL_WORDS[word]))
    else:
        tokens.append(Token("NAME", word, start, word))
    return i


# --------------------------------------------------------------------------- parser

# The tree is made of tuples:
#   ("or", [node, ...])   ("and", [node, ...])   ("not", node)
#   ("cmp", op, operand, operand)                ("truth", operand)
#   operands: ("name", "optimizer.lr")  ("lit", 0.001)  ("list", [values])


class _Parser:
    def __init__(self, text: str):
        self.text = text
        self.tokens = tokenize(text)
        self.i = 0
        self.depth = 0
        self.names: set[str] = set()

    @property
    def tok(self) -> Token:
        return self.tokens[self.i]

    def advance(self) -> Token:
        tok = self.tokens[self.i]
        self.i += 1
        return tok

    def fail(self, tok: Token, message: str, hint: str = "") -> FilterError:
        return _error(self.text, tok.pos, message, hint)

    def parse(self):
        if self.tok.kind == "END":
            raise _error(self.text, None, "the expression is empty")
        tree = self.or_expr()
        if self.tok.kind != "END":
            raise self.unexpected(opening=None)
        return tree

    def unexpected(self, opening: Token | None) -> FilterError:
        """The error for a token that cannot follow a complete condition; ``opening``
        is the '(' being closed, if any."""
        tok, prev = self.tok, self.tokens[self.i - 1]
        if tok.kind in ("OP", "IN") or self.at_not_in():
            if prev.kind == ")":
                return self.fail(tok, f"unexpected {tok.text!r}", "a comparison needs a field or a value "
                                      "on its left, not a parenthesized condition")
            return self.fail(tok, f"comparisons cannot be chained: second {tok.text!r}",
                             "write 'a < b and b < c'")
        if tok.kind == "(" and prev.kind == "NAME":
            return self.fail(tok, "function calls are not supported")
        if tok.kind == "NAME" and tok.text.lower() in _KEYWORDS:
            return self.fail(tok, f"unexpected {tok.text!r}", f"keywords are lowercase ({tok.text.lower()!r})")
        if opening is None:
            if tok.kind == ")":
                return self.fail(tok, "unmatched ')'")
            return self.fail(tok, f"expected 'and', 'or' or the end of the expression, got {tok.text!r}")
        if tok.kind == "END":
            return self.fail(opening, "this '(' is never closed")
        return self.fail(tok, f"expected ')' to close the '(' at column {opening.pos + 1}, got {tok.text!r}")

    def or_expr(self, after: Token | None = None):
        parts = [self.and_expr(after)]
        while self.tok.kind == "OR":
            op = self.advance()
            parts.append(self.and_expr(after=op))
        return parts[0] if len(parts) == 1 else ("or", parts)

    def and_expr(self, after: Token | None = None):
        parts = [self.not_expr(after)]
        while self.tok.kind == "AND":
            op = self.advance()
            parts.append(self.not_expr(after=op))
        return parts[0] if len(parts) == 1 else ("and", parts)

    def not_expr(self, after: Token | None = None):
        tok = self.tok
        if tok.kind in ("NOT", "("):
            self.depth += 1
            if self.depth > MAX_DEPTH:
                raise self.fail(tok, f"the expression is nested more than {MAX_DEPTH} levels deep")
            self.advance()
            if tok.kind == "NOT":
                node = ("not", self.not_expr(after=tok))
            else:
                node = self.or_expr_in_parens(tok)
            self.depth -= 1
            return node
        return self.condition(after)

    def or_expr_in_parens(self, opening: Token):
        if self.tok.kind == ")":
            raise self.fail(self.tok, "empty parentheses")
        node = self.or_expr(after=opening)
        if self.tok.kind != ")":
            raise self.unexpected(opening)
        self.advance()
        return node

    def at_not_in(self) -> bool:
        return self.tok.text == "not" and self.tokens[self.i + 1].kind == "IN"  # END always follows

    def condition(self, after: Token | None):
        left = self.value(after, what="a condition")
        tok = self.tok
        if tok.kind == "OP" or tok.kind == "IN":
            self.advance()
            op = tok.text
        elif self.at_not_in():
            self.advance()
            self.advance()
            op = "not in"
        else:
            return ("truth", left)
        right = self.value(tok, what="a value")
        return ("cmp", op, left, right)

    def value(self, after: Token | None, what: str):
        tok = self.tok
        if tok.kind == "NAME":
            self.advance()
            self.names.add(tok.value)
            return ("name", tok.value)
        if tok.kind in ("NUMBER", "STRING", "LITERAL"):
            self.advance()
            return ("lit", tok.value)
        if tok.kind == "[":
            return ("list", self.list_literal())
        raise self.fail(tok, self._expected(what, after, tok))

    def list_literal(self) -> list:
        opening = self.advance()
        items = []
        while True:
            tok = self.tok
            if tok.kind == "]":
                self.advance()
                return items
            if tok.kind in ("NUMBER", "STRING", "LITERAL"):
                items.append(self.advance().value)
            elif tok.kind == "END":
                raise self.fail(opening, "this '[' is never closed")
            elif tok.kind in ("NAME", "["):
                raise self.fail(tok, f"expected a literal value in the list, got {tok.text!r}",
                                "a list holds numbers, strings, true, false and null")
            else:
                raise self.fail(tok, f"expected a value or ']' in the list, got {tok.text!r}")
            if self.tok.kind == ",":
                self.advance()
            elif self.tok.kind != "]":
                if self.tok.kind == "END":
                    raise self.fail(opening, "this '[' is never closed")
                raise self.fail(self.tok, f"expected ',' or ']' in the list, got {self.tok.text!r}")

    @staticmethod
    def _expected(what: str, after: Token | None, got: Token) -> str:
        where = f" after {after.text!r}" if after is not None else ""
        if got.kind == "END":
            return f"expected {what}{where}"
        if got.kind == ")":
            return f"expected {what}{where}, got ')'" if after is not None else "unmatched ')'"
        return f"expected {what}{where}, got {got.text!r}"


class Filter:
    """A parsed ``--where`` expression.

    ``names`` are the field names it uses; ``matches(lookup)`` tests one run,
    where ``lookup(name)`` returns the field's value, or ``None`` / NaN /
    ``MISSING`` when the run does not have it.
    """

    def __init__(self, text: str, tree, names: set[str]):
        self.text = text
        self.tree = tree
        self.names = set(names)
        self._test = None  # the tree as nested closures, made on first use (a filter tests thousands of runs)

    def __repr__(self) -> str:
        return f"Filter({self.text!r})"

    def fields(self) -> dict[str, set[str]]:
        """The record fields ``record_lookup`` may read to resolve this filter's
        names: {"summary": keys, "params": keys, "metrics": keys}."""
        out: dict[str, set[str]] = {"summary": set(), "params": set(), "metrics": set()}
        for name in self.names:
            for section, key in _locations(name):
                out[section].add(key)
        return out

    def necessary(self) -> list[tuple[list[tuple[str, str]], str, Any]]:
        """Conditions every matching run meets, for a store's index to test before
        parsing records: (locations, op, literal) for each top-level ``and`` part
        of the form ``name op literal`` (op ==, <, <=, > or >=; literal a string
        or a number). The value a run has at one of the locations (section,
        key) satisfies ``op literal``; the filter itself still decides."""
        parts = []
        for node in _conjuncts(self.tree):
            if node[0] != "cmp" or node[1] not in _FLIPPED:
                continue
            op, a, b = node[1], node[2], node[3]
            if a[0] == "lit" and b[0] == "name":
                op, a, b = _FLIPPED[op], b, a
            if a[0] != "name" or b[0] != "lit" or isinstance(b[1], bool) or not isinstance(b[1], (str, int, float)):
                continue
            if isinstance(b[1], float) and b[1] != b[1]:
                continue
            locations = _locations(a[1])
            if locations and a[1] not in _COMPUTED:
                parts.append((locations, op, b[1]))
        return parts

    def matches(self, lookup: Callable[[str], Any]) -> bool:
        cache: dict[str, Any] = {}

        def get(name: str):
            if name not in cache:
                cache[name] = _normalize(lookup(name))
            return cache[name]

        if self._test is None:
            self._test = _compile(self.tree)
        return self._test(get)


_FLIPPED = {"==": "==", "<": ">", "<=": ">=", ">": "<", ">=": "<="}
_COMPUTED = ("status", "id", "path")  # not stored as such: live_status, the folder's name and path


def _conjuncts(node) -> list:
    """The parts of a top-level ``and`` (nested ones flattened), or the node itself."""
    if node[0] != "and":
        return [node]
    return [part for child in node[1] for part in _conjuncts(child)]


def _locations(name: str) -> list[tuple[str, str]]:
    """Where record_lookup may find ``name``: (section, key) pairs."""
    if name.startswith("param."):
        return [("params", name[len("param."):])]
    if name.startswith("metric."):
        return [("metrics", name[len("metric."):])]
    if name == "status":
        return [("summary", "status"), ("summary", "pid"), ("summary", "host")]  # what live_status looks at
    if name == "dataset":
        return [("summary", "dataset"), ("params", "data.dataset")]
    if name in ("id", "path"):
        return []
    if name in TOP_LEVEL:
        return [("summary", name)]
    return [("metrics", name), ("params", name)]


def parse(text: str) -> Filter:
    """Parse a ``--where`` expression; FilterError (exit 2) with the column if it is invalid."""
    if not isinstance(text, str):
        raise FilterError(f"--where: expected a string, got {type(text).__name__}")
    parser = _Parser(text)
    tree = parser.parse()
    return Filter(text, tree, parser.names)


def check_names(flt: Filter, known: Iterable[str]) -> None:
    """Raise FilterError for the first (alphabetically) name of ``flt`` that is not in ``known``,
    suggesting the closest known name."""
    known = set(known)
    for name in sorted(flt.names):
        if name in known:
            continue
        close = difflib.get_close_matches(name, sorted(known), n=1, cutoff=0.6)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise FilterError(f"unknown field {name!r} in --where{hint}")


def compile_filter(text: str, known: Iterable[str] | None = None) -> Filter:
    """``parse`` then ``check_names`` against ``known`` (skipped when ``known`` is None)."""
    flt = parse(text)
    if known is not None:
        check_names(flt, known)
    return flt


# --------------------------------------------------------------------------- evaluation


def _normalize(value):
    """Plain Python values: numpy scalars unwrapped, tuples and arrays as lists,
    missing values (None, NaN, pandas' NA, ...) as MISSING."""
    if value is MISSING or is_missing(value):
        return MISSING
    value = plain(value)
    if isinstance(value, (list, tuple)):
        return [_normalize(v) for v in value]
    return value


def _equal(a, b) -> bool:
    if a is MISSING or b is MISSING:
        return a is b
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if is_number(a) and is_number(b):
        return a == b
    if isinstance(a, str) and isinstance(b, str):
        return a == b
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b))
    return False


def _ordered(op: str, a, b) -> bool:
    """``a op b`` for numbers with numbers and strings with strings; False otherwise."""
    if not ((is_number(a) and is_number(b)) or (isinstance(a, str) and isinstance(b, str))):
        return False
    if op == "<":
        return a < b
    if op == "<=":
        return a <= b
    if op == ">":
        return a > b
    return a >= b


def _contains(container, item) -> bool:
    if isinstance(container, list):
        return any(_equal(item, x) for x in container)
    if isinstance(container, str) and isinstance(item, str):
        return item in container
    return False


def _truthy(x) -> bool:
    if x is MISSING:
        return False
    if isinstance(x, (bool, int, float, str, list, dict)):
        return bool(x)
    return True


def _compile(node) -> Callable:
    """The tree as a function of ``get`` (name -> normalized value), literals
    normalized once: ``or``/``and``/``not`` as in Python, a value alone by
    _truthy, comparisons by _equal, _contains and _ordered."""
    kind = node[0]
    if kind in ("or", "and"):
        parts = [_compile(child) for child in node[1]]
        return (lambda get: any(p(get) for p in parts)) if kind == "or" else (lambda get: all(p(get) for p in parts))
    if kind == "not":
        inner = _compile(node[1])
        return lambda get: not inner(get)
    if kind == "truth":
        value = _compiled_operand(node[1])
        return lambda get: _truthy(value(get))
    op, a, b = node[1], _compiled_operand(node[2]), _compiled_operand(node[3])
    if op == "==":
        return lambda get: _equal(a(get), b(get))
    if op == "!=":
        return lambda get: not _equal(a(get), b(get))
    if op == "in":
        return lambda get: _contains(b(get), a(get))
    if op == "not in":
        return lambda get: not _contains(b(get), a(get))
    return lambda get: _ordered(op, a(get), b(get))


def _compiled_operand(node) -> Callable:
    if node[0] == "name":
        name = node[1]
        return lambda get: get(name)
    value = _normalize(node[1]) if node[0] == "lit" else [_normalize(v) for v in node[1]]
    return lambda get: value


# --------------------------------------------------------------------------- records


def record_lookup(record: Mapping) -> Callable[[str], Any]:
    """A ``lookup`` for ``Filter.matches`` over one run record.

    A name ``n`` resolves, in order, to: ``params[X]`` for ``param.X``;
    ``metrics[X]`` for ``metric.X``; the top-level fields (``id``, ``name``,
    ``status`` (as ``live_status`` reports it), ``sweep``, ``trial``,
    ``seed``, ``tags``, ``dataset``, ``start_time``, ``started``, ``path``);
    then ``metrics[n]``; then ``params[n]``; else MISSING.
    """
    summary = record.get("summary") or {}
    params = record.get("params") or {}
    metrics = record.get("metrics") or {}
    status: list = []  # computed once, on first use (live_status may probe a process)

    def top(name: str):
        if name == "id":
            return record.get("id")
        if name == "path":
            return record.get("path")
        if name == "status":
            if not status:
                status.append(live_status(summary))
            return status[0]
        if name == "dataset":
            return summary.get("dataset", params.get("data.dataset"))
        return summary.get(name)

    def lookup(name: str):
        if name.startswith("param."):
            return params.get(name[len("param."):], MISSING)
        if name.startswith("metric."):
            return metrics.get(name[len("metric."):], MISSING)
        if name in TOP_LEVEL:
            return top(name)
        if name in metrics:
            return metrics[name]
        return params.get(name, MISSING)

    return lookup


def unknown_names(flt: Filter, record: Mapping) -> set[str]:
    """The names of ``flt`` that ``record`` does not have (it may have them with a null value)."""
    lookup = record_lookup(record)
    return {name for name in flt.names if name not in TOP_LEVEL and lookup(name) is MISSING}


def known_names(records: Iterable[Mapping]) -> set[str]:
    """Every name ``record_lookup`` resolves in at least one record: the
    top-level fields, and each metric and param with and without its prefix."""
    names = set(TOP_LEVEL)
    for record in records:
        for key in record.get("metrics") or {}:
            names.update((key, f"metric.{key}"))
        for key in record.get("params") or {}:
            names.update((key, f"param.{key}"))
    return names
