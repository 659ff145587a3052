"""Decide whether a chapter must run again, from content hashes of what it depended on.

A chapter's inputs are its MyST source, the ``negsamp`` modules its kernel
actually imported during its last run (listed by the footer cell), the
pinned ``requirements.txt``, the data files its front matter declares
(``negsamp: data: [path, ...]``), and its parameters (profile, device,
seed).  The key is a SHA-256 over the content of each input, so editing a
file re-runs exactly the chapters that used it, and touching a file without
changing it re-runs nothing.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

REQUIREMENTS = "requirements.txt"


def file_digest(path: Path) -> str:
    """Return the SHA-256 of a file's bytes, or ``missing`` if it does not exist."""
    path = Path(path)
    if not path.is_file():
        return "missing"
    return hashlib.sha256(path.read_bytes()).hexdigest()


def declared_data_files(notebook, chapter_path: Path) -> list[Path]:
    """Return the data files a chapter declares in its front matter, relative to the chapter."""
    entries = notebook.metadata.get("negsamp", {}).get("data", [])
    return [(Path(chapter_path).parent / entry).resolve() for entry in entries]


def _input_name(path: Path, root: Path) -> str:
    """Name an input by its path relative to ``root`` when inside it, else by its absolute path."""
    path = Path(path).resolve()
    try:
        return str(path.relative_to(Path(root).resolve()))
    except ValueError:
        return str(path)


def chapter_inputs(chapter_path: Path, root: Path, modules: dict, data_files: list[Path]) -> dict[str, str]:
    """Map each input of a chapter to its content digest.

    ``modules`` maps module names to their files, as the footer cell
    recorded them.  Paths are stored relative to ``root`` when they lie
    inside it, so a ledger stays valid when the book folder moves.
    """
    def name_of(path: Path) -> str:
        return _input_name(path, root)

    inputs = {name_of(chapter_path): file_digest(chapter_path)}
    inputs[REQUIREMENTS] = file_digest(Path(root) / REQUIREMENTS)
    for file in sorted({str(path) for path in modules.values() if path}):
        inputs[name_of(Path(file))] = file_digest(Path(file))
    for path in data_files:
        inputs[name_of(path)] = file_digest(path)
    return inputs


def current_digests(inputs: dict[str, str], root: Path) -> dict[str, str]:
    """Recompute the digest of every input listed in a ledger entry."""
    digests = {}
    for name in inputs:
        path = Path(name)
        digests[name] = file_digest(path if path.is_absolute() else Path(root) / path)
    return digests


def cache_key(inputs: dict[str, str], parameters: dict) -> str:
    """Return one SHA-256 over the inputs' digests and the run parameters."""
    payload = json.dumps({"inputs": inputs, "parameters": parameters}, sort_keys=True)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def stale_inputs(entry: dict | None, root: Path, chapter_path: Path, parameters: dict) -> list[str]:
    """Return why a chapter must run again (empty when its last run is still valid).

    Each reason names the changed input or parameter, which the runner prints.
    """
    if entry is None:
        return ["never run"]
    if entry.get("status") != "passed":
        return [f"last run {entry.get('status')}"]
    recorded = entry.get("inputs")
    if not recorded:
        return ["no recorded inputs"]
    executed = entry.get("executed")
    if not executed or not Path(executed).exists():
        return ["executed notebook missing"]
    reasons = []
    recorded_parameters = entry.get("parameters", {})
    for key, value in parameters.items():
        if recorded_parameters.get(key) != value:
            reasons.append(f"{key} {recorded_parameters.get(key)!r} -> {value!r}")
    if _input_name(chapter_path, root) not in recorded:
        reasons.append("chapter source moved")
    for name, digest in current_digests(recorded, root).items():
        if digest != recorded[name]:
            reasons.append(f"{name} changed")
    return reasons
