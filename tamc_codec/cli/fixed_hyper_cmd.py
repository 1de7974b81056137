"""``tamc train fixed-hyper``: a model whose small layers code no hyper-latent.

Torch-free (numpy, onnxruntime): registered in the ``train`` group by tamc_codec.cli.train_cmds.
"""
from __future__ import annotations

import os
import sys
import time

import click

from ..errors import TamcInputError


@click.command("fixed-hyper")
@click.option("--model", "-m", "base", required=True, type=click.Path(file_okay=False),
              help="The exported model to start from.")
@click.option("--out", "-o", required=True, type=click.Path(file_okay=False), help="Folder of the new model.")
@click.option("--name", default=None, help="The new model's name (default: its folder's name).")
@click.option("--from-data", "data", required=True, type=click.Path(file_okay=False),
              help="Training or validation pictures to choose the fixed hyper-latents on (a generated data "
                   "folder or a folder of images; never the test split).")
@click.option("--images", type=int, default=16, show_default=True, help="Use the first N pictures of --from-data.")
@click.option("--groups", default=None, metavar="GROUP,...",
              help="Fix these groups whatever the measurement says (default: each learned group whose layer is "
                   "smaller with a fixed z at every quality).")
@click.option("--threads", type=int, default=None, help="Threads of the analysis graphs (never changes a bit).")
@click.option("-v", "--verbose", is_flag=True, help="Print each group's and quality's bytes as they are measured.")
def fixed_hyper(base, out, name, data, images, groups, threads, verbose) -> None:
    """Make a model in which small layers code no hyper-latent z.

    A hyperprior spends bytes on z to predict each latent's scale; on a layer of a few hundred
    bytes (a scene layer analysed at 128² has a 2x2 z) that side information can cost more than
    it saves. For each learned group and quality this chooses one z symbol per channel, the same
    at every position, minimising the latent's information content on --from-data, and measures
    the layer's bytes there with z coded and with it fixed. Groups smaller when fixed at every
    quality (or those named by --groups) code no z in the new model: their layer is the latent's
    two passes alone, decoded with the same constant. Every network is MODEL's, byte for byte; a
    new model id (docs/MODEL.md, "Fixed hyper-latents").

    \b
    Example (the shipped model's scene layer, docs/RESULTS.md):
      tamc train fixed-hyper -m runs/scene128/model_scene_p --from-data data/val512 --out runs/scene128/model_fixed
    """
    from ..picture_layer.build import read_pictures
    from ..runtime.codec import default_threads
    from ..train.fixed_hyper import choose_fixed_hyper, write_fixed_hyper_model

    t0 = time.perf_counter()
    pictures, names = read_pictures(data, images)
    log = (lambda s: click.echo(s, err=True)) if verbose else (lambda s: None)
    measured = choose_fixed_hyper(base, pictures, threads or default_threads(), log=log)
    wanted = [g.strip() for g in groups.split(",")] if groups else [g for g, r in measured.items() if r["chosen"]]
    unknown = [g for g in wanted if g not in measured]
    if unknown:
        raise TamcInputError(f"--groups: {unknown[0]} is not a learned group of {base} that codes z")
    for g, r in measured.items():
        click.echo(f"{g}: mean layer bytes, z coded / fixed: " + ", ".join(
            f"q{q + 1} {c:.1f} / {f:.1f}" for q, (c, f) in enumerate(zip(r["coded_bytes"], r["fixed_bytes"])))
            + (" -> fixed" if g in wanted else " -> kept"))
    if not wanted:
        raise TamcInputError("no group is smaller with a fixed hyper-latent; no model written")
    record = {"data": str(data), "images": len(pictures), "command": sys.argv,
              "bytes": {g: {"coded": [round(c, 2) for c in r["coded_bytes"]],
                            "fixed": [round(f, 2) for f in r["fixed_bytes"]]} for g, r in measured.items()}}
    new = write_fixed_hyper_model(base, out, {g: measured[g]["fixed"] for g in wanted},
                                  name=name or os.path.basename(os.path.normpath(out)), record=record)
    click.echo(f"model {new['model_id']} to {out} ({time.perf_counter() - t0:.0f} s): fixed hyper-latents for "
               + ", ".join(wanted))
