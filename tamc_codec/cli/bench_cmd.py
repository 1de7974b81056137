"""`tamc bench`: rate-performance curves, iso-quality rates and BD-rates against JPEG, WebP, AVIF."""
from __future__ import annotations

import click

from ..effort import DEFAULT_EFFORT, EFFORTS
from ..errors import TamcInputError


def _codecs(text: str) -> list[str]:
    names = [c.strip().lower() for c in text.split(",") if c.strip()]
    known = ("tamc", "jpeg", "webp", "avif")
    bad = [c for c in names if c not in known]
    if bad or not names:
        raise TamcInputError(f"unknown codec {', '.join(bad) or '(none)'}; choose from {', '.join(known)}")
    return list(dict.fromkeys(names))


def _qualities(text: str | None) -> list[int] | None:
    if not text:
        return None
    try:
        return sorted({int(v) for v in text.split(",") if v.strip()})
    except ValueError:
        raise TamcInputError(f"--qualities takes comma-separated integers, not {text!r}") from None


def _scales(text: str) -> list[int]:
    """Scale divisors of `--scales 1,1/2,1/4` (1 = full size), smallest divisor first."""
    from ..bench.baselines import SCALES, parse_scale, scale_label

    known = ", ".join(scale_label(s) for s in SCALES)
    parts = [v.strip() for v in text.split(",") if v.strip()]
    if not parts:
        raise TamcInputError(f"--scales needs at least one scale; choose from {known}")
    scales = set()
    for v in parts:
        try:
            scales.add(parse_scale(v))
        except ValueError:
            raise TamcInputError(f"unknown scale {v!r} in --scales; choose from {known}") from None
    return sorted(scales)


@click.command()
@click.option("--data", type=click.Path(file_okay=False),
              help="Generated data folder or a plain image folder (edge, keypoint, rgb only). "
                   "Default: data/test, the 512x512 test split, generated if absent.")
@click.option("--tasks", default=None, help="Comma-separated tasks or 'all' (default: every task the data and model have).")
@click.option("--codecs", default="tamc,jpeg,webp,avif", show_default=True, help="Codecs to compare.")
@click.option("--scales", default="1,1/2,1/4,1/8,1/16", show_default=True,
              help="Sizes at which each classical codec is swept, as fractions of the picture's sides "
                   "(some of 1, 1/2, 1/4, 1/8, 1/16; 1 alone: full size only). 1/2 to 1/16 code a "
                   "box-downsampled picture and bring the decoded one back to full size (rate over the full "
                   "picture's pixels), what one does at low rates; each sweeps only low-rate settings. Also "
                   "reported: each codec at its best scale for every rate (jpeg-best, ...) and the best "
                   "classical rate per task.")
@click.option("--model", default=None, help="tamc model folder or name (default: the shipped default model).")
@click.option("--anchor", default=None, metavar="PATH|MODEL_DIR|model",
              help="The task networks of the CTA baselines and the anchor line: a stage-1 anchor.pt, an exported "
                   "model's folder (its networks on unquantised latents), or "
                   "'model' for the model's own networks on unquantised latents. Default: MODEL/anchor/"
                   "anchor.pt or models/default/anchor/anchor.pt where one exists, else 'model'.")
@click.option("--images", type=int, default=None, help="Use the first N images (default 24; 4 with --quick).")
@click.option("--qualities", default=None, help="tamc qualities, e.g. 1,3,5 (default: all; 3 with --quick).")
@click.option("--effort", type=click.IntRange(min(EFFORTS), max(EFFORTS)), default=DEFAULT_EFFORT, show_default=True,
              help="tamc's encoder effort (tamc encode --effort): 0 rounds the latents, higher searches them.")
@click.option("--quick", is_flag=True,
              help="A few images, three settings per codec, one per down-scaled variant (CI, a few minutes).")
@click.option("--ablation", is_flag=True, help="Also evaluate the ablation models of bin/train-ablation.")
@click.option("--ablation-dir", type=click.Path(file_okay=False), default="runs/ablation", show_default=True,
              help="Folder written by bin/train-ablation.")
@click.option("--speed-images", type=int, default=4, show_default=True,
              help="Images on which tamc decoding is timed (and checked against the bench's predictions).")
@click.option("--out", "-o", type=click.Path(file_okay=False), default="benchmarks/results/bench", show_default=True,
              help="Output folder: results.json, curves.csv, summary.csv, PNG plots.")
@click.option("--threads", type=int, default=None,
              help="Threads for the networks (default: all cores; 1 on a busy machine avoids stalls).")
@click.option("--reuse", type=click.Path(), default=None, metavar="DIR",
              help="Take the classical codecs' rows (each variant's setting: rate, losses, metrics) from an "
                   "earlier bench's DIR/results.json instead of coding and analysing again: they depend on "
                   "the pictures, the codec libraries and the anchor's networks, not on the tamc model. "
                   "Refused, naming what differs, unless the data files (names and bytes), the number of "
                   "images, the Pillow/libjpeg/libwebp/libavif versions and the anchor's network files "
                   "match; rows DIR lacks (a new scale, setting or task) are computed, tamc always is. "
                   "results.json records the rows taken and from where (provenance.reused).")
@click.option("--no-progress", is_flag=True, help="No progress bars.")
def bench(data, tasks, codecs, scales, model, anchor, images, qualities, effort, quick, ablation, ablation_dir, speed_images,
          out, threads, reuse, no_progress) -> None:
    """Rate-performance curves of tamc and of JPEG, WebP and AVIF (compress, then analyse).

    \b
    Every codec codes the same images. CTA baselines: Pillow's JPEG, WebP and AVIF
    swept from their lowest rate (AVIF below its quality 0) to near-lossless, also
    at 1/2, 1/4, 1/8 and 1/16 of the picture's sides (--scales); the anchor's task networks (and,
    for edge, keypoint and rgb, the label filter itself) run on the decoded image.
    The anchor is the stage-1 network the model was trained from where its anchor.pt
    is at hand, else the model's own networks without quantisation (--anchor model).
    ATC: tamc at every quality, each task charged the bytes of the header and the
    layers it needs. Reported per task: loss and metric against bpp, the bpp at which
    each codec variant, and each codec at its best scale, reaches 1.15 x the anchor's
    loss, the best classical such rate, and BD-rates (docs/BENCH.md).

    \b
    Examples:
      tamc bench --data data/test --out benchmarks/results/bench
      tamc bench --quick --out /tmp/bench
      tamc bench --scales 1 --out /tmp/bench-full-size    # the codecs at full size only
      tamc bench --model NEW --reuse benchmarks/results/bench --out /tmp/bench-new
                                                          # a new model; classical rows reused
    """
    from ..bench.report import table, write_all
    from ..bench.run import BenchConfig, run_bench
    from ..contract import parse_task_list

    if images is not None and images < 1:
        raise TamcInputError("--images must be at least 1")
    task_list = None
    if tasks:
        try:
            task_list = parse_task_list(tasks)
        except ValueError as exc:
            raise TamcInputError(str(exc)) from None
    cfg = BenchConfig(out=out, data=data, tasks=task_list, codecs=_codecs(codecs), scales=_scales(scales),
                      quick=quick, ablation=ablation,
                      ablation_dir=ablation_dir, model=model, anchor=anchor, images=images,
                      qualities=_qualities(qualities), effort=effort, speed_images=max(0, speed_images), progress=not no_progress,
                      threads=threads, reuse=reuse)
    log = lambda msg: click.echo(msg, err=True)  # noqa: E731
    results = run_bench(cfg, log=log)
    written = write_all(results, out)
    click.echo(table(results))
    click.echo(f"\nwrote {written['json'][0]}, {len(written['csv'])} CSV files and {len(written['plots'])} plots "
               f"to {out} in {results['runtime_s']:.0f} s")
