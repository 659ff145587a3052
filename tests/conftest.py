"""Shared paths and a helper that runs the ``negsamp`` command as a user would."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]

# Library tests use small tensors, which run faster on one torch thread than on two (see
# negsamp.repro.thread_count); NEGSAMP_THREADS overrides, as it does for chapters.
torch.set_num_threads(int(os.environ.get("NEGSAMP_THREADS") or "1"))
FIXTURES = ROOT / "tests" / "chapters"


def run_negsamp(*args: str, env: dict | None = None, timeout: int = 900) -> subprocess.CompletedProcess:
    """Run ``python -m negsamp ARGS`` from the book root and capture its output."""
    environment = dict(os.environ)
    if env:
        environment.update(env)
    return subprocess.run([sys.executable, "-m", "negsamp", *args], cwd=ROOT, env=environment,
                          capture_output=True, text=True, timeout=timeout)


def read_ledger(build_dir: Path) -> dict:
    """Return the ledger written under ``build_dir``."""
    return json.loads((build_dir / "claims.json").read_text(encoding="utf-8"))


@pytest.fixture(autouse=True)
def _default_dtype(request):
    """Give each test its module's ``DEFAULT_DTYPE`` (float32 when unset) and restore the old one.

    A module-level ``torch.set_default_dtype`` would leak into every module collected after it.
    """
    previous = torch.get_default_dtype()
    torch.set_default_dtype(getattr(request.module, "DEFAULT_DTYPE", torch.float32))
    yield
    torch.set_default_dtype(previous)


@pytest.fixture
def build_dir(tmp_path: Path) -> Path:
    """A fresh build folder, so tests never touch the book's own ledger."""
    return tmp_path / "build"
