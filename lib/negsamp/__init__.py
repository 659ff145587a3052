"""negsamp: the library behind the book *Negative Samples: theory and validation*.

Chapters import everything they compute from here; the book machinery
(runner, ledger, page generation) lives in :mod:`negsamp.book`.
"""

__version__ = "0.1.0"

from .claims import (  # noqa: E402
    ClaimFailed,
    at_least,
    at_most,
    between,
    claim,
    close,
    fit_slope,
    has_sign,
    report,
    slope,
)
from .repro import RunContext, resolve_device, seed_everything, setup  # noqa: E402
from .progress import progress  # noqa: E402

__all__ = [
    "ClaimFailed",
    "RunContext",
    "at_least",
    "at_most",
    "between",
    "claim",
    "close",
    "fit_slope",
    "has_sign",
    "progress",
    "report",
    "resolve_device",
    "seed_everything",
    "setup",
    "slope",
]
