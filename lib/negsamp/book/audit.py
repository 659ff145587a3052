"""Show that every claim can fail, and that no claim is fragile across seeds.

*Audit.*  A claim is only evidence if its check could have failed.  For each
recorded claim the audit moves the measured value just past the tolerance
(on each side that has a boundary) and re-runs the pure check of
:func:`negsamp.claims.check_record`; a claim none of whose moved values
fails, or whose only failing values lie outside the quantity's declared
``domain``, is *vacuous*.

*Robustness.*  With runs at several seeds (``negsamp run --seeds 0,1,2``),
each claim's *margin* (the distance from the measured value to the nearest
boundary of its check, positive when it passes) is compared with the
seed-to-seed standard deviation of the value.  A claim that failed at any
seed, or whose smallest margin is below one standard deviation, is
*fragile*: a new seed would fail it about one time in six or more.
"""

from __future__ import annotations

import math
import statistics

from ..claims import check_record

FRAGILE_MARGIN_SD = 1.0


def _allowed(record: dict) -> float:
    tolerance = record.get("tolerance") or {}
    return tolerance.get("atol", 0.0) + tolerance.get("rtol", 0.0) * abs(record["expected"])


def boundaries(record: dict) -> list[tuple[float, int]]:
    """Return the check's boundaries as ``(value, direction)``; moving past a value in ``direction`` fails it."""
    kind, expected = record["kind"], record["expected"]
    if kind in ("close", "slope"):
        allowed = _allowed(record)
        return [(expected + allowed, +1), (expected - allowed, -1)]
    if kind == "upper":
        return [(expected, +1)]
    if kind == "lower":
        return [(expected, -1)]
    if kind == "interval":
        return [(expected[1], +1), (expected[0], -1)]
    if kind == "sign":
        return [(0.0, -int(expected))]
    return []


def margin(record: dict) -> float:
    """Distance from the measured value to the nearest boundary; positive inside, negative outside."""
    value = record["measured"]
    edges = boundaries(record)
    if not edges or value is None or math.isnan(value):
        return math.nan
    return min((edge - value) * direction for edge, direction in edges)


def failing_values(record: dict) -> list[float]:
    """Return values just past each boundary of the record's check."""
    values = []
    for edge, direction in boundaries(record):
        scale = max(abs(edge), _allowed(record) if record["kind"] in ("close", "slope") else 0.0)
        step = scale * 1e-6 if scale > 0 else 1e-300
        values.append(edge + direction * step)
    return values


def audit_record(record: dict) -> dict:
    """Check that ``record`` passes as recorded and fails once its value is moved past the tolerance."""
    result = {"id": record["id"], "chapter": record.get("chapter"), "kind": record["kind"]}
    if record["kind"] == "reported":
        result.update(status="reported", detail="recorded without a check")
        return result
    domain = record.get("domain") or [-math.inf, math.inf]
    tried = []
    for value in failing_values(record):
        moved = dict(record, measured=value)
        inside = domain[0] <= value <= domain[1]
        tried.append({"value": value, "fails": not check_record(moved), "inside_domain": inside})
    result["tried"] = tried
    passes = check_record(record)
    useful = [attempt for attempt in tried if attempt["inside_domain"]]
    if not passes:
        result.update(status="failing", detail="the recorded value does not pass its own check")
    elif not tried or not any(attempt["fails"] for attempt in useful):
        reason = "no boundary" if not tried else "no value inside its domain fails the check"
        result.update(status="vacuous", detail=reason)
    elif not all(attempt["fails"] for attempt in tried if attempt["inside_domain"]):
        result.update(status="vacuous", detail="a value moved past the tolerance still passes")
    else:
        failing = ", ".join(f"{attempt['value']:.6g}" for attempt in useful if attempt["fails"])
        result.update(status="can-fail", detail=f"fails at {failing}")
    return result


def seed_values(ledger: dict, chapter: str) -> dict[str, list[dict]]:
    """Return each claim's records across the main run and every further seed's run."""
    entry = ledger["chapters"].get(chapter)
    if entry is None:
        return {}
    runs = [entry] + [run for _, run in sorted(ledger.get("seed_runs", {}).get(chapter, {}).items(),
                                                  key=lambda item: int(item[0]))]
    by_id: dict[str, list[dict]] = {}
    for run in runs:
        for record in run.get("claims", []):
            by_id.setdefault(record["id"], []).append(record)
    return by_id


def robustness(ledger: dict, chapter: str) -> dict[str, dict]:
    """Summarise each claim of ``chapter`` across seeds: values, spread, smallest margin and flags."""
    summary = {}
    for claim_id, records in seed_values(ledger, chapter).items():
        values = [record["measured"] for record in records]
        checked = records[0]["kind"] != "reported"
        spread = statistics.stdev(values) if len(values) > 1 else math.nan
        margins = [margin(record) for record in records] if checked else []
        smallest = min(margins) if margins else math.nan
        failed = checked and not all(check_record(record) for record in records)
        fragile = checked and (failed or (len(values) > 1 and spread > 0 and smallest < FRAGILE_MARGIN_SD * spread))
        summary[claim_id] = {
            "seeds": [record.get("seed") for record in records],
            "values": values,
            "sd": spread,
            "min_margin": smallest,
            "margin_in_sd": smallest / spread if checked and spread and spread > 0 else math.inf,
            "failed_at_some_seed": failed,
            "fragile": fragile,
        }
    return summary
