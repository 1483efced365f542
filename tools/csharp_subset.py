"""A small interpreter for the subset of C# that Http11Probe writes its test cases in.

Used by `tools.http11probe_replay`, which reads the suite files of an
Http11Probe checkout at run time (nothing of it is kept here). The cases are
object initializers whose payload factories and validators are lambdas:
string and byte expressions, ``if``/``return``, ``is`` patterns, member
access on a response, the connection state and step results, and a few
static helper methods of the suite class. This module parses and evaluates
that subset over Python values; anything outside it raises `Unsupported`,
so that the replay reports the case as not evaluated instead of guessing.

C# semantics kept where a payload depends on them: ``\\x`` escapes take up to
four hex digits, ``Encoding.ASCII.GetBytes`` turns every character above 0x7F
into ``?``, and ``new Random(seed)`` is .NET's seeded generator (the
subtractive one that seeded ``System.Random`` keeps for compatibility).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar


class Unsupported(Exception):
    """A construct this interpreter does not evaluate."""


# -- tokens -------------------------------------------------------------------------------

_TOKEN = re.compile(
    r"""
    (?P<skip>\s+|//[^\n]*|/\*.*?\*/)
  | (?P<string>\$@"|@\$"|\$"|@"|")
  | (?P<char>'(?:\\.|[^\\'])+')
  | (?P<number>0[xX][0-9A-Fa-f_]+|\d[\d_]*(?:\.\d+)?[LlUuMmDdFf]?)
  | (?P<name>[A-Za-z_]\w*)
  | (?P<op>\?\?|\?\.|=>|==|!=|>=|<=|&&|\|\||\+\+|--|\+=|-=|\.\.|[-+*/%<>=!?:.,;()\[\]{}&|^~])
    """,
    re.X | re.S,
)


@dataclass(slots=True)
class Token:
    kind: str  # name, number, string, char, op, end
    text: str
    value: Any = None  # a string's parts: str pieces and hole sources


_SIMPLE_ESCAPES = {
    "r": "\r", "n": "\n", "t": "\t", "0": "\0", "\\": "\\", '"': '"', "'": "'",
    "a": "\a", "b": "\b", "f": "\f", "v": "\v",
}  # fmt: skip


def _escape(text: str, i: int) -> tuple[str, int]:
    """The character of the escape at text[i] (just after the backslash), and where it ends."""
    c = text[i]
    if c in _SIMPLE_ESCAPES:
        return _SIMPLE_ESCAPES[c], i + 1
    if c == "x":  # one to four hex digits, greedily
        m = re.match(r"[0-9A-Fa-f]{1,4}", text[i + 1 :])
        if m is None:
            raise Unsupported("bad \\x escape")
        return chr(int(m.group(), 16)), i + 1 + len(m.group())
    if c in "uU":
        n = 4 if c == "u" else 8
        return chr(int(text[i + 1 : i + 1 + n], 16)), i + 1 + n
    raise Unsupported(f"escape \\{c}")


def _read_string(source: str, start: int, opener: str) -> tuple[Token, int]:
    """A string literal from `start` (after its opener): its parts, and where it ends."""
    interpolated = "$" in opener
    verbatim = "@" in opener
    parts: list[Any] = []
    piece: list[str] = []
    i = start
    while True:
        c = source[i]
        if c == '"':
            if verbatim and source.startswith('""', i):
                piece.append('"')
                i += 2
                continue
            i += 1
            break
        if c == "\\" and not verbatim:
            ch, i = _escape(source, i + 1)
            piece.append(ch)
            continue
        if interpolated and c == "{":
            if source.startswith("{{", i):
                piece.append("{")
                i += 2
                continue
            depth, j = 1, i + 1
            while depth:
                if source[j] == "{":
                    depth += 1
                elif source[j] == "}":
                    depth -= 1
                elif source[j] == '"':
                    j = _read_string(source, j + 1, '"')[1] - 1
                j += 1
            hole = source[i + 1 : j - 1]
            if ":" in hole and "?" not in hole:  # a format: {x:N0}
                raise Unsupported(f"interpolation format in {{{hole}}}")
            parts.append("".join(piece))
            piece = []
            parts.append(Hole(hole))
            i = j
            continue
        if interpolated and source.startswith("}}", i):
            piece.append("}")
            i += 2
            continue
        piece.append(c)
        i += 1
    parts.append("".join(piece))
    return Token("string", source[start - len(opener) : i], parts), i


@dataclass(frozen=True, slots=True)
class Hole:
    source: str


def tokenize(source: str) -> list[Token]:
    tokens: list[Token] = []
    pos = 0
    while pos < len(source):
        m = _TOKEN.match(source, pos)
        if m is None:
            raise Unsupported(f"cannot read {source[pos : pos + 20]!r}")
        kind = m.lastgroup
        assert kind is not None
        if kind == "skip":
            pos = m.end()
        elif kind == "string":
            token, pos = _read_string(source, m.end(), m.group())
            tokens.append(token)
        elif kind == "char":
            body = m.group()[1:-1]
            ch = _escape(body, 1)[0] if body.startswith("\\") else body
            tokens.append(Token("char", m.group(), ch))
            pos = m.end()
        elif kind == "number":
            text = m.group().replace("_", "").rstrip("LlUuMmDdFf")
            value = (
                int(text, 16)
                if text[:2] in ("0x", "0X")
                else (float(text) if "." in text else int(text))
            )
            tokens.append(Token("number", m.group(), value))
            pos = m.end()
        else:
            tokens.append(Token(kind, m.group()))
            pos = m.end()
    tokens.append(Token("end", ""))
    return tokens


# -- parsing: expressions and statements to nested tuples ---------------------------------

_TYPE_NAMES = {"var", "string", "byte", "int", "bool", "char", "long", "double", "object"}


class Parser:
    def __init__(self, source: str) -> None:
        self.tokens = tokenize(source)
        self.pos = 0

    # helpers
    def peek(self, ahead: int = 0) -> Token:
        return self.tokens[min(self.pos + ahead, len(self.tokens) - 1)]

    def at(self, text: str, ahead: int = 0) -> bool:
        token = self.peek(ahead)
        return token.kind in ("op", "name") and token.text == text

    def take(self, text: str | None = None) -> Token:
        token = self.peek()
        if text is not None and not (token.kind in ("op", "name") and token.text == text):
            raise Unsupported(f"expected {text!r}, found {token.text!r}")
        self.pos += 1
        return token

    def accept(self, text: str) -> bool:
        if self.at(text):
            self.pos += 1
            return True
        return False

    # statements
    def block(self) -> tuple[Any, ...]:
        self.take("{")
        body = []
        while not self.accept("}"):
            body.append(self.statement())
        return ("block", body)

    def statement(self) -> tuple[Any, ...]:
        if self.at("{"):
            return self.block()
        if self.at("break") or self.at("continue"):
            word = self.take().text
            self.take(";")
            return (word,)
        if self.accept("return"):
            value = None if self.at(";") else self.expression()
            self.take(";")
            return ("return", value)
        if self.accept("if"):
            self.take("(")
            condition = self.expression()
            self.take(")")
            then = self.statement()
            otherwise = self.statement() if self.accept("else") else None
            return ("if", condition, then, otherwise)
        if self.accept("for"):
            self.take("(")
            init = None if self.at(";") else self.simple_statement()
            self.take(";")
            condition = None if self.at(";") else self.expression()
            self.take(";")
            step = None if self.at(")") else self.simple_statement()
            self.take(")")
            return ("for", init, condition, step, self.statement())
        if self.accept("while"):
            self.take("(")
            condition = self.expression()
            self.take(")")
            return ("for", None, condition, None, self.statement())
        if self.accept("foreach"):
            self.take("(")
            self.take("var")
            names = self.names_in_parentheses() if self.at("(") else [self.take().text]
            self.take("in")
            items = self.expression()
            self.take(")")
            return ("foreach", names, items, self.statement())
        if self.at("switch") or self.at("try"):
            raise Unsupported(self.peek().text)
        statement = self.simple_statement()
        self.take(";")
        return statement

    def _declaration_ahead(self) -> int:
        """How many tokens a type takes before a declared name and '=' (0: not a declaration)."""
        i = 0
        if self.peek().kind != "name":
            return 0
        i = 1
        while self.at(".", i) and self.peek(i + 1).kind == "name":
            i += 2
        if self.at("<", i):  # a generic type
            depth = 0
            while True:
                if self.at("<", i):
                    depth += 1
                elif self.at(">", i):
                    depth -= 1
                    if depth == 0:
                        i += 1
                        break
                elif self.peek(i).kind == "end":
                    return 0
                i += 1
        while self.at("[", i) and self.at("]", i + 1):
            i += 2
        if self.at("?", i):
            i += 1
        if self.peek(i).kind == "name" and (self.at("=", i + 1) or self.at(";", i + 1)):
            return i
        return 0

    def names_in_parentheses(self) -> list[str]:
        self.take("(")
        names = []
        while not self.accept(")"):
            names.append(self.take().text)
            self.accept(",")
        return names

    def simple_statement(self) -> tuple[Any, ...]:
        if self.at("var") and self.at("(", 1):  # var (a, b, _) = ...
            self.take("var")
            names = self.names_in_parentheses()
            self.take("=")
            return ("unpack", names, self.expression())
        self.accept("const")
        skip = self._declaration_ahead()
        if skip:
            self.pos += skip
            name = self.take().text
            value = self.expression() if self.accept("=") else ("literal", None)
            return ("declare", name, value)
        target = self.expression()
        for op in ("=", "+=", "-="):
            if self.accept(op):
                return ("assign", op, target, self.expression())
        if self.accept("++"):
            return ("assign", "+=", target, ("literal", 1))
        if self.accept("--"):
            return ("assign", "-=", target, ("literal", 1))
        return ("expression", target)

    # expressions
    def expression(self) -> tuple[Any, ...]:
        lambda_ = self.maybe_lambda()
        if lambda_ is not None:
            return lambda_
        condition = self.coalesce()
        if self.accept("?"):
            then = self.expression()
            self.take(":")
            return ("if", condition, then, self.expression())
        return condition

    def maybe_lambda(self) -> tuple[Any, ...] | None:
        if self.peek().kind == "name" and self.at("=>", 1):
            params = [self.take().text]
        elif self.at("("):
            i, params = 1, []
            while self.peek(i).kind == "name" and (self.at(",", i + 1) or self.at(")", i + 1)):
                params.append(self.peek(i).text)
                i += 2 if self.at(",", i + 1) else 1
            if not (self.at(")", i) and self.at("=>", i + 1)) or (
                not params and not self.at(")", 1)
            ):
                return None
            self.pos += i + 1
        else:
            return None
        self.take("=>")
        body = self.block() if self.at("{") else ("return", self.expression())
        return ("lambda", params, body)

    def coalesce(self) -> tuple[Any, ...]:
        left = self.binary(0)
        if self.accept("??"):
            return ("coalesce", left, self.coalesce())
        return left

    _LEVELS: ClassVar[list[tuple[str, ...]]] = [
        ("||",),
        ("&&",),
        ("==", "!="),
        ("<", ">", "<=", ">=", "is"),
        ("+", "-"),
        ("*", "/", "%"),
    ]

    def binary(self, level: int) -> tuple[Any, ...]:
        if level == len(self._LEVELS):
            return self.unary()
        left = self.binary(level + 1)
        while True:
            op = next((o for o in self._LEVELS[level] if self.at(o)), None)
            if op is None:
                return left
            self.take()
            if op == "is":
                left = ("is", left, self.pattern())
            else:
                left = ("binary", op, left, self.binary(level + 1))

    def pattern(self) -> tuple[Any, ...]:
        left = self.pattern_and()
        while self.accept("or"):
            left = ("p-or", left, self.pattern_and())
        return left

    def pattern_and(self) -> tuple[Any, ...]:
        left = self.pattern_unary()
        while self.accept("and"):
            left = ("p-and", left, self.pattern_unary())
        return left

    def pattern_unary(self) -> tuple[Any, ...]:
        if self.accept("not"):
            return ("p-not", self.pattern_unary())
        if self.accept("("):
            inner = self.pattern()
            self.take(")")
            return inner
        for op in ("<=", ">=", "<", ">"):
            if self.accept(op):
                return ("p-compare", op, self.binary(4))
        return ("p-equal", self.binary(4))

    def unary(self) -> tuple[Any, ...]:
        if self.accept("!"):
            return ("not", self.unary())
        if self.accept("-"):
            return ("binary", "-", ("literal", 0), self.unary())
        if (
            self.at("(")
            and self.peek(1).text in _TYPE_NAMES
            and self.at(")", 2)
            and self.peek(3).kind in ("name", "number", "char", "string")
        ):  # a cast: (byte)x
            self.pos += 3
            return ("cast", self.peek(-2).text, self.unary())
        return self.postfix(self.primary())

    def postfix(self, node: tuple[Any, ...]) -> tuple[Any, ...]:
        while True:
            if self.accept("."):
                node = ("member", node, self.take().text, False)
            elif self.accept("?."):
                node = ("member", node, self.take().text, True)
            elif self.at("("):
                node = ("call", node, self.arguments())
            elif self.accept("["):
                if self.accept(".."):
                    end = self.expression()
                    self.take("]")
                    node = ("slice", node, None, end)
                    continue
                index = self.expression()
                if self.accept(".."):
                    end = None if self.at("]") else self.expression()
                    self.take("]")
                    node = ("slice", node, index, end)
                    continue
                self.take("]")
                node = ("index", node, index)
            elif self.at("!") and (self.at(".", 1) or self.at(")", 1) or self.at(";", 1)):
                self.take()  # null-forgiving
            else:
                return node

    def arguments(self) -> list[tuple[Any, ...]]:
        self.take("(")
        args = []
        while not self.accept(")"):
            if self.accept("out"):
                if self._declaration_ahead() or self.at("var"):
                    self.pos += self._declaration_ahead() or 1
                args.append(("out", self.take().text))
            else:
                args.append(self.expression())
            self.accept(",")
        return args

    def primary(self) -> tuple[Any, ...]:
        token = self.take()
        if token.kind == "number" or token.kind == "char":
            return ("literal", token.value)
        if token.kind == "string":
            return ("string", [p if isinstance(p, str) else parse(p.source) for p in token.value])
        if token.kind == "name":
            if token.text in ("true", "false"):
                return ("literal", token.text == "true")
            if token.text == "null":
                return ("literal", None)
            if token.text == "new":
                return self.new()
            return ("name", token.text)
        if token.text == "(":
            inner = self.expression()
            if self.at(","):  # a tuple
                items = [inner]
                while self.accept(","):
                    items.append(self.expression())
                self.take(")")
                return ("tuple", items)
            self.take(")")
            return inner
        if token.text == "[":  # a collection expression
            items = []
            while not self.accept("]"):
                items.append(self.expression())
                self.accept(",")
            return ("collection", items)
        raise Unsupported(f"unexpected {token.text!r}")

    def new(self) -> tuple[Any, ...]:
        type_name = ""
        while self.peek().kind == "name":
            type_name += self.take().text
            if not self.accept("."):
                break
            type_name += "."
        if self.at("<"):
            depth = 0
            while True:
                token = self.take()
                depth += token.text == "<"
                depth -= token.text == ">"
                if depth == 0:
                    break
        if self.accept("["):
            if self.accept("]"):
                items = self.initializer_items()
                return ("collection", items)
            size = self.expression()
            self.take("]")
            return ("new-array", type_name, size)
        args = self.arguments() if self.at("(") else []
        props: dict[str, tuple[Any, ...]] = {}
        items: list[tuple[Any, ...]] = []
        if self.at("{"):
            self.take("{")
            while not self.accept("}"):
                if self.peek().kind == "name" and self.at("=", 1):
                    name = self.take().text
                    self.take("=")
                    props[name] = self.expression()
                else:
                    items.append(self.expression())
                self.accept(",")
        return ("new", type_name, args, props, items)

    def initializer_items(self) -> list[tuple[Any, ...]]:
        self.take("{")
        items = []
        while not self.accept("}"):
            items.append(self.expression())
            self.accept(",")
        return items


def parse(source: str) -> tuple[Any, ...]:
    parser = Parser(source)
    node = parser.expression()
    if parser.peek().kind != "end":
        raise Unsupported(f"trailing {parser.peek().text!r}")
    return node


# -- values ---------------------------------------------------------------------------------


class Box:
    """Where an ``out`` argument's value is put."""

    value: Any = None


class Break(Exception):
    pass


class Continue(Exception):
    pass


class Return(Exception):
    def __init__(self, value: Any) -> None:
        self.value = value


@dataclass
class Obj:
    """An object made with ``new T { ... }``: its type's name and its properties."""

    type: str
    props: dict[str, Any] = field(default_factory=dict)
    items: list[Any] = field(default_factory=list)


class StringBuilder:
    def __init__(self) -> None:
        self.parts: list[str] = []

    def Append(self, value: Any) -> StringBuilder:
        self.parts.append(to_text(value))
        return self

    def AppendLine(self, value: Any = "") -> StringBuilder:
        self.parts.append(to_text(value) + "\r\n")
        return self

    def ToString(self) -> str:
        return "".join(self.parts)


class DotNetRandom:
    """``new System.Random(seed)``: the subtractive generator seeded Randoms keep."""

    def __init__(self, seed: int) -> None:
        big, mseed = 2147483647, 161803398
        state = [0] * 56
        mj = mseed - (2147483647 if seed == -(2**31) else abs(seed))
        state[55] = mj
        mk, ii = 1, 0
        for _ in range(1, 55):
            ii = (ii + 21) % 55
            state[ii] = mk
            mk = mj - mk
            if mk < 0:
                mk += big
            mj = state[ii]
        for _ in range(4):
            for i in range(1, 56):
                n = i + 30
                if n >= 55:
                    n -= 55
                state[i] -= state[1 + n]
                if state[i] < 0:
                    state[i] += big
        self._state, self._next, self._nextp = state, 0, 21

    def _sample(self) -> int:
        nxt = self._next + 1 if self._next + 1 < 56 else 1
        nxtp = self._nextp + 1 if self._nextp + 1 < 56 else 1
        value = self._state[nxt] - self._state[nxtp]
        if value == 2147483647:
            value -= 1
        if value < 0:
            value += 2147483647
        self._state[nxt] = value
        self._next, self._nextp = nxt, nxtp
        return value

    def NextBytes(self, buffer: bytearray) -> None:
        for i in range(len(buffer)):
            buffer[i] = self._sample() & 0xFF


def ascii_bytes(text: str) -> bytes:
    """``Encoding.ASCII.GetBytes``: a character above 0x7F becomes ``?``."""
    return text.encode("ascii", "replace")


def to_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "True" if value else "False"
    return str(value)


# -- evaluation ---------------------------------------------------------------------------


class Env:
    def __init__(self, values: dict[str, Any], parent: Env | None = None) -> None:
        self.values = values
        self.parent = parent

    def find(self, name: str) -> Env | None:
        env: Env | None = self
        while env is not None:
            if name in env.values:
                return env
            env = env.parent
        return None

    def get(self, name: str) -> Any:
        env = self.find(name)
        if env is None:
            raise Unsupported(f"unknown name {name}")
        return env.values[name]

    def set(self, name: str, value: Any) -> None:
        env = self.find(name)
        (env or self).values[name] = value


@dataclass
class Lambda:
    params: list[str]
    body: tuple[Any, ...]
    env: Env

    def __call__(self, *args: Any) -> Any:
        return run_body(self.body, Env(dict(zip(self.params, args, strict=True)), self.env))


def run_body(body: tuple[Any, ...], env: Env) -> Any:
    try:
        execute(body, env)
    except Return as done:
        return done.value
    return None


def execute(node: tuple[Any, ...], env: Env) -> None:
    kind = node[0]
    if kind == "block":
        inner = Env({}, env)
        for statement in node[1]:
            execute(statement, inner)
    elif kind == "return":
        raise Return(None if node[1] is None else evaluate(node[1], env))
    elif kind == "break":
        raise Break
    elif kind == "continue":
        raise Continue
    elif kind == "if":
        if truthy(evaluate(node[1], env)):
            execute(node[2], env)
        elif node[3] is not None:
            execute(node[3], env)
    elif kind == "for":
        loop = Env({}, env)
        if node[1] is not None:
            execute(node[1], loop)
        guard = 0
        while node[2] is None or truthy(evaluate(node[2], loop)):
            try:
                execute(node[4], loop)
            except Continue:
                pass
            except Break:
                break
            if node[3] is not None:
                execute(node[3], loop)
            guard += 1
            if guard > 10_000_000:
                raise Unsupported("a loop that does not end")
    elif kind == "declare":
        env.values[node[1]] = evaluate(node[2], env)
    elif kind == "unpack":
        for name, value in zip(node[1], evaluate(node[2], env), strict=True):
            env.values[name] = value
    elif kind == "foreach":
        items = evaluate(node[2], env)
        for item in items.items() if isinstance(items, dict) else items:
            loop = Env({}, env)
            if len(node[1]) == 1:
                loop.values[node[1][0]] = item
            else:
                for name, value in zip(node[1], item, strict=True):
                    loop.values[name] = value
            try:
                execute(node[3], loop)
            except Continue:
                continue
            except Break:
                break
    elif kind == "assign":
        _, op, target, value_node = node
        value = evaluate(value_node, env)
        if op != "=":
            current = evaluate(target, env)
            value = binary("+" if op == "+=" else "-", current, value)
        if target[0] == "index":
            evaluate(target[1], env)[evaluate(target[2], env)] = value
        elif target[0] == "name":
            env.set(target[1], value)
        else:
            raise Unsupported("assignment to a member")
    elif kind == "expression":
        evaluate(node[1], env)
    else:
        raise Unsupported(f"statement {kind}")


def truthy(value: Any) -> bool:
    if not isinstance(value, bool):
        raise Unsupported(f"a condition of {type(value).__name__}")
    return value


def binary(op: str, left: Any, right: Any) -> Any:
    if op == "+":
        if isinstance(left, str) or isinstance(right, str):
            return to_text(left) + to_text(right)
        return left + right
    if op == "-":
        return left - right
    if op == "*":
        return left * right
    if op == "/":
        return left // right if isinstance(left, int) and isinstance(right, int) else left / right
    if op == "%":
        return left % right
    if op == "==":
        return left == right
    if op == "!=":
        return left != right
    if left is None or right is None:
        return False  # a lifted comparison with null
    if op == "<":
        return left < right
    if op == ">":
        return left > right
    if op == "<=":
        return left <= right
    if op == ">=":
        return left >= right
    raise Unsupported(f"operator {op}")


def matches(value: Any, pattern: tuple[Any, ...], env: Env) -> bool:
    kind = pattern[0]
    if kind == "p-or":
        return matches(value, pattern[1], env) or matches(value, pattern[2], env)
    if kind == "p-and":
        return matches(value, pattern[1], env) and matches(value, pattern[2], env)
    if kind == "p-not":
        return not matches(value, pattern[1], env)
    if kind == "p-compare":
        return value is not None and bool(binary(pattern[1], value, evaluate(pattern[2], env)))
    return value == evaluate(pattern[1], env)


def evaluate(node: tuple[Any, ...], env: Env) -> Any:
    kind = node[0]
    if kind == "literal":
        return node[1]
    if kind == "string":
        return "".join(p if isinstance(p, str) else to_text(evaluate(p, env)) for p in node[1])
    if kind == "name":
        return env.get(node[1])
    if kind == "lambda":
        return Lambda(node[1], node[2], env)
    if kind == "if":
        return evaluate(node[2] if truthy(evaluate(node[1], env)) else node[3], env)
    if kind == "coalesce":
        left = evaluate(node[1], env)
        return evaluate(node[2], env) if left is None else left
    if kind == "not":
        return not truthy(evaluate(node[1], env))
    if kind == "binary":
        op = node[1]
        if op == "&&":
            return truthy(evaluate(node[2], env)) and truthy(evaluate(node[3], env))
        if op == "||":
            return truthy(evaluate(node[2], env)) or truthy(evaluate(node[3], env))
        return binary(op, evaluate(node[2], env), evaluate(node[3], env))
    if kind == "is":
        return matches(evaluate(node[1], env), node[2], env)
    if kind == "cast":
        value = evaluate(node[2], env)
        if node[1] == "byte":
            return value & 0xFF
        if node[1] == "char":
            return chr(value)
        if node[1] == "int":
            return ord(value) if isinstance(value, str) else int(value)
        return value
    if kind == "member":
        target = evaluate(node[1], env)
        if target is None and node[3]:
            return None
        return member(target, node[2])
    if kind == "tuple":
        return tuple(evaluate(i, env) for i in node[1])
    if kind == "call":
        boxes = {i: Box() for i, a in enumerate(node[2]) if a[0] == "out"}
        args = [boxes[i] if i in boxes else evaluate(a, env) for i, a in enumerate(node[2])]
        result = call(node[1], args, env)
        for i, box in boxes.items():
            env.values[node[2][i][1]] = box.value
        return result
    if kind == "index":
        target = evaluate(node[1], env)
        index = evaluate(node[2], env)
        return target[index]
    if kind == "slice":
        target = evaluate(node[1], env)
        start = 0 if node[2] is None else evaluate(node[2], env)
        end = None if node[3] is None else evaluate(node[3], env)
        return target[start:end]
    if kind == "collection":
        items = [evaluate(i, env) for i in node[1]]
        if all(isinstance(i, int) and not isinstance(i, bool) for i in items):
            return bytearray(items)
        return items
    if kind == "new-array":
        size = evaluate(node[2], env)
        if node[1] == "byte":
            return bytearray(size)
        return [None] * size
    if kind == "new":
        return new(node, env)
    raise Unsupported(f"expression {kind}")


def new(node: tuple[Any, ...], env: Env) -> Any:
    _, type_name, arg_nodes, props, items = node
    args = [evaluate(a, env) for a in arg_nodes]
    if type_name == "string":
        char, count = args
        return char * count
    if type_name == "StringBuilder":
        builder = StringBuilder()
        if args:
            builder.Append(args[0])
        return builder
    if type_name == "Random":
        return DotNetRandom(args[0])
    if type_name == "Dictionary":
        return Dictionary()
    if type_name == "List":
        return CsList()
    if args:
        raise Unsupported(f"new {type_name}(...)")
    return Obj(
        type_name,
        {name: evaluate(value, env) for name, value in props.items()},
        [evaluate(i, env) for i in items],
    )


class Dictionary(dict[Any, Any]):
    def TryGetValue(self, key: Any, box: Box) -> bool:
        box.value = self.get(key)
        return key in self

    def ContainsKey(self, key: Any) -> bool:
        return key in self


class CsList(list[Any]):
    def Add(self, item: Any) -> None:
        self.append(item)

    def Any(self, test: Callable[[Any], bool] | None = None) -> bool:
        return any(test(i) for i in self) if test is not None else bool(self)


class Headers(dict[str, str]):
    """A response's headers, as the probe's parser keeps them: names without case."""

    def ContainsKey(self, name: str) -> bool:
        return name.lower() in self

    def TryGetValue(self, name: str, box: Box) -> bool:
        box.value = self.get(name.lower())
        return name.lower() in self

    def __getitem__(self, name: str) -> str:
        return super().__getitem__(name.lower())


def _folded(s: str, x: str, rest: tuple[Any, ...]) -> tuple[str, str]:
    """Both strings lower-cased when a ``StringComparison.*IgnoreCase`` is among `rest`."""
    if any(isinstance(r, str) and r.endswith("IgnoreCase") for r in rest):
        return s.lower(), x.lower()
    return s, x


def _index_of(s: str, x: str, *rest: Any) -> int:
    start = next((r for r in rest if isinstance(r, int) and not isinstance(r, bool)), 0)
    s, x = _folded(s, x, rest)
    return s.find(x, start)


def _split(s: str, *rest: Any) -> list[str]:
    separators = [r for r in rest if isinstance(r, str) and len(r) == 1]
    parts = re.split("|".join(re.escape(c) for c in separators), s) if separators else s.split()
    if "RemoveEmptyEntries" in rest:
        parts = [p for p in parts if p]
    return CsList(parts)


_STRING_METHODS: dict[str, Callable[..., Any]] = {
    "Contains": lambda s, x, *rest: _folded(s, x, rest)[1] in _folded(s, x, rest)[0],
    "StartsWith": lambda s, x, *rest: _folded(s, x, rest)[0].startswith(_folded(s, x, rest)[1]),
    "EndsWith": lambda s, x, *rest: _folded(s, x, rest)[0].endswith(_folded(s, x, rest)[1]),
    "Equals": lambda s, x, *rest: (
        x is not None and _folded(s, x, rest)[0] == _folded(s, x, rest)[1]
    ),
    "IndexOf": _index_of,
    "Split": _split,
    "Trim": lambda s, *chars: s.strip("".join(chars)) if chars else s.strip(),
    "TrimEnd": lambda s, *chars: s.rstrip("".join(chars)) if chars else s.rstrip(),
    "TrimStart": lambda s, *chars: s.lstrip("".join(chars)) if chars else s.lstrip(),
    "ToLowerInvariant": lambda s: s.lower(),
    "ToUpperInvariant": lambda s: s.upper(),
    "ToLower": lambda s: s.lower(),
    "Substring": lambda s, a, n=None: s[a:] if n is None else s[a : a + n],
    "Replace": lambda s, a, b: s.replace(a, b),
    "ToString": lambda s: s,
}


def member(target: Any, name: str) -> Any:
    if isinstance(target, Obj):
        if name in target.props:
            return target.props[name]
        raise Unsupported(f"{target.type}.{name}")
    if isinstance(target, StaticType):
        return target.member(name)
    if name == "Length" and isinstance(target, (str, bytes, bytearray, list)):
        return len(target)
    if name == "Count" and isinstance(target, (list, dict)):
        return len(target)
    if isinstance(target, str) and name in _STRING_METHODS:
        return BoundMethod(_STRING_METHODS[name], target)
    if isinstance(target, int) and name == "ToString":
        return BoundMethod(lambda n, *_: str(n), target)
    if isinstance(target, (bytes, bytearray)) and name == "CopyTo":
        return BoundMethod(_copy_to, target)
    missing = object()
    attribute = getattr(target, name, missing)
    if attribute is missing or name.startswith("_"):
        raise Unsupported(f"{type(target).__name__}.{name}")
    return attribute


def _copy_to(source: bytes, destination: bytearray, offset: int) -> None:
    destination[offset : offset + len(source)] = source


@dataclass
class BoundMethod:
    function: Callable[..., Any]
    target: Any

    def __call__(self, *args: Any) -> Any:
        return self.function(self.target, *args)


class StaticType:
    """A type's static members: ``Encoding.ASCII``, ``TimeSpan.FromMilliseconds``, enums."""

    def __init__(self, name: str, members: dict[str, Any] | None = None) -> None:
        self.name = name
        self.members = members

    def member(self, name: str) -> Any:
        if self.members is None:  # an enum: its members are their names
            return name
        if name not in self.members:
            raise Unsupported(f"{self.name}.{name}")
        return self.members[name]


def call(function_node: tuple[Any, ...], args: list[Any], env: Env) -> Any:
    function = evaluate(function_node, env)
    if not callable(function):
        raise Unsupported(f"calling {function_node}")
    return function(*args)


@dataclass
class Method:
    """A static method of the suite class, called by name."""

    name: str
    params: list[str]
    body: tuple[Any, ...]
    env: Env

    def __call__(self, *args: Any) -> Any:
        if len(args) != len(self.params):
            raise Unsupported(f"{self.name} with {len(args)} arguments")
        return run_body(self.body, Env(dict(zip(self.params, args, strict=True)), self.env))


def _try_parse_int(text: str, *rest: Any) -> bool:
    """``int.TryParse(s, [NumberStyles.HexNumber, null,] out var n)``."""
    box = rest[-1]
    hexadecimal = "HexNumber" in rest
    try:
        box.value = int(text.strip(), 16 if hexadecimal else 10)
        if not hexadecimal and not re.fullmatch(r"\s*[+-]?\d+\s*", text):
            raise ValueError(text)
    except ValueError:
        box.value = 0
        return False
    return -(2**31) <= box.value < 2**31


def globals_env() -> Env:
    """The names a suite's code reads from .NET: types, enums, helpers."""
    return Env(
        {
            "Encoding": StaticType(
                "Encoding",
                {
                    "ASCII": StaticType(
                        "ASCII",
                        {"GetBytes": ascii_bytes, "GetByteCount": lambda s: len(s)},
                    )
                },
            ),
            "int": StaticType("int", {"TryParse": _try_parse_int}),
            "System": StaticType(
                "System",
                {
                    "Globalization": StaticType(
                        "Globalization", {"NumberStyles": StaticType("NumberStyles")}
                    )
                },
            ),
            "NumberStyles": StaticType("NumberStyles"),
            "StringSplitOptions": StaticType("StringSplitOptions"),
            "TimeSpan": StaticType(
                "TimeSpan",
                {
                    "FromMilliseconds": lambda ms: ms / 1000,
                    "FromSeconds": lambda s: float(s),
                    "Zero": 0.0,
                },
            ),
            "string": StaticType(
                "string",
                {
                    "IsNullOrEmpty": lambda s: not s,
                    "IsNullOrWhiteSpace": lambda s: not s or not s.strip(),
                    "Empty": "",
                    "Concat": lambda *parts: "".join(to_text(p) for p in parts),
                },
            ),
            "Math": StaticType("Math", {"Min": min, "Max": max}),
            "ConnectionState": StaticType("ConnectionState"),
            "TestVerdict": StaticType("TestVerdict"),
            "TestCategory": StaticType("TestCategory"),
            "RfcLevel": StaticType("RfcLevel"),
            "StringComparison": StaticType("StringComparison"),
            "StatusCodeRange": StaticType(
                "StatusCodeRange",
                {
                    "Exact": lambda code: (code, code),
                    "Range": lambda a, b: (a, b),
                    "Range2xx": (200, 299),
                    "Range4xx": (400, 499),
                    "Range4xxOr5xx": (400, 599),
                },
            ),
        }
    )


def extent(source: str, start: int, *, block: bool) -> int:
    """Where the code from `start` ends: after its closing brace (`block`), or at the
    ``;`` that ends it at depth 0. Strings, characters and comments are skipped."""
    depth, i = 0, start
    while i < len(source):
        c = source[i]
        if source.startswith("//", i):
            i = source.index("\n", i)
            continue
        if c == '"' or (c in "$@" and source[i + 1 : i + 2] in ('"', "@", "$")):
            opener = re.match(r'\$@"|@\$"|\$"|@"|"', source[i:])
            if opener is None:
                i += 1
                continue
            i = _read_string(source, i + opener.end(), opener.group())[1]
            continue
        if c == "'":
            m = re.match(r"'(?:\\.|[^\\'])+'", source[i:])
            i += m.end() if m else 1
            continue
        if c in "({[":
            depth += 1
        elif c in ")}]":
            depth -= 1
            if block and depth == 0:
                return i + 1
        elif c == ";" and depth == 0 and not block:
            return i
        i += 1
    return i


_METHOD = re.compile(
    r"(?:private|public|internal)\s+static\s+(?!IEnumerable)[\w<>\[\]?,() ]+?"
    r"\s+(\w+)\s*\(([^)]*)\)\s*(=>|\{)"
)


def load_class(source: str) -> Env:
    """The static helper methods of a suite file, callable by name, over `globals_env`."""
    env = Env({}, globals_env())
    for m in _METHOD.finditer(source):
        name, params_text, opener = m.group(1), m.group(2), m.group(3)
        params = [p.split()[-1] for p in params_text.split(",") if p.strip()]
        start = m.end() - (1 if opener == "{" else 0)
        try:
            parser = Parser(source[start : extent(source, start, block=opener == "{")])
            if opener == "=>":
                body: tuple[Any, ...] = ("return", parser.expression())
            else:
                body = parser.block()
        except Unsupported:
            continue  # a helper we cannot read: a case that calls it is reported so
        except Exception:
            continue
        env.values[name] = Method(name, params, body, env)
    return env
