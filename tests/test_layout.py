"""The house rules (ARCHITECTURE.md), kept by walking every import with `ast`.

Each rule names what a room may not import; a violation is reported as
`path:line: the import statement` so the fix is one click away. Lazy imports inside
functions count the same as top-level ones. Sizes: no engine/zones/devices module over
500 lines, no folder with more than 14 modules directly in it."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("engine", "zones", "devices")
MAX_LINES = 500
MAX_MODULES_PER_FOLDER = 14


@dataclass(frozen=True)
class Import:
    path: Path  # relative to the root
    line: int
    module: str  # the absolute dotted name imported (from X import y -> X.y and X)
    text: str


def _module_name(rel: Path) -> str:
    parts = list(rel.with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports(root: Path) -> Iterator[Import]:
    """Every import in the packages under `root`, relative ones resolved."""
    for pkg in PACKAGES:
        for path in sorted((root / pkg).rglob("*.py")):
            rel = path.relative_to(root)
            src = path.read_text()
            lines = src.splitlines()
            here = _module_name(rel).split(".")
            is_pkg = rel.name == "__init__.py"
            for node in ast.walk(ast.parse(src, str(rel))):
                if isinstance(node, ast.Import):
                    names = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom):
                    base = node.module or ""
                    if node.level:
                        anchor = here if is_pkg else here[:-1]
                        anchor = anchor[: len(anchor) - (node.level - 1)]
                        base = ".".join([*anchor, base] if base else anchor)
                    names = [base] + [f"{base}.{a.name}" for a in node.names]
                else:
                    continue
                text = lines[node.lineno - 1].strip()
                for name in names:
                    yield Import(rel, node.lineno, name, text)


def _in(rel: Path, folder: str) -> bool:
    return rel.as_posix().startswith(folder.rstrip("/") + "/")


def _is(module: str, *prefixes: str) -> bool:
    return any(module == p or module.startswith(p + ".") for p in prefixes)


def _first_party(module: str) -> bool:
    return _is(module, *PACKAGES)


# (rule, applies to this file?, this import forbidden?)
RULES: list[tuple[str, object, object]] = [
    (
        "zones/ is the lowest layer: it imports nothing of engine/ or devices/",
        lambda rel: _in(rel, "zones"),
        lambda m: _is(m, "engine", "devices"),
    ),
    (
        "engine/core/ imports only zones/, engine.wire, engine.settings and engine.errors",
        lambda rel: _in(rel, "engine/core"),
        lambda m: (
            _first_party(m)
            and not _is(m, "zones", "engine.core", "engine.wire", "engine.settings")
            and not _is(m, "engine.errors")
            and m != "engine"
        ),
    ),
    (
        "engine/core/ never touches the network or the disk",
        lambda rel: _in(rel, "engine/core"),
        lambda m: _is(m, "aiomqtt", "paho", "sqlite3", "socket", "asyncio", "subprocess"),
    ),
    (
        "engine/wire/ is the contract: it imports only engine.errors and itself",
        lambda rel: _in(rel, "engine/wire"),
        lambda m: _first_party(m) and not _is(m, "engine.wire", "engine.errors") and m != "engine",
    ),
    (
        "engine/store/ is below the network and the command line",
        lambda rel: _in(rel, "engine/store"),
        lambda m: _is(m, "engine.mqtt", "engine.broker", "engine.cli", "aiomqtt", "paho"),
    ),
    (
        "engine/mqtt/ and engine/broker/ serve the command line, never import it",
        lambda rel: _in(rel, "engine/mqtt") or _in(rel, "engine/broker"),
        lambda m: _is(m, "engine.cli"),
    ),
    (
        "engine/console/ imports only engine.store, engine.wire, engine.settings,"
        " engine.errors, zones/, engine.evidence (the pack) and itself: it sees the running"
        " engine through EngineView",
        lambda rel: _in(rel, "engine/console"),
        lambda m: (
            _first_party(m)
            and not _is(m, "engine.console", "engine.store", "engine.wire", "engine.settings")
            and not _is(m, "engine.errors", "zones", "engine.evidence")
            and m != "engine"
        ),
    ),
    (
        "engine/evidence/ reads the store and renders: it imports only engine.store,"
        " engine.wire, engine.settings, engine.errors, zones/ and itself",
        lambda rel: _in(rel, "engine/evidence"),
        lambda m: (
            _first_party(m)
            and not _is(m, "engine.evidence", "engine.store", "engine.wire", "engine.settings")
            and not _is(m, "engine.errors", "zones")
            and m != "engine"
        ),
    ),
    (
        "engine/notify/ imports only engine.store, engine.wire, engine.settings,"
        " engine.errors, zones/ and itself: it publishes through a callable it is given",
        lambda rel: _in(rel, "engine/notify"),
        lambda m: (
            _first_party(m)
            and not _is(m, "engine.notify", "engine.store", "engine.wire", "engine.settings")
            and not _is(m, "engine.errors", "zones")
            and m not in ("engine", "engine.__version__")
        ),
    ),
    (
        "aiomqtt and paho only in engine/mqtt/, engine/broker/ and devices/",
        lambda rel: not any(_in(rel, f) for f in ("engine/mqtt", "engine/broker", "devices")),
        lambda m: _is(m, "aiomqtt", "paho"),
    ),
    (
        "sqlite3 and psycopg only in engine/store/",
        lambda rel: not _in(rel, "engine/store"),
        lambda m: _is(m, "sqlite3", "psycopg"),
    ),
    (
        "devices/ speaks the contract through engine.wire: no other engine module",
        lambda rel: _in(rel, "devices"),
        lambda m: _is(m, "engine") and not _is(m, "engine.wire", "engine.errors") and m != "engine",
    ),
    (
        "only engine/cli/ imports devices/",
        lambda rel: not _in(rel, "engine/cli") and not _in(rel, "devices"),
        lambda m: _is(m, "devices"),
    ),
]


def violations(root: Path) -> list[str]:
    out: list[str] = []
    for imp in imports(root):
        for rule, applies, forbidden in RULES:
            if applies(imp.path) and forbidden(imp.module):  # type: ignore[operator]
                out.append(f"{imp.path}:{imp.line}: {imp.text}  [{rule}]")
    return sorted(set(out))


def test_import_rules_hold() -> None:
    found = violations(ROOT)
    assert not found, "house rules broken:\n" + "\n".join(found)


def test_a_forbidden_import_is_named_with_its_line(tmp_path: Path) -> None:
    """The checker can fail: a core module that opens sqlite3 and a zones module that
    reaches up into engine/ are each reported with file, line and the rule."""
    for pkg in PACKAGES:
        (tmp_path / pkg).mkdir()
        (tmp_path / pkg / "__init__.py").write_text("")
    (tmp_path / "engine" / "core").mkdir()
    (tmp_path / "engine" / "core" / "__init__.py").write_text("")
    (tmp_path / "engine" / "core" / "bad.py").write_text(
        "import numpy as np\n\n\ndef f():\n    import sqlite3\n    return sqlite3\n"
    )
    (tmp_path / "zones" / "up.py").write_text("from ..engine import errors\n")
    (tmp_path / "devices" / "peek.py").write_text("from engine.core.pipeline import Pipeline\n")
    (tmp_path / "engine" / "console").mkdir()
    (tmp_path / "engine" / "console" / "peek.py").write_text("from engine.mqtt import serve\n")
    (tmp_path / "engine" / "evidence").mkdir()
    (tmp_path / "engine" / "evidence" / "peek.py").write_text("from engine.core import decide\n")
    found = violations(tmp_path)
    assert any(v.startswith("engine/core/bad.py:5: import sqlite3") for v in found), found
    assert any(v.startswith("zones/up.py:1: from ..engine import errors") for v in found), found
    assert any("devices/peek.py:1:" in v and "engine.wire" in v for v in found), found
    assert any(v.startswith("engine/console/peek.py:1:") for v in found), found
    assert any(v.startswith("engine/evidence/peek.py:1:") for v in found), found


def _modules() -> list[Path]:
    return [p for pkg in PACKAGES for p in sorted((ROOT / pkg).rglob("*.py"))]


def test_no_module_over_500_lines() -> None:
    big = [
        f"{p.relative_to(ROOT)}: {n} lines"
        for p in _modules()
        if (n := len(p.read_text().splitlines())) > MAX_LINES
    ]
    assert not big, f"modules over {MAX_LINES} lines (split by concern):\n" + "\n".join(big)


def test_no_crowded_folder() -> None:
    crowded = []
    for folder in {p.parent for p in _modules()}:
        mods = [p for p in folder.glob("*.py") if p.name not in ("__init__.py", "__main__.py")]
        if len(mods) > MAX_MODULES_PER_FOLDER:
            crowded.append(f"{folder.relative_to(ROOT)}: {len(mods)} modules")
    assert not crowded, "folders with too many modules (make rooms):\n" + "\n".join(crowded)


def test_every_module_says_what_it_owns() -> None:
    missing = [
        str(p.relative_to(ROOT))
        for p in _modules()
        if p.name != "__main__.py" and ast.get_docstring(ast.parse(p.read_text())) is None
    ]
    assert not missing, "modules without a docstring:\n" + "\n".join(missing)


def test_no_package_manager_in_code() -> None:
    """Installing system packages is the Makefile's job (scripts/ensure-mosquitto.sh): no
    module names a package manager as a command (a message telling the user may)."""
    managers = {"apt-get", "apt", "dpkg", "yum", "dnf", "brew"}
    found = [
        f"{p.relative_to(ROOT)}:{node.lineno}: {node.value!r}"
        for p in _modules()
        for node in ast.walk(ast.parse(p.read_text()))
        if isinstance(node, ast.Constant) and node.value in managers
    ]
    assert not found, "\n".join(found)


@pytest.mark.parametrize("pkg", PACKAGES)
def test_checker_sees_every_package(pkg: str) -> None:
    assert any(i.path.parts[0] == pkg for i in imports(ROOT))
