"""Every chapter in the table of contents at the quick profile, audited, rendered and read in a browser.

The chapters run once per test session, two at a time, into the book's own
``_build`` folder, once per seed in ``NEGSAMP_TEST_SEEDS`` (default 0,1,2),
so ``make test`` also checks that no claim is fragile across seeds and
leaves a ledger that ``negsamp build`` can render.  The HTML build runs with
Sphinx warnings as errors, and headless Chromium reads every page.
"""

from __future__ import annotations

import os
import re

import pytest

from browser import chromium_binary, rendered_dom, serve
from conftest import ROOT, read_ledger, run_negsamp
from negsamp.book.chapters import load_chapter, toc_chapters

CHAPTERS = [chapter.name for chapter in toc_chapters(ROOT)]
BUILD = ROOT / "_build"
SEEDS = os.environ.get("NEGSAMP_TEST_SEEDS", "0,1,2")

pytestmark = pytest.mark.chapters


@pytest.fixture(scope="session")
def executed_ledger():
    result = run_negsamp("run", "--profile", "quick", "--jobs", "2", "--seeds", SEEDS, "--quiet", timeout=3600)
    print(result.stdout[-6000:])
    print(result.stderr[-6000:])
    return read_ledger(BUILD)


@pytest.fixture(scope="session")
def rendered_book(executed_ledger):
    result = run_negsamp("build", timeout=1200)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return BUILD / "html"


@pytest.fixture(scope="session")
def pages(rendered_book, tmp_path_factory):
    """The DOM of the ledger page and every chapter page after their scripts ran."""
    binary = chromium_binary()
    profile_dir = tmp_path_factory.mktemp("chromium-profile")
    doms = {}
    with serve(rendered_book) as base:
        for path in ["book/claims", "book/environment", "book/intro"] + [f"chapters/{name}" for name in CHAPTERS]:
            screenshot = BUILD / "screenshots" / f"{path.replace('/', '_')}.png"
            doms[path] = rendered_dom(binary, f"{base}/{path}.html", profile_dir, screenshot)
    return doms


@pytest.mark.parametrize("name", CHAPTERS)
def test_chapter_source_keeps_contract(name):
    chapter = next(chapter for chapter in toc_chapters(ROOT) if chapter.name == name)
    notebook = load_chapter(chapter)
    assert notebook.metadata["kernelspec"]["name"] == "python3"
    assert notebook.metadata.get("negsamp", {}).get("budget_s", {}).get("quick"), "declare a quick-profile budget"


@pytest.mark.parametrize("name", CHAPTERS)
def test_jupytext_round_trip_keeps_front_matter(name):
    """Saving a chapter from JupyterLab (make lab) goes through jupytext; the budget must survive it."""
    import jupytext

    path = ROOT / "chapters" / f"{name}.md"
    notebook = jupytext.read(path)
    written = jupytext.writes(notebook, fmt="md:myst", config=jupytext.config.find_jupytext_configuration_file
                              and jupytext.config.load_jupytext_configuration_file(str(ROOT / "jupytext.toml")))
    assert jupytext.reads(written, fmt="md:myst").metadata.get("negsamp") == notebook.metadata["negsamp"]


@pytest.mark.parametrize("name", CHAPTERS)
def test_chapter_passes_quick_profile(executed_ledger, name):
    entry = executed_ledger["chapters"][name]
    failed = [(record["id"], record["measured"], record["expectation"])
              for record in entry["claims"] if not record["passed"]]
    assert entry["status"] == "passed", f"{name}: {entry['status']} {entry.get('error')} failed claims: {failed}"
    assert entry["profile"] == "quick"
    checked = [record for record in entry["claims"] if record["kind"] != "reported"]
    assert len(checked) >= 5, f"{name} checks only {len(checked)} claims"
    for seed, run in executed_ledger.get("seed_runs", {}).get(name, {}).items():
        assert run["status"] == "passed", f"{name} with seed {seed}: {run['status']} {run.get('error')}"


def test_every_claim_can_fail_and_none_is_fragile(executed_ledger):
    result = run_negsamp("audit")
    print(result.stdout)
    assert result.returncode == 0, result.stdout[-4000:]
    assert "0 cannot or do not pass" in result.stdout and " 0 fragile" in result.stdout


def test_book_renders_from_executed_notebooks(rendered_book, executed_ledger):
    ledger_page = (rendered_book / "book" / "claims.html").read_text(encoding="utf-8")
    for name in CHAPTERS:
        assert (rendered_book / "chapters" / f"{name}.html").exists()
        for record in executed_ledger["chapters"][name]["claims"]:
            assert record["id"] in ledger_page, f"claim {record['id']} missing from the ledger page"
    again = run_negsamp("build")
    assert again.returncode == 0 and "up to date" in again.stdout


def test_ledger_page_lists_every_claim_with_status(pages, executed_ledger):
    dom = pages["book/claims"]
    rows = re.findall(r'<tr class="negsamp-(passed|failed|reported)">(.*?)</tr>', dom, flags=re.S)
    by_id = {re.search(r"<code>([^<]+)</code>", row).group(1): (status, row) for status, row in rows}
    for name in CHAPTERS:
        for record in executed_ledger["chapters"][name]["claims"]:
            assert record["id"] in by_id, f"{record['id']} has no row on the ledger page"
            status, row = by_id[record["id"]]
            expected = "reported" if record["kind"] == "reported" else "passed"
            assert status == expected
            assert f'negsamp-status">{expected}<' in row


@pytest.mark.parametrize("name", CHAPTERS)
def test_chapter_page_shows_figures_equations_and_claims(pages, executed_ledger, name):
    dom = pages[f"chapters/{name}"]
    assert re.search(r'<img[^>]+src="[^"]*_images/[^"]+\.png"', dom), f"{name}: no figure on the page"
    assert "<mjx-container" in dom, f"{name}: MathJax did not render any equation"
    assert "\\begin{" not in re.sub(r"<script.*?</script>", "", dom, flags=re.S), f"{name}: raw LaTeX left"
    for record in executed_ledger["chapters"][name]["claims"]:
        anchor = "claim-" + record["id"].replace(".", "-")
        assert f'id="{anchor}"' in dom, f"{name}: the ledger links to #{anchor}, which the page lacks"


@pytest.mark.parametrize("path", ["book/claims", "book/environment", "book/intro"] + [f"chapters/{n}" for n in CHAPTERS])
def test_no_page_shows_an_error(pages, path):
    dom = pages[path]
    text = re.sub(r"<[^>]+>", " ", re.sub(r"<(script|style)\b.*?</\1>", "", dom, flags=re.S))
    assert "Traceback (most recent call last)" not in text
    assert "An Exception was encountered" not in text  # papermill's banner on a failed notebook
    assert 'class="output traceback' not in dom and "output error" not in dom
