"""Progress bars for loops that run longer than a few seconds."""

from __future__ import annotations

import sys
from typing import Iterable, TypeVar

from tqdm.std import tqdm

T = TypeVar("T")


def progress(iterable: Iterable[T], desc: str, total: int | None = None, **kwargs) -> Iterable[T]:
    """Wrap ``iterable`` in a plain-text tqdm bar on standard error.

    The text bar (not the notebook widget) streams into the runner's log and
    the executed notebook alike; updates come at most every 2 s so the log
    stays short.  The rendered book hides standard error.
    """
    kwargs.setdefault("mininterval", 2.0)
    kwargs.setdefault("file", sys.stderr)
    kwargs.setdefault("dynamic_ncols", False)
    kwargs.setdefault("ncols", 80)
    return tqdm(iterable, desc=desc, total=total, **kwargs)
