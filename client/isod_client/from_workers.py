"""What isod's workers send, as pytest's own objects: reports and warnings."""

from __future__ import annotations

import json
import sys
import warnings

from _pytest._code.code import TerminalRepr
from isod.contract import TEXT_LONGREPR
from isod.v1 import isod_pb2 as pb


def _report_data(raw: bytes) -> dict:
    """A serialized report for pytest_report_from_serializable: JSON has no
    tuples, and pytest makes the skip longrepr, location, sections and user
    properties tuples."""
    data = json.loads(raw)
    for key in ("longrepr", "location"):
        if isinstance(data.get(key), list):
            data[key] = tuple(data[key])
    data["sections"] = [tuple(s) for s in data.get("sections", ())]
    if isinstance(data.get("user_properties"), list):
        data["user_properties"] = [tuple(p) if isinstance(p, list) else p for p in data["user_properties"]]
    return data


def read_report(config, raw: bytes):
    """A report a worker serialized (wire.report_dict), as pytest made it; None
    when no plugin knows its type. A failure text that was a TerminalRepr
    without a crash line stays one: no message in the short summary."""
    data = _report_data(raw)
    report = config.hook.pytest_report_from_serializable(config=config, data=data)
    if report is None:
        return None
    if data.get(TEXT_LONGREPR) and isinstance(report.longrepr, str):
        report.longrepr = TextRepr(report.longrepr, red=type(report).__name__ == "CollectReport")
    report.__dict__.pop(TEXT_LONGREPR, None)
    return report


class TextRepr(TerminalRepr):
    """Failure text printed as pytest's own repr printed it (a collect error's in red)."""

    def __init__(self, text: str, red: bool = False) -> None:
        self.text = text
        self.red = red

    def __str__(self) -> str:
        return self.text

    def toterminal(self, out) -> None:
        out.line(self.text, red=self.red)


def warning_message(w: pb.RecordedWarning) -> warnings.WarningMessage:
    category = _warning_class(w.category)
    try:
        warning = category(w.message) if category is not None else None
    except Exception:     # a warning class whose constructor wants more than a message
        warning = None
    if warning is None:   # that, or a class the client never imported: named in the text
        category, warning = UserWarning, UserWarning(f"{w.category}: {w.message}")
    return warnings.WarningMessage(warning, category, w.filename, w.lineno)


def _warning_class(name: str) -> type[Warning] | None:
    """module:qualname back to the class, if the client has that module already.

    The name comes from a worker, i.e. from the tests: importing it would run
    a module a test wrote in the unsandboxed client. Only modules in
    sys.modules are looked at, through their __dict__ (no module __getattr__
    or descriptor runs either); None when the class is not there."""
    module, _, qualname = name.partition(":")
    obj = sys.modules.get(module)
    for part in qualname.split(".") if obj is not None else ():
        try:
            obj = vars(obj).get(part)
        except TypeError:      # no __dict__
            return None
    if isinstance(obj, type) and issubclass(obj, Warning):
        return obj
    return None
