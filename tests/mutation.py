"""Run a chapter against a deliberately broken copy of the library.

A claim is only worth something if breaking the code it checks makes it
fail.  These helpers copy ``lib/negsamp`` to a temporary folder, apply one
textual change, and execute a chapter with that copy first on PYTHONPATH.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from conftest import ROOT, read_ledger, run_negsamp


def run_with_patched_library(tmp_path: Path, chapter: str, module: str, old: str, new: str):
    """Execute ``chapter`` with ``old`` replaced by ``new`` in ``lib/negsamp/<module>``.

    Returns the completed process and the chapter's ledger entry.  The
    replaced text must occur exactly once, so a refactoring that moves it
    makes the test fail loudly instead of testing nothing.
    """
    library = tmp_path / "lib"
    shutil.copytree(ROOT / "lib" / "negsamp", library / "negsamp",
                    ignore=shutil.ignore_patterns("__pycache__"))
    target = library / "negsamp" / module
    source = target.read_text(encoding="utf-8")
    count = source.count(old)
    assert count == 1, f"expected exactly one occurrence of {old!r} in {module}, found {count}"
    target.write_text(source.replace(old, new), encoding="utf-8")
    build_dir = tmp_path / "build"
    result = run_negsamp("run", chapter, "--build-dir", str(build_dir), "--quiet",
                         env={"PYTHONPATH": str(library)})
    entry = read_ledger(build_dir)["chapters"][chapter]
    imported_from = entry["footer"].get("modules", {}).get("negsamp") if entry.get("footer") else None
    if imported_from is not None:
        assert str(library) in imported_from, f"the kernel imported negsamp from {imported_from}, not the patched copy"
    return result, entry
