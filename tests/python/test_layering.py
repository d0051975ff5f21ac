"""No import circles: the modules of each Rust crate and of ``python/evs`` depend one way.

Plain file parsing; neither the native module nor a Rust toolchain is needed.

Rust (the library crate rooted at ``src/lib.rs``; ``main.rs`` and ``src/bin`` are other crates
that use it by name). The nodes are the modules the root declares (``mod x;``); a file under
``src/x/`` belongs to module ``x``, and the root's own items form the node ``lib``. Module ``a``
depends on ``b`` when its code, outside comments and string literals, names a path
``crate::b...`` or ``super::b...`` (in ``use`` lines or anywhere else, braces ``crate::{b, c}``
included) that leads out of ``a`` to ``b``. A path to an item the root re-exports
(``pub use b::Item;`` in ``lib.rs``, then ``crate::Item``) counts as a dependency on ``b``.
Items marked ``#[cfg(test)]`` (the ``mod tests { ... }`` blocks, test-only functions) are left
out: a unit test may use anything in its crate. ``#[cfg(any(test, ...))]`` is kept.

Python (``python/evs``). The nodes are the modules of the package (``evs`` is
``__init__.py``; the native ``evs._evs`` is a leaf). Every ``import`` and ``from ... import``
statement counts wherever it stands: at module level, inside ``if TYPE_CHECKING:``, inside a
function. An import moved into a function to get past a circle is still a circle. ``from .
import x`` depends on ``evs.x`` when ``x`` is a module, else on ``evs``. That importing
``evs.x`` first runs ``evs/__init__.py`` is not counted as a dependency of every module on
the package.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterable, Mapping
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

Graph = Mapping[str, Mapping[str, str]]  # module -> {dependency: "file:line" of first use}


# -- cycles ---------------------------------------------------------------------------------


def components(graph: Graph) -> list[list[str]]:
    """The strongly connected components of more than one module (each sorted, in a stable
    order): every module in one depends, through the others, on every other one.
    Self-dependencies are ignored."""
    nodes = sorted(set(graph) | {d for deps in graph.values() for d in deps})
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def strongconnect(v: str) -> None:  # Tarjan; the graphs are small, recursion is fine
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in _succ(graph, v):
            if w not in index:
                strongconnect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp: list[str] = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in nodes:
        if v not in index:
            strongconnect(v)
    return sorted(found)


def _succ(graph: Graph, v: str) -> list[str]:
    return sorted(d for d in graph.get(v, {}) if d != v)


def find_cycles(graph: Graph) -> list[list[str]]:
    """One shortest cycle (``[a, b, ..., a]``) through the first module of each component of
    :func:`components`; empty when the graph is acyclic."""
    cycles = []
    for comp in components(graph):
        members = set(comp)
        start = comp[0]
        # Shortest way back to `start` inside the component (breadth first).
        prev: dict[str, str] = {}
        frontier = [start]
        found = None
        while frontier and found is None:
            nxt = []
            for v in frontier:
                for w in _succ(graph, v):
                    if w not in members:
                        continue
                    if w == start:
                        found = v
                        break
                    if w not in prev:
                        prev[w] = v
                        nxt.append(w)
                if found is not None:
                    break
            frontier = nxt
        assert found is not None
        path = [found]
        while path[-1] != start:
            path.append(prev[path[-1]])
        cycles.append([*reversed(path), start])
    return cycles


def describe(graph: Graph, cycles: Iterable[list[str]]) -> str:
    lines = []
    for comp, cycle in zip(components(graph), cycles):
        lines.append(f"among {{{', '.join(comp)}}}: " + " -> ".join(cycle))
        for a, b in zip(cycle, cycle[1:]):
            lines.append(f"    {a} -> {b}: {graph[a][b]}")
    return "\n".join(lines)


def assert_acyclic(graph: Graph) -> None:
    cycles = find_cycles(graph)
    assert not cycles, "import circle(s):\n" + describe(graph, cycles)


def _shown(path: Path) -> str:
    return str(path.relative_to(ROOT) if path.is_relative_to(ROOT) else path)


# -- Rust -----------------------------------------------------------------------------------


_LEX = re.compile(r"//|/\*|b?r#*\"|b?\"|'")
_CHAR = re.compile(r"'(\\u\{[0-9a-fA-F]+\}|\\.|[^\\'])'")


def strip_rust(text: str) -> str:
    """`text` with comments and string/char literals blanked (newlines kept, so offsets and
    line numbers stay)."""
    out = list(text)
    i, n = 0, len(text)

    def blank(a: int, b: int) -> None:
        for k in range(a, min(b, n)):
            if out[k] != "\n":
                out[k] = " "

    while m := _LEX.search(text, i):
        i, tok = m.start(), m.group()
        if tok == "//":
            j = text.find("\n", i)
            j = n if j < 0 else j
            blank(i, j)
            i = j
        elif tok == "/*":
            depth, j = 1, i + 2
            while j < n and depth:
                if text.startswith("/*", j):
                    depth, j = depth + 1, j + 2
                elif text.startswith("*/", j):
                    depth, j = depth - 1, j + 2
                else:
                    j += 1
            blank(i, j)
            i = j
        elif "r" in tok and not (i and (text[i - 1].isalnum() or text[i - 1] == "_")):
            end = '"' + "#" * tok.count("#")
            j = text.find(end, m.end())
            j = n if j < 0 else j + len(end)
            blank(i, j)
            i = j
        elif tok.endswith('"'):
            j = m.end() - 1
            start = j
            j += 1
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            blank(start, j + 1)
            i = j + 1
        else:
            # A char literal ('x', '\n', '\u{1F600}', '\'') or a lifetime ('a, 'static).
            c = _CHAR.match(text, i)
            if c:
                blank(i, c.end())
                i = c.end()
            else:
                i += 1
    return "".join(out)


def _skip_item(code: str, i: int) -> int:
    """The end of the item starting at `i`: its first `;` at depth 0, or its closing brace."""
    depth = 0
    while i < len(code):
        c = code[i]
        if c in "([":
            depth += 1
        elif c in ")]":
            depth -= 1
        elif c == ";" and depth == 0:
            return i + 1
        elif c == "{":
            braces = 1
            i += 1
            while i < len(code) and braces:
                braces += {"{": 1, "}": -1}.get(code[i], 0)
                i += 1
            return i
        i += 1
    return i


_CFG_TEST = re.compile(r"#\[\s*cfg\s*\(\s*test\s*\)\s*\]")
_ATTR = re.compile(r"\s*#\[[^\]]*\]")


def drop_cfg_test(code: str) -> str:
    """`code` (already stripped) with every `#[cfg(test)]` item blanked."""
    out = list(code)
    pos = 0
    while m := _CFG_TEST.search(code, pos):
        i = m.end()
        while a := _ATTR.match(code, i):  # further attributes on the same item
            i = a.end()
        end = _skip_item(code, i)
        for k in range(m.start(), end):
            if out[k] != "\n":
                out[k] = " "
        pos = end
    return "".join(out)


def _path_heads(code: str, start: int) -> list[str]:
    """The first segments of the path(s) at `start` (just after `crate::`/`super::`): `x` for
    `x::...`, `a`, `b` for `{a, b::c, d as e}`."""
    m = re.compile(r"\s*(\{|[A-Za-z_][A-Za-z0-9_]*)").match(code, start)
    if not m:
        return []
    if m.group(1) != "{":
        return [m.group(1)]
    # A brace group: split at depth-0 commas.
    i, depth, heads, item = m.end(), 1, [], ""
    while i < len(code) and depth:
        c = code[i]
        if c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
        if depth == 1 and c == ",":
            heads.append(item)
            item = ""
        elif depth >= 1:
            item += c
        i += 1
    heads.append(item)
    names = [re.match(r"\s*([A-Za-z_][A-Za-z0-9_]*)", h) for h in heads]
    return [x.group(1) for x in names if x]


def rust_graph(src: Path) -> dict[str, dict[str, str]]:
    lib = src / "lib.rs"
    root_code = drop_cfg_test(strip_rust(lib.read_text()))
    modules = set(re.findall(r"^\s*(?:pub(?:\([^)]*\))?\s+)?mod\s+(\w+)\s*;", root_code, re.M))
    # Root re-exports: `pub use m::Item;` / `pub use m::{A, B as C};` make `crate::Item`
    # a path into m.
    reexport: dict[str, str] = {}
    for m in re.finditer(r"pub(?:\([^)]*\))?\s+use\s+(\w+)::([^;]*);", root_code):
        if m.group(1) in modules:
            for name in re.findall(r"(\w+)\s*(?:,|\}|$)", m.group(2)):
                reexport[name] = m.group(1)

    def owner(name: str) -> str:
        if name in modules:
            return name
        return reexport.get(name, "lib")

    graph: dict[str, dict[str, str]] = {m: {} for m in modules | {"lib"}}
    for path in sorted(src.rglob("*.rs")):
        rel = path.relative_to(src)
        if rel.parts[0] in ("main.rs", "bin"):
            continue
        if rel == Path("lib.rs"):
            module, depth = "lib", 0
        else:
            module = rel.parts[0].removesuffix(".rs")
            if module not in modules:
                continue  # not part of the library (or behind a declaration not seen)
            # How deep the file's module is under the root: src/x.rs and src/x/mod.rs are 1.
            parts = [p.removesuffix(".rs") for p in rel.parts if p != "mod.rs"]
            depth = len(parts)
        code = drop_cfg_test(strip_rust(path.read_text()))
        if module == "lib":
            # The root's declarations and re-exports are not dependencies of its own code.
            code = re.sub(
                r"(?:pub(?:\([^)]*\))?\s+)?mod\s+\w+\s*;|pub(?:\([^)]*\))?\s+use\s+[^;]*;",
                lambda m: re.sub(r"[^\n]", " ", m.group(0)),
                code,
            )
        for m in re.finditer(r"(?<![A-Za-z0-9_:])(crate|(?:super\s*::\s*)+)", code):
            kind = m.group(1)
            rest = m.end()
            if kind == "crate":
                if not code.startswith("::", rest):
                    continue  # `crate` alone, as in `pub(crate)`
                rest += 2
                up = depth
            else:
                up = kind.count("super")
            if up < depth:
                continue  # still inside this file's own top-level module
            if up > depth:
                continue  # beyond the root: not valid Rust, never mind
            line = code.count("\n", 0, m.start()) + 1
            for head in _path_heads(code, rest):
                if head in ("self", "super", "crate"):
                    continue
                dep = owner(head)
                if dep != module:
                    graph[module].setdefault(dep, f"{_shown(path)}:{line}")
    return graph


# -- Python ---------------------------------------------------------------------------------


def python_graph(package: Path) -> dict[str, dict[str, str]]:
    name = package.name
    files = {p.stem: p for p in package.glob("*.py")}
    submodules = {s for s in files if s != "__init__"} | {
        p.name.split(".")[0] for p in package.glob("*.pyi")
    }

    def module_of(stem: str) -> str:
        return name if stem == "__init__" else f"{name}.{stem}"

    graph: dict[str, dict[str, str]] = {module_of(s): {} for s in files}
    for s in submodules - set(files):
        graph[module_of(s)] = {}  # native modules: leaves
    for stem, path in sorted(files.items()):
        me = module_of(stem)
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if not isinstance(node, (ast.Import, ast.ImportFrom)):
                continue
            targets: list[str] = []
            if isinstance(node, ast.Import):
                for alias in node.names:
                    parts = alias.name.split(".")
                    if parts[0] == name:
                        targets.append(".".join(parts[:2]))
            else:
                if node.level > 1:
                    continue  # above the package
                if node.level == 1:
                    base = [name, *(node.module.split(".") if node.module else [])]
                elif node.module and node.module.split(".")[0] == name:
                    base = node.module.split(".")
                else:
                    continue
                if len(base) > 1:
                    targets.append(".".join(base[:2]))
                else:  # `from . import x` / `from evs import x`
                    for alias in node.names:
                        sub = alias.name in submodules
                        targets.append(f"{name}.{alias.name}" if sub else name)
            for t in targets:
                if t != me:
                    graph[me].setdefault(t, f"{_shown(path)}:{node.lineno}")
    return graph


# -- the cycle finder can fail --------------------------------------------------------------


def test_finder_reports_a_cycle() -> None:
    g = {
        "a": {"b": "a:1"},
        "b": {"c": "b:1"},
        "c": {"a": "c:1", "d": "c:2"},
        "d": {},
        "x": {"y": "x:1"},
        "y": {"x": "y:1"},
        "z": {"z": "z:1"},  # a module naming itself is not a circle
    }
    assert find_cycles(g) == [["a", "b", "c", "a"], ["x", "y", "x"]]
    with pytest.raises(AssertionError, match=r"among \{a, b, c\}: a -> b -> c -> a"):
        assert_acyclic(g)


def test_finder_accepts_a_dag() -> None:
    assert find_cycles({"a": {"b": "", "c": ""}, "b": {"c": ""}, "c": {}}) == []


def test_rust_parser_rules(tmp_path: Path) -> None:
    (tmp_path / "lib.rs").write_text(
        "mod a;\npub mod b;\npub(crate) mod c;\npub use b::{Thing, Other as O};\n"
    )
    (tmp_path / "a.rs").write_text(
        "//! See `crate::c` in a comment.\n"
        'const S: &str = "crate::c";\n'
        "use crate::{b::Inner, Thing};\n"
        "fn f<'a>(x: &'a str) -> char { let _ = super::b::g(); 'c' }\n"
        "#[cfg(test)]\nmod tests { use crate::c::X; }\n"
        "#[cfg(test)]\n#[allow(unused)]\nfn helper() { crate::c::x(); }\n"
    )
    (tmp_path / "b").mkdir()
    (tmp_path / "b.rs").write_text("mod inner;\npub(crate) fn g() {}\n")
    (tmp_path / "b" / "inner.rs").write_text("use super::g;\nuse super::super::c::Y;\n")
    (tmp_path / "c.rs").write_text("pub fn x() { crate::a_fn(); }\n")
    g = rust_graph(tmp_path)
    assert {m: set(d) for m, d in g.items()} == {
        "a": {"b"},
        "b": {"c"},
        "c": {"lib"},
        "lib": set(),
    }


def test_python_parser_rules(tmp_path: Path) -> None:
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("from .a import f\n")
    (pkg / "_native.pyi").write_text("")
    (pkg / "a.py").write_text(
        "from typing import TYPE_CHECKING\nfrom . import _native\n"
        "if TYPE_CHECKING:\n    from .b import B\n"
    )
    (pkg / "b.py").write_text("def g():\n    from . import a, f\n    import pkg.c\n")
    (pkg / "c.py").write_text("import os\nfrom pkg import b as _b\n")
    g = python_graph(pkg)
    assert {m: set(d) for m, d in g.items()} == {
        "pkg": {"pkg.a"},
        "pkg.a": {"pkg._native", "pkg.b"},
        "pkg.b": {"pkg.a", "pkg", "pkg.c"},
        "pkg.c": {"pkg.b"},
        "pkg._native": set(),
    }
    assert find_cycles(g) == [["pkg", "pkg.a", "pkg.b", "pkg"]]


# -- the real graphs ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "crate",
    [
        "rust/totem",
        "rust/totem-sim",
        "rust/evs-engine",
        "rust/evs",
        "rust/evs-py",
        "rust/fuzz-harness",
    ],
)
def test_rust_crate_is_acyclic(crate: str) -> None:
    assert_acyclic(rust_graph(ROOT / crate / "src"))


def test_python_package_is_acyclic() -> None:
    assert_acyclic(python_graph(ROOT / "python" / "evs"))
