"""The claim API: every kind passes and fails where it should, and records round-trip."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from negsamp.claims import (
    CLAIM_MIME,
    ClaimFailed,
    at_least,
    at_most,
    between,
    check_record,
    claim,
    close,
    fit_slope,
    has_sign,
    make_record,
    records_from_notebook,
    report,
    slope,
)

TEXT = {"statement": "a test statement", "source": "test source"}


@pytest.mark.parametrize(
    "expectation, passing, failing",
    [
        (close(1.0, atol=0.1), [1.0, 0.9001, 1.0999], [0.85, 1.2, float("nan")]),
        (close(100.0, rtol=0.01), [99.0, 101.0], [98.9, 101.2]),
        (close(0.0, stderr=0.5, z=4.0), [2.0, -1.9], [2.01, -2.5]),
        (at_most(3.0), [3.0, -10.0], [3.0001, 1e9]),
        (at_least(-1.0), [-1.0, 5.0], [-1.0001]),
        (between(0.2, 0.4), [0.2, 0.3, 0.4], [0.19, 0.41]),
        (has_sign(1), [1e-9, 3.0], [0.0, -1e-9]),
        (has_sign(-1), [-2.0], [0.0, 2.0]),
    ],
)
def test_expectation_kinds(expectation, passing, failing):
    for value in passing:
        assert expectation.admits(value), f"{expectation.kind} should admit {value}"
    for value in failing:
        assert not expectation.admits(value), f"{expectation.kind} should reject {value}"


def test_close_tolerance_from_stderr_is_recorded():
    expectation = close(1.0, stderr=0.02, z=3.0, atol=0.01)
    assert expectation.tolerance["atol"] == pytest.approx(0.07)
    assert expectation.tolerance["stderr"] == 0.02
    assert expectation.tolerance["z"] == 3.0


def test_slope_claim_uses_fit_stderr():
    x = np.array([1, 2, 4, 8, 16, 32], dtype=float)
    rng = np.random.default_rng(0)
    y = 3.0 * x**-0.5 * np.exp(rng.normal(0, 0.05, x.size))
    fit = fit_slope(x, y, loglog=True)
    record = make_record("t.slope", fit, slope(-0.5, stderr_z=4), **TEXT)
    assert record["passed"]
    assert record["measured"] == pytest.approx(fit.slope)
    assert record["tolerance"]["atol"] == pytest.approx(4 * fit.stderr)
    assert record["data"]["x"] == x.tolist()
    wrong = make_record("t.slope-wrong", fit, slope(-1.0, stderr_z=4), **TEXT)
    assert not wrong["passed"]


def test_fit_slope_exact_power_law():
    x = [1.0, 10.0, 100.0, 1000.0]
    fit = fit_slope(x, [2.0 * value**1.5 for value in x], loglog=True)
    assert fit.slope == pytest.approx(1.5, abs=1e-12)
    assert fit.intercept == pytest.approx(math.log(2.0), abs=1e-12)
    assert fit.stderr == pytest.approx(0.0, abs=1e-12)


def test_record_round_trips_raw_values_through_json():
    record = make_record("t.round-trip", np.float64(0.123456789012345), close(0.12, atol=0.01), unit="nats", **TEXT)
    restored = json.loads(json.dumps(record))
    assert restored["measured"] == 0.123456789012345
    assert isinstance(restored["measured"], float)
    assert restored["expected"] == 0.12
    assert restored["formatted"] == "0.1235"
    assert check_record(restored) is True
    restored["measured"] = 0.2
    assert check_record(restored) is False


def test_measured_tensor_and_integer_values():
    assert make_record("t.tensor", torch.tensor(2.5), at_most(3), **TEXT)["measured"] == 2.5
    integer = make_record("t.int", np.int64(7), at_least(7), **TEXT)
    assert integer["measured"] == 7 and isinstance(integer["measured"], int)


def test_claim_raises_with_id_value_and_tolerance():
    with pytest.raises(ClaimFailed) as caught:
        claim("t.fails", 1.5, close(1.0, atol=0.1), **TEXT)
    message = str(caught.value)
    assert "t.fails" in message
    assert "1.5" in message
    assert "atol" in message


def test_claim_returns_record_when_passing():
    record = claim("t.passes", 1.05, close(1.0, atol=0.1), **TEXT)
    assert record["passed"] is True
    assert record["kind"] == "close"


def test_report_is_never_failed():
    record = report("t.timing", 12.5, statement="a run time", unit="s")
    assert record["kind"] == "reported"
    assert record["passed"] is True


@pytest.mark.parametrize(
    "arguments, fragment",
    [
        (("Bad Id", 1.0, close(1.0)), "claim id"),
        (("t.nan", float("nan"), close(1.0)), None),
        (("t.vector", np.ones(3), close(1.0)), "scalar"),
        (("t.text", "0.5", close(1.0)), None),
        (("t.slope", 1.0, slope(1.0)), "SlopeFit"),
    ],
)
def test_claim_input_validation(arguments, fragment):
    with pytest.raises((ValueError, ClaimFailed)) as caught:
        claim(*arguments, **TEXT)
    if fragment:
        assert fragment in str(caught.value)


def test_claim_requires_statement_and_source():
    with pytest.raises(ValueError, match="statement"):
        claim("t.no-statement", 1.0, close(1.0), statement=" ", source="x")
    with pytest.raises(ValueError, match="source"):
        claim("t.no-source", 1.0, close(1.0), statement="x", source="")


@pytest.mark.parametrize(
    "build, message",
    [
        (lambda: close(float("nan")), "NaN"),
        (lambda: close(1.0, atol=-1), "atol"),
        (lambda: close(1.0, stderr=0.1), "together"),
        (lambda: between(2, 1), "empty"),
        (lambda: has_sign(0), "sign"),
    ],
)
def test_expectation_validation(build, message):
    with pytest.raises(ValueError, match=message):
        build()


def test_records_collected_from_notebook_outputs():
    import nbformat

    record = make_record("t.collect", 1.0, close(1.0), **TEXT)
    notebook = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("")
    cell.outputs = [nbformat.v4.new_output("display_data", data={"text/plain": "x", CLAIM_MIME: dict(record)})]
    notebook.cells = [nbformat.v4.new_markdown_cell("text"), cell]
    collected = records_from_notebook(notebook)
    assert [item["id"] for item in collected] == ["t.collect"]
    assert collected[0]["cell_index"] == 1
