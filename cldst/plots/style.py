"""The style and the saving that every figure of cldst/plots shares.

Importing a plots module changes no global matplotlib setting: each figure function is ``styled``,
so it draws inside ``mpl.rc_context(theme())`` (seaborn's whitegrid style, notebook context and
deep palette).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import matplotlib as mpl
import matplotlib.pyplot as plt
import seaborn as sns


def theme() -> dict[str, Any]:
    """The rcParams of every figure here: what ``sns.set_theme(style="whitegrid", context="notebook")``
    would set globally, to be used in a context instead."""
    return {**sns.axes_style("whitegrid"), **sns.plotting_context("notebook"),
            "axes.prop_cycle": mpl.cycler(color=sns.color_palette("deep"))}


def styled(draw: Callable[..., plt.Figure]) -> Callable[..., plt.Figure]:
    """Run a figure function inside ``mpl.rc_context(theme())``: the style applies to its figure only."""
    @functools.wraps(draw)
    def wrapper(*args, **kwargs):
        with mpl.rc_context(theme()):
            fig = draw(*args, **kwargs)
            interactive = mpl.is_interactive()
        # Not a style setting: a backend that pyplot first loads in here may switch interactive mode
        # on for good (IPython's inline backend does, and shows only figures made in that mode).
        mpl.interactive(interactive)
        return fig
    return wrapper


def save_figure(fig: plt.Figure, directory: str | Path | None, name: str) -> list[Path]:
    """Write ``name``.png and ``name``.pdf into ``directory`` (nothing if it is None)."""
    if directory is None:
        return []
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    png, pdf = directory / f"{name}.png", directory / f"{name}.pdf"
    # No dates or versions in the files, so regenerating unchanged figures changes no bytes.
    fig.savefig(png, dpi=150, bbox_inches="tight", metadata={"Software": None})
    fig.savefig(pdf, bbox_inches="tight", metadata={"CreationDate": None, "Creator": None, "Producer": None})
    return [png, pdf]
