"""Heat map of the lookahead affinity Ĉ (in the manner of the paper's Fig. 10)."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence


def plot_affinity(affinity, tasks: Sequence[str], path: str | os.PathLike, *, std=None,
                  title: str | None = None, groups: Sequence[str] | None = None) -> Path:
    """Write a PNG: row u, column v = Ĉ(u -> v), the effect of a step on u on v's loss.

    Cells are annotated with the value (and ± the spread when ``std`` is given); the
    colour scale is symmetric about zero so that help (red) and harm (blue) read at once.
    The diagonal (a task's step on itself) is hatched: it is not used to score groups.
    """
    import numpy as np
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    a = np.asarray(affinity, dtype=float)
    n = len(tasks)
    off = a[~np.eye(n, dtype=bool)] if n > 1 else a.ravel()
    lim = float(np.max(np.abs(off))) if off.size else 1.0
    lim = lim if lim > 0 else 1.0
    fig, ax = plt.subplots(figsize=(1.3 * n + 2.4, 1.1 * n + 1.8))
    shown = a.copy()
    np.fill_diagonal(shown, np.nan)
    im = ax.imshow(shown, cmap="coolwarm", vmin=-lim, vmax=lim)
    # enough decimals that the largest off-diagonal value shows three significant digits
    digits = max(3, min(6, 2 - int(np.floor(np.log10(lim)))))
    for i in range(n):
        ax.add_patch(matplotlib.patches.Rectangle((i - 0.5, i - 0.5), 1, 1, fill=False,
                                                  hatch="//", edgecolor="0.6", lw=0))
        for j in range(n):
            text = f"{a[i, j]:+.{digits}f}"
            if std is not None:
                text += f"\n±{np.asarray(std)[i, j]:.{digits}f}"
            strong = i != j and abs(a[i, j]) > 0.6 * lim
            ax.text(j, i, text, ha="center", va="center", fontsize=8,
                    color="white" if strong else "black")
    ax.set_xticks(range(n), labels=list(tasks), rotation=30, ha="right")
    ax.set_yticks(range(n), labels=list(tasks))
    ax.set_xlabel("recipient task v (whose loss changes)")
    ax.set_ylabel("source task u (step taken on)")
    head = title or "Lookahead affinity Ĉ(u → v) = 1 − L_v(after step on u) / L_v(before)"
    if groups:
        head += "\nchosen groups: " + ", ".join(groups)
    ax.set_title(head, fontsize=9)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="Ĉ (> 0: u's step helps v)")
    fig.tight_layout()
    out = Path(path)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
