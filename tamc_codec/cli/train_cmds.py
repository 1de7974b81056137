"""`tamc train ...` and `tamc export`: the make path (requires the [train] extra)."""
from __future__ import annotations

import json
from pathlib import Path

import click

from ..errors import TamcInputError
from ..runtime.manifest import DEFAULT_PARENT_INPUT, PARENT_INPUTS
from ..nets import NORMS
from ..train import DEFAULT_GAIN_RANGE, DEFAULT_LAMBDAS, DEFAULT_SCENE_SIZE, PRECISIONS, VIEWS


def _groups_from(grouping: str | None, groups: str | None) -> tuple[list[str], dict | None]:
    from ..contract import group_id

    if bool(grouping) == bool(groups):
        raise TamcInputError("give exactly one of --grouping FILE or --groups 'a+b,c'")
    if grouping:
        from ..grouping.grouping_io import load_grouping

        g = load_grouping(grouping)
        return list(g["groups"]), dict(g.get("assignment") or {})
    out = []
    for raw in groups.split(","):
        try:
            members = [m.strip() for m in raw.split("+") if m.strip()]
            out.append(group_id(members))
        except ValueError as exc:
            raise TamcInputError(f"bad group {raw!r}: {exc}") from None
    return out, None


def _device_options(f):
    """--device and --workers, shared by both stages."""
    f = click.option("--workers", type=int, default=0, show_default=True,
                     help="Processes that prepare batches ahead (0: in the training process; a GPU needs several)."
                     )(f)
    return click.option("--device", type=click.Choice(["cpu", "cuda"]), default="cpu", show_default=True,
                        help="Where to train. The batches are the same on either (drawn per step from the seed).")(f)


def _large_scene_options(f):
    """--large-data and --large-crop: the same options for both stages."""
    f = click.option("--large-crop", type=int, default=None,
                     help="Crop side for --large-data's scenes (default: --crop). Their batches "
                          "hold fewer crops, as many pixels as a batch of --crop crops.")(f)
    return click.option("--large-data", type=click.Path(), default=None,
                        help="A folder of training scenes rendered larger than --data's (e.g. 512²): its crops "
                             "join the views, so the networks see rooms at the pixel scale of large pictures.")(f)


# One-experiment switches: each served a measurement that did not ship (docs/TRAINING.md names
# them); they stay reachable under one option so that a command's options are the recipe's.
# KEY -> (type, default, help).
STAGE1_SWITCHES = {
    "global-context": ("bool", False, "decoders also see the latent's spatial mean"),
}
STAGE2_SWITCHES = {
    "global-context": ("bool", False, "Eq. 12's attention from the parent to the child's anchors (second pass)"),
    "no-parents": ("bool", False, "ignore the DAG's edges (ablation: no cross-task context)"),
    "augment-pixels": ("bool", False, "with --augment, groups serving edge or rgb see the changed picture too, "
                                      "those targets labelled again from it (groups serving keypoint never)"),
    "hyper-channels": ("int", 32, "channels of each group's hyper-latent z, spent at every quality"),
}
DECODERS_SWITCHES = {
    "scene-decoding": ("bool", True, "0: the fitted scene tasks decode their group's latent at its own scale, "
                                     "not pooled to the training scenes' (CONTRACT.md, scene scale)"),
    "context": ("bool", False, "each fitted decoder also reads its group's DAG ancestors' latents "
                               "(CONTRACT.md, decoder context; gained nothing on the shipped model)"),
}
EXPORT_SWITCHES = {
    "no-scene-scale": ("bool", False, "every group analyses pictures at full size"),
}
_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


def _experimental(switches: dict):
    """--experimental KEY=VALUE (repeatable): the command's one-experiment switches."""
    keys = "; ".join(f"{k} ({t}, default {int(d) if t == 'bool' else d}): {h}" for k, (t, d, h) in switches.items())

    def decorate(f):
        f = click.option("--experimental", multiple=True, metavar="KEY=VALUE",
                         help="EXPERIMENTAL, not part of any recipe and not used by the shipped model: switches "
                              f"that served one measurement (docs/TRAINING.md). Repeatable. KEY: {keys}.")(f)
        f.__click_params__[-1].experimental_keys = tuple(switches)
        return f
    return decorate


def _switches(values: tuple[str, ...], switches: dict) -> dict:
    """The switches' values: their defaults, overridden by --experimental KEY=VALUE."""
    out = {k: d for k, (_, d, _) in switches.items()}
    for text in values:
        key, sep, value = (part.strip() for part in text.partition("="))
        if not sep or key not in switches:
            raise TamcInputError(f"--experimental {text!r}: expected KEY=VALUE with KEY one of {', '.join(switches)}")
        kind = switches[key][0]
        if kind == "bool" and value.lower() in _TRUE + _FALSE:
            out[key] = value.lower() in _TRUE
        elif kind == "int" and value.lstrip("-").isdigit() and int(value) >= 1:
            out[key] = int(value)
        else:
            want = "1 or 0" if kind == "bool" else "a positive integer"
            raise TamcInputError(f"--experimental {key}={value}: expected {want}")
    return out


def _recipe_record_option(f):
    """--recipe-record FILE (hidden): set by `tamc train run`, names the recipe in the manifest's provenance."""
    return click.option("--recipe-record", type=click.Path(dir_okay=False), default=None, hidden=True,
                        help="RUN/recipe.json of `tamc train run`: the recipe that made the model.")(f)


def _recipe_provenance(path: str | None) -> dict:
    if not path:
        return {}
    try:
        rec = json.loads(Path(path).read_text())
        return {"recipe": {"recipe": rec["recipe"], "sha256": rec["sha256"]}}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise TamcInputError(f"{path}: not a recipe record of `tamc train run` ({exc})") from None


@click.group()
def train() -> None:
    """Train tamc's networks: `tamc train run RECIPE RUN_DIR` runs a whole recipe
    (recipes/default.toml makes the shipped model); the other commands are its stages.

    Runs resume from OUT/checkpoint.pt when it exists. For several processes use
    torchrun with the same arguments, e.g.
    `torchrun --nproc_per_node 2 -m tamc_codec train stage1 ...` (gloo on CPU, NCCL on GPU).
    """


@train.command()
@click.option("--data", required=True, type=click.Path(), help="Training data folder (tamc data synth).")
@click.option("--val", required=True, type=click.Path(), help="Validation data folder.")
@click.option("--grouping", type=click.Path(), help="grouping.json from `tamc group`.")
@click.option("--groups", help="Groups instead of a grouping file, e.g. 'seg+depth,edge+keypoint+rgb'.")
@click.option("--out", "-o", required=True, type=click.Path(file_okay=False), help="Run folder (checkpoints, records).")
@click.option("--steps", type=int, default=6000, show_default=True)
@click.option("--batch", type=int, default=8, show_default=True, help="Images per step (per process).")
@click.option("--crop", type=int, default=128, show_default=True, help="Random crop side for training.")
@click.option("--views", type=click.Choice(VIEWS), default="crop", show_default=True,
              help="crop: random crops at the scenes' scale; mix: every other batch whole scenes "
                   "downsampled to the crop side (the networks see entire rooms); rooms: as mix, and "
                   "every third batch whole scenes at their own scale (fewer per batch, as many pixels).")
@_large_scene_options
@click.option("--init", type=click.Path(), default=None,
              help="Start from another stage-1 run's anchor.pt, or from an exported model folder's networks "
                   "(same groups and networks): a fine-tune.")
@click.option("--lr", type=float, default=2e-3, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--eval-every", type=int, default=1000, show_default=True)
@click.option("--ckpt-every", type=int, default=200, show_default=True)
@click.option("--val-limit", type=int, default=None, help="Validate on the first N images only.")
@click.option("--latent-channels", type=int, default=64, show_default=True)
@click.option("--norm", type=click.Choice(NORMS), default="none", show_default=True,
              help="Normalisation of hidden layers (group: GroupNorm over the picture; channel: each pixel's "
                   "features alone, the same at any picture size; see docs/TRAINING.md).")
@click.option("--encoder-norm", type=click.Choice(NORMS), default=None,
              help="The encoders' normalisation, if not --norm's (the recipe: channel encoders, group decoders).")
@click.option("--coords", is_flag=True,
              help="Encoders and decoders also see each pixel's position in the picture (docs/TRAINING.md).")
@click.option("--shared-warmup", type=int, default=0, show_default=True,
              help="Train all groups' encoders as one for the first N steps, then apart (docs/TRAINING.md).")
@click.option("--precision", type=click.Choice(PRECISIONS), default="fp32", show_default=True,
              help="bf16: bfloat16 autocast for forward and backward, float32 weights (faster on AVX-512 BF16 CPUs).")
@_device_options
@_experimental(STAGE1_SWITCHES)
@click.option("--max-minutes", type=float, default=None,
              help="Pause (with a checkpoint) after this many minutes; run again to continue.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar.")
def stage1(data, val, grouping, groups, out, steps, batch, crop, views, large_data, large_crop, init, lr, seed, eval_every,
           ckpt_every, val_limit, latent_channels, norm, encoder_norm, coords, shared_warmup, precision, device, workers,
           experimental, max_minutes, quiet) -> None:
    """Stage 1: train group encoders and task decoders on the task losses (no rate term).

    \b
    Writes to OUT:
      checkpoint.pt   resumable state (re-run the same command to continue)
      anchor.pt       the trained network: the anchor for benchmarks and stage 2
      stage1.json     settings, time, throughput, validation losses and metrics,
                      the serving group chosen per task by validation loss
      latents.npz     group latents of the validation images (input of `tamc dag`)
    """
    from ..nets.multitask import NetConfig
    from ..train.stage1 import Stage1Config, train_stage1

    switch = _switches(experimental, STAGE1_SWITCHES)
    group_list, assignment = _groups_from(grouping, groups)
    net = NetConfig(latent_channels=latent_channels, norm=norm, encoder_norm=encoder_norm,
                    global_context=switch["global-context"], coords=coords).to_dict()
    cfg = Stage1Config(data=data, val=val, groups=group_list, out=out, steps=steps, batch=batch, crop=crop, views=views,
                       large_data=large_data, large_crop=large_crop, init=init, lr=lr, seed=seed, eval_every=eval_every,
                       ckpt_every=ckpt_every, val_limit=val_limit, net=net,
                       grouping_file=grouping, lookahead_assignment=assignment, shared_warmup=shared_warmup,
                       precision=precision, device=device, workers=workers)
    rec = train_stage1(cfg, progress=not quiet, log=lambda m: click.echo(m, err=True), max_minutes=max_minutes)
    if rec and not rec.get("paused"):
        click.echo(f"stage 1 done: {rec['steps']} steps in {rec['seconds']:.0f} s "
                   f"({rec['images_per_s']} images/s); serving: "
                   + ", ".join(f"{t}<-{g}" for t, g in rec["serving"].items()))
        for t, r in rec["served"].items():
            extra = ", ".join(f"{k} {v:.4g}" for k, v in r.items() if k not in ("loss", "normalised"))
            click.echo(f"  {t:9s} loss/trivial {r['normalised']:.3f}  {extra}")


def _numbers(option: str, text: str) -> list[float]:
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise TamcInputError(f"{option} must be numbers separated by commas (got {text!r})") from None


def _quality_list(text: str | None) -> list[int]:
    """--val-qualities: whole qualities separated by commas ([] when not given: the stage's default)."""
    if not text:
        return []
    values = _numbers("--val-qualities", text)
    if any(v != int(v) or v < 1 for v in values):
        raise TamcInputError(f"--val-qualities must be qualities 1, 2, ... separated by commas (got {text!r})")
    return sorted({int(v) for v in values})


@train.command()
@click.option("--anchor", required=True, type=click.Path(),
              help="Stage-1 anchor.pt, or an exported model folder: its encoders and serving decoders are rebuilt "
                   "from its graphs and trained on (its entropy models start afresh).")
@click.option("--dag", "dag_file", required=True, type=click.Path(), help="dag.json from `tamc dag`.")
@click.option("--data", required=True, type=click.Path(), help="Training data folder.")
@click.option("--val", required=True, type=click.Path(), help="Validation data folder.")
@click.option("--out", "-o", required=True, type=click.Path(file_okay=False), help="Run folder.")
@click.option("--lambdas", default=",".join(f"{v:g}" for v in DEFAULT_LAMBDAS), show_default=True,
              help="λ per quality, lowest rate first: weight of Σ task loss / trivial loss against bits per pixel.")
@click.option("--gain-range", default=",".join(f"{v:g}" for v in DEFAULT_GAIN_RANGE), show_default=True,
              metavar="LOW,HIGH",
              help="Starting quantisation step of the lowest and highest quality, as each latent channel's "
                   "std divided by LOW and HIGH (log-spaced between); with a short stage 2 it sets the rate "
                   "span more than λ does (docs/TRAINING.md).")
@click.option("--steps-entropy", type=int, default=2000, show_default=True,
              help="Phase A: entropy models and gains only, networks frozen.")
@click.option("--steps-finetune", type=int, default=2000, show_default=True, help="Phase B: everything.")
@click.option("--batch", type=int, default=8, show_default=True)
@click.option("--crop", type=int, default=128, show_default=True)
@click.option("--views", type=click.Choice(VIEWS), default="crop", show_default=True,
              help="As in stage 1: use what the anchor was trained on.")
@_large_scene_options
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--parent-input", type=click.Choice(PARENT_INPUTS), default=DEFAULT_PARENT_INPUT,
              show_default=True,
              help="What a child's entropy model sees of its parent: its latent (dequantised) or its "
                   "quantised latent, on a grid that scales with the quality like the child's (docs/TRAINING.md).")
@click.option("--augment/--no-augment", default=False, show_default=True,
              help="The encoders of groups serving only seg, depth or normal see each training picture under a "
                   "random change of exposure, contrast, colour balance and gamma (their labels do not depend on "
                   "pixel values); the other groups see it as it is.")
@click.option("--val-limit", type=int, default=None, help="Validate on the first N images only.")
@_device_options
@_experimental(STAGE2_SWITCHES)
@click.option("-q", "--quiet", is_flag=True, help="No progress bar.")
def stage2(anchor, dag_file, data, val, out, lambdas, gain_range, steps_entropy, steps_finetune, batch, crop, views,
           large_data, large_crop, seed, parent_input, augment, val_limit, device, workers, experimental, quiet) -> None:
    """Stage 2: entropy models along the DAG, then rate-distortion fine-tuning.

    \b
    Writes to OUT:
      checkpoint.pt   resumable state
      codec.pt        the trained codec model (input of `tamc export`)
      stage2.json     per quality: bits per pixel of every layer, task losses and metrics
    """
    lams = _numbers("--lambdas", lambdas)
    if len(lams) < 2 or any(b <= a for a, b in zip(lams, lams[1:])) or lams[0] <= 0:
        raise TamcInputError("--lambdas must be at least two increasing positive numbers")
    gains = tuple(_numbers("--gain-range", gain_range))
    if len(gains) != 2 or not 0 < gains[0] < gains[1]:
        raise TamcInputError("--gain-range must be two positive numbers LOW,HIGH with LOW < HIGH")
    switch = _switches(experimental, STAGE2_SWITCHES)
    from ..train.stage2 import Stage2Config, train_stage2

    cfg = Stage2Config(anchor=anchor, dag=dag_file, data=data, val=val, out=out, lambdas=lams, gain_range=gains,
                       steps_entropy=steps_entropy, steps_finetune=steps_finetune, batch=batch, crop=crop,
                       views=views, large_data=large_data, large_crop=large_crop,
                       hyper_channels=switch["hyper-channels"], seed=seed, use_global=switch["global-context"],
                       no_parents=switch["no-parents"], parent_input=parent_input, augment=augment,
                       augment_pixels=switch["augment-pixels"],
                       val_limit=val_limit, device=device, workers=workers)
    rec = train_stage2(cfg, progress=not quiet, log=lambda m: click.echo(m, err=True))
    if rec and not rec.get("paused"):
        for r in rec["rd"]:
            click.echo(f"q{r['quality']}: {r['bpp_total']:.4f} bpp  " + ", ".join(
                f"{t} {v['normalised']:.3f}" for t, v in r["tasks"].items()))


@train.command()
@click.option("--model", "-m", required=True, type=click.Path(file_okay=False),
              help="Exported model folder whose decoders to fit (read only).")
@click.option("--data", required=True, multiple=True, type=click.Path(),
              help="Training data folder; repeat for several sizes (e.g. data/train and data/train512).")
@click.option("--val", required=True, multiple=True, type=click.Path(),
              help="Validation data folder (picks each decoder's best step by the mean over folders); "
                   "repeatable, e.g. data/val and data/val512.")
@click.option("--out", "-o", required=True, type=click.Path(file_okay=False),
              help="Run folder: latent caches, checkpoint.pt, decoders.json.")
@click.option("--export", "export_to", type=click.Path(file_okay=False), default=None,
              help="Write the model with the fitted decoders to this folder (not the source's).")
@click.option("--name", default=None, help="Name of the --export model (default: its folder's name).")
@click.option("--tasks", default="seg,depth,normal", show_default=True,
              help="Decoders to fit, or 'all'. The default is the scene tasks, whose decoders the picture's "
                   "scale affects; edge, keypoint and rgb are defined on the pixels (docs/TRAINING.md, stage 3).")
@click.option("--steps", type=int, default=2000, show_default=True)
@click.option("--batch-pixels", type=int, default=8 * 256 * 256, show_default=True,
              help="Pixels per step: whole scenes, as many as fit (8 at 256², 2 at 512²).")
@click.option("--lr", type=float, default=3e-4, show_default=True)
@click.option("--precision", type=click.Choice(PRECISIONS), default="bf16", show_default=True,
              help="Training passes in float32, or under bfloat16 autocast (validation is float32).")
@click.option("--augment/--no-augment", default=False, show_default=True,
              help="Code each training scene under a random change of exposure, contrast, colour balance "
                   "and gamma (scene tasks only; docs/TRAINING.md, stage 3).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--eval-every", type=int, default=500, show_default=True)
@click.option("--limit", type=int, default=None, help="Use the first N scenes of each --data folder.")
@click.option("--val-limit", type=int, default=None, help="Validate on the first N images only.")
@click.option("--val-qualities", default=None,
              help="Qualities each validation folder is coded at, e.g. 1,2,3; each decoder keeps the step with "
                   "the best mean over them (default: 3 and the highest).")
@click.option("--workers", type=int, default=0, show_default=True,
              help="Processes coding the scenes, one thread each (0: one per core). Changes no result.")
@_experimental(DECODERS_SWITCHES)
@_recipe_record_option
@click.option("-q", "--quiet", is_flag=True, help="No progress bar.")
def decoders(model, data, val, out, export_to, name, tasks, steps, batch_pixels, lr, precision, augment, seed,
             eval_every, limit, val_limit, val_qualities, workers, experimental, recipe_record, quiet) -> None:
    """Stage 3: fit an exported model's task decoders to the latents its codec decodes.

    Each training scene is coded whole by the model itself, at a random quality, and the
    decoders learn from those latents: what `tamc decode` gives them, which stages 1 and 2
    (crops, simulated quantisation) never show. Scene tasks are decoded at scene scale (their
    group's latent pooled to the training scenes' scale). Encoders
    and entropy models are untouched, so files keep their sizes; each decoder keeps its best
    step on the validation folders (docs/TRAINING.md, stage 3).

    \b
    Writes to OUT:
      latents_*.npz   the scenes' decoded latents (reused by a resumed run)
      checkpoint.pt   resumable state
      decoders.json   settings, time, validation loss / trivial before and after
    """
    from ..contract import TASKS, parse_task_list
    from ..train.decoders import DecoderStageConfig, train_decoders

    # checked before training (which takes an hour), as replace_decoders checks it again
    if export_to and Path(export_to).resolve() == Path(model).resolve():
        raise TamcInputError("--export must be another folder than --model: the source model stays as it is")
    switch = _switches(experimental, DECODERS_SWITCHES)
    provenance = _recipe_provenance(recipe_record)
    names = [] if tasks == "all" else parse_task_list(tasks)
    cfg = DecoderStageConfig(model=model, data=list(data), val=list(val), out=out, tasks=names, steps=steps,
                             batch_pixels=batch_pixels, lr=lr, precision=precision,
                             scene_decoding=switch["scene-decoding"], context=switch["context"], augment=augment,
                             seed=seed, eval_every=eval_every, limit=limit, val_limit=val_limit,
                             val_qualities=_quality_list(val_qualities))
    rec, fitted = train_decoders(cfg, progress=not quiet, log=lambda m: click.echo(m, err=True), workers=workers)
    for t in TASKS:
        if t in rec["after"]:
            click.echo(f"  {t:9s} loss/trivial {rec['before'][t]:.3f} -> {rec['after'][t]:.3f} "
                       f"(step {rec['best_step'][t]})")
    if export_to:
        from ..train.export import replace_decoders

        summary = {"run": out, "steps": steps, "data": list(data), "val": list(val), "scene_tasks": rec["scene_tasks"],
                   "val_loss_over_trivial": {"before": rec["before"], "after": rec["after"]}}
        if any(rec["context"].values()):
            summary["context"] = rec["context"]
        m = replace_decoders(model, export_to, fitted, name=name, record=summary, scene_tasks=rec["scene_tasks"],
                             context=rec["context"], recipe=provenance.get("recipe"))
        click.echo(f"exported model {m['model_id']} to {export_to}")


@train.command("start-group")
@click.option("--model", "-m", required=True, type=click.Path(file_okay=False),
              help="Exported model folder to start from (read only).")
@click.option("--group", required=True, help="The new group, e.g. 'seg+depth+normal'.")
@click.option("--from", "source", required=True,
              help="The model's coded group whose encoder the new group's starts as, e.g. 'seg+normal+edge+keypoint+rgb'.")
@click.option("--val", type=click.Path(), default=None,
              help="Validation folder: also write the new group's latents of it (the input of `tamc dag`).")
@click.option("--out", "-o", required=True, type=click.Path(file_okay=False), help="Run folder.")
def start_group(model, group, source, val, out) -> None:
    """Start a group of its own from an exported model, for stage 2 to train.

    The group's encoder is a copy of --from's, each member task's decoder a copy of the model's
    serving decoder of that task, and the group serves all its tasks (docs/TRAINING.md, "A scene
    layer of its own"). `tamc train merge` later puts the trained group beside the model's other
    layers.

    \b
    Writes to OUT:
      anchor.pt          the network, in stage 1's format (input of `tamc train stage2 --anchor`)
      start_group.json   where it started from (the model card reads it)
      latents.npz        with --val: its latents of the validation images (input of `tamc dag`)

    \b
    Example:
      tamc train start-group -m models/default --group seg+depth+normal \\
        --from seg+normal+edge+keypoint+rgb --val data/val --out runs/scene
    """
    import torch

    from ..train.rebuild import group_network
    from ..train.anchor import anchor_trivial
    from ..train.stage1 import LATENTS, dump_latents

    net = group_network(model, group, source)
    trivial = anchor_trivial(model)
    missing = [t for t in net.serving if t not in trivial]
    if missing:
        raise TamcInputError(f"{model}: its reference.json has no trivial loss for {', '.join(missing)}")
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    from ..atomic import atomic_path

    from ..atomic import atomic_write_bytes
    from ..runtime.manifest import read_manifest

    record = {"schema": "tamc.start_group/1", "model": str(model), "model_id": read_manifest(model)["model_id"],
              "group": net.groups[0], "encoder_of": source, "serving": net.serving, "trivial_loss": trivial}
    with atomic_path(folder / "anchor.pt") as tmp:
        torch.save({"model": net.state_dict(), "describe": net.describe(), "trivial": trivial}, tmp)
    atomic_write_bytes(folder / "start_group.json", (json.dumps(record, indent=1) + "\n").encode())
    click.echo(f"wrote {folder / 'anchor.pt'}: {net.groups[0]}, encoder from {source}")
    if val:
        from ..data.torch_dataset import MultiTaskDataset

        dump_latents(net, MultiTaskDataset(val, list(net.serving), train=False), folder / LATENTS)
        click.echo(f"wrote {folder / LATENTS}")


@train.command()
@click.argument("base", type=click.Path(file_okay=False))
@click.argument("added", type=click.Path(file_okay=False))
@click.option("--out", "-o", required=True, type=click.Path(file_okay=False), help="Model folder to write.")
@click.option("--name", default=None, help="Model name (default: the folder's name).")
@_recipe_record_option
def merge(base, added, out, name, recipe_record) -> None:
    """Merge two exported models: ADDED's layers first, as DAG roots, then BASE's.

    The tasks ADDED serves are served by its groups; BASE's groups still serving a task keep
    their graphs, tables and parents, so they code exactly the bits they coded in BASE; a BASE
    group left serving nothing is dropped. Both models must share the container settings
    (latent channels and stride, padding, qualities, the Gaussian coder's table).

    \b
    Example (a scene layer trained alone, docs/TRAINING.md "A scene layer of its own"):
      tamc train merge models/default runs/scene/model --out runs/scene/merged --name default
    """
    import os

    from ..train.merge import merge_models

    m = merge_models(base, added, out, name=name or os.path.basename(os.path.normpath(out)),
                     provenance=_recipe_provenance(recipe_record))
    size = sum(os.path.getsize(os.path.join(out, f)) for f in m["files"])
    click.echo(f"merged model {m['model_id']} to {out} ({size / 1e6:.1f} MB): layers " +
               ", ".join(f"{k} {g}" for k, g in enumerate(m["groups"])))


@train.command("run")
@click.argument("recipe", type=click.Path(dir_okay=False))
@click.argument("run_dir", type=click.Path(file_okay=False))
@click.option("--until", metavar="STAGE", default=None, help="Stop after this stage (a stage name of the recipe).")
@click.option("--dry-run", is_flag=True, help="Print every stage's command and which are done; run nothing.")
@click.option("--max-minutes", type=float, default=None,
              help="Start no stage after N minutes; a stage-1 stage gets the minutes left and pauses with a "
                   "checkpoint. Run the same command again to go on.")
def run_recipe_cmd(recipe, run_dir, until, dry_run, max_minutes) -> None:
    """Run RECIPE (a recipes/*.toml file) into RUN_DIR: every stage in order.

    Each stage is one command (`tamc train stage1`, `tamc export`, ...) with the recipe's
    settings, and is skipped when its output exists, so an interrupted or paused run
    continues where it stopped when the same command is run again. RUN_DIR keeps the
    recipe's copy (recipe.toml) and sha256 (recipe.json); the models it exports name the
    recipe in their manifest and card. To experiment, copy a recipe and edit the copy
    (docs/TRAINING.md, "The recipe file").

    \b
    Examples:
      tamc train run recipes/default.toml runs/default --dry-run
      tamc train run recipes/default.toml runs/default --until stage1 --max-minutes 50
    """
    from .recipe_cmd import load_recipe, run_recipe

    run_recipe(load_recipe(recipe), run_dir, until=until, dry_run=dry_run, max_minutes=max_minutes, echo=click.echo)


@click.command()
@click.argument("codec_pt", type=click.Path())
@click.option("--out", "-o", required=True, type=click.Path(file_okay=False), help="Model folder to write.")
@click.option("--name", default=None, help="Model name (default: the folder's name).")
@click.option("--grouping", type=click.Path(dir_okay=False), default=None,
              help="grouping.json the model was trained from (recorded in the manifest with its hash).")
@click.option("--dag", "dag_file", type=click.Path(dir_okay=False), default=None,
              help="dag.json the model codes along (recorded in the manifest with its hash).")
@click.option("--lowest-blend", type=float, default=0.0, show_default=True,
              help="Move quality 1's gains this fraction of the way (log scale) to quality 2's: for a "
                   "lowest trained quality that is worse than useless (docs/MODEL.md). 0 keeps q1 as trained.")
@click.option("--quality-positions", default=None, metavar="P1,P2,...",
              help="Export qualities at these positions on the trained quality scale (1 = the lowest trained): a "
                   "fraction blends the gains of its two neighbours (log scale), e.g. 1,2,2.33,2.67,3 puts three "
                   "qualities where a curve bends between trained q2 and q3 (docs/MODEL.md). Default: as trained.")
@click.option("--scene-size", type=int, default=DEFAULT_SCENE_SIZE, show_default=True,
              help="Side of the training scenes: a group serving only seg, depth or normal analyses a larger "
                   "picture downsampled towards it (docs/MODEL.md, scene scale).")
@_experimental(EXPORT_SWITCHES)
@_recipe_record_option
def export(codec_pt: str, out: str, name: str | None, grouping: str | None, dag_file: str | None,
           lowest_blend: float, quality_positions: str | None, scene_size: int, experimental: tuple[str, ...],
           recipe_record: str | None) -> None:
    """Export a stage-2 model (codec.pt) to a folder the torch-free codec runs.

    Weights are rounded to float16 before the entropy tables are built, so the
    exported model is exactly what is measured. Writes ONNX graphs, tables.npz
    and manifest.json (with every file's SHA-256 and the model id).
    """
    import os

    from ..train.export import export_model

    if not os.path.exists(codec_pt):
        raise TamcInputError(f"{codec_pt}: no such file")
    if scene_size <= 0:
        raise TamcInputError("--scene-size must be a positive number of pixels")
    no_scene_scale = _switches(experimental, EXPORT_SWITCHES)["no-scene-scale"]
    import hashlib

    provenance = _recipe_provenance(recipe_record)
    for key, path in (("grouping", grouping), ("dag", dag_file)):
        if path:
            try:
                raw = open(path, "rb").read()
                doc = json.loads(raw)
            except (OSError, ValueError) as exc:
                raise TamcInputError(f"{path}: unreadable ({exc})") from None
            provenance[key] = {"path": path, "sha256": hashlib.sha256(raw).hexdigest(),
                               "groups": doc.get("groups"), "method": doc.get("method") or doc.get("estimator")}
    m = export_model(codec_pt, out, name=name or os.path.basename(os.path.normpath(out)), provenance=provenance,
                     lowest_blend=lowest_blend, scene_size=None if no_scene_scale else scene_size,
                     positions=_numbers("--quality-positions", quality_positions) if quality_positions else None)
    size = sum(os.path.getsize(os.path.join(out, f)) for f in m["files"])
    click.echo(f"exported model {m['model_id']} to {out} ({size / 1e6:.1f} MB, {len(m['files'])} files)")


def _add_picture_layer() -> None:
    # torch-free, in its own module: `tamc train picture-layer --help` stays light
    from .fixed_hyper_cmd import fixed_hyper
    from .picture_cmd import picture_layer

    train.add_command(picture_layer)
    train.add_command(fixed_hyper)


_add_picture_layer()
