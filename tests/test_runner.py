"""The runner as a user meets it: the negsamp command on fixture chapters outside the TOC."""

from __future__ import annotations

import json

import pytest
import torch

from conftest import FIXTURES, read_ledger, run_negsamp

PASSING = str(FIXTURES / "minimal_pass.md")
FAILING_CLAIM = str(FIXTURES / "canary_failing_claim.md")
RAISES = str(FIXTURES / "canary_raises.md")
MALFORMED = str(FIXTURES / "malformed_parameters.md")


def test_passing_chapter_records_claims(build_dir):
    result = run_negsamp("run", PASSING, "--build-dir", str(build_dir), "--seed", "5")
    assert result.returncode == 0, result.stderr
    entry = read_ledger(build_dir)["chapters"]["minimal_pass"]
    assert entry["status"] == "passed"
    records = {record["id"]: record for record in entry["claims"]}
    assert records["fixture.seed"]["measured"] == 5
    assert records["fixture.uniform-draw"]["profile"] == "quick"
    assert records["fixture.uniform-draw"]["seed"] == 5
    assert records["fixture.uniform-draw"]["chapter"] == "minimal_pass"
    assert (build_dir / "executed" / "minimal_pass.ipynb").exists()
    assert entry["footer"]["modules"], "the footer cell should list the negsamp modules the chapter imported"


def test_same_seed_gives_identical_values(build_dir, tmp_path):
    other = tmp_path / "other"
    run_negsamp("run", PASSING, "--build-dir", str(build_dir), "--seed", "11", "--quiet")
    run_negsamp("run", PASSING, "--build-dir", str(other), "--seed", "11", "--quiet")
    first = read_ledger(build_dir)["chapters"]["minimal_pass"]["claims"]
    second = read_ledger(other)["chapters"]["minimal_pass"]["claims"]
    assert [record["measured"] for record in first] == [record["measured"] for record in second]


def test_failed_claim_names_claim_and_keeps_other_results(build_dir):
    assert run_negsamp("run", PASSING, "--build-dir", str(build_dir), "--quiet").returncode == 0
    result = run_negsamp("run", FAILING_CLAIM, "--build-dir", str(build_dir), "--quiet")
    assert result.returncode == 1
    output = result.stdout + result.stderr
    assert "canary_failing_claim" in output
    assert "canary.wrong-value" in output
    assert "measured 1.25" in output
    assert "atol" in output
    ledger = read_ledger(build_dir)
    assert ledger["chapters"]["minimal_pass"]["status"] == "passed"
    entry = ledger["chapters"]["canary_failing_claim"]
    assert entry["status"] == "failed"
    assert entry["failed_claims"] == ["canary.wrong-value"]
    assert [record["id"] for record in entry["claims"]] == ["canary.right-value", "canary.wrong-value"]


def test_raising_chapter_names_chapter_and_cell(build_dir):
    result = run_negsamp("run", RAISES, "--build-dir", str(build_dir), "--quiet")
    assert result.returncode == 1
    output = result.stdout + result.stderr
    assert "canary_raises" in output
    assert "RuntimeError" in output
    assert "raise RuntimeError" in output  # the failing cell's first line
    assert read_ledger(build_dir)["chapters"]["canary_raises"]["status"] == "error"


def test_claims_command_json_and_exit_status(build_dir):
    run_negsamp("run", PASSING, "--build-dir", str(build_dir), "--quiet")
    listed = run_negsamp("claims", "--json", "--build-dir", str(build_dir))
    assert listed.returncode == 0
    records = [json.loads(line) for line in listed.stdout.splitlines()]
    keys = {"chapter", "id", "status", "measured", "expected", "tolerance", "profile", "seed", "device"}
    assert all(keys <= set(record) for record in records)
    assert {record["status"] for record in records} == {"passed", "reported"}
    run_negsamp("run", FAILING_CLAIM, "--build-dir", str(build_dir), "--quiet")
    table = run_negsamp("claims", "--build-dir", str(build_dir))
    assert table.returncode == 1
    assert "canary.wrong-value" in table.stdout and "failed" in table.stdout


def test_parallel_run_isolates_failures(build_dir):
    result = run_negsamp("run", PASSING, RAISES, FAILING_CLAIM, "--jobs", "2", "--build-dir", str(build_dir), "--quiet")
    assert result.returncode == 1
    statuses = {name: entry["status"] for name, entry in read_ledger(build_dir)["chapters"].items()}
    assert statuses == {"minimal_pass": "passed", "canary_raises": "error", "canary_failing_claim": "failed"}


@pytest.mark.parametrize(
    "arguments, fragment",
    [
        (["run", "no_such_chapter"], "unknown chapter 'no_such_chapter'; valid chapters: "),
        (["run", PASSING, "--profile", "fast"], "invalid choice: 'fast'"),
        (["run", PASSING, "--device", "gpu"], "invalid choice: 'gpu'"),
        (["run", PASSING, "--jobs", "0"], "positive integer"),
        (["run", PASSING, "--seed", "-3"], "seed"),
        (["run", MALFORMED], "does not assign seed"),
        (["run", "missing.md"], "not found"),
    ],
)
def test_bad_arguments_rejected_before_execution(build_dir, arguments, fragment):
    result = run_negsamp(*arguments, "--build-dir", str(build_dir))
    assert result.returncode == 2
    assert fragment in result.stderr
    if "valid chapters" in fragment:
        assert "optimal_critic" in result.stderr.split("valid chapters:")[1]
    assert not (build_dir / "claims.json").exists(), "nothing may execute after a rejected request"


def test_malformed_chapter_stops_whole_run(build_dir):
    result = run_negsamp("run", PASSING, MALFORMED, "--build-dir", str(build_dir))
    assert result.returncode == 2
    assert not (build_dir / "claims.json").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_gpu_rejected(build_dir):
    result = run_negsamp("run", PASSING, "--device", "cuda", "--build-dir", str(build_dir))
    assert result.returncode == 2
    assert "--device auto" in result.stderr
    assert not (build_dir / "claims.json").exists()


def test_build_refuses_when_chapter_not_passed(build_dir):
    result = run_negsamp("build", "--build-dir", str(build_dir))
    assert result.returncode == 2
    assert "optimal_critic: not executed" in result.stderr


def test_claims_without_ledger_says_what_to_do(build_dir):
    result = run_negsamp("claims", "--build-dir", str(build_dir))
    assert result.returncode == 2
    assert "run `negsamp run` first" in result.stderr
