"""Re-execution from content hashes, parallel runs, interruption, seeds, audit, diff and budgets."""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import FIXTURES, ROOT, read_ledger, run_negsamp
from negsamp.book.audit import audit_record, margin, robustness
from negsamp.book.cache import stale_inputs
from negsamp.book.diff import diff_ledgers
from negsamp.claims import at_least, at_most, between, close, has_sign, make_record

TEXT = {"statement": "a statement", "source": "a source"}


# === A small book in a temporary folder, with its own copy of the library === #


@pytest.fixture
def small_book(tmp_path):
    """Two TOC chapters (one imports negsamp.metrics, one negsamp.data and a data file) and a library copy."""
    root = tmp_path / "book"
    (root / "chapters").mkdir(parents=True)
    for name in ("uses_metrics.md", "uses_data.md", "fixture_data.txt"):
        shutil.copy2(FIXTURES / name, root / "chapters" / name)
    (root / "_toc.yml").write_text(
        "format: jb-book\nroot: intro\nchapters:\n  - file: chapters/uses_metrics\n  - file: chapters/uses_data\n")
    shutil.copy2(ROOT / "requirements.txt", root / "requirements.txt")
    library = tmp_path / "lib"
    shutil.copytree(ROOT / "lib" / "negsamp", library / "negsamp", ignore=shutil.ignore_patterns("__pycache__"))
    return root, library


def _run_small(root: Path, library: Path, *arguments: str):
    result = run_negsamp("run", "--root", str(root), "--quiet", *arguments, env={"PYTHONPATH": str(library)})
    ledger = read_ledger(root / "_build")
    return result, ledger


def _started(ledger: dict) -> dict[str, str]:
    return {name: entry["started"] + entry["executed"] for name, entry in ledger["chapters"].items()}


def test_rerun_only_what_changed(small_book):
    root, library = small_book
    result, first = _run_small(root, library)
    assert result.returncode == 0, result.stderr
    assert set(first["chapters"]) == {"uses_metrics", "uses_data"}
    modules = first["chapters"]["uses_metrics"]["inputs"]
    assert any(name.endswith("metrics.py") for name in modules)
    assert not any(name.endswith("data.py") for name in modules)

    result, again = _run_small(root, library)
    assert result.returncode == 0
    assert "0 runs executed" in result.stdout
    assert _started(again) == _started(first)

    metrics_file = library / "negsamp" / "metrics.py"
    os.utime(metrics_file, (time.time() + 60, time.time() + 60))  # newer mtime, same content
    result, touched = _run_small(root, library)
    assert "0 runs executed" in result.stdout
    assert _started(touched) == _started(first)

    metrics_file.write_text(metrics_file.read_text() + "\n# an edit\n")
    time.sleep(1.1)  # the ledger records start times to the second
    result, edited = _run_small(root, library)
    assert "1 runs executed" in result.stdout
    assert "uses_metrics will run" in result.stderr and "metrics.py changed" in result.stderr
    assert edited["chapters"]["uses_metrics"]["started"] != first["chapters"]["uses_metrics"]["started"] or \
        edited["chapters"]["uses_metrics"]["duration_s"] != first["chapters"]["uses_metrics"]["duration_s"]
    assert _started(edited)["uses_data"] == _started(first)["uses_data"]

    (root / "chapters" / "fixture_data.txt").write_text("alpha  beta gamma\n")  # new content, still three words
    result, _ = _run_small(root, library)
    assert "1 runs executed" in result.stdout and "uses_data will run" in result.stderr

    result, _ = _run_small(root, library, "--seed", "3")
    assert "2 runs executed" in result.stdout

    result, _ = _run_small(root, library, "--seed", "3", "--force")
    assert "2 runs executed" in result.stdout


def test_stale_inputs_reasons(tmp_path):
    source = tmp_path / "chapter.md"
    source.write_text("x")
    executed = tmp_path / "chapter.ipynb"
    executed.write_text("{}")
    from negsamp.book.cache import chapter_inputs

    inputs = chapter_inputs(source, tmp_path, {}, [])
    entry = {"status": "passed", "inputs": inputs, "executed": str(executed),
             "parameters": {"profile": "quick", "device": "auto", "seed": 0}}
    parameters = {"profile": "quick", "device": "auto", "seed": 0}
    assert stale_inputs(entry, tmp_path, source, parameters) == []
    assert stale_inputs(entry, tmp_path, source, dict(parameters, profile="full")) == ["profile 'quick' -> 'full'"]
    source.write_text("y")
    assert stale_inputs(entry, tmp_path, source, parameters) == ["chapter.md changed"]
    assert stale_inputs(None, tmp_path, source, parameters) == ["never run"]
    assert stale_inputs(dict(entry, status="failed"), tmp_path, source, parameters) == ["last run failed"]


# === Parallel, interrupted and multi-seed runs === #


def test_parallel_run_matches_serial(tmp_path):
    chapters = [str(FIXTURES / name) for name in ("minimal_pass.md", "uses_metrics.md", "fragile_claim.md")]
    serial, parallel = tmp_path / "serial", tmp_path / "parallel"
    assert run_negsamp("run", *chapters, "--build-dir", str(serial), "--quiet").returncode == 0
    assert run_negsamp("run", *chapters, "--jobs", "3", "--build-dir", str(parallel), "--quiet").returncode == 0
    for name in ("minimal_pass", "uses_metrics", "fragile_claim"):
        first = read_ledger(serial)["chapters"][name]["claims"]
        second = read_ledger(parallel)["chapters"][name]["claims"]
        strip = lambda records: [{k: v for k, v in r.items() if k != "cell_index"} for r in records]  # noqa: E731
        assert strip(first) == strip(second)


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGKILL])
def test_interrupted_run_keeps_previous_ledger(build_dir, stop):
    assert run_negsamp("run", str(FIXTURES / "minimal_pass.md"), "--build-dir", str(build_dir), "--quiet").returncode == 0
    before = (build_dir / "claims.json").read_bytes()
    process = subprocess.Popen(
        [sys.executable, "-m", "negsamp", "run", str(FIXTURES / "slow_sleep.md"), "--build-dir", str(build_dir)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    deadline = time.time() + 90
    output = ""
    while "sleeping" not in output and time.time() < deadline:
        output += process.stdout.readline()
    assert "sleeping" in output, output
    os.killpg(process.pid, stop)
    process.wait(timeout=60)
    if stop == signal.SIGKILL:
        subprocess.run(["pkill", "-f", "ipykernel_launcher.*" + str(build_dir)], check=False)
    after = (build_dir / "claims.json").read_bytes()
    assert after == before
    assert json.loads(after)["chapters"].keys() == {"minimal_pass"}


def test_seeds_record_spread_and_audit_flags_fragile(build_dir):
    result = run_negsamp("run", str(FIXTURES / "fragile_claim.md"), "--seeds", "0,1,2", "--jobs", "2",
                         "--build-dir", str(build_dir), "--quiet")
    assert result.returncode == 0, result.stderr
    ledger = read_ledger(build_dir)
    assert set(ledger["seed_runs"]["fragile_claim"]) == {"1", "2"}
    summary = robustness(ledger, "fragile_claim")
    assert summary["fixture.fragile"]["values"] == pytest.approx([0.0, 0.1, 0.2])
    assert summary["fixture.fragile"]["fragile"] is True
    assert summary["fixture.steady"]["fragile"] is False
    audit = run_negsamp("audit", "--build-dir", str(build_dir), "--root", str(ROOT))
    # The fixture is outside the TOC, so the audit of the book's own chapters does not see it.
    assert "fixture.fragile" not in audit.stdout


def test_audit_command_flags_fragile_toc_chapter(tmp_path):
    root = tmp_path / "book"
    (root / "chapters").mkdir(parents=True)
    shutil.copy2(FIXTURES / "fragile_claim.md", root / "chapters" / "fragile_claim.md")
    (root / "_toc.yml").write_text("format: jb-book\nroot: intro\nchapters:\n  - file: chapters/fragile_claim\n")
    assert run_negsamp("run", "--root", str(root), "--seeds", "0,1,2", "--quiet").returncode == 0
    audit = run_negsamp("audit", "--root", str(root))
    assert audit.returncode == 1
    assert "FRAGILE: claim fixture.fragile" in audit.stdout
    assert "2 claims checked in 1 chapters; 2 can fail" in audit.stdout
    assert "1 fragile across 3 seed(s)" in audit.stdout


def test_further_seed_runs_are_cached(build_dir):
    chapter = str(FIXTURES / "minimal_pass.md")
    assert run_negsamp("run", chapter, "--seeds", "0,1", "--build-dir", str(build_dir), "--quiet").returncode == 0
    again = run_negsamp("run", chapter, "--seeds", "0,1,2", "--build-dir", str(build_dir), "--quiet")
    assert "1 runs executed" in again.stdout  # only seed 2 is new


# === Audit and diff === #


@pytest.mark.parametrize(
    "expectation, measured",
    [(close(1.0, atol=0.1), 1.05), (close(0.0, atol=0.0), 0.0), (at_most(1e-12), 1e-15), (at_most(0.0), 0.0),
     (at_least(3.0), 4.0), (between(0.2, 0.4), 0.3), (has_sign(1), 2.0), (has_sign(-1), -1e-9)],
)
def test_audit_moves_value_past_tolerance(expectation, measured):
    record = make_record("t.audit", measured, expectation, **TEXT)
    result = audit_record(record)
    assert result["status"] == "can-fail", result
    assert all(attempt["fails"] for attempt in result["tried"])
    assert margin(record) >= 0


def test_audit_finds_vacuous_claims():
    unbounded = make_record("t.unbounded", 5.0, at_most(math.inf), **TEXT)
    assert audit_record(unbounded)["status"] == "vacuous"
    outside_domain = make_record("t.accuracy", 0.8, at_least(-1.0), domain=(0.0, 1.0), **TEXT)
    assert audit_record(outside_domain)["status"] == "vacuous"
    inside_domain = make_record("t.accuracy-ok", 0.8, at_least(0.5), domain=(0.0, 1.0), **TEXT)
    assert audit_record(inside_domain)["status"] == "can-fail"


def test_margin_sign():
    assert margin(make_record("t.m", 0.9, at_most(1.0), **TEXT)) == pytest.approx(0.1)
    assert margin(make_record("t.n", 1.2, close(1.0, atol=0.1), **TEXT)) == pytest.approx(-0.1)


def _ledger(values: dict[str, float], duration: float) -> dict:
    claims = [dict(make_record(claim_id, value, close(1.0, atol=0.5), **TEXT), chapter="c") for claim_id, value in values.items()]
    return {"version": 1, "seed_runs": {}, "chapters": {"c": {"claims": claims, "duration_s": duration}}}


def test_diff_lists_moved_added_removed_and_times(tmp_path):
    old = _ledger({"c.a": 1.0, "c.b": 1.2, "c.gone": 1.0}, 10.0)
    new = _ledger({"c.a": 1.0, "c.b": 1.6, "c.new": 1.0}, 12.5)
    result = diff_ledgers(old, new)
    assert [row["id"] for row in result["moved"]] == ["c.b"]
    assert result["moved"][0]["change"] == pytest.approx(0.4)
    assert result["moved"][0]["passes"] is False
    assert result["added"] == ["c:c.new"] and result["removed"] == ["c:c.gone"]
    assert result["times"][0]["change_s"] == pytest.approx(2.5)
    assert result["failing"] == ["c:c.b"]
    (tmp_path / "old.json").write_text(json.dumps(old))
    (tmp_path / "new.json").write_text(json.dumps(new))
    printed = run_negsamp("diff", str(tmp_path / "old.json"), str(tmp_path / "new.json"))
    assert printed.returncode == 1
    assert "c.b" in printed.stdout and "NO" in printed.stdout and "+2.5" in printed.stdout
    missing = run_negsamp("diff", str(tmp_path / "old.json"), str(tmp_path / "nope.json"))
    assert missing.returncode == 2 and "not found" in missing.stderr


# === Budgets and the full profile === #


def test_over_budget_fails_with_measured_time(build_dir):
    result = run_negsamp("run", str(FIXTURES / "over_budget.md"), "--build-dir", str(build_dir), "--quiet")
    assert result.returncode == 1
    assert "OverBudget" in result.stdout and "budget of 1 s" in result.stdout and "of CPU time" in result.stdout
    assert read_ledger(build_dir)["chapters"]["over_budget"]["status"] == "failed"
    scaled = run_negsamp("run", str(FIXTURES / "over_budget.md"), "--budget-scale", "30",
                         "--build-dir", str(build_dir), "--quiet")
    assert scaled.returncode == 0, scaled.stdout


def test_full_profile_on_cpu_reports_expected_cost(build_dir):
    import torch

    if torch.cuda.is_available():
        pytest.skip("needs a machine without CUDA")
    result = run_negsamp("run", str(FIXTURES / "minimal_pass.md"), "--profile", "full",
                         "--build-dir", str(build_dir), "--quiet")
    assert result.returncode == 0
    assert "full profile on the CPU" in result.stderr
