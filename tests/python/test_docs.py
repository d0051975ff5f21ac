"""The documentation a user reads first: the README's Python runs on every supported version,
and the event types' attributes are documented where IDEs and help() look."""

from __future__ import annotations

import ast
import re

import pytest

import evs
from support import ROOT

EVENT_TYPES = ["Message", "ConfigChange", "GroupChange", "RingId"]


def test_readme_python_parses_as_python_3_9() -> None:
    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", readme, re.S)
    assert blocks
    for block in blocks:
        ast.parse(block, feature_version=(3, 9))  # a `match` statement is a SyntaxError here


def _stub_classes() -> dict[str, ast.ClassDef]:
    tree = ast.parse((ROOT / "python" / "evs" / "_evs.pyi").read_text())
    return {n.name: n for n in tree.body if isinstance(n, ast.ClassDef)}


def _has_docstring(node: ast.FunctionDef | ast.ClassDef) -> bool:
    return ast.get_docstring(node) is not None


@pytest.mark.parametrize("name", EVENT_TYPES)
def test_event_attributes_have_docstrings_in_the_stub(name: str) -> None:
    cls = _stub_classes()[name]
    assert _has_docstring(cls), name
    props = [
        f
        for f in cls.body
        if isinstance(f, ast.FunctionDef)
        and any(isinstance(d, ast.Name) and d.id == "property" for d in f.decorator_list)
    ]
    assert props
    missing = [f.name for f in props if not _has_docstring(f)]
    assert missing == [], f"{name}: {missing}"


@pytest.mark.parametrize("name", EVENT_TYPES)
def test_event_attributes_have_docstrings_at_runtime(name: str) -> None:
    cls = getattr(evs, name)
    names = [n for n in dir(cls) if type(getattr(cls, n)).__name__ == "getset_descriptor"]
    assert names
    missing = [n for n in names if not getattr(cls, n).__doc__]
    assert missing == [], f"{name}: {missing}"


def test_shutdown_docstring_says_queued_events_come_first() -> None:
    for doc in (evs.Node.shutdown.__doc__, evs._evs.Node.shutdown.__doc__):
        assert doc is not None and "queued" in doc, doc
