"""The docs point at things that exist: every Markdown link to a file, and every
`path/module.py` (or folder/) a doc names in backticks, resolves in the checkout."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCS = sorted(
    [
        ROOT / "README.md",
        ROOT / "ARCHITECTURE.md",
        ROOT / "devices" / "README.md",
        *(ROOT / "docs").glob("*.md"),
    ]
)
LINK = re.compile(r"\]\(([^)\s#]+)(?:#[^)]*)?\)")
# `engine/core/pipeline.py`, `zones/`, `bench/bench_health.py`: a path in our own tree
CODE_PATH = re.compile(
    r"`((?:engine|zones|devices|bench|tests|scripts|deploy|docs|examples)/[\w/.\-]*)`"
)


def _problems(doc: Path, root: Path = ROOT) -> list[str]:
    text = doc.read_text()
    out = []
    for m in LINK.finditer(text):
        target = m.group(1)
        if "://" in target or target.startswith("mailto:"):
            continue
        if not (doc.parent / target).exists():
            out.append(f"{doc.relative_to(root)}: link to {target} (missing)")
    for m in CODE_PATH.finditer(text):
        path = m.group(1).rstrip(".")
        if "*" in path or "{" in path:
            continue
        if not (root / path).exists():
            out.append(f"{doc.relative_to(root)}: names `{path}` (missing)")
    return out


def test_docs_exist() -> None:
    missing = [d.relative_to(ROOT) for d in DOCS if not d.exists()]
    assert not missing, missing


def test_doc_links_and_paths_resolve() -> None:
    problems = [p for d in DOCS if d.exists() for p in _problems(d)]
    assert not problems, "\n".join(problems)


def test_checker_catches_a_dead_link(tmp_path: Path) -> None:
    doc = tmp_path / "x.md"
    doc.write_text("see [here](nowhere.md) and `engine/nope.py`\n")
    problems = _problems(doc, tmp_path)
    assert any("nowhere.md" in p for p in problems) and any("engine/nope.py" in p for p in problems)
