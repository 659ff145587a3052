"""One figure style for the whole book."""

from __future__ import annotations

BOOK_STYLE = {
    "figure.figsize": (6.4, 3.8),
    "figure.dpi": 110,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "font.size": 10,
    "legend.frameon": False,
}


def use_book_style() -> None:
    """Apply the book's matplotlib style to every later figure."""
    import matplotlib as mpl

    mpl.rcParams.update(BOOK_STYLE)


def label_axes(ax, xlabel: str, ylabel: str, title: str | None = None) -> None:
    """Label both axes (with units in the label text) and optionally set a title.

    Raises ``ValueError`` on an empty label, because every figure in the book
    must say what its axes measure.
    """
    if not xlabel or not ylabel:
        raise ValueError(f"both axis labels are required, got xlabel={xlabel!r}, ylabel={ylabel!r}")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
