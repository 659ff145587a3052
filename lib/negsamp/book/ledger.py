"""The claim ledger: one JSON file with each chapter's latest run and claim records.

Every write goes to a temporary file in the same folder and is then renamed
over the old ledger, so an interrupted run leaves the previous ledger intact.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from ..claims import check_record
from .chapters import BookError

LEDGER_FILE = "claims.json"
LEDGER_VERSION = 1


def ledger_path(build_dir: Path) -> Path:
    """Return the ledger's path inside ``build_dir``."""
    return Path(build_dir) / LEDGER_FILE


def empty_ledger() -> dict:
    """Return a ledger with no chapters."""
    return {"version": LEDGER_VERSION, "chapters": {}, "seed_runs": {}}


def load_ledger(path: Path) -> dict:
    """Read a ledger, or return an empty one if the file does not exist."""
    path = Path(path)
    if not path.exists():
        return empty_ledger()
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise BookError(f"{path} is not valid JSON ({error}); delete it and run the chapters again") from None
    if not isinstance(data, dict) or data.get("version") != LEDGER_VERSION or "chapters" not in data:
        raise BookError(f"{path} is not a version-{LEDGER_VERSION} claim ledger; delete it and run the chapters again")
    data.setdefault("seed_runs", {})
    return data


def write_json_atomic(path: Path, data) -> None:
    """Write ``data`` as JSON to ``path`` through a temporary file and a rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            json.dump(data, stream, indent=1, sort_keys=True)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def record_chapter(path: Path, result: dict) -> dict:
    """Replace one chapter's main entry in the ledger at ``path`` and return the new ledger.

    Runs with further seeds stay only if they were made from the same inputs.
    """
    ledger = load_ledger(path)
    name = result["chapter"]
    ledger["chapters"][name] = result
    runs = ledger.setdefault("seed_runs", {}).get(name, {})
    kept = {seed: run for seed, run in runs.items() if run.get("inputs_key") == result.get("inputs_key")}
    if kept:
        ledger["seed_runs"][name] = kept
    else:
        ledger["seed_runs"].pop(name, None)
    write_json_atomic(path, ledger)
    return ledger


def record_seed_run(path: Path, result: dict) -> dict:
    """Store a run with a further seed (for the robustness check) and return the new ledger."""
    ledger = load_ledger(path)
    run = {key: result.get(key) for key in ("status", "error", "failed_claims", "claims", "duration_s",
                                             "inputs_key", "seed", "profile", "device", "started")}
    ledger.setdefault("seed_runs", {}).setdefault(result["chapter"], {})[str(result["seed"])] = run
    write_json_atomic(path, ledger)
    return ledger


def all_claims(ledger: dict, chapters: list[str] | None = None) -> list[dict]:
    """Return every claim record, in chapter order, each re-checked from its raw fields.

    The re-check (``recheck`` key) does not trust the ``passed`` flag stored
    by the kernel.
    """
    names = chapters if chapters is not None else list(ledger["chapters"])
    records = []
    for name in names:
        entry = ledger["chapters"].get(name)
        if entry is None:
            continue
        for record in entry.get("claims", []):
            record = dict(record)
            record["recheck"] = check_record(record)
            records.append(record)
    return records


def claim_status(record: dict) -> str:
    """Return ``passed``, ``failed`` or ``reported`` for a claim record."""
    if record["kind"] == "reported":
        return "reported"
    return "passed" if check_record(record) and record.get("passed", False) else "failed"
