"""matplotlib helpers shared by the bench plots (``report``) and the ablation plots (``ablation``).

matplotlib is imported only when a plot is drawn, with the Agg backend, so that importing the
bench costs nothing and plotting works without a display.
"""
from __future__ import annotations


def pyplot():
    """matplotlib.pyplot on the Agg backend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def log_x(ax) -> None:
    """A log-scale rate axis labelled in plain decimals."""
    # matplotlib labels minor log ticks as 3x10^-1 etc., which collide; plain decimals read better
    from matplotlib.ticker import FormatStrFormatter, NullFormatter

    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(FormatStrFormatter("%g"))
    ax.xaxis.set_minor_formatter(NullFormatter())


__all__ = ["pyplot", "log_x"]
