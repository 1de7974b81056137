"""``tamc train picture-layer``: a model whose picture tasks are served by an AVIF picture layer.

Torch-free (numpy and Pillow): registered in the ``train`` group by tamc_codec.cli.train_cmds.
"""
from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import click

from ..errors import TamcInputError


def _floats(option: str, text: str) -> list[float]:
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise TamcInputError(f"{option}: comma-separated numbers, not {text!r}") from None
    if not values or any(v <= 0 for v in values) or values != sorted(values):
        raise TamcInputError(f"{option}: positive rates, lowest first")
    return values


@click.command("picture-layer")
@click.option("--model", "-m", "base", required=True, type=click.Path(file_okay=False),
              help="The exported model to start from; its groups that serve only the picture's tasks are dropped.")
@click.option("--out", "-o", required=True, type=click.Path(file_okay=False), help="Folder of the new model.")
@click.option("--name", default=None, help="The new model's name (default: its folder's name).")
@click.option("--from-data", "data", type=click.Path(file_okay=False), default=None,
              help="Training or validation pictures to choose the AVIF settings on (a generated data folder or a "
                   "folder of images; never the test split).")
@click.option("--images", type=int, default=None, show_default="16",
              help="Use the first N pictures of --from-data.")
@click.option("--targets", default=None, metavar="BPP,...",
              help="Target rate of each quality, lowest first (default 0.03,0.07,0.16,0.4,1 for 5 qualities).")
@click.option("--settings", "settings_file", type=click.Path(dir_okay=False), default=None,
              help="Use the settings a previous run recorded (its --record, or a JSON list of {q, scale, setting}) "
                   "instead of measuring.")
@click.option("--record", type=click.Path(dir_okay=False), default=None,
              help="Write every measurement and the chosen settings to this JSON file.")
@click.option("--reuse", type=click.Path(dir_okay=False), default=None,
              help="A record of an earlier run on the same pictures: its measurements are not made again.")
@click.option("--groups", default="edge+keypoint+rgb", show_default=True, metavar="GROUP,...",
              help="The picture groups, each its own AVIF layer with its own settings: e.g. 'edge+keypoint+rgb' "
                   "(one picture for the three tasks) or 'keypoint,edge+rgb'.")
@click.option("--threads", type=int, default=None, help="libaom threads (at least 2; never changes a bit).")
@click.option("--card/--no-card", default=True, show_default=True,
              help="Write the model card (README.md): the source model's card with the picture layer's section.")
def picture_layer(base, out, name, data, images, targets, settings_file, record, reuse, groups, threads,
                  card) -> None:
    """Make a model whose edge, keypoint and rgb come from picture layers coded by AVIF.

    A picture layer is the picture itself, coded by AVIF through Pillow at each quality's
    scale (1, 1/2 or 1/4 of its sides) and AVIF setting, its container boxes deflated with a
    fixed dictionary (docs/FORMAT.md); rgb is the decoded picture, edge and keypoint CONTRACT.md's
    filters of it. The settings are chosen on --from-data: AVIF swept at each scale, and for each
    quality's target rate the scale nearest the best at that rate for every task the group
    serves (rgb by PSNR and L1, edge and keypoint by the L1 of their filters: the least worst
    excess over the best scale), then that scale's setting whose mean rate is nearest the target.
    The source model's other groups are copied byte for byte: they code exactly the bits they
    coded there. A new model id; docs/MODEL.md, "Picture layers".

    It prints each task's BD-rate on those pictures against AVIF at its best scale, by which a
    grouping is chosen (docs/MODEL.md). MODEL's own picture layers, if any, are replaced.

    \b
    Examples (docs/RESULTS.md):
      tamc train picture-layer -m MODEL --from-data data/val512 --images 16 --out NEW
      tamc train picture-layer -m models/default --from-data data/val512 --images 16 \\
          --groups edge+keypoint,rgb --out runs/picture/model_ekr --name default
    """
    from ..contract import group_id, group_tasks
    from ..runtime.manifest import PICTURE_TASKS, read_manifest
    from ..picture_layer.build import (DEFAULT_IMAGES, DEFAULT_TARGETS, Measurer, build_picture_model,
                                       choose_settings, criteria_of, picture_qualities, read_pictures)

    t0 = time.perf_counter()
    try:
        group_list = [group_id(group_tasks(g.strip())) for g in groups.split(",") if g.strip()]
    except ValueError as exc:
        raise TamcInputError(f"--groups: {exc}") from None
    served = [t for g in group_list for t in group_tasks(g)]
    if not group_list or len(set(served)) != len(served) or not set(served) <= set(PICTURE_TASKS):
        raise TamcInputError(f"--groups: groups of {', '.join(PICTURE_TASKS)}, each task in one group")
    m = read_manifest(base)
    n_q = len(m["qualities"])
    provenance: dict = {}
    if settings_file:
        try:
            doc = json.loads(Path(settings_file).read_text())
        except (OSError, ValueError) as exc:
            raise TamcInputError(f"{settings_file}: unreadable ({exc})") from None
        if isinstance(doc, dict) and "groups" in doc:
            chosen = {g: v["qualities"] for g, v in doc["groups"].items()}
        elif len(group_list) == 1:
            chosen = {group_list[0]: doc["qualities"] if isinstance(doc, dict) else doc}
        else:
            raise TamcInputError(f"{settings_file} holds one group's settings; --groups names {len(group_list)}")
        provenance = {"settings_from": settings_file,
                      **({k: doc[k] for k in ("data", "images", "targets", "libavif") if k in doc}
                         if isinstance(doc, dict) else {})}
        if isinstance(doc, dict) and "groups" in doc:
            # what the record measured of each chosen setting: the card's table (train.card.picture_lines)
            keys = ("q", "label", "bpp", "avif_bpp", "psnr_db", "loss")
            provenance["groups"] = {g: {"criteria": v.get("criteria", []),
                                        "chosen": [{k: c[k] for k in keys if k in c} for c in v["qualities"]]}
                                    for g, v in doc["groups"].items()}
    else:
        if not data:
            raise TamcInputError("pass --from-data (pictures to measure on) or --settings")
        if targets:
            target_list = _floats("--targets", targets)
        elif n_q == len(DEFAULT_TARGETS):
            target_list = list(DEFAULT_TARGETS)
        else:
            raise TamcInputError(f"the model has {n_q} qualities: pass --targets with {n_q} rates")
        if len(target_list) != n_q:
            raise TamcInputError(f"--targets: {len(target_list)} rates for {n_q} qualities")
        pictures, names = read_pictures(data, images or DEFAULT_IMAGES)
        known = None
        if reuse:
            try:
                earlier = json.loads(Path(reuse).read_text())
            except (OSError, ValueError) as exc:
                raise TamcInputError(f"{reuse}: unreadable ({exc})") from None
            if earlier.get("files") != names:
                raise TamcInputError(f"{reuse} measured other pictures than --from-data {data} --images {len(names)}")
            known = earlier["measured"]
        click.echo(f"measuring AVIF on {len(pictures)} pictures of {data}", err=True)
        log = lambda s: click.echo(s, err=True)  # noqa: E731
        measure = Measurer(pictures, threads, log)
        results = {}
        for g in group_list:
            click.echo(f"picture group {g}:", err=True)
            results[g] = choose_settings(measure, target_list, threads, log=log, known=known,
                                         criteria=criteria_of(group_tasks(g)))
        chosen = {g: r["qualities"] for g, r in results.items()}
        from ..picture_layer.build import validation_bd

        h, w = pictures[0].shape[:2]
        measured = sorted(measure.cache.values(), key=lambda r: (r["scale"], r["setting"]))
        # a file's header and index, format version 3 (docs/FORMAT.md, overheads): 19 bytes and 8 a layer
        vbd = validation_bd(measured, chosen,
                            header_bytes=19 + 8 * (len(group_list) + len(m["groups"])), pixels=h * w)
        for t, r in vbd.items():
            click.echo(f"validation BD-rate of {t} against AVIF at its best scale: " + ", ".join(
                f"{k} {v['value']:+.1f} %" if v["value"] is not None else f"{k} {v['status']}" for k, v in r.items()),
                err=True)
        from PIL import features

        provenance = {"data": str(data), "images": len(pictures), "targets": target_list,
                      "libavif": features.version("avif"),
                      "groups": {g: {"criteria": criteria_of(group_tasks(g)),
                                     "chosen": [{k: c[k] for k in ("q", "label", "bpp", "avif_bpp", "psnr_db", "loss")}
                                                for c in chosen[g]]} for g in group_list},
                      "validation_bd_rate": {t: {k: v["value"] for k, v in r.items()} for t, r in vbd.items()},
                      "measured": measured}
        if record:
            from ..atomic import atomic_write_bytes

            doc = {"schema": "tamc.picture_settings/2", "data": str(data), "images": len(pictures), "files": names,
                   "targets": target_list, "libavif": provenance["libavif"],
                   "groups": {g: {"criteria": criteria_of(group_tasks(g)), "qualities": chosen[g]} for g in group_list},
                   "validation_bd_rate": vbd, "measured": measured, "command": sys.argv}
            atomic_write_bytes(record, (json.dumps(doc, indent=1) + "\n").encode())
    for g, c in chosen.items():
        if len(c) != n_q:
            raise TamcInputError(f"{g}: {len(c)} picture settings for a model of {n_q} qualities")
    qualities = {g: picture_qualities(c) for g, c in chosen.items()}
    new = build_picture_model(base, out, qualities, name=name or os.path.basename(os.path.normpath(out)),
                              provenance={"picture_layer": provenance})
    if card:
        from ..train.card import write_picture_card

        how = f"--settings {settings_file}" if settings_file else \
            f"--from-data {data} --images {provenance['images']}" + (f" --targets {targets}" if targets else "")
        how += f" --groups {','.join(group_list)}"
        write_picture_card(Path(out), Path(base) / "README.md",
                           command=f"tamc train picture-layer -m {base} {how} --out {out} --name {new['name']}")
    size = sum(os.path.getsize(os.path.join(out, f)) for f in new["files"])
    click.echo(f"model {new['model_id']} to {out} ({size / 1e6:.1f} MB, {time.perf_counter() - t0:.0f} s): layers " +
               ", ".join(f"{k} {g}{' (avif)' if g in new['pictures'] else ''}" for k, g in enumerate(new["groups"])))
    for g, q in qualities.items():
        click.echo(f"  {g}: " + ", ".join(f"q{s['q']} {s['setting']}" for s in q))
