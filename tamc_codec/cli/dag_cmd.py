"""``tamc dag``: the causal DAG of group latents (paper §3.3, Algorithm 1).

numpy, torch and matplotlib are imported inside the command so that ``tamc --help`` stays fast.
"""
from __future__ import annotations

import json
import sys

import click


@click.command(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option("--latents", "latents_path", required=True, type=click.Path(dir_okay=False),
              help="latents.npz from stage-1 training: one float32[N,C,h,w] array per group id, "
                   "the same N validation images in the same order for every group.")
@click.option("--out", "out_path", default="dag.json", show_default=True,
              type=click.Path(dir_okay=False), help="Where to write the DAG (written atomically).")
@click.option("--plot", "plot_path", default=None, type=click.Path(dir_okay=False),
              help="Also draw the graph with its edge weights (PNG, SVG or PDF by suffix).")
@click.option("--estimator", type=click.Choice(["coding", "kde"]), default="coding",
              show_default=True,
              help="coding: bits a small conditional coder spends (what the codec saves); "
                   "kde: the paper's Kolchinsky-Tracey estimate.")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Seed for the image split, sampling, projections and fitting.")
@click.option("--steps", type=click.IntRange(min=0), default=None,
              help="coding: optimiser steps per model [default: 100].")
@click.option("--dim", type=click.IntRange(min=1), default=None,
              help="kde: reduced dimension, one for all groups [default: 4; capped at the "
                   "narrowest group's channels and the sample count].")
@click.option("--samples", type=click.IntRange(min=2), default=None,
              help="kde: spatial positions sampled per estimate [default: 2000].")
@click.option("--min-gain", type=click.FloatRange(0.0, 1.0, max_open=True), default=0.01,
              show_default=True, help="An edge must save at least this share of the child's entropy.")
@click.option("--threads", type=click.IntRange(min=1), default=1, show_default=True,
              help="coding: torch threads (more only pays on an idle machine with large latents).")
@click.option("--serving", "serving_path", default=None, type=click.Path(dir_okay=False),
              help="A JSON file with a \"serving\" map, task -> group (stage1.json, stage2.json, a model's "
                   "manifest.json): adds the decode-set rule, an edge must also pay for the receivers of "
                   "the child's tasks, who decode the parent's whole chain (coding only; docs/DAG.md).")
@click.option("--json", "as_json", is_flag=True, help="Print the DAG object on stdout instead of a summary.")
@click.option("-v", "--verbose", is_flag=True, help="Report each estimate on stderr as it is made.")
def dag(latents_path, out_path, plot_path, estimator, seed, steps, dim, samples, min_gain,
        threads, serving_path, as_json, verbose):
    """Build the causal DAG among group latents by conditional entropy.

    Each group latent Y takes as parent the lower-entropy latent P that minimises
    H(Y | P) (paper Eq. 10), and keeps it only where it pays: the parent must save at
    least --min-gain of H(Y), and for kde must also beat a permutation null. The codec
    codes layers in the DAG's topological order, each child with its parent as context.

    \b
    Estimators:
      coding  H(Y) and H(Y|P) are held-out bits per latent element of a small Gaussian
              entropy model of round(Y), without and with P as context. Default.
      kde     The paper's oracle: Kolchinsky-Tracey KDE on a fixed projection of the
              channels, per spatial position. An estimate, not a bound; values are bits
              per reduced dimension and only comparable within one run.

    \b
    Output: dag.json (schema tamc.dag/1, see docs/CONTRACT.md and docs/DAG.md):
    groups, entropy, conditional (every ordered pair), parents, edges, order,
    settings, and per child the decision that kept or dropped its edge.

    \b
    Examples:
      tamc dag --latents runs/s1/latents.npz --out runs/s1/dag.json --plot dag.png
      tamc dag --latents latents.npz --estimator kde --json
    """
    from ..dag.dag import build_dag, load_latents, save_dag_json

    latents = load_latents(latents_path)
    serving = read_serving(serving_path) if serving_path else None
    progress = (lambda msg: click.echo(f"tamc dag: {msg}", err=True)) if verbose else None
    kwargs = {}
    if estimator == "coding":
        from ..dag.cond_coding import CodingSettings
        cs = CodingSettings(seed=seed, threads=threads)
        if steps is not None:
            cs.steps = steps
        kwargs["coding"] = cs
    else:
        from ..dag.kde import KDESettings
        ks = KDESettings(seed=seed)
        if dim is not None:
            ks.dim = dim
        if samples is not None:
            ks.samples = samples
        kwargs["kde"] = ks
    result = build_dag(latents, estimator, min_gain=min_gain, progress=progress, serving=serving, **kwargs)
    result["data"] = {"path": str(latents_path)}
    save_dag_json(result, out_path)
    if plot_path:
        from ..dag.plots import plot_dag
        plot_dag(result, plot_path)

    if as_json:
        json.dump(result, sys.stdout, indent=2, allow_nan=False)
        sys.stdout.write("\n")
        return
    units = result["units"]
    click.echo(f"{len(result['groups'])} groups, estimator {estimator} ({units}), "
               f"{result['runtime_s']:.1f} s")
    for g in result["order"]:
        p = result["parents"][g]
        h = result["entropy"][g]
        if p is None:
            click.echo(f"  {g:<28} H={h:.4f}  (root)")
        else:
            hc = result["conditional"][g][p]
            click.echo(f"  {g:<28} H={h:.4f}  parent {p}: H(c|p)={hc:.4f} "
                       f"(saves {(h - hc) / h:.1%})" if h > 0 else f"  {g} parent {p}")
    click.echo(f"order: {' -> '.join(result['order'])}")
    click.echo(f"wrote {out_path}" + (f" and {plot_path}" if plot_path else ""))


def read_serving(path: str) -> dict[str, str]:
    """The "serving" map (task -> group) of a JSON file: a stage record or a model manifest."""
    from ..contract import TASKS
    from ..errors import TamcInputError

    try:
        doc = json.loads(open(path, encoding="utf-8").read())
    except (OSError, ValueError) as exc:
        raise TamcInputError(f"{path}: unreadable ({exc})") from None
    serving = doc.get("serving") if isinstance(doc, dict) else None
    if not isinstance(serving, dict) or not all(t in TASKS and isinstance(g, str) for t, g in serving.items()):
        raise TamcInputError(f"{path}: no \"serving\" map of task names to group ids")
    return dict(serving)
