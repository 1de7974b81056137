"""Drawing of the causal DAG of group latents (``tamc dag --plot``).

matplotlib is imported inside the function with the Agg backend, so importing this module
costs nothing and plotting works without a display.
"""
from __future__ import annotations

import os
from pathlib import Path


def _depths(dag: dict) -> dict[str, int]:
    depth: dict[str, int] = {}
    for g in dag["order"]:  # topological, so a parent's depth is known first
        p = dag["parents"].get(g)
        depth[g] = 0 if p is None else depth[p] + 1
    return depth


def plot_dag(dag: dict, path: str | os.PathLike) -> Path:
    """Draw ``dag`` (a dag.json object) to ``path`` (format from its suffix).

    Groups are laid out in rows by depth, roots on top. Each node shows H(Y); each edge shows
    H(child | parent) and the share of the child's entropy the parent saves, the weight that
    decided it.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    depth = _depths(dag)
    rows: dict[int, list[str]] = {}
    for g in dag["order"]:
        rows.setdefault(depth[g], []).append(g)
    width = max(len(r) for r in rows.values())
    pos = {}
    for d, members in rows.items():
        for i, g in enumerate(members):
            pos[g] = ((i + 0.5) * width / len(members), -d)

    fig, ax = plt.subplots(figsize=(max(4.0, 2.6 * width), max(2.5, 1.8 * len(rows) + 0.8)))
    units = dag.get("units", "")
    for parent, child in dag["edges"]:
        (x0, y0), (x1, y1) = pos[parent], pos[child]
        ax.annotate("", xy=(x1, y1), xytext=(x0, y0),
                    arrowprops=dict(arrowstyle="-|>", color="tab:blue", lw=1.6,
                                    shrinkA=22, shrinkB=22))
        h, hc = dag["entropy"][child], dag["conditional"][child][parent]
        # The decision's own saving where recorded (for kde it is counted from the null).
        share = dag.get("decisions", {}).get(child, {}).get(
            "saving_fraction", (h - hc) / h if h > 0 else 0.0)
        ax.text((x0 + x1) / 2, (y0 + y1) / 2, f"H(c|p)={hc:.3g}\n−{share:.0%}",
                ha="center", va="center", fontsize=8, color="tab:blue",
                bbox=dict(boxstyle="round,pad=0.2", fc="white", ec="none", alpha=0.9))
    for g, (x, y) in pos.items():
        ax.text(x, y, f"{g}\nH={dag['entropy'][g]:.3g}", ha="center", va="center", fontsize=9,
                bbox=dict(boxstyle="round,pad=0.4", fc="#f3f3f3", ec="black"))
    ax.set_xlim(0, width)
    ax.set_ylim(-(len(rows) - 1) - 0.6, 0.6)
    ax.axis("off")
    ax.set_title(f"tamc DAG ({dag.get('estimator', '?')}; {units})", fontsize=9)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
