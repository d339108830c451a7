"""README and docs/: every relative link names a file that exists, and every docs page is reachable from README
(directly or through another page), so moving a section cannot leave a dangling link or an orphan page."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")


def links(page: Path):
    for target in LINK.findall(page.read_text()):
        if "://" in target or target.startswith("mailto:"):
            continue
        yield (page.parent / target).resolve()


def test_relative_links_name_files_that_exist():
    pages = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
    broken = [f"{page.relative_to(REPO)} → {target}" for page in pages for target in links(page) if not target.exists()]
    assert broken == []


def test_every_docs_page_is_reachable_from_readme():
    seen, todo = set(), [(REPO / "README.md").resolve()]
    while todo:
        page = todo.pop()
        if page in seen or page.suffix != ".md" or not page.exists():
            continue
        seen.add(page)
        todo.extend(links(page))
    orphans = [p.name for p in sorted((REPO / "docs").glob("*.md")) if p.resolve() not in seen]
    assert orphans == []


def test_readme_is_short():
    assert len((REPO / "README.md").read_text().splitlines()) <= 150
