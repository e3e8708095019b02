"""Where each field of a prototxt sits: a light tokenizer for protobuf's text format.

protobuf's Python ``text_format`` parser keeps no source positions, so the checker reads the
text a second time with this tokenizer and builds a tree of :class:`Field` entries, each with
the 1-based line and column of its name.  The tree mirrors the message the real parser builds:
``tree.get("layer", 3).get("loss_param").get("normalize")`` is where the fourth layer's
``loss_param { normalize: ... }`` was written.  The tokenizer never raises: on text it cannot
follow it stops, and the real parser reports the syntax error.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

_TOKEN = re.compile(r"""
    (?P<ws>[ \t\r\f\v]+) | (?P<nl>\n) | (?P<comment>\#[^\n]*)
  | (?P<string>"(?:[^"\\\n]|\\.)*"?|'(?:[^'\\\n]|\\.)*'?)
  | (?P<word>[-+]?[A-Za-z0-9_.][A-Za-z0-9_.+-]*)
  | (?P<punct>[{}<>\[\]:,;/])
  | (?P<other>.)
""", re.VERBOSE)


@dataclass
class Field:
    """One written field: its name, place, and either a scalar's text or a sub-message."""

    name: str
    line: int
    column: int
    value: str | None = None
    message: Message | None = None
    value_line: int = 0
    value_column: int = 0

    def get(self, name: str, index: int = 0) -> Field | None:
        return self.message.get(name, index) if self.message is not None else None

    def all(self, name: str) -> list[Field]:
        return self.message.all(name) if self.message is not None else []


@dataclass
class Message:
    """The fields written inside one ``{ ... }`` (or at the top of the file), in order."""

    fields: list[Field] = field(default_factory=list)

    def all(self, name: str) -> list[Field]:
        return [f for f in self.fields if f.name == name]

    def get(self, name: str, index: int = 0) -> Field | None:
        found = self.all(name)
        return found[index] if 0 <= index < len(found) else None


def _tokens(text: str):
    line, line_start = 1, 0
    for m in _TOKEN.finditer(text):
        kind = m.lastgroup
        if kind == "nl":
            line, line_start = line + 1, m.end()
            continue
        if kind in ("ws", "comment"):
            continue
        yield kind, m.group(), line, m.start() - line_start + 1


def parse_locations(text: str) -> Message:
    """The tree of written fields of a text-format message (best effort, never raises)."""
    root, _ = _parse_message(list(_tokens(text)), 0)
    return root


def _parse_message(tokens, i: int) -> tuple[Message, int]:
    """Fields from ``tokens[i]`` up to the matching close bracket (or the end); returns the index after."""
    msg = Message()
    n = len(tokens)
    while i < n:
        kind, tok, line, col = tokens[i]
        if tok in ("}", ">"):
            return msg, i + 1
        if kind != "word" and tok != "[":
            i += 1  # separators, and anything the real parser will complain about
            continue
        name = tok
        if tok == "[":  # [extension.name] or [type.googleapis.com/x]
            j = i + 1
            while j < n and tokens[j][1] != "]":
                j += 1
            name, i = "".join(t[1] for t in tokens[i + 1:j]), j
        entry = Field(name, line, col)
        msg.fields.append(entry)
        i += 1
        if i < n and tokens[i][1] == ":":
            i += 1
        if i >= n:
            break
        if tokens[i][1] == "[":  # list syntax: one entry per element, all named like the field
            i += 1
            item = entry
            while i < n and tokens[i][1] != "]":
                if tokens[i][1] == ",":
                    i += 1
                    continue
                if item is None:
                    item = Field(name, tokens[i][2], tokens[i][3])
                    msg.fields.append(item)
                i = _parse_value(tokens, i, item)
                item = None
            i += 1
        else:
            i = _parse_value(tokens, i, entry)
    return msg, i


def _parse_value(tokens, i: int, entry: Field) -> int:
    entry.value_line, entry.value_column = tokens[i][2], tokens[i][3]
    if tokens[i][1] in ("{", "<"):
        entry.message, i = _parse_message(tokens, i + 1)
        return i
    entry.value = _scalar(tokens, i)
    return _after_scalar(tokens, i)


def _scalar(tokens, i) -> str:
    kind, tok = tokens[i][0], tokens[i][1]
    if kind != "string":
        return tok
    parts = []
    while i < len(tokens) and tokens[i][0] == "string":  # adjacent strings concatenate
        parts.append(tokens[i][1][1:-1])
        i += 1
    return "".join(parts)


def _after_scalar(tokens, i) -> int:
    if tokens[i][0] == "string":
        while i < len(tokens) and tokens[i][0] == "string":
            i += 1
        return i
    return i + 1


def find(root: Message, path: str) -> Field | None:
    """The field at a dotted path with optional indices, e.g. ``layer[2].loss_param.normalize``.

    Returns the deepest field found along the path (so a missing leaf points at its parent),
    or None when even the first step is missing.
    """
    node: Message | None = root
    found = None
    for step in path.split("."):
        m = re.fullmatch(r"([^\[\]]+)(?:\[(\d+)\])?", step)
        if node is None or m is None:
            break
        entry = node.get(m.group(1), int(m.group(2) or 0))
        if entry is None:
            break
        found, node = entry, entry.message
    return found
