"""`tamc data ...`: generate and check multi-task data folders."""
from __future__ import annotations

import json
import sys

import click

from ..contract import MATERIAL_SETS, SPLIT_SEED_BASE, SPLIT_SEED_SPAN


@click.group()
def data() -> None:
    """Generate and inspect multi-task data (docs/CONTRACT.md, "Generated data")."""


@data.command()
@click.option("--count", "-n", type=int, required=True, help="Number of scenes to render.")
@click.option("--size", type=int, default=256, show_default=True, help="Image side in pixels (multiple of 16).")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Seed of the first scene; scene i uses seed+i. The seed range picks the split.")
@click.option("--split", type=click.Choice(sorted(SPLIT_SEED_BASE)), default=None,
              help=f"Add this split's base to --seed (train 0, val {SPLIT_SEED_BASE['val']:,}, "
                   f"test {SPLIT_SEED_BASE['test']:,}; {SPLIT_SEED_SPAN:,} seeds each).")
@click.option("--materials", type=click.Choice(MATERIAL_SETS), default="standard", show_default=True,
              help="Surface materials: the standard set (every split), or the wide set, which adds procedural "
                   "surfaces and recoloured, turned photo tiles (train split only; docs/CONTRACT.md).")
@click.option("--out", "-o", type=click.Path(file_okay=False), required=True, help="Output folder (new or empty).")
@click.option("--workers", "-j", type=int, default=None, help="Processes (default: all cores).")
@click.option("--force", is_flag=True, help="Write into a non-empty folder, replacing files of the same names.")
@click.option("--json", "as_json", is_flag=True, help="Print meta.json and timing as JSON.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar.")
def synth(count: int, size: int, seed: int, split: str | None, materials: str, out: str, workers: int | None,
          force: bool, as_json: bool, quiet: bool) -> None:
    """Render procedurally generated indoor scenes with labels for all six tasks.

    \b
    Writes OUT/meta.json and OUT/{rgb,depth,normal,seg,edge,keypoint}/NNNNNN.png.
    The same seeds and size always give byte-identical files. Photographic
    textures are split by source image: val and test scenes use pictures that
    training scenes never show.

    \b
    Example:
      tamc data synth --count 4000 --size 256 --split train --out data/train
      tamc data synth --count 200 --size 512 --split test --out data/test
    """
    import time

    from ..data.folder import synthesize

    if split is not None:
        seed += SPLIT_SEED_BASE[split]
    t0 = time.perf_counter()
    bar = None

    def progress(n: int) -> None:
        # the bar appears with the first finished scene, after the arguments were checked
        nonlocal bar
        if bar is None:
            from tqdm import tqdm

            bar = tqdm(total=count, unit="scene", desc="synth", file=sys.stderr)
        bar.update(n)

    try:
        meta = synthesize(out, count, size, seed, workers=workers, force=force,
                          progress=None if quiet or as_json else progress, materials=materials)
    finally:
        if bar is not None:
            bar.close()
    dt = time.perf_counter() - t0
    if as_json:
        click.echo(json.dumps({"meta": meta, "seconds": dt, "scenes_per_s": count / dt}, indent=2))
    else:
        click.echo(f"wrote {count} {meta['split']} scenes ({size}x{size}) to {out} in {dt:.1f} s "
                   f"({count / dt:.1f} scenes/s)")


@data.command()
@click.argument("folder", type=click.Path())
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
def check(folder: str, as_json: bool) -> None:
    """Check that FOLDER is a complete data folder and summarise it."""
    from ..data.folder import ImageFolder, SceneFolder, open_data

    d = open_data(folder)
    if isinstance(d, SceneFolder):
        info = {"kind": "generated", "count": len(d), "split": d.meta.get("split"), "size": d.meta.get("size"),
                "first_seed": d.meta.get("first_seed"), "tasks": list(d.tasks)}
    else:
        assert isinstance(d, ImageFolder)
        info = {"kind": "images", "count": len(d), "tasks": list(d.tasks)}
    if as_json:
        click.echo(json.dumps(info, indent=2))
    else:
        click.echo(", ".join(f"{k}: {v}" for k, v in info.items()))
