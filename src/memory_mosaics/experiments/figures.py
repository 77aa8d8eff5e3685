"""Headless matplotlib for every experiment's figures: one place chooses the backend and writes a PNG."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def pyplot() -> Any:
    """matplotlib.pyplot on the Agg backend (no display; also safe under pytest), imported only when plotting."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig: Any, path: str | Path, dpi: int = 120, **savefig_kwargs: Any) -> Path:
    """Lay out ``fig``, write it to ``path`` (folders made as needed) and free it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=dpi, **savefig_kwargs)
    pyplot().close(fig)
    return path
