"""Every named query the code looks up exists in its `.sql` file, and every query a `.sql`
file defines is looked up somewhere: a typo, a renamed block or a dead query fails here
rather than at run time (or never).

The lookups are read from the source with `ast`: a subscript of a module-level name bound
to ``QuerySet("package", "file.sql")`` or ``load_queries(files("package") / "file.sql")``
(or imported from the module that binds it). The key is a string constant; an f-string
(``S[f"insert_{table}"]``) stands for every name it can match; a function parameter
(``Q[name]``) stands for the string constants the module passes for it.
"""

from __future__ import annotations

import ast
import re
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path

import pytest

from bitloot.sqlfile import load_queries

PACKAGE_ROOT = Path(__file__).resolve().parents[1] / "bitloot"
QueryFile = tuple[str, str]  # (package, file name)


@dataclass
class Lookups:
    """What the code asks of one query file: exact names, and f-string patterns."""

    names: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    patterns: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    unresolved: list[str] = field(default_factory=list)


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE_ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _text(node: ast.expr | None) -> str | None:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


def query_file_of(call: ast.expr) -> QueryFile | None:
    """The file a `QuerySet(...)` or `load_queries(files(...) / ...)` call reads."""
    if not isinstance(call, ast.Call) or not isinstance(call.func, ast.Name):
        return None
    if call.func.id == "QuerySet":
        args = [*call.args, *(k.value for k in call.keywords)]
        package = _text(args[0])
        filename = _text(args[1]) if len(args) > 1 else "queries.sql"
        assert package and filename, f"QuerySet with a computed file: {ast.unparse(call)}"
        return package, filename
    if call.func.id == "load_queries":
        arg = call.args[0]
        assert (
            isinstance(arg, ast.BinOp)
            and isinstance(arg.left, ast.Call)
            and isinstance(arg.left.func, ast.Name)
            and arg.left.func.id == "files"
        ), f"load_queries of a computed path: {ast.unparse(call)}"
        package, filename = _text(arg.left.args[0]), _text(arg.right)
        assert package and filename, f"load_queries of a computed path: {ast.unparse(call)}"
        return package, filename
    return None


def parse_modules() -> dict[str, ast.Module]:
    return {module_name(p): ast.parse(p.read_text(), str(p)) for p in PACKAGE_ROOT.rglob("*.py")}


def query_sets(modules: dict[str, ast.Module]) -> dict[str, dict[str, QueryFile]]:
    """Per module, its names that hold a query set: bound at module level, or imported."""
    bound: dict[str, dict[str, QueryFile]] = defaultdict(dict)
    for module, tree in modules.items():
        for node in tree.body:
            if isinstance(node, ast.Assign) and (qf := query_file_of(node.value)):
                for target in node.targets:
                    assert isinstance(target, ast.Name), ast.unparse(node)
                    bound[module][target.id] = qf
    known = {module: dict(names) for module, names in bound.items()}
    for module, tree in modules.items():
        for node in tree.body:
            if isinstance(node, ast.ImportFrom) and node.module in known:
                for alias in node.names:
                    if alias.name in known[node.module]:
                        bound[module][alias.asname or alias.name] = known[node.module][alias.name]
    return bound


def _functions(tree: ast.Module) -> Iterator[ast.FunctionDef | ast.AsyncFunctionDef]:
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            yield node


def _arguments_for(tree: ast.Module, function: str, param: str, index: int) -> list[ast.expr]:
    """What the calls of `function` in this module pass for its parameter `param`."""
    passed = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            if node.func.id != function:
                continue
            by_name = [k.value for k in node.keywords if k.arg == param]
            passed.extend(by_name or node.args[index : index + 1])
    return passed


def _f_string_pattern(node: ast.JoinedStr) -> str:
    parts = [
        re.escape(part.value) if isinstance(part, ast.Constant) else "[a-z0-9_]+"
        for part in node.values
    ]
    return "".join(parts)


def lookups(modules: dict[str, ast.Module]) -> dict[QueryFile, Lookups]:
    found: dict[QueryFile, Lookups] = defaultdict(Lookups)
    for module, names in query_sets(modules).items():
        tree = modules[module]
        enclosing = {
            id(sub): fn
            for fn in _functions(tree)
            for sub in ast.walk(fn)
            if isinstance(sub, ast.Subscript)
        }
        for node in ast.walk(tree):
            if not (
                isinstance(node, ast.Subscript)
                and isinstance(node.value, ast.Name)
                and node.value.id in names
            ):
                continue
            seen = found[names[node.value.id]]
            where = f"{module}:{node.lineno}"
            key = node.slice
            if (name := _text(key)) is not None:
                seen.names[name].add(where)
            elif isinstance(key, ast.JoinedStr):
                seen.patterns[_f_string_pattern(key)].add(where)
            elif isinstance(key, ast.Name) and (fn := enclosing.get(id(node))) is not None:
                params = [a.arg for a in (*fn.args.posonlyargs, *fn.args.args)]
                if key.id not in params:
                    seen.unresolved.append(f"{where}: {ast.unparse(node)}")
                    continue
                passed = _arguments_for(tree, fn.name, key.id, params.index(key.id))
                if not passed:
                    seen.unresolved.append(f"{where}: {ast.unparse(node)} (never called)")
                for arg in passed:
                    if (name := _text(arg)) is None:
                        seen.unresolved.append(f"{where}: {fn.name}({ast.unparse(arg)})")
                    else:
                        seen.names[name].add(f"{module}:{arg.lineno}")
            else:
                seen.unresolved.append(f"{where}: {ast.unparse(node)}")
    return found


MODULES = parse_modules()
LOOKUPS = lookups(MODULES)


def defined(query_file: QueryFile) -> set[str]:
    package, filename = query_file
    return set(load_queries(files(package) / filename))


def test_the_scan_finds_the_query_files() -> None:
    """Every `.sql` file of named queries in the package is read by some module."""
    on_disk = {
        (module_name(p.parent / "__init__.py"), p.name)
        for p in PACKAGE_ROOT.rglob("*.sql")
        if "-- name:" in p.read_text()
    }
    assert on_disk, "no query files found"
    assert on_disk == set(LOOKUPS)


@pytest.mark.parametrize("query_file", sorted(LOOKUPS), ids="/".join)
def test_every_looked_up_query_exists(query_file: QueryFile) -> None:
    seen, names = LOOKUPS[query_file], defined(query_file)
    assert seen.unresolved == [], "lookups whose name the scan cannot tell"
    missing = {name: sorted(where) for name, where in seen.names.items() if name not in names}
    assert missing == {}, f"looked up but not in {query_file}"
    unmatched = {
        pattern: sorted(where)
        for pattern, where in seen.patterns.items()
        if not any(re.fullmatch(pattern, name) for name in names)
    }
    assert unmatched == {}, f"f-string lookups that match no query of {query_file}"


@pytest.mark.parametrize("query_file", sorted(LOOKUPS), ids="/".join)
def test_every_defined_query_is_used(query_file: QueryFile) -> None:
    seen = LOOKUPS[query_file]
    unused = sorted(
        name
        for name in defined(query_file)
        if name not in seen.names and not any(re.fullmatch(p, name) for p in seen.patterns)
    )
    assert unused == [], f"defined in {query_file} but looked up nowhere"
