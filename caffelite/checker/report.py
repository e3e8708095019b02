"""Diagnostics and their report: where each finding was written, and the text or JSON that shows it.

A :class:`Diagnostic` prints as ``file:line:col: severity: [code] message`` (plus an indented
hint); :class:`CheckResult` holds one check's diagnostics and inferred shapes.  :class:`Reporter`
collects diagnostics while a check runs, locating each in the prototxt through
:mod:`caffelite.textloc`, and merges the same finding seen in several phases into one.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

from caffelite.checker.codes import CODES, ERROR, NOTE, WARNING
from caffelite.suggest import FORK_FIELDS, did_you_mean
from caffelite.textloc import Field, Message, find, parse_locations

__all__ = ["Diagnostic", "CheckResult", "Reporter", "did_you_mean", "error_text", "error_field", "inline_ignores"]


@dataclass
class Diagnostic:
    """One finding: ``file:line:col: severity: [code] message`` (plus an optional indented hint)."""

    code: str
    message: str
    file: str
    line: int | None = None
    column: int | None = None
    severity: str = ""
    layer: str | None = None
    hint: str | None = None
    phases: list[str] = field(default_factory=list)

    def __post_init__(self):
        if not self.severity:
            self.severity = CODES[self.code][0]

    def format(self) -> str:
        where = self.file
        if self.line:
            where += ":%d:%d" % (self.line, self.column or 1)
        text = "%s: %s: [%s] %s" % (where, self.severity, self.code, self.message)
        if self.phases:
            text += " (in %s)" % ", ".join(self.phases)
        if self.hint:
            text += "".join("\n    " + ln for ln in self.hint.splitlines())
        return text

    def to_dict(self) -> dict:
        return {"file": self.file, "line": self.line, "column": self.column, "severity": self.severity,
                "code": self.code, "message": self.message, "layer": self.layer, "hint": self.hint,
                "phases": self.phases}


@dataclass
class CheckResult:
    """Diagnostics of one check, and the blob shapes inferred per phase (None: unknown)."""

    file: str
    diagnostics: list[Diagnostic] = field(default_factory=list)
    shapes: dict[str, dict[str, list[int] | None]] = field(default_factory=dict)
    unreadable: bool = False

    @property
    def errors(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.severity == ERROR]

    @property
    def exit_status(self) -> int:
        """0 without errors, 1 with errors, 2 when the file cannot be read."""
        return 2 if self.unreadable else (1 if self.errors else 0)

    def codes(self) -> list[str]:
        return [d.code for d in self.diagnostics]

    def format_text(self) -> str:
        lines = [d.format() for d in self.diagnostics]
        counts = {s: sum(d.severity == s for d in self.diagnostics) for s in (ERROR, WARNING, NOTE)}
        lines.append("%s: %d error(s), %d warning(s), %d note(s)" % (self.file, counts[ERROR], counts[WARNING],
                                                                     counts[NOTE]))
        return "\n".join(lines)

    def to_json(self) -> str:
        return json.dumps({"file": self.file, "exit_status": self.exit_status,
                           "diagnostics": [d.to_dict() for d in self.diagnostics],
                           "shapes": self.shapes}, indent=2)


_IGNORE = re.compile(r"#\s*caffelite:\s*ignore\[([\w\s,-]+)\]")


def inline_ignores(text: str) -> dict[int, set[str]]:
    """Line -> codes silenced there by ``# caffelite: ignore[CODE, ...]``.

    The comment silences the codes on its own line; written alone on a line, on the next line too.
    On a layer's first line it silences them for the whole layer.
    """
    out: dict[int, set[str]] = {}
    pending: set[str] = set()
    for number, line in enumerate(text.splitlines(), 1):
        codes = set()
        for m in _IGNORE.finditer(line):
            codes |= {c.strip() for c in m.group(1).split(",") if c.strip()}
        code_part = line.split("#", 1)[0].strip()
        if pending and code_part:
            out.setdefault(number, set()).update(pending)
            pending = set()
        if codes:
            out.setdefault(number, set()).update(codes)
            if not code_part:
                pending |= codes
    return out


def error_text(e: Exception) -> str:
    """A caffelite error's message without the file/layer context (the diagnostic carries that)."""
    return getattr(e, "message", None) or str(e)


def error_field(e: Exception) -> str | None:
    """The field a caffelite error names, if any."""
    return getattr(e, "field", None)


class Reporter:
    """Diagnostics of one prototxt ``text`` read from ``source``, each at the place it was written."""

    def __init__(self, source: str, text: str):
        self.source = source
        self.text = text
        self.tree = parse_locations(text)
        self.diags: dict[tuple, Diagnostic] = {}
        self.phase_name = ""  # the NetState being checked; a diagnostic lists those it occurs in
        self.all_phases: list[str] = []
        self.layer_nodes: list[Field | None] = []

    def report(self, code: str, message: str, where: Field | None = None, layer: str | None = None,
               hint: str | None = None, severity: str = "") -> None:
        line, col = (where.line, where.column) if where is not None else (None, None)
        key = (code, line, col, message)
        d = self.diags.get(key)
        if d is None:
            d = self.diags[key] = Diagnostic(code, message, self.source, line, col, severity, layer, hint)
        if self.phase_name and self.phase_name not in d.phases:
            d.phases.append(self.phase_name)

    def at(self, k: int, path: str | None = None) -> Field | None:
        """The written place of layer ``k``'s field ``path`` (dotted, indexed); its layer when absent."""
        node = self.layer_nodes[k] if k < len(self.layer_nodes) else None
        if node is None or not path or node.message is None:
            return node
        hit = find(node.message, path)
        if hit is None:  # search any sub-message for the last component (e.g. 'axis')
            last = path.split(".")[-1].split("[")[0]
            hit = _search(node.message, last)
        return hit or node

    # --- parsing -----------------------------------------------------------------------
    def check_fields(self, msg: Message, descriptor, prefix: str = "") -> None:
        """Report fields that descriptor (BVLC's schema) does not have; recurse into sub-messages."""
        for f in msg.fields:
            if f.name.startswith("[") or "." in f.name or "/" in f.name:
                continue
            fd = descriptor.fields_by_name.get(f.name)
            if fd is None:
                hint = FORK_FIELDS.get(f.name)
                msg_text = "%s has no field named '%s'" % (descriptor.name, f.name)
                if hint is None:
                    msg_text += "." + did_you_mean(f.name, descriptor.fields_by_name)
                    hint = "Fields BVLC Caffe does not know come from a Caffe fork, or a typo."
                self.report("unknown-field", msg_text, f, hint=hint)
            elif fd.message_type is not None and f.message is not None:
                self.check_fields(f.message, fd.message_type, prefix + f.name + ".")

    def map_layers(self, param) -> None:
        """Pair each (upgraded) layer with the place it was written: by unique name, else by order."""
        entries = self.tree.all("layer") or self.tree.all("layers")
        by_name: dict[str, list[Field]] = {}
        for e in entries:
            name = e.get("name") or e.get("layer") and e.get("layer").get("name")  # V0 nests `layer`
            if name is not None and name.value is not None:
                by_name.setdefault(name.value, []).append(e)
        nodes = []
        for k, lp in enumerate(param.layer):
            same = by_name.get(lp.name, [])
            if len(same) == 1:
                nodes.append(same[0])
            elif len(entries) == len(param.layer):
                nodes.append(entries[k])
            else:
                nodes.append(same[0] if same else None)
        self.layer_nodes = nodes

    def finish(self) -> list[Diagnostic]:
        """Sorted diagnostics but those silenced inline; phases kept only for those not seen in every state."""
        everywhere = set(self.all_phases)
        for d in self.diags.values():
            if everywhere and set(d.phases) >= everywhere:
                d.phases = []
        ignored = inline_ignores(self.text)
        layer_lines = {}
        for node in self.layer_nodes:
            name = node.get("name") if node is not None else None
            if name is not None and name.value is not None:
                layer_lines.setdefault(name.value, node.line)
        kept = [d for d in self.diags.values()
                if d.code not in ignored.get(d.line, ()) and d.code not in ignored.get(layer_lines.get(d.layer), ())]
        return sorted(kept, key=lambda d: (d.file, d.line or 0, d.column or 0, d.code))


def _search(msg: Message, name: str) -> Field | None:
    for f in msg.fields:
        if f.name == name:
            return f
    for f in msg.fields:
        if f.message is not None:
            hit = _search(f.message, name)
            if hit is not None:
                return hit
    return None
