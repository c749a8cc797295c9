"""`isod suggest REPORT.json [--apply]`: the size advisor (isod.advice) on a
saved `--isod-report`, and with --apply its suggestions written into the
tests' source as size markers.

The edit is a syntax-tree edit with libcst (lossless: comments, blank lines
and formatting stay as they were): `@pytest.mark.SIZE` goes on top of the
decorators of each unmarked plain test function defined once at module level
(a parametrized one when all its cases that ran need the same size), and
`import pytest` after the module's leading imports when the module has no
name for pytest. Everything else (parametrized cases that differ, methods of
classes, functions bound more than once or not found, modules that bind
`pytest` to something else) is left as a list for the user.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from . import advice
from .contract import Size

SIZE_NAMES = tuple(s.value for s in Size)


class ReportError(Exception):
    """A report that cannot be read; the message is one line."""


def load_report(path: str) -> dict:
    """The report as a dict, or ReportError naming what is wrong with it."""
    try:
        with open(path, "rb") as f:
            data = json.loads(f.read())
    except OSError as e:
        raise ReportError(f"{path}: {e.strerror or e}") from None
    except (ValueError, UnicodeDecodeError) as e:
        raise ReportError(f"{path}: not a JSON report ({str(e).splitlines()[0]})") from None
    if not isinstance(data, dict) or not isinstance(data.get("tests"), list):
        raise ReportError(f"{path}: not an isod report (no \"tests\" list; write one with pytest -p isod_client "
                          "--isod-report FILE)")
    for i, t in enumerate(data["tests"]):
        if not isinstance(t, dict) or not isinstance(t.get("nodeid"), str) or t.get("size") not in SIZE_NAMES:
            raise ReportError(f"{path}: test {i} has no node id or no size ({str(t)[:60]})")
        for key in ("commands", "intents"):
            if not isinstance(t.get(key, []), list) or not all(isinstance(c, dict) for c in t.get(key, [])):
                raise ReportError(f"{path}: test {t['nodeid']}: {key!r} is not a list of objects")
        if not isinstance(t.get("durations", {}), dict):
            raise ReportError(f"{path}: test {t['nodeid']}: 'durations' is not an object")
    if not isinstance(data.get("limits", {}), dict):
        raise ReportError(f"{path}: 'limits' is not an object")
    return data


def summary(report: Mapping) -> list[str]:
    return advice.summary_lines(report["tests"], advice.limits_of(report.get("limits")))


# --- --apply --------------------------------------------------------------
@dataclass
class Applied:
    marked: dict[str, list[tuple[str, str]]] = field(default_factory=dict)   # file -> [(function, size)]
    imports: list[str] = field(default_factory=list)                          # files that got `import pytest`
    left: list[str] = field(default_factory=list)                             # lines for the user

    @property
    def count(self) -> int:
        return sum(len(v) for v in self.marked.values())


def apply(report: Mapping, root: str) -> Applied:
    """Mark each unmarked plain test function with its suggested size."""
    limits = advice.limits_of(report.get("limits"))
    out = Applied()
    per_file: dict[str, dict[str, tuple[str, str]]] = {}    # file -> function -> (size, nodeid)
    params: dict[str, list[tuple[str, Size | None]]] = {}    # function id -> [(case, size)]
    for t, s in zip(report["tests"], advice.suggest_all(report["tests"], limits)):
        if t.get("marked") is True:
            continue                            # marked already: the summary lists it if too small
        nodeid = t["nodeid"]
        path, _, rest = nodeid.partition("::")
        if "[" in rest:
            base, _, case = rest.partition("[")
            params.setdefault(f"{path}::{base}", []).append(("[" + case, s.size))
            continue
        if s.size is None:
            out.left.append(f"{nodeid}: no suggestion ({t.get('outcome')})")
        elif not rest or "::" in rest:
            out.left.append(f"{nodeid} -> {s.size.value}: " + ("in a class: mark the method or the class"
                                                              if rest else "not a test function"))
        else:
            per_file.setdefault(path, {})[rest] = (s.size.value, nodeid)
    for base, cases in params.items():
        sizes = {s.value if s else "none" for _, s in cases}
        path, _, name = base.partition("::")
        if len(sizes) == 1 and "none" not in sizes and "::" not in name:
            # every case that ran needs the same size: the function's own marker says it for all
            per_file.setdefault(path, {})[name] = (sizes.pop(), f"{base} ({len(cases)} parametrized cases)")
        else:
            by = {}
            for case, s in cases:
                by.setdefault(s.value if s else "no suggestion", []).append(case)
            out.left.append(f"{base}: parametrized cases -> " + "; ".join(f"{k}: {_cases(v)}" for k, v in by.items()))
    for path, wanted in per_file.items():
        _apply_file(os.path.join(root, path), path, wanted, out)
    out.left.sort()
    return out


def _cases(ids: list[str], shown: int = 8) -> str:
    return " ".join(ids[:shown]) + (f" (and {len(ids) - shown} more)" if len(ids) > shown else "")


def _apply_file(filename: str, shown: str, wanted: dict[str, tuple[str, str]], out: Applied) -> None:
    import libcst as cst

    def leave(why: str, names=None) -> None:
        for name in names or wanted:
            size, nodeid = wanted[name]
            out.left.append(f"{nodeid} -> {size}: {why}")

    try:
        with open(filename, "rb") as f:
            source = f.read()
        module = cst.parse_module(source)
    except OSError as e:
        return leave(f"cannot read {shown}: {e.strerror}")
    except cst.ParserSyntaxError as e:
        return leave(f"cannot parse {shown}: {str(e).splitlines()[0]}")
    editor = _Editor(module, wanted)
    if editor.pytest_name is None:
        return leave(f"{shown} binds the name pytest to something else than the pytest module")
    for name, why in editor.unsafe.items():
        leave(why, [name])
    if not editor.targets:
        return None
    new = editor.edit()
    try:
        compile(new.bytes, filename, "exec", dont_inherit=True)
    except (SyntaxError, ValueError) as e:        # never expected: libcst wrote what it parsed plus decorators
        return leave(f"the edited {shown} would not compile ({e}); left as it was")
    with open(filename, "wb") as f:
        f.write(new.bytes)
    out.marked[shown] = [(name, wanted[name][0]) for name in editor.targets]
    if editor.added_import:
        out.imports.append(shown)
    return None


class _Editor:
    """Which of the wanted functions can be marked safely in one module, and the edit."""

    def __init__(self, module, wanted: dict[str, tuple[str, str]]) -> None:
        import libcst as cst
        from libcst.metadata import MetadataWrapper, ScopeProvider

        self.cst = cst
        wrapper = MetadataWrapper(module)
        self.module = wrapper.module
        scope = wrapper.resolve(ScopeProvider)[wrapper.module]
        self.wanted = wanted
        self.unsafe: dict[str, str] = {}
        self.targets: dict[str, object] = {}        # function name -> its FunctionDef (top level)
        self.added_import = False
        self.has_pytest = False
        self.pytest_name = self._pytest_name(scope)
        if self._module_marked():
            for name in wanted:
                self.unsafe[name] = "its module's pytestmark has a size marker already"
            return
        top = {id(stmt) for stmt in self.module.body}
        for name in wanted:
            bindings = list(scope[name])
            if not bindings:
                self.unsafe[name] = "no function of that name at the top level of its module (generated or imported?)"
            elif len(bindings) > 1:
                self.unsafe[name] = "the name is bound more than once in its module"
            elif not isinstance(bindings[0].node, cst.FunctionDef) or id(bindings[0].node) not in top:
                self.unsafe[name] = "not a plain function defined at the top level of its module"
            elif any(_size_of(d.decorator) for d in bindings[0].node.decorators):
                self.unsafe[name] = "already has a size marker in the source"
            else:
                self.targets[name] = bindings[0].node
        order = {id(stmt): i for i, stmt in enumerate(self.module.body)}
        self.targets = dict(sorted(self.targets.items(), key=lambda kv: order[id(kv[1])]))   # source order

    def _pytest_name(self, scope) -> str | None:
        """The module's name for the pytest module: "pytest" (present or to be
        imported) or an `import pytest as X` alias; None if `pytest` is bound
        to something else."""
        cst = self.cst
        bound = list(scope["pytest"])
        if any(not _imports_pytest(a.node, "pytest") for a in bound):
            return None
        self.has_pytest = bool(bound)
        if bound:
            return "pytest"
        for stmt in self.module.body:
            for small in getattr(stmt, "body", ()) if isinstance(stmt, cst.SimpleStatementLine) else ():
                if isinstance(small, cst.Import):
                    for alias in small.names:
                        if _dotted(alias.name) == "pytest" and alias.asname is not None:
                            name = alias.asname.name.value
                            if all(_imports_pytest(a.node, name) for a in scope[name]):
                                self.has_pytest = True
                                return name
        return "pytest"

    def _module_marked(self) -> bool:
        """A module-level statement that names pytestmark and a size marker."""
        cst = self.cst
        found = {"pytestmark": False, "size": False}

        class V(cst.CSTVisitor):
            def visit_Name(self, n):
                found["pytestmark"] |= n.value == "pytestmark"

            def visit_Attribute(self, n):
                found["size"] |= _size_of(n) is not None

            def visit_FunctionDef(self, n):
                return False

            def visit_ClassDef(self, n):
                return False

        for stmt in self.module.body:
            found.update(pytestmark=False, size=False)
            stmt.visit(V())
            if found["pytestmark"] and found["size"]:
                return True
        return False

    def edit(self):
        cst = self.cst
        body = []
        for stmt in self.module.body:
            name = stmt.name.value if isinstance(stmt, cst.FunctionDef) else None
            if name in self.targets and self.targets[name] is stmt:
                mark = cst.Decorator(decorator=cst.parse_expression(f"{self.pytest_name}.mark.{self.wanted[name][0]}"))
                stmt = stmt.with_changes(decorators=[mark, *stmt.decorators])
            body.append(stmt)
        if self.pytest_name == "pytest" and not self.has_pytest:
            body.insert(self._import_at(body), cst.parse_statement("import pytest\n"))
            self.added_import = True
        return self.module.with_changes(body=body)

    def _import_at(self, body) -> int:
        """After the module's docstring and its leading import statements."""
        cst = self.cst
        at = 0
        for i, stmt in enumerate(body):
            if not isinstance(stmt, cst.SimpleStatementLine):
                break
            if all(isinstance(s, cst.Import | cst.ImportFrom) for s in stmt.body):
                at = i + 1
            elif i == 0 and len(stmt.body) == 1 and isinstance(stmt.body[0], cst.Expr) and \
                    isinstance(stmt.body[0].value, cst.SimpleString | cst.ConcatenatedString):
                at = 1                                   # the docstring
            else:
                break
        return at


def _dotted(node) -> str:
    import libcst as cst
    if isinstance(node, cst.Name):
        return node.value
    if isinstance(node, cst.Attribute):
        return f"{_dotted(node.value)}.{node.attr.value}"
    return ""


def _imports_pytest(node, name: str) -> bool:
    """Whether this binding of `name` is `import pytest` / `import pytest as name`."""
    import libcst as cst
    if not isinstance(node, cst.Import):
        return False
    for alias in node.names:
        bound = alias.asname.name.value if alias.asname is not None else _dotted(alias.name).split(".")[0]
        if bound == name:
            return _dotted(alias.name) == "pytest"
    return False


def _size_of(expr) -> str | None:
    """"small" for `pytest.mark.small`, `mark.small(timeout=1)` and the like."""
    import libcst as cst
    if isinstance(expr, cst.Call):
        expr = expr.func
    if isinstance(expr, cst.Attribute) and expr.attr.value in SIZE_NAMES and _dotted(expr.value).split(".")[-1:] \
            == ["mark"]:
        return expr.attr.value
    return None


def applied_lines(result: Applied) -> list[str]:
    lines = [f"applied: {_n(result.count, 'marker')} in {_n(len(result.marked), 'file')}"]
    for path, names in result.marked.items():
        sizes: dict[str, int] = {}
        for _, size in names:
            sizes[size] = sizes.get(size, 0) + 1
        lines.append(f"    {path}: " + ", ".join(f"{n} {size}" for size, n in sorted(
            sizes.items(), key=lambda kv: SIZE_NAMES.index(kv[0])))
                     + (" (and import pytest)" if path in result.imports else ""))
    if result.count:
        lines.append("    (pytest without -p isod_client needs the size markers registered: "
                     "markers = small, medium, large, xlarge in its configuration)")
    if result.left:
        lines.append(f"left for you ({len(result.left)}):")
        lines += [f"    {line}" for line in result.left]
    return lines


def _n(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"
