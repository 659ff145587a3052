"""Record, check and glue every number a chapter reports.

One call, :func:`claim`, takes a measured value and an expectation built by
:func:`close`, :func:`at_most`, :func:`at_least`, :func:`between`,
:func:`has_sign` or :func:`slope`.  It then

1. checks the value against the expectation,
2. emits the raw record (a JSON output with MIME type :data:`CLAIM_MIME`)
   that the runner collects into the claim ledger,
3. glues the formatted value under the claim id for ``{glue:text}`` in the
   prose, and shows a one-line verdict with an HTML anchor ``claim-<id>``,
4. raises :class:`ClaimFailed` if the check failed, which fails the papermill run.

:func:`report` records a number that has no expectation (a run time, a count)
so that it still reaches the prose through the ledger and never by hand.

The check is a pure function of the record (:func:`check_record`), so the
ledger can re-verify every claim and the audit can move a value past its
tolerance and see the check fail.
"""

from __future__ import annotations

import html
import json
import math
import re
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from . import __version__
from .repro import current_context

CLAIM_MIME = "application/vnd.negsamp.claim+json"
KINDS = ("close", "upper", "lower", "interval", "sign", "slope", "reported")
_ID_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_.-]*$")


class ClaimFailed(AssertionError):
    """A measured value fell outside its claim's tolerance."""


# === Expectations === #


@dataclass(frozen=True)
class Expectation:
    """What a measured value must satisfy.

    ``expected`` holds the raw numbers (a value, a bound or ``[low, high]``)
    and ``tolerance`` the raw tolerance fields (``rtol``, ``atol`` and, where
    the tolerance came from a standard error, ``stderr`` and ``z``).
    """

    kind: str
    expected: Any
    tolerance: dict = field(default_factory=dict)

    def admits(self, measured: float) -> bool:
        """Return whether ``measured`` satisfies the expectation."""
        return _admits(self.kind, self.expected, self.tolerance, measured)

    def describe(self) -> str:
        """Describe the expectation in words, for the verdict line and the ledger."""
        return describe_expectation(self.kind, self.expected, self.tolerance)


def _finite_number(value: Any, what: str) -> float:
    number = float(value)
    if math.isnan(number):
        raise ValueError(f"{what} must be a number, got NaN")
    return number


def close(expected: float, *, rtol: float = 0.0, atol: float = 0.0,
          stderr: float | None = None, z: float | None = None) -> Expectation:
    """Expect ``|measured - expected| <= atol + rtol * |expected|``.

    Give either ``atol``/``rtol`` directly, or ``stderr`` and ``z`` to set
    ``atol = z * stderr`` from the measurement's standard error; the record
    keeps both so a reader can see where the tolerance came from.
    """
    expected = _finite_number(expected, "expected")
    tolerance: dict = {"rtol": float(rtol), "atol": float(atol)}
    if (stderr is None) != (z is None):
        raise ValueError(f"give stderr and z together, got stderr={stderr!r}, z={z!r}")
    if stderr is not None:
        stderr = _finite_number(stderr, "stderr")
        z = _finite_number(z, "z")
        if stderr < 0 or z <= 0:
            raise ValueError(f"stderr must be >= 0 and z > 0, got stderr={stderr!r}, z={z!r}")
        tolerance = {"rtol": float(rtol), "atol": float(atol) + z * stderr, "stderr": stderr, "z": z}
    if tolerance["rtol"] < 0 or tolerance["atol"] < 0:
        raise ValueError(f"rtol and atol must be >= 0, got rtol={rtol!r}, atol={atol!r}")
    return Expectation("close", expected, tolerance)


def at_most(bound: float) -> Expectation:
    """Expect ``measured <= bound``."""
    return Expectation("upper", _finite_number(bound, "bound"))


def at_least(bound: float) -> Expectation:
    """Expect ``measured >= bound``."""
    return Expectation("lower", _finite_number(bound, "bound"))


def between(low: float, high: float) -> Expectation:
    """Expect ``low <= measured <= high``."""
    low = _finite_number(low, "low")
    high = _finite_number(high, "high")
    if low > high:
        raise ValueError(f"interval is empty: low={low!r} > high={high!r}")
    return Expectation("interval", [low, high])


def has_sign(sign: int) -> Expectation:
    """Expect ``measured > 0`` for ``sign=+1`` or ``measured < 0`` for ``sign=-1``."""
    if sign not in (1, -1):
        raise ValueError(f"sign must be +1 or -1, got {sign!r}")
    return Expectation("sign", int(sign))


def slope(expected: float, *, atol: float = 0.0, stderr_z: float | None = None) -> Expectation:
    """Expect a fitted slope (see :class:`SlopeFit`) within ``atol`` of ``expected``.

    With ``stderr_z`` the tolerance becomes ``atol + stderr_z * stderr``,
    where ``stderr`` is the fit's own standard error, filled in by :func:`claim`.
    """
    expected = _finite_number(expected, "expected")
    if atol < 0 or (stderr_z is not None and stderr_z <= 0):
        raise ValueError(f"atol must be >= 0 and stderr_z > 0, got atol={atol!r}, stderr_z={stderr_z!r}")
    tolerance: dict = {"atol": float(atol)}
    if stderr_z is not None:
        tolerance["z"] = float(stderr_z)
    return Expectation("slope", expected, tolerance)


@dataclass(frozen=True)
class SlopeFit:
    """Least-squares slope of ``y`` on ``x`` (after logs when ``loglog``) with its standard error."""

    slope: float
    intercept: float
    stderr: float
    x: list
    y: list
    loglog: bool


def fit_slope(x: Sequence[float], y: Sequence[float], *, loglog: bool = False) -> SlopeFit:
    """Fit ``y = intercept + slope * x`` by ordinary least squares.

    With ``loglog=True`` both axes are log-transformed first, so the slope is
    the exponent of a power law.  The standard error is the usual OLS one,
    ``sqrt(RSS / (n - 2) / sum((x - mean(x))**2))``.
    """
    xs = np.asarray(x, dtype=float)
    ys = np.asarray(y, dtype=float)
    if xs.shape != ys.shape or xs.ndim != 1 or xs.size < 3:
        raise ValueError(f"x and y must be 1-D of equal length >= 3, got shapes {xs.shape} and {ys.shape}")
    if loglog:
        if np.any(xs <= 0) or np.any(ys <= 0):
            raise ValueError("loglog fit needs positive x and y")
        u, v = np.log(xs), np.log(ys)
    else:
        u, v = xs, ys
    u_centred = u - u.mean()
    sxx = float(np.sum(u_centred**2))
    if sxx == 0:
        raise ValueError("x has no spread; a slope cannot be fitted")
    b = float(np.sum(u_centred * (v - v.mean())) / sxx)
    a = float(v.mean() - b * u.mean())
    residuals = v - (a + b * u)
    stderr = float(math.sqrt(np.sum(residuals**2) / (u.size - 2) / sxx))
    return SlopeFit(b, a, stderr, xs.tolist(), ys.tolist(), loglog)


# === Checking === #


def _admits(kind: str, expected: Any, tolerance: dict, measured: float) -> bool:
    if measured is None or math.isnan(measured):
        return False
    if kind in ("close", "slope"):
        allowed = tolerance.get("atol", 0.0) + tolerance.get("rtol", 0.0) * abs(expected)
        return abs(measured - expected) <= allowed
    if kind == "upper":
        return measured <= expected
    if kind == "lower":
        return measured >= expected
    if kind == "interval":
        return expected[0] <= measured <= expected[1]
    if kind == "sign":
        return measured * expected > 0
    if kind == "reported":
        return True
    raise ValueError(f"unknown claim kind {kind!r}; known kinds: {', '.join(KINDS)}")


def describe_expectation(kind: str, expected: Any, tolerance: dict) -> str:
    """Describe an expectation in words, from its raw record fields."""
    if kind in ("close", "slope"):
        parts = []
        if tolerance.get("atol"):
            parts.append(f"atol {format_value(tolerance['atol'])}")
        if tolerance.get("rtol"):
            parts.append(f"rtol {format_value(tolerance['rtol'])}")
        if "stderr" in tolerance:
            parts.append(f"{format_value(tolerance['z'])} x stderr {format_value(tolerance['stderr'])}")
        word = "slope " if kind == "slope" else ""
        return f"{word}{format_value(expected)} ± " + ("; ".join(parts) if parts else "0")
    if kind == "upper":
        return f"≤ {format_value(expected)}"
    if kind == "lower":
        return f"≥ {format_value(expected)}"
    if kind == "interval":
        return f"in [{format_value(expected[0])}, {format_value(expected[1])}]"
    if kind == "sign":
        return "> 0" if expected > 0 else "< 0"
    if kind == "reported":
        return "reported, not checked"
    raise ValueError(f"unknown claim kind {kind!r}")


def check_record(record: dict) -> bool:
    """Re-check a claim record from its raw fields, ignoring its stored ``passed`` flag."""
    return _admits(record["kind"], record["expected"], record.get("tolerance") or {}, record["measured"])


def format_value(value: Any, digits: int = 4) -> str:
    """Format a number with ``digits`` significant digits, integers exactly."""
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, (int, np.integer)):
        return f"{int(value):d}"
    number = float(value)
    if math.isinf(number) or math.isnan(number):
        return str(number)
    if number != 0 and (abs(number) >= 1e5 or abs(number) < 1e-3):
        return f"{number:.{digits - 1}e}"
    return f"{number:.{digits}g}"


# === Recording === #


class ClaimRecord(dict):
    """A claim record (a plain dict) that notebooks do not echo as a cell result.

    :func:`claim` already shows a verdict line, so a cell that ends with a
    claim call should not also print the raw dictionary.
    """

    def _ipython_display_(self) -> None:
        return None


def _scalar(value: Any) -> float | int:
    if hasattr(value, "detach"):  # torch tensor
        value = value.detach().cpu()
        if value.numel() != 1:
            raise ValueError(f"measured value must be a scalar, got a tensor of shape {tuple(value.shape)}")
        value = value.item()
    if isinstance(value, np.ndarray):
        if value.size != 1:
            raise ValueError(f"measured value must be a scalar, got an array of shape {value.shape}")
        value = value.item()
    if isinstance(value, (bool, np.bool_)):
        return int(bool(value))
    if isinstance(value, (int, np.integer)):
        return int(value)
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ValueError(f"measured value must be a real number, got {value!r}") from None


def _context_fields() -> dict:
    context = current_context()
    if context is None:
        return {"chapter": "interactive", "profile": None, "seed": None, "device": None}
    return {
        "chapter": context.chapter,
        "profile": context.profile,
        "seed": context.seed,
        "device": context.device_name,
    }


def _validate_text(id: str, statement: str, source: str) -> None:
    if not isinstance(id, str) or not _ID_PATTERN.match(id):
        raise ValueError(
            f"claim id {id!r} is invalid; use lower-case letters, digits, '.', '_' and '-', "
            "for example 'critic.nce-minimiser'"
        )
    if not statement or not statement.strip():
        raise ValueError(f"claim {id!r} needs a statement saying what is claimed")
    if not source or not source.strip():
        raise ValueError(f"claim {id!r} needs a source (paper and theorem, table or section)")


def _validate_domain(id: str, domain: Sequence[float] | None) -> list[float] | None:
    if domain is None:
        return None
    low, high = (float(value) for value in domain)
    if not low < high:
        raise ValueError(f"claim {id!r}: domain must be (low, high) with low < high, got {domain!r}")
    return [low, high]


def make_record(id: str, measured: Any, expect: Expectation, *, statement: str, source: str,
                unit: str = "", digits: int = 4, domain: Sequence[float] | None = None) -> dict:
    """Build the raw claim record without displaying or raising anything."""
    _validate_text(id, statement, source)
    domain = _validate_domain(id, domain)
    data: dict = {}
    expectation = expect
    if isinstance(measured, SlopeFit):
        fit = measured
        data = {"x": fit.x, "y": fit.y, "loglog": fit.loglog, "intercept": fit.intercept, "stderr": fit.stderr}
        if expect.kind == "slope" and "z" in expect.tolerance:
            tolerance = dict(expect.tolerance)
            tolerance["atol"] = tolerance.get("atol", 0.0) + tolerance["z"] * fit.stderr
            tolerance["stderr"] = fit.stderr
            expectation = Expectation("slope", expect.expected, tolerance)
        measured = fit.slope
    elif expect.kind == "slope":
        raise ValueError(f"claim {id!r}: a slope expectation needs a SlopeFit from fit_slope(), got {measured!r}")
    value = _scalar(measured)
    record = {
        "id": id,
        "statement": statement.strip(),
        "source": source.strip(),
        "kind": expectation.kind,
        "measured": value,
        "expected": expectation.expected,
        "tolerance": expectation.tolerance,
        "expectation": expectation.describe(),
        "formatted": format_value(value, digits),
        "unit": unit,
        "domain": domain,
        "library_version": __version__,
        **_context_fields(),
    }
    if data:
        record["data"] = data
    record["passed"] = check_record(record)
    return ClaimRecord(record)


def _emit(record: dict) -> None:
    """Display the record (verdict line plus raw JSON) and glue its formatted value."""
    from IPython import get_ipython
    from IPython.display import display

    if record["kind"] == "reported":
        mark, verdict = "•", "reported"
    elif record["passed"]:
        mark, verdict = "✓", "passed"
    else:
        mark, verdict = "✗", "FAILED"
    unit = f" {record['unit']}" if record["unit"] else ""
    text = (
        f"{mark} claim {record['id']} {verdict}: measured {record['formatted']}{unit}, "
        f"expected {record['expectation']}. {record['statement']} (source: {record['source']})"
    )
    anchor = "claim-" + record["id"].replace(".", "-")
    markup = (
        f'<div class="negsamp-claim negsamp-claim-{verdict.lower()}" id="{anchor}">'
        f"{mark} <code>{html.escape(record['id'])}</code> <b>{verdict}</b>: measured "
        f"<b>{html.escape(record['formatted'])}{html.escape(unit)}</b>, expected "
        f"{html.escape(record['expectation'])}. {html.escape(record['statement'])} "
        f"<i>Source: {html.escape(record['source'])}.</i></div>"
    )
    if get_ipython() is None:  # a plain Python script: no notebook to record into
        print(text)
        return
    from myst_nb import glue

    display({"text/plain": text, "text/html": markup, CLAIM_MIME: json.loads(json.dumps(record))}, raw=True)
    glue(record["id"], record["formatted"], display=False)


def claim(id: str, measured: Any, expect: Expectation, *, statement: str, source: str,
          unit: str = "", digits: int = 4, domain: Sequence[float] | None = None) -> dict:
    """Record a claimed number, check it, glue it for the prose, and fail loudly if it is off.

    Parameters
    ----------
    id : str
        Stable identifier, unique within the chapter, such as ``critic.nce-minimiser``.
        The prose shows the value with ``{glue:text}`id```.
    measured : float, int, 0-d array or tensor, or SlopeFit
        The raw measured value.
    expect : Expectation
        Built with :func:`close`, :func:`at_most`, :func:`at_least`,
        :func:`between`, :func:`has_sign` or :func:`slope`.
    statement : str
        What is claimed, in one sentence.
    source : str
        Where the claim comes from: paper and theorem, table or section, or
        "this chapter, eq. (label)" for our own derivations.
    unit : str, optional
        Unit of the value, shown after it.
    digits : int, optional
        Significant digits of the glued value.
    domain : (float, float), optional
        The values the measured quantity can take at all, such as ``(0, 1)``
        for an accuracy.  ``negsamp audit`` flags a claim whose check no value
        inside the domain could fail.

    Returns
    -------
    dict
        The record, as stored in the executed notebook.

    Raises
    ------
    ClaimFailed
        If the measured value does not satisfy ``expect``.
    """
    if not isinstance(expect, Expectation):
        raise ValueError(f"claim {id!r}: expect must be an Expectation (close, at_most, ...), got {expect!r}")
    if expect.kind == "reported":
        raise ValueError(f"claim {id!r}: use report() for numbers that are not checked")
    record = make_record(id, measured, expect, statement=statement, source=source, unit=unit, digits=digits,
                         domain=domain)
    _emit(record)
    if not record["passed"]:
        raise ClaimFailed(
            f"claim {record['id']!r} failed in chapter {record['chapter']!r}: measured {record['measured']!r}, "
            f"expected {record['expectation']} (kind {record['kind']}, tolerance {record['tolerance']})"
        )
    return record


def report(id: str, measured: Any, *, statement: str, source: str = "measured in this chapter",
           unit: str = "", digits: int = 4) -> dict:
    """Record and glue a number that carries no expectation, such as a run time."""
    record = make_record(id, measured, Expectation("reported", None), statement=statement,
                         source=source, unit=unit, digits=digits)
    _emit(record)
    return record


def records_from_notebook(notebook: Any) -> list[dict]:
    """Collect the claim records from an executed notebook, in execution order."""
    records = []
    for index, cell in enumerate(notebook.cells):
        if cell.get("cell_type") != "code":
            continue
        for output in cell.get("outputs", []):
            data = output.get("data", {})
            if CLAIM_MIME in data:
                record = dict(data[CLAIM_MIME])
                record["cell_index"] = index
                records.append(record)
    return records
