"""Search filters over item fields: a subset of Milvus's boolean expression grammar.

One filter text serves every gallery store. :func:`parse_where` reads it once into a
:class:`Where`, which can be written back as a normalised Milvus expression
(:attr:`Where.expression`, what a Milvus store passes as ``filter=``), as an SQLite condition
(what a folder gallery's item database selects the matching ids with, so FAISS ranks only those),
and as a numpy mask over columns of rows (:meth:`Where.select`, for rows already in memory such
as a Parquet export). The three meanings agree; the tests hold them to it.

Grammar (keywords in any case; ``&&``, ``||``, ``!`` as in Milvus)::

    expr      := term (("or" | "||") term)*
    term      := factor (("and" | "&&") factor)*
    factor    := ("not" | "!") factor | "(" expr ")" | predicate
    predicate := FIELD op literal | FIELD ["not"] "in" "[" [literal ("," literal)*] "]"
               | FIELD "like" STRING
    op        := "==" | "!=" | "<" | "<=" | ">" | ">="
    literal   := INTEGER | STRING          (strings in "double" or 'single' quotes)

Fields are the item's: ``id`` (integer), ``identity``, ``path`` and ``sha256`` (the content hash),
strings. ``like`` patterns use ``%`` (any run of characters) and ``_`` (one character); ``\\%`` and
``\\_`` stand for themselves. Strings compare by code point, as Milvus compares VARCHARs.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from siamese.core.errors import ConfigError, named

#: The fields a filter may name, and their types (an item row's columns; see results.Item).
FIELDS: dict[str, type] = {"id": int, "identity": str, "path": str, "sha256": str}
#: The comparison operators, as written in the normalised expression (and in SQL, ``==`` apart).
COMPARISONS = ("==", "!=", "<", "<=", ">", ">=")
#: At most this many literals in one filter: SQLite binds each as a parameter (its limit: 32766).
MAX_LITERALS = 30_000
_INT64 = (-(2**63), 2**63 - 1)
_OPERATORS = "an operator (==, !=, <, <=, >, >=, in, not in, like)"
_TOKEN = re.compile(
    r"""\s*(?:
    (?P<float>[-+]?(?:\d+\.\d*|\.\d+)(?:[eE][-+]?\d+)?)
  | (?P<int>[-+]?\d+)
  | (?P<str>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')
  | (?P<word>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<op>==|!=|<=|>=|<|>|&&|\|\||!|\(|\)|\[|\]|,)
  | (?P<bad>\S)
)""",
    re.VERBOSE | re.DOTALL,
)
_ESCAPES = {"\\": "\\", '"': '"', "'": "'", "n": "\n", "t": "\t"}


class FilterError(ConfigError):
    """A filter expression that does not parse, or names a field or type it cannot compare."""


@dataclass(frozen=True)
class _Token:
    kind: str  # int, float (refused: no float fields), str, word, op, end
    text: str
    position: int  # 0-based offset in the filter text

    @property
    def keyword(self) -> str:
        return self.text.lower() if self.kind == "word" else self.text


def _tokens(text: str) -> list[_Token]:
    tokens, at = [], 0
    while True:
        match = _TOKEN.match(text, at)
        if match is None or match.end() == at:  # only blanks left
            tokens.append(_Token("end", "", len(text)))
            return tokens
        kind = match.lastgroup or "bad"
        start = match.start(kind)
        if kind == "bad":
            char = text[start]
            expected = (
                "a closed string"
                if char in "\"'"
                else "'==' (equality is written ==)"
                if char == "="
                else "a field, value or operator"
            )
            raise _error(text, start, expected)
        tokens.append(_Token(kind, match.group(kind), start))
        at = match.end()


def _error(text: str, position: int, expected: str, found: str | None = None) -> FilterError:
    """One line: the filter, the 1-based position, what was expected and what is there."""
    if found is None:
        rest = text[position:].strip()
        found = repr(rest[:20]) if rest else "the end"
    return FilterError(
        f"filter ({named('where')}) {text!r}: at position {position + 1} expected {expected}, "
        f"found {found}"
    )


def _unquote(token: _Token) -> str:
    """A string literal's value: backslash escapes of quotes, backslash, n and t are read.

    Any other backslash stays (``"a\\_b"`` keeps ``\\_`` for ``like``, as Milvus does).
    """
    body, out, n = token.text[1:-1], [], 0
    while n < len(body):
        if body[n] == "\\" and n + 1 < len(body) and body[n + 1] in _ESCAPES:
            out.append(_ESCAPES[body[n + 1]])
            n += 2
        else:
            out.append(body[n])
            n += 1
    return "".join(out)


def _quote(value: str) -> str:
    """A string literal Milvus reads back as ``value`` (double quotes, backslash escapes)."""
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    return '"' + escaped.replace("\n", "\\n").replace("\t", "\\t") + '"'


def _literal_text(value: int | str) -> str:
    return str(value) if isinstance(value, int) else _quote(value)


# ------------------------------------------------------------------------------ the tree
Columns = Mapping[str, NDArray[Any]]


@dataclass(frozen=True)
class Compare:
    """``field op value``."""

    field: str
    op: str
    value: int | str

    def milvus(self) -> str:
        return f"{self.field} {self.op} {_literal_text(self.value)}"

    def sql(self, params: dict[str, object]) -> str:
        name = _bind(params, self.value)
        return f"{self.field} {'=' if self.op == '==' else self.op} :{name}"

    def mask(self, columns: Columns) -> NDArray[np.bool_]:
        column, value = columns[self.field], self.value
        compared = {
            "==": np.equal,
            "!=": np.not_equal,
            "<": np.less,
            "<=": np.less_equal,
            ">": np.greater,
            ">=": np.greater_equal,
        }[self.op](column, value)
        return np.asarray(compared, dtype=bool)


@dataclass(frozen=True)
class Member:
    """``field in [values]`` (``not in`` when ``negated``)."""

    field: str
    values: tuple[int | str, ...]
    negated: bool = False

    def milvus(self) -> str:
        listed = ", ".join(_literal_text(v) for v in self.values)
        return f"{self.field} {'not in' if self.negated else 'in'} [{listed}]"

    def sql(self, params: dict[str, object]) -> str:
        if not self.values:
            return "1" if self.negated else "0"
        marks = ", ".join(":" + _bind(params, v) for v in self.values)
        return f"{self.field} {'NOT IN' if self.negated else 'IN'} ({marks})"

    def mask(self, columns: Columns) -> NDArray[np.bool_]:
        column = columns[self.field]
        wanted = set(self.values)
        found = np.fromiter((v in wanted for v in column.tolist()), bool, len(column))
        return ~found if self.negated else found


@dataclass(frozen=True)
class Like:
    """``field like "pattern"``: ``%`` any run, ``_`` one character, backslash escapes them."""

    field: str
    pattern: str

    def milvus(self) -> str:
        return f"{self.field} like {_quote(self.pattern)}"

    def sql(self, params: dict[str, object]) -> str:
        # GLOB, not LIKE: SQLite's LIKE ignores ASCII case, Milvus's does not.
        return f"{self.field} GLOB :{_bind(params, like_to_glob(self.pattern))}"

    def mask(self, columns: Columns) -> NDArray[np.bool_]:
        rx = like_to_regex(self.pattern)
        column = columns[self.field]
        return np.fromiter(
            (rx.fullmatch(v) is not None for v in column.tolist()), bool, len(column)
        )


@dataclass(frozen=True)
class Not:
    """``not part``."""

    part: Node

    def milvus(self) -> str:
        return f"not {_grouped(self.part)}"

    def sql(self, params: dict[str, object]) -> str:
        return f"NOT ({self.part.sql(params)})"

    def mask(self, columns: Columns) -> NDArray[np.bool_]:
        return ~self.part.mask(columns)


@dataclass(frozen=True)
class Both:
    """``a and b and …`` (``op="and"``) or ``a or b or …`` (``op="or"``)."""

    op: str
    parts: tuple[Node, ...]

    def milvus(self) -> str:
        return f" {self.op} ".join(_grouped(p) for p in self.parts)

    def sql(self, params: dict[str, object]) -> str:
        return f" {self.op.upper()} ".join(f"({p.sql(params)})" for p in self.parts)

    def mask(self, columns: Columns) -> NDArray[np.bool_]:
        masks = [p.mask(columns) for p in self.parts]
        combine = np.logical_and if self.op == "and" else np.logical_or
        return combine.reduce(masks)


Node = Compare | Member | Like | Not | Both


def _grouped(node: Node) -> str:
    """A sub-expression, parenthesised when it is itself an and/or (precedence made plain)."""
    return f"({node.milvus()})" if isinstance(node, Both) else node.milvus()


def _bind(params: dict[str, object], value: object) -> str:
    name = f"w{len(params)}"
    params[name] = value
    return name


def like_to_regex(pattern: str) -> re.Pattern[str]:
    """A ``like`` pattern as a regular expression over the whole value."""
    out, n = [], 0
    while n < len(pattern):
        char = pattern[n]
        if char == "\\" and n + 1 < len(pattern) and pattern[n + 1] in "%_\\":
            out.append(re.escape(pattern[n + 1]))
            n += 2
            continue
        out.append(".*" if char == "%" else "." if char == "_" else re.escape(char))
        n += 1
    return re.compile("".join(out), re.DOTALL)


def like_to_glob(pattern: str) -> str:
    """A ``like`` pattern as an SQLite GLOB pattern (case-sensitive, as Milvus's like)."""
    out, n = [], 0
    special = {"*": "[*]", "?": "[?]", "[": "[[]"}
    while n < len(pattern):
        char = pattern[n]
        if char == "\\" and n + 1 < len(pattern) and pattern[n + 1] in "%_\\":
            out.append(pattern[n + 1])
            n += 2
            continue
        out.append("*" if char == "%" else "?" if char == "_" else special.get(char, char))
        n += 1
    return "".join(out)


# ------------------------------------------------------------------------------ parsing
class _Parser:
    """Recursive descent over the tokens; every refusal names the position and what was expected."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = _tokens(text)
        self.at = 0
        self.literals = 0

    @property
    def token(self) -> _Token:
        return self.tokens[self.at]

    def _take(self) -> _Token:
        token = self.tokens[self.at]
        self.at += 1
        return token

    def _fail(self, expected: str, token: _Token | None = None) -> FilterError:
        token = token or self.token
        found = "the end" if token.kind == "end" else repr(token.text)
        return _error(self.text, token.position, expected, found)

    def _accept(self, *keywords: str) -> bool:
        if self.token.kind in ("word", "op") and self.token.keyword in keywords:
            self.at += 1
            return True
        return False

    def parse(self) -> Node:
        if self.token.kind == "end":
            raise self._fail('a condition such as identity == "a"')
        node = self._or()
        if self.token.kind != "end":
            raise self._fail("and, or, or the end")
        return node

    def _or(self) -> Node:
        parts = [self._and()]
        while self._accept("or", "||"):
            parts.append(self._and())
        return parts[0] if len(parts) == 1 else Both("or", tuple(parts))

    def _and(self) -> Node:
        parts = [self._factor()]
        while self._accept("and", "&&"):
            parts.append(self._factor())
        return parts[0] if len(parts) == 1 else Both("and", tuple(parts))

    def _factor(self) -> Node:
        if self._accept("not", "!"):
            return Not(self._factor())
        if self._accept("("):
            node = self._or()
            if not self._accept(")"):
                raise self._fail("')' or and/or")
            return node
        return self._predicate()

    def _predicate(self) -> Node:
        token = self.token
        if token.kind != "word" or token.text not in FIELDS:
            raise self._fail(f"a field ({', '.join(FIELDS)}), 'not' or '('")
        field = self._take().text
        if self.token.kind == "op" and self.token.text in COMPARISONS:
            op = self._take().text
            return Compare(field, op, self._literal(field))
        if self.token.keyword == "like":
            if FIELDS[field] is not str:
                raise self._fail(f"an integer comparison ({field} is an integer; like is for text)")
            self.at += 1
            return Like(field, self._literal(field))
        negated = self._accept("not")
        if not self._accept("in"):
            raise self._fail("'in' after 'not'" if negated else _OPERATORS)
        return Member(field, self._list(field), negated)

    def _list(self, field: str) -> tuple[int | str, ...]:
        if not self._accept("["):
            raise self._fail("'[' opening a list of values")
        values: list[int | str] = []
        if self._accept("]"):
            return ()
        while True:
            values.append(self._literal(field))
            if self._accept("]"):
                return tuple(values)
            if not self._accept(","):
                raise self._fail("',' or ']'")

    def _literal(self, field: str) -> int | str:
        token = self.token
        wanted = "int" if FIELDS[field] is int else "str"
        what = "an integer" if wanted == "int" else "a quoted string"
        if token.kind != wanted:
            raise self._fail(f"{what} ({field} is {'an integer' if wanted == 'int' else 'text'})")
        self.at += 1
        self.literals += 1
        if self.literals > MAX_LITERALS:
            raise self._fail(f"at most {MAX_LITERALS} values in one filter", token)
        if wanted == "str":
            return _unquote(token)
        value = int(token.text)
        if not _INT64[0] <= value <= _INT64[1]:
            raise self._fail("an integer within 64 bits", token)
        return value


# ------------------------------------------------------------------------------ the filter
@dataclass(frozen=True)
class Where:
    """A parsed filter: the same condition as a Milvus expression, an SQLite condition, a mask."""

    tree: Node

    @property
    def expression(self) -> str:
        """The normalised Milvus boolean expression (lower-case keywords, double-quoted strings).

        Parsing it again gives an equal :class:`Where`.
        """
        return self.tree.milvus()

    @property
    def fields(self) -> frozenset[str]:
        """The item fields the filter names."""
        return frozenset(_fields(self.tree))

    def sql(self) -> tuple[str, dict[str, object]]:
        """An SQLite condition over the items table's columns and its named parameters (``:wN``)."""
        params: dict[str, object] = {}
        return self.tree.sql(params), params

    def select(self, rows: Mapping[str, Sequence[Any]] | Iterable[Any]) -> NDArray[np.bool_]:
        """Which rows match: a bool mask, one entry per row.

        ``rows`` is a mapping of columns (field name to values, e.g. a pyarrow table's
        ``to_pydict()``) or an iterable of rows (objects with the fields as attributes, such as
        :class:`~siamese.index.search.results.Item`, or mappings).
        """
        return self.tree.mask(_columns(rows, self.fields))

    def __str__(self) -> str:
        return self.expression


def parse_where(text: str) -> Where:
    """Parse a filter such as ``identity like "acme-%" and id > 10``.

    Raises:
        FilterError: one line naming the position (1-based) and what was expected there.
    """
    if not isinstance(text, str):
        raise FilterError(f"filter ({named('where')}) must be text, got {type(text).__name__}")
    return Where(_Parser(text).parse())


def as_where(where: Where | str | None) -> Where | None:
    """A :class:`Where` from a filter text or an already parsed one; None stays None."""
    return parse_where(where) if isinstance(where, str) else where


def _fields(node: Node) -> Iterable[str]:
    if isinstance(node, (Compare, Member, Like)):
        yield node.field
    elif isinstance(node, Not):
        yield from _fields(node.part)
    else:
        for part in node.parts:
            yield from _fields(part)


def _columns(rows: Mapping[str, Sequence[Any]] | Iterable[Any], fields: frozenset[str]) -> Columns:
    """The named fields as numpy columns (int64 for id, Python strings otherwise)."""
    if isinstance(rows, Mapping):
        raw = {f: list(rows[f]) for f in fields}
    else:
        listed = list(rows)
        raw = {
            f: [r[f] if isinstance(r, Mapping) else getattr(r, f) for r in listed] for f in fields
        }
    columns: dict[str, NDArray[Any]] = {}
    for field, values in raw.items():
        if FIELDS[field] is int:
            columns[field] = np.asarray(values, dtype=np.int64)
        else:
            column = np.empty(len(values), dtype=object)
            column[:] = values
            columns[field] = column
    return columns
