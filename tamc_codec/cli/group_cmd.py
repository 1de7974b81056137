"""`tamc group`: choose task groups by lookahead gradient coherence (paper §3.2, Alg. 2)."""
from __future__ import annotations

import json
import os
import sys

import click

from ..errors import TamcInputError


def _threads(requested: int) -> int:
    """All cores, less those other processes keep busy.

    With more OpenMP threads than free cores, torch's threads wait on each other and a
    step runs many times slower than on one thread (measured: 10x on a loaded 2-core
    machine), so a busy machine gets fewer threads.
    """
    if requested > 0:
        return requested
    cores = os.cpu_count() or 1
    try:
        busy = int(os.getloadavg()[0] + 0.5)
    except OSError:
        busy = 0
    return max(1, min(cores, cores - busy))


@click.command()
@click.option("--data", "data_dir", type=click.Path(), required=True,
              help="Generated data folder (tamc data synth) with labels for the tasks; its training scenes are used.")
@click.option("--tasks", "tasks_text", default="all", show_default=True,
              help="Comma-separated task names or Taskonomy aliases, or 'all'.")
@click.option("--method", type=click.Choice(["lookahead", "dmtg"]), default="lookahead", show_default=True,
              help="lookahead: measure Ĉ and choose by branch and bound; dmtg: learn the grouping with Gumbel-softmax.")
@click.option("--steps", type=int, default=1000, show_default=True, help="Training steps (batches).")
@click.option("--every", type=int, default=10, show_default=True,
              help="Take a lookahead every this many steps (lookahead only).")
@click.option("--budget", type=float, default=3.0, show_default=True,
              help="Most groups to choose (each costs 1; fractional budgets allowed). DMTG uses floor(budget) branches.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of weights and batch order.")
@click.option("--batch-size", type=int, default=32, show_default=True, help="Scenes per batch.")
@click.option("--lr", type=float, default=1e-3, show_default=True, help="Adam learning rate of training.")
@click.option("--lookahead-lr", type=float, default=0.05, show_default=True,
              help="Size η of the plain gradient step of the lookahead (Eq. 7) on normalised losses.")
@click.option("--size", type=int, default=64, show_default=True,
              help="Input side in pixels; scenes are area-downsampled to it (must divide the data's size).")
@click.option("--limit", type=int, default=None, help="Use only the first N scenes.")
@click.option("--affinity-from", type=click.Path(dir_okay=False), default=None,
              help="DMTG only: a lookahead grouping.json over the same tasks whose Ĉ scores the DMTG groups.")
@click.option("--threads", type=int, default=0, show_default=True,
              help="Torch threads; 0 = the cores not busy with other processes.")
@click.option("--out", "-o", type=click.Path(dir_okay=False), default="grouping.json", show_default=True,
              help="Where to write grouping.json.")
@click.option("--plot", type=click.Path(dir_okay=False), default=None,
              help="Also write a heat map of Ĉ (PNG).")
@click.option("--json", "as_json", is_flag=True, help="Print the grouping JSON on stdout.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar.")
@click.option("-v", "--verbose", is_flag=True, help="Also print the affinity matrix and group scores.")
def group(data_dir: str, tasks_text: str, method: str, steps: int, every: int, budget: float, seed: int,
          batch_size: int, lr: float, lookahead_lr: float, size: int, limit: int | None,
          affinity_from: str | None, threads: int, out: str, plot: str | None, as_json: bool,
          quiet: bool, verbose: bool) -> None:
    """Group tasks that help each other, within a budget of groups (paper §3.2).

    \b
    lookahead (default): a small shared encoder with a head per task is trained on
    SIZExSIZE versions of the scenes. Every EVERY steps, for each task u, one
    gradient step of the shared encoder on u alone is tried on the same batch and
    undone; C(u->v) = 1 - L_v(after) / L_v(before) records how much it helped v
    (Eq. 8; losses divided by their initial values so no task's scale dominates).
    The run average Ĉ scores every non-empty group: a member scores the mean Ĉ
    from the other members; a task alone scores 0. Branch and bound (Alg. 2) then
    picks at most BUDGET groups covering every task that maximise the sum of each
    task's best score; a task may sit in several groups and is served by its best.

    \b
    dmtg: K = floor(BUDGET) branches, each with every task's head, and an N x K
    assignment learnt jointly with Gumbel-softmax (DMTG); argmax at the end.

    \b
    Writes OUT (grouping.json, docs/CONTRACT.md) and, with --plot, a heat map of Ĉ
    (rows: source u, columns: recipient v). Reading docs/GROUPING.md explains both.

    \b
    Examples:
      tamc group --data data/train --steps 1000 --budget 3 --out grouping.json --plot affinity.png
      tamc group --data data/train --tasks seg,depth,normal --budget 2 --steps 300
      tamc group --data data/train --method dmtg --budget 3 --affinity-from grouping.json --out dmtg.json
    """
    from ..contract import parse_task_list

    try:
        tasks = parse_task_list(tasks_text)
    except ValueError as exc:
        raise TamcInputError(str(exc)) from None
    if not budget >= 1.0:
        raise TamcInputError(f"--budget {budget:g} is smaller than one group (each group costs 1)")
    for name, value in (("--steps", steps), ("--every", every), ("--batch-size", batch_size), ("--size", size)):
        if value < 1:
            raise TamcInputError(f"{name} must be at least 1 (got {value})")
    if limit is not None and limit < 1:
        raise TamcInputError(f"--limit must be at least 1 (got {limit})")
    if not (lr > 0 and lookahead_lr > 0):
        raise TamcInputError("--lr and --lookahead-lr must be positive")
    if affinity_from is not None and method != "dmtg":
        raise TamcInputError("--affinity-from only applies to --method dmtg")
    affinity = None
    if affinity_from is not None:
        from ..grouping.grouping_io import load_grouping

        ref = load_grouping(affinity_from)
        if ref["tasks"] != tasks or ref["affinity"] is None:
            raise TamcInputError(f"{affinity_from}: its affinity is over tasks {ref['tasks']}, not {tasks}")
        affinity = ref["affinity"]

    import torch

    torch.set_num_threads(_threads(threads))

    bar = None

    def progress(step: int, losses: dict[str, float]) -> None:
        nonlocal bar
        if bar is None:
            from tqdm import tqdm

            bar = tqdm(total=steps, unit="step", desc=method, file=sys.stderr)
        bar.update(1)
        if step % 5 == 0 or step == steps - 1:
            bar.set_postfix_str(" ".join(f"{t}={v:.2f}" for t, v in losses.items()), refresh=False)

    quiet = quiet or as_json
    try:
        if method == "lookahead":
            from ..grouping.affinity import run_lookahead_grouping

            d, _ = run_lookahead_grouping(data_dir, tasks, steps=steps, budget=budget, every=every,
                                          seed=seed, batch_size=batch_size, lr=lr,
                                          lookahead_lr=lookahead_lr, size=size, limit=limit,
                                          progress=None if quiet else progress)
        else:
            from ..grouping.dmtg import run_dmtg_grouping

            d, _ = run_dmtg_grouping(data_dir, tasks, steps=steps, budget=budget, seed=seed,
                                     batch_size=batch_size, lr=lr, size=size, limit=limit,
                                     affinity=affinity, progress=None if quiet else progress)
    finally:
        if bar is not None:
            bar.close()

    from ..grouping.grouping_io import dumps_grouping, save_grouping

    save_grouping(d, out)
    if plot and d["affinity"] is not None:
        from ..grouping.affinity_plot import plot_affinity

        plot_affinity(d["affinity"], d["tasks"], plot, std=d.get("affinity_std"), groups=d["groups"])
    if as_json:
        click.echo(dumps_grouping(d), nl=False)
        return
    click.echo(f"{method}: {len(d['groups'])} group(s) within budget {budget:g} in {d['runtime_s']:.1f} s "
               f"(objective {d['objective']:+.4f})")
    for g in d["groups"]:
        served = [t for t in d["tasks"] if d["assignment"][t] == g]
        click.echo(f"  {g:<36} serves {', '.join(served) if served else '(none; helps training only)'}")
    if verbose and d["affinity"] is not None:
        w = max(len(t) for t in d["tasks"])
        click.echo("Ĉ(u -> v), rows u (source), columns v (recipient):")
        click.echo(" " * (w + 2) + " ".join(f"{t:>8}" for t in d["tasks"]))
        for t, row in zip(d["tasks"], d["affinity"]):
            click.echo(f"  {t:<{w}}" + " ".join(f"{v:+8.4f}" for v in row))
        click.echo("group scores: " + json.dumps(d["group_scores"]))
    click.echo(f"wrote {out}" + (f" and {plot}" if plot and d["affinity"] is not None else ""))
