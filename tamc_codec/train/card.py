"""The model card (models/<name>/README.md), written from the run's own records.

Every number in the card comes from a JSON file the recipe wrote, so the card
cannot drift from what was measured. Usage:

    python -m tamc_codec.train.card RUN_DIR MODEL_DIR QUALITY_JSON
"""
from __future__ import annotations

import json
import platform
import sys
from pathlib import Path

from ..atomic import atomic_write_bytes


# stage2.json records gain_range only since it became an option; earlier runs used this fixed range
_GAIN_RANGE_BEFORE_RECORDED = (0.25, 8.0)


def _load(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _fmt(v) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


# bin/train-default's defaults for the settings the card may have to name
_SCRIPT_DEFAULTS = {"STEPS1B": 3000, "LR1B": 5e-4, "DEVICE1B": "cpu", "LOWEST_BLEND": 0.75, "STEPS3": 1000, "LR3": 1e-3, "AUGMENT3": 1}


def _recipe_command(s1: dict, s1b: dict | None, s3: dict | None, manifest: dict) -> str:
    """bin/train-default with the settings that differ from its CPU defaults, read from the records."""
    c = s1.get("config", {})
    env: dict = {}
    if c.get("device", "cpu") != "cpu":
        env.update({"DEVICE": c["device"], "WORKERS": c.get("workers", 0), "BATCH1": c.get("batch"),
                    "STEPS1": s1.get("steps"), "SHARED_WARMUP": c.get("shared_warmup", 0)})
    if s1b is None:
        env["STEPS1B"] = 0
    else:
        cb = s1b.get("config", {})
        env.update({"STEPS1B": s1b.get("steps"), "LR1B": cb.get("lr"), "DEVICE1B": cb.get("device", "cpu")})
        if cb.get("large_crop") not in (None, cb.get("crop")):
            env["LARGE_CROP"] = cb["large_crop"]
    env["LOWEST_BLEND"] = manifest["qualities"][0].get("gain_blend", 0)
    env["STEPS3"] = s3["config"]["steps"] if s3 else 0
    if s3:
        env["LR3"] = s3["config"]["lr"]
        env["AUGMENT3"] = int(bool(s3["config"].get("augment", False)))
    env = {k: v for k, v in env.items() if k not in _SCRIPT_DEFAULTS or v != _SCRIPT_DEFAULTS[k]}
    return " ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in env.items()) \
        + (" " if env else "") + "bin/train-default"


def _stage3_line(s3: dict) -> str:
    c = s3["config"]
    seen = " and ".join(f"{src['scenes']} at {src['size']}²" for src in s3["sources"])
    val = " and ".join(f"{v['scenes']} at {v['size']}²" for v in s3.get("val", []))
    by_source = {h["step"]: h["by_source"] for h in s3["history"]}
    scene = s3.get("scene_tasks") or []
    text = (f"- Stage 3: the exported model's {', '.join(s3['after'])} decoders fitted for {c['steps']} steps, "
            f"lr {c['lr']:g}, to the latents its own codec decodes from whole training scenes ({seen}, each coded "
            f"at a random quality{', under a random photometric change' if c.get('augment') else ''}); encoders, "
            f"entropy models and so every coded bit untouched (`tamc train decoders`); {s3['seconds'] / 60:.1f} min.")
    if scene:
        text += (f" {', '.join(scene)} decoded at scene scale: on a picture larger than the {s3['scene_size']}² "
                 f"training scenes the decoder reads its group's latent pooled to their scale.")
    reads = {t: g for t, g in (s3.get("context") or {}).items() if g}
    if reads:
        text += (" Decoders that also read their group's DAG ancestors' latents (decoded first in any case, so "
                 "no extra bits): " + "; ".join(f"{t} reads {', '.join(f'`{a}`' for a in g)}"
                                               for t, g in reads.items()) + ".")
    text += (f" Validation loss / trivial (validation scenes {val}, q{' and q'.join(map(str, s3['val_qualities']))}; "
             "each decoder's best step) before → after: ")
    parts = []
    for t, v in s3["after"].items():
        step = s3["best_step"][t]
        top = f" q{max(s3['val_qualities'])}"
        per = [f"{k.removesuffix(top)} {by_source['source'][k][t]:.3f} → {by_source[step][k][t]:.3f}"
               for k in by_source.get("source", {}) if k.endswith(top)]
        parts.append(f"{t} {s3['before'][t]:.3f} → {v:.3f}" + (f" ({'; '.join(per)} at the highest quality)"
                                                                if per else ""))
    return text + ", ".join(parts) + "."


def quality_lines(q: dict) -> list[str]:
    """The card's "Measured on the test split" section from a benchmarks/model_quality.py record."""
    lines: list[str] = []
    tasks = list(q["anchor"])
    lines += ["", f"## Measured on the test split ({q['images']} images, 512×512)", "",
              "Loss / trivial-predictor loss (lower is better; < 0.5 halves the trivial loss) and bits per pixel "
              "of the layers each task needs (header included):", "",
              "| | all tasks bpp | " + " | ".join(tasks) + " |",
              "|---|---|" + "---|" * len(tasks)]
    anchor_row = ("the model's networks, latents unquantised" if q.get("anchor_source") == "model"
                  else "anchor (uncompressed)")
    lines.append(f"| {anchor_row} | — | " + " | ".join(f"{q['anchor'][t]['normalised']:.3f}" for t in tasks) + " |")
    for r in q["qualities"]:
        lines.append(f"| q{r['quality']} | {r['bpp_all']:.3f} | " + " | ".join(
            f"{r['tasks'][t]['normalised']:.3f} @ {r['tasks'][t]['bpp']:.3f}" for t in tasks) + " |")
    top = q["qualities"][-1]["tasks"]
    lines += ["", f"Human metrics at the highest quality ({anchor_row if q.get('anchor_source') == 'model' else 'anchor'}"
                  " in brackets):", ""]
    for t in tasks:
        m = {k: v for k, v in top[t].items() if k not in ("bpp", "loss", "normalised", "vs_anchor")}
        a = {k: v for k, v in q["anchor"][t].items() if k not in ("loss", "normalised")}
        lines.append(f"- {t}: " + ", ".join(f"{k} {_fmt(v)} ({_fmt(a.get(k))})" for k, v in m.items()))
    # A quality at which a task does worse than predicting its training mean is worth no bits for
    # that task; a receiver picking a quality needs to know before it encodes.
    below = [(r["quality"], [t for t in tasks if r["tasks"][t]["normalised"] > 1.0]) for r in q["qualities"]]
    below = [(qq, ts) for qq, ts in below if ts]
    if below:
        lines += ["", "Worse than the trivial predictor (loss / trivial > 1), so not worth coding for those "
                  "tasks: " + "; ".join(f"q{qq}: {', '.join(ts)}" for qq, ts in below) + "."]
    ci = q.get("ci95") or {}
    high = [f"q{r['quality']}" for r in q["qualities"][2:] if f"q{r['quality']}" in ci]
    if high:
        lines += ["", f"{ci['level']:.0%} intervals of loss / trivial over the test pictures ({ci['method']}), "
                  "q ≥ 3:", ""]
        lines += [f"- {t}: " + ", ".join(f"{k} {ci[k][t][0]:.3f}–{ci[k][t][1]:.3f}" for k in high) for t in tasks]
    checks = q.get("checks", {})
    if checks:
        lines += ["", "Checks:", ""]
        for name, v in checks.items():
            if isinstance(v, dict):
                passed = [t for t, ok in v.items() if ok]
                failed = [t for t, ok in v.items() if not ok]
                lines.append(f"- {name}: " + (f"yes for {', '.join(passed)}" if passed else "none")
                             + (f"; no for {', '.join(failed)}" if failed else ""))
            else:
                lines.append(f"- {name}: {_fmt(v)}")
    return lines


def _head_lines(manifest: dict, model: Path) -> list[str]:
    """Title, size, which group serves each task from which parent, and the recipe's heading."""
    size = sum((model / f).stat().st_size for f in manifest["files"])
    lines = [
        f"# tamc model `{manifest['name']}`",
        "",
        f"Model id `{manifest['model_id']}`, {size / 1e6:.1f} MB ({manifest['weights_precision']} weights), "
        f".tamc format {manifest['format_version']}, {len(manifest['qualities'])} qualities.",
        "",
        "## What it does",
        "",
        "| task | served by group | parent of that group |",
        "|---|---|---|",
    ]
    for t, g in manifest["serving"].items():
        lines.append(f"| {t} | `{g}` | {('`' + manifest['dag']['parents'][g] + '`') if manifest['dag']['parents'][g] else '—'} |")
    lines += ["", "DAG coding order: " + " → ".join(f"`{g}`" for g in manifest["dag"]["order"]), ""]
    return lines + ["## Data and recipe", ""]


def write_card(run: Path, model: Path, quality_json: Path) -> str:
    manifest = json.loads((model / "manifest.json").read_text())
    grouping = _load(run / "grouping.json") or {}
    dag = _load(run / "dag.json") or {}
    s1 = _load(run / "stage1" / "stage1.json") or {}
    s1b = _load(run / "stage1b" / "stage1.json")
    s2 = _load(run / "stage2" / "stage2.json") or {}
    q = _load(quality_json) or {}
    lines = _head_lines(manifest, model)
    data = grouping.get("data", {})
    lines.append(f"- Data: generated scenes (`tamc data synth`), training split from seed "
                 f"{data.get('first_seed', 0)}, {data.get('count', '?')} scenes at 256×256; validation split "
                 f"(seeds from 1,000,000) for every choice; test split (seeds from 2,000,000, 512×512, held-out "
                 f"photographic textures) for the numbers below.")
    large = (s1b or {}).get("large_data")
    if large:
        lines.append(f"- Stage 1b data: {large['scenes']} more training scenes at {large['size']}×{large['size']} "
                     f"(seeds from {large['first_seed']:,}), the test pictures' pixel scale.")
    if grouping:
        st = grouping.get("settings", {})
        lines.append(f"- Grouping: `tamc group` ({grouping.get('method')}), budget {grouping.get('budget')}, "
                     f"{st.get('steps', '?')} steps, seed {st.get('seed', '?')}, {grouping.get('runtime_s', 0) / 60:.1f} min; "
                     f"groups {', '.join('`' + g + '`' for g in grouping.get('groups', []))}.")
    if s1:
        c = s1["config"]
        views = (f"{c['crop']}² crops" if c.get("views", "crop") == "crop"
                 else f"{c['crop']}² crops alternating with whole scenes downsampled to {c['crop']}²")
        net = c.get("net", {})
        norm_names = {"group": "GroupNorm", "channel": "per-pixel channel normalisation"}
        dec_norm = net.get("norm", "none")
        enc_norm = net.get("encoder_norm") or dec_norm
        if enc_norm == dec_norm:
            norms = [norm_names[dec_norm]] if dec_norm in norm_names else []
        else:
            norms = [f"{norm_names.get(enc_norm, 'no normalisation')} in the encoders and "
                     f"{norm_names.get(dec_norm, 'no normalisation')} in the decoders"]
        options = norms + [o for o, on in (("pixel positions", net.get("coords")),
                                           ("global context", net.get("global_context"))) if on]
        how = []
        if c.get("shared_warmup"):
            how.append(f"the first {c['shared_warmup']} with all groups' encoders trained as one")
        if c.get("precision", "fp32") != "fp32":
            how.append(f"{c['precision']} autocast")
        if c.get("device", "cpu") != "cpu":
            how.append(f"on {s1.get('hardware') or c['device']}")
        lines.append(f"- Stage 1: {s1['steps']} steps × batch {c['batch']} of {views}"
                     f"{' (' + '; '.join(how) + ')' if how else ''}, lr {c['lr']}, "
                     f"seed {c['seed']}; networks {net.get('latent_channels', '?')}-channel latents"
                     f"{' with ' + ', '.join(options) if options else ''}; {s1['seconds'] / 60:.1f} min at "
                     f"{s1['images_per_s']} images/s, {s1['parameters'] / 1e6:.2f} M parameters; serving groups "
                     f"chosen by validation loss.")
        uncoded = [g for g in s1.get("groups", []) if g not in manifest["groups"]]
        if uncoded:
            lines.append(f"- Not coded: {', '.join('`' + g + '`' for g in uncoded)} (trained in stage 1, but every "
                         f"member task is served better by another group; CONTRACT.md, Groups).")
    if s1b:
        cb = s1b["config"]
        every = "every third batch" if cb.get("views") == "mix" else "every other batch"
        added = ""
        if large:
            # records before --large-crop cropped the larger scenes like the others
            side, batch = large.get("crop", cb["crop"]), large.get("batch", cb["batch"])
            added = (f" and {side}² crops of the larger scenes ({every}"
                     f"{f', {batch} per batch' if batch != cb['batch'] else ''})")
        where = s1b.get("hardware") or cb.get("device", "cpu")
        lines.append(f"- Stage 1b: {s1b['steps']} steps × batch {cb['batch']} from stage 1's networks, "
                     f"its views{added}, lr {cb['lr']}, {cb.get('precision', 'fp32')} on {where}; "
                     f"{s1b['seconds'] / 60:.1f} min at {s1b['images_per_s']} images/s; serving groups chosen again "
                     f"by validation loss. Validation loss / trivial before → after: " + ", ".join(
                         f"{t} {s1['served'][t]['normalised']:.3f} → {r['normalised']:.3f}"
                         for t, r in s1b.get("served", {}).items() if t in s1.get("served", {})) + ".")
    if dag:
        latents = "stage-1b" if s1b else "stage-1"
        lines.append(f"- DAG: `tamc dag --estimator {dag.get('estimator')}` on the {latents} validation latents; "
                     f"edges {', '.join('`' + a + '` → `' + b + '`' for a, b in dag.get('edges', [])) or 'none'}.")
    continued = _load(run / "continued.json")
    if s2:
        c = s2["config"]
        if continued:
            views = f"{c['batch']} whole {c['crop']}² training rooms" if c.get("views") == "crop" else "its views"
            if c.get("large_data"):
                views += f" alternating with {c['batch']} {c.get('large_crop') or c['crop']}² crops of the larger scenes"
            lines.append(f"- Continued from model `{continued['source_model']}`: its encoders and serving decoders "
                         f"rebuilt from its graphs (`bin/train-continue`) and trained through stage 2 again, "
                         f"with fresh entropy models, on batches of {views}.")
        lines.append(f"- Stage 2: {c['steps_entropy']} steps entropy models only + {c['steps_finetune']} steps "
                     f"fine-tuning, λ = {c['lambdas']}, starting gains "
                     f"{'…'.join(f'{v:g}' for v in c.get('gain_range', _GAIN_RANGE_BEFORE_RECORDED))}, global context {'on' if c['use_global'] else 'off'}, "
                     f"parent input {c.get('parent_input', 'dequantised')}; "
                     f"{s2['seconds'] / 60:.1f} min.")
    blend = manifest["qualities"][0].get("gain_blend")
    if blend:
        lines.append(f"- Export: quality 1 codes with gains {blend:g} of the way (log scale) from the trained q1's "
                     f"to q2's (`tamc export --lowest-blend`, docs/MODEL.md).")
    scene = manifest.get("scene_scale") or {}
    if scene.get("groups"):
        lines.append(f"- Scene scale: the groups serving only seg, depth or normal "
                     f"({', '.join('`' + g + '`' for g in scene['groups'])}) analyse a picture downsampled by the "
                     f"power of two that brings its longer side "
                     f"nearest to {scene['size']} px, the training scenes' side (a 512² picture: by 2); their outputs "
                     f"are upsampled back (`tamc export --scene-size`, docs/MODEL.md).")
    s3 = _load(run / "decoders" / "decoders.json")
    if s3:
        lines.append(_stage3_line(s3))
    stage1_device = s1.get("config", {}).get("device", "cpu")
    if stage1_device == "cpu":
        lines.append(f"- Hardware: {platform.machine()} CPU, recorded by `bin/train-default`.")
    else:
        lines.append(f"- Hardware: stage 1 on {s1.get('hardware') or stage1_device}, the other stages"
                     f"{' (stage 1b included)' if s1b and s1b['config'].get('device', 'cpu') == 'cpu' else ''} on the "
                     f"{platform.machine()} CPU (`bin/train-default`).")
    if q:
        lines += quality_lines(q)
    notes = run / "card_notes.md"
    if notes.exists():
        lines += ["", notes.read_text().strip()]
    anchor_opt = " --anchor model" if q and q.get("anchor_source") == "model" else ""
    recipe = _recipe_command(s1, s1b, s3, manifest)
    if continued:
        # the networks' first stages are the source model's, made by its own recipe
        recipe = f"{continued['source_reproduce']}` (model `{continued['source_model'][:8]}…`), then `{continued['command']}"
    lines += ["", f"Reproduce: `{recipe}` (see the repository README); numbers: "
              f"`python benchmarks/model_quality.py --model models/default{anchor_opt}`.", ""]
    text = "\n".join(lines)
    atomic_write_bytes(model / "README.md", text.encode())
    return text


def write_merged_card(run: Path, model: Path, quality_json: Path) -> str:
    """The card of a model made by `bin/train-scene-layer`: a group trained alone beside the layers
    of a base model (`tamc train merge`). RUN holds the group's records and the base's card
    (base_card.md), whose recipe made every layer the merge kept."""
    manifest = json.loads((model / "manifest.json").read_text())
    merged = manifest["provenance"]["merged"]
    s2 = _load(run / "stage2" / "stage2.json") or {}
    start = _load(run / "start_group.json") or {}
    q = _load(quality_json) or {}
    made = _load(run / "made.json") or {}
    added = merged["added"]["groups"]
    lines = _head_lines(manifest, model)
    c = s2.get("config", {})
    lines.append(f"- {', '.join('`' + g + '`' for g in added)}: a layer of its own for the scene tasks, a DAG root "
                 f"(docs/TRAINING.md, \"A scene layer of its own\"). Started from model "
                 f"`{start.get('model_id', '?')}`: its encoder a copy of that model's `{start.get('encoder_of', '?')}` "
                 f"encoder, its decoders that model's serving seg, depth and normal decoders (`tamc train start-group`).")
    if s2:
        lines.append(f"- Stage 2 of that group alone: {c['steps_entropy']} steps entropy model only + "
                     f"{c['steps_finetune']} steps fine-tuning, batches of {c['batch']} whole {c['crop']}² training "
                     f"rooms{' under random photometric changes' if c.get('augment') else ''}, λ = {c['lambdas']}, "
                     f"starting gains {'…'.join(f'{v:g}' for v in c['gain_range'])}; {s2['seconds'] / 60:.1f} min on "
                     f"{s2.get('hardware', 'the CPU')}. Exported; at a picture larger than the 256² training scenes it "
                     f"analyses the picture at scene scale.")
    if made.get("positions"):
        lines.append(f"- Export: its qualities at positions {made['positions']} on the trained ones (`tamc export "
                     f"--quality-positions`, docs/MODEL.md): trained q3-q5 reach the same losses, so three of the five "
                     f"sit between trained q2 and q3, where the curve bends.")
    lines.append(f"- Merged (`tamc train merge`) with model `{merged['base']['model_id']}`, whose layers "
                 f"{', '.join('`' + g + '`' for g in merged['base']['groups'])} are kept byte for byte (they code "
                 f"exactly the bits they coded there) and serve the picture's tasks; its groups left serving nothing "
                 f"are dropped.")
    if made.get("dag_recheck"):
        lines.append(f"- DAG re-checked on this model's rate-trained latents ({made['dag_recheck']}).")
    base_card = run / "base_card.md"
    if base_card.exists():
        text = base_card.read_text()
        recipe = text.split("## Data and recipe", 1)[-1].split("\n## ", 1)[0].strip()
        lines += ["", f"The kept layers' recipe (model `{merged['base']['model_id'][:8]}…`'s card):", ""]
        lines += ["> " + ln if ln else ">" for ln in recipe.splitlines()]
    if q:
        lines += quality_lines(q)
    notes = run / "card_notes.md"
    if notes.exists():
        lines += ["", notes.read_text().strip()]
    base_reproduce = made.get("base_reproduce", "unknown")
    lines += ["", f"Reproduce: `{base_reproduce}` (model `{merged['base']['model_id'][:8]}…`), then "
              f"`{made.get('command', 'bin/train-scene-layer')}`; numbers: "
              f"`python benchmarks/model_quality.py --model models/default --anchor model`.", ""]
    text = "\n".join(lines)
    atomic_write_bytes(model / "README.md", text.encode())
    return text


if __name__ == "__main__":
    print(write_card(Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])))
