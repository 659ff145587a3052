"""Seeding, device resolution and the CPU thread policy shared by every chapter.

A chapter calls :func:`setup` once, right after its ``parameters`` cell.
The returned :class:`RunContext` carries the resolved device, the seed and the
profile, and the claim records of :mod:`negsamp.claims` copy them.
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass
from typing import Any

import numpy as np

PROFILES = ("quick", "full")
DEVICES = ("auto", "cpu", "cuda")

# Environment variables set by the runner for each chapter kernel.
CHAPTER_ENV = "NEGSAMP_CHAPTER"
JOBS_ENV = "NEGSAMP_JOBS"
THREADS_ENV = "NEGSAMP_THREADS"


def validate_profile(profile: Any) -> str:
    """Return ``profile`` if it names a known profile, else raise ``ValueError``."""
    if profile not in PROFILES:
        raise ValueError(
            f"unknown profile {profile!r}; choose one of {', '.join(PROFILES)}"
        )
    return profile


def validate_device_name(device: Any) -> str:
    """Return ``device`` if it is one of ``auto``, ``cpu``, ``cuda``, else raise ``ValueError``."""
    if device not in DEVICES:
        raise ValueError(
            f"unknown device {device!r}; choose one of {', '.join(DEVICES)}"
        )
    return device


def validate_seed(seed: Any) -> int:
    """Return ``seed`` as an int if it is a non-negative integer below 2**32."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    if not 0 <= int(seed) < 2**32:
        raise ValueError(f"seed must lie in [0, 2**32), got {seed!r}")
    return int(seed)


def cuda_available() -> bool:
    """Return whether torch sees a usable CUDA device."""
    import torch

    return bool(torch.cuda.is_available())


def resolve_device(device: str = "auto"):
    """Resolve ``auto``, ``cpu`` or ``cuda`` to a :class:`torch.device`.

    ``auto`` picks CUDA when torch sees a GPU and the CPU otherwise.
    ``cuda`` on a machine without a GPU raises ``ValueError`` instead of
    silently falling back, so a run never reports GPU numbers it did not make.
    """
    import torch

    validate_device_name(device)
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            "device 'cuda' was requested but torch sees no CUDA device; "
            "use device='auto' or device='cpu'"
        )
    return torch.device(device)


def seed_everything(seed: int) -> int:
    """Seed Python, NumPy and torch (CPU and every CUDA device) and return the seed.

    It also asks torch for deterministic kernels where they exist
    (``warn_only=True``, so an operation without one warns instead of failing).
    """
    import torch

    seed = validate_seed(seed)
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)
    return seed


def thread_count(jobs: int | None = None, cpus: int | None = None, profile: str = "quick") -> int:
    """Return the number of torch CPU threads a chapter kernel should use.

    ``NEGSAMP_THREADS`` overrides the policy.  Otherwise the quick profile
    runs on one thread, and the full profile splits the CPUs evenly between
    the ``jobs`` chapters that run at once (``NEGSAMP_JOBS``, default 1).

    The quick profiles move small tensors, and on a 2-core machine (torch
    2.13 CPU build, 2026-12) a second thread made them slower: run alone,
    ``network_sampling`` used 178 s of kernel CPU time and 197 s of wall
    time on two threads against 83 s and 86 s on one, and
    ``contrastive_ustatistics`` 115 s and 126 s against 66 s and 76 s.  The
    full profile's larger products gain from more threads (2048 x 2048
    matrix products ran 1.7 times faster on two), and splitting the cores
    between parallel chapters avoids oversubscription.
    """
    override = os.environ.get(THREADS_ENV)
    if override:
        value = int(override)
        if value < 1:
            raise ValueError(f"{THREADS_ENV} must be a positive integer, got {override!r}")
        return value
    validate_profile(profile)
    if profile == "quick":
        return 1
    if jobs is None:
        jobs = int(os.environ.get(JOBS_ENV, "1") or 1)
    if cpus is None:
        cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, cpus // max(1, jobs))


@dataclass(frozen=True)
class RunContext:
    """Where and how a chapter runs: its name, profile, seed, device and threads."""

    chapter: str
    profile: str
    seed: int
    device: Any  # torch.device
    requested_device: str
    threads: int

    def pick(self, *, quick: Any, full: Any) -> Any:
        """Return ``quick`` or ``full`` according to the profile."""
        return quick if self.profile == "quick" else full

    @property
    def device_name(self) -> str:
        """The resolved device as a string, for example ``cpu`` or ``cuda:0``."""
        if self.device.type == "cuda":
            import torch

            index = self.device.index if self.device.index is not None else torch.cuda.current_device()
            return f"cuda:{index} ({torch.cuda.get_device_name(index)})"
        return str(self.device)


_CURRENT: RunContext | None = None


def setup(profile: str = "quick", device: str = "auto", seed: int = 0) -> RunContext:
    """Validate a chapter's parameters, seed everything and fix the device and threads.

    Parameters
    ----------
    profile : {'quick', 'full'}
        ``quick`` is the CPU scale that CI runs; ``full`` the scale a GPU makes cheap.
    device : {'auto', 'cpu', 'cuda'}
        Passed to :func:`resolve_device`.
    seed : int
        Passed to :func:`seed_everything`.

    Returns
    -------
    RunContext
        Also stored as the current context that :mod:`negsamp.claims` records.
    """
    import torch

    global _CURRENT
    validate_profile(profile)
    resolved = resolve_device(device)
    seed = seed_everything(seed)
    threads = thread_count(profile=profile)
    torch.set_num_threads(threads)
    _CURRENT = RunContext(
        chapter=os.environ.get(CHAPTER_ENV, "interactive"),
        profile=profile,
        seed=seed,
        device=resolved,
        requested_device=device,
        threads=threads,
    )
    return _CURRENT


def current_context() -> RunContext | None:
    """Return the context set by the last :func:`setup` call, or ``None``."""
    return _CURRENT
