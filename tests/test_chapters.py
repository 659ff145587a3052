"""Every chapter in the table of contents, executed at the quick profile, with all claims passing.

The chapters run once per test session, two at a time, into the book's own
``_build`` folder, so ``make test`` leaves a ledger that ``negsamp build``
can render.  The HTML build runs last, with Sphinx warnings as errors.
"""

from __future__ import annotations

import pytest

from conftest import ROOT, read_ledger, run_negsamp
from negsamp.book.chapters import load_chapter, toc_chapters

CHAPTERS = [chapter.name for chapter in toc_chapters(ROOT)]
BUILD = ROOT / "_build"

pytestmark = pytest.mark.chapters


@pytest.fixture(scope="session")
def executed_ledger():
    result = run_negsamp("run", "--profile", "quick", "--jobs", "2", "--quiet", timeout=3600)
    print(result.stdout[-4000:])
    print(result.stderr[-4000:])
    return read_ledger(BUILD)


@pytest.mark.parametrize("name", CHAPTERS)
def test_chapter_source_keeps_contract(name):
    chapter = next(chapter for chapter in toc_chapters(ROOT) if chapter.name == name)
    notebook = load_chapter(chapter)
    assert notebook.metadata["kernelspec"]["name"] == "python3"


@pytest.mark.parametrize("name", CHAPTERS)
def test_chapter_passes_quick_profile(executed_ledger, name):
    entry = executed_ledger["chapters"][name]
    failed = [(record["id"], record["measured"], record["expectation"])
              for record in entry["claims"] if not record["passed"]]
    assert entry["status"] == "passed", f"{name}: {entry['status']} {entry.get('error')} failed claims: {failed}"
    assert entry["profile"] == "quick"
    checked = [record for record in entry["claims"] if record["kind"] != "reported"]
    assert len(checked) >= 5, f"{name} checks only {len(checked)} claims"


def test_book_renders_from_executed_notebooks(executed_ledger):
    result = run_negsamp("build", timeout=1200)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    html = ROOT / "_build" / "html"
    ledger_page = (html / "book" / "claims.html").read_text(encoding="utf-8")
    for name in CHAPTERS:
        assert (html / "chapters" / f"{name}.html").exists()
        for record in executed_ledger["chapters"][name]["claims"]:
            assert record["id"] in ledger_page, f"claim {record['id']} missing from the ledger page"
    assert "Traceback" not in ledger_page
