"""Compare two claim ledgers: which measured values moved, by how much, and run-time changes."""

from __future__ import annotations

import math

from ..claims import check_record, format_value


def _records(ledger: dict) -> dict[tuple[str, str], dict]:
    return {(name, record["id"]): record
            for name, entry in ledger["chapters"].items() for record in entry.get("claims", [])}


def diff_ledgers(old: dict, new: dict) -> dict:
    """Return moved, added and removed claims and per-chapter run-time changes.

    A claim has *moved* when its measured value differs at all; each row
    gives the absolute and relative change and whether the new value still
    passes its (new) check.
    """
    old_records, new_records = _records(old), _records(new)
    moved = []
    for key in sorted(old_records.keys() & new_records.keys()):
        before, after = old_records[key]["measured"], new_records[key]["measured"]
        if before == after or (isinstance(before, float) and isinstance(after, float)
                               and math.isnan(before) and math.isnan(after)):
            continue
        change = after - before
        relative = change / abs(before) if before else math.inf
        moved.append({
            "chapter": key[0], "id": key[1], "old": before, "new": after, "change": change, "relative": relative,
            "passes": new_records[key]["kind"] == "reported" or check_record(new_records[key]),
            "kind": new_records[key]["kind"],
        })
    times = []
    for name in sorted(old["chapters"].keys() | new["chapters"].keys()):
        before = old["chapters"].get(name, {}).get("duration_s")
        after = new["chapters"].get(name, {}).get("duration_s")
        times.append({"chapter": name, "old_s": before, "new_s": after,
                      "change_s": None if before is None or after is None else after - before})
    return {
        "moved": moved,
        "added": sorted(f"{chapter}:{claim_id}" for chapter, claim_id in new_records.keys() - old_records.keys()),
        "removed": sorted(f"{chapter}:{claim_id}" for chapter, claim_id in old_records.keys() - new_records.keys()),
        "times": times,
        "failing": sorted(f"{chapter}:{claim_id}" for (chapter, claim_id), record in new_records.items()
                          if record["kind"] != "reported" and not check_record(record)),
    }


def format_diff(result: dict) -> str:
    """Render :func:`diff_ledgers` output as plain-text tables."""
    lines = []
    if result["moved"]:
        width = max(len(row["id"]) for row in result["moved"])
        lines.append(f"{'claim':<{width}}  {'old':>11}  {'new':>11}  {'change':>11}  {'relative':>9}  within tolerance")
        for row in result["moved"]:
            relative = "-" if math.isinf(row["relative"]) else f"{row['relative']:+.2%}"
            verdict = "reported" if row["kind"] == "reported" else ("yes" if row["passes"] else "NO")
            lines.append(f"{row['id']:<{width}}  {format_value(row['old']):>11}  {format_value(row['new']):>11}  "
                         f"{format_value(row['change']):>11}  {relative:>9}  {verdict}")
    else:
        lines.append("no measured value moved")
    for label in ("added", "removed"):
        if result[label]:
            lines.append(f"{label}: {', '.join(result[label])}")
    lines.append("")
    lines.append(f"{'chapter':<28}  {'old (s)':>9}  {'new (s)':>9}  {'change (s)':>10}")
    for row in result["times"]:
        old = "-" if row["old_s"] is None else f"{row['old_s']:.1f}"
        new = "-" if row["new_s"] is None else f"{row['new_s']:.1f}"
        change = "-" if row["change_s"] is None else f"{row['change_s']:+.1f}"
        lines.append(f"{row['chapter']:<28}  {old:>9}  {new:>9}  {change:>10}")
    if result["failing"]:
        lines.append("")
        lines.append(f"failing in the new ledger: {', '.join(result['failing'])}")
    return "\n".join(lines)
