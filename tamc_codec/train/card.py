"""The model card (models/<name>/README.md), written from the run's own records.

Every number in the card comes from a JSON file the recipe wrote, so the card
cannot drift from what was measured; the card names the recipe file (recipes/*.toml) that made
the model. A recipe's `card` stage runs it (`tamc train run`); by hand:

    python -m tamc_codec.train.card --model MODEL_DIR --run RUN_DIR [--quality QUALITY_JSON]
        [--source-run RUN] [--refit RUN ...] [--base-card README.md] [--dag-recheck JSON]
        [--notes MD] [--recipe-record RUN/recipe.json]
"""
from __future__ import annotations

import json
import platform
from pathlib import Path

from ..atomic import atomic_write_bytes
from ..bitstream import FORMAT_VERSION


# stage2.json records gain_range only since it became an option; earlier runs used this fixed range
_GAIN_RANGE_BEFORE_RECORDED = (0.25, 8.0)


def _load(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _fmt(v) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def _recipe_lines(recipe: dict | None) -> list[str]:
    """The card's line naming the recipe file that made the model (docs/TRAINING.md, "The recipe file")."""
    if not recipe:
        return []
    return [f"- Recipe: `{recipe['recipe']}` (sha256 `{recipe['sha256'][:16]}…`): `tamc train run {recipe['recipe']} RUN` "
            f"runs every stage that made this model, with these settings, in order."]


def _reproduce(recipe: dict | None) -> str:
    if recipe:
        return f"`tamc train run {recipe['recipe']} RUN` (docs/TRAINING.md, \"The recipe file\")"
    return "not recorded (the model was not made by `tamc train run RECIPE`)"


def _recipe_of(manifest: dict, recipe: dict | None) -> dict | None:
    """The recipe given, else the one the manifest's provenance names (a model `tamc train run` exported)."""
    return recipe or (manifest.get("provenance") or {}).get("recipe")


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
        f"written as .tamc format {FORMAT_VERSION}, {len(manifest['qualities'])} qualities.",
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


def _source_model(s2: dict, continued: dict | None) -> str | None:
    """The model a continued stage 2 started from (`tamc train stage2 --anchor MODEL`), if it did."""
    if continued:
        return continued.get("source_model")
    anchor = Path(str(s2.get("config", {}).get("anchor", "")))
    m = _load(anchor / "manifest.json") if anchor.name and not anchor.suffix else None
    return m.get("model_id") if m else None


def _refit_line(s3: dict) -> str:
    """A later stage 3 on the finished model (its decoders refitted, every coded bit unchanged)."""
    c = s3["config"]
    tasks = list(s3["after"])
    seen = " and ".join(f"{src['scenes']} at {src['size']}²" for src in s3["sources"])
    by_source = {h["step"]: h["by_source"] for h in s3.get("history", [])}
    top = f" q{max(s3.get('val_qualities') or [0])}"
    parts = []
    for t in tasks:
        step = s3["best_step"][t]
        per = [f"{k.removesuffix(top)} {by_source['source'][k][t]:.3f} → {by_source[step][k][t]:.3f}"
               for k in by_source.get("source", {}) if k.endswith(top) and step in by_source]
        parts.append(f"{t} {s3['before'][t]:.3f} → {s3['after'][t]:.3f}" + (f" ({'; '.join(per)} at the highest quality)"
                                                                          if per else ""))
    source = s3.get("source_model")
    return (f"- Decoders refitted: stage 3 again{f' from model `{source[:8]}…`' if source else ''}, the "
            f"{', '.join(tasks)} decoder{'s' if len(tasks) > 1 else ''} alone, {c['steps']} steps, lr {c['lr']:g}, on the "
            f"latents the codec decodes from whole training scenes ({seen}"
            f"{', under random photometric changes' if c.get('augment') else ''}; training folders "
            f"{', '.join('`' + str(d) + '`' for d in c.get('data', []))}); every other file, and so every coded bit, "
            f"unchanged; {s3['seconds'] / 60:.1f} min. Validation loss / trivial before → after: " + ", ".join(parts) + ".")


def write_card(run: Path, model: Path, quality_json: Path | None, *, source_run: Path | None = None,
               refits: tuple[Path, ...] = (), notes: Path | None = None, recipe: dict | None = None) -> str:
    """The card of a model made by stages 1 to 3 (RUN holds their records). `source_run`: the run
    whose grouping, stage 1, stage 1b and DAG records stand for RUN's missing ones (a continued
    model: stage 2 again from an exported model); `refits`: runs of a later stage 3 on the result;
    `recipe`: the recipe record (RUN/recipe.json), else the one the manifest names."""
    manifest = json.loads((model / "manifest.json").read_text())
    recipe = _recipe_of(manifest, recipe)

    def record(rel: str) -> dict | None:
        found = _load(run / rel)
        return found if found is not None or source_run is None else _load(Path(source_run) / rel)

    grouping = record("grouping.json") or {}
    dag = record("dag.json") or {}
    s1 = record("stage1/stage1.json") or {}
    s1b = record("stage1b/stage1.json")
    s2 = _load(run / "stage2" / "stage2.json") or {}
    q = (_load(quality_json) if quality_json else None) or {}
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
    source_model = _source_model(s2, _load(run / "continued.json"))
    if s2:
        c = s2["config"]
        if source_model:
            views = f"{c['batch']} whole {c['crop']}² training rooms" if c.get("views") == "crop" else "its views"
            if c.get("large_data"):
                views += f" alternating with {c['batch']} {c.get('large_crop') or c['crop']}² crops of the larger scenes"
            lines.append(f"- Continued from model `{source_model}`: its encoders and serving decoders "
                         f"rebuilt from its graphs (`tamc train stage2 --anchor MODEL`) and trained through stage 2 again, "
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
    for r in refits:
        s3r = _load(Path(r) / "decoders.json")
        if s3r:
            lines.append(_refit_line(s3r))
    stage1_device = s1.get("config", {}).get("device", "cpu")
    if stage1_device == "cpu":
        lines.append(f"- Hardware: {platform.machine()} CPU.")
    else:
        lines.append(f"- Hardware: stage 1 on {s1.get('hardware') or stage1_device}, the other stages"
                     f"{' (stage 1b included)' if s1b and s1b['config'].get('device', 'cpu') == 'cpu' else ''} on the "
                     f"{platform.machine()} CPU.")
    lines += _recipe_lines(recipe)
    if q:
        lines += quality_lines(q)
    notes = Path(notes) if notes else run / "card_notes.md"
    if notes.exists():
        lines += ["", notes.read_text().strip()]
    anchor_opt = " --anchor model" if q and q.get("anchor_source") == "model" else ""
    lines += ["", f"Reproduce: {_reproduce(recipe)}; numbers: "
              f"`python benchmarks/model_quality.py --model models/default{anchor_opt}`.", ""]
    text = "\n".join(lines)
    atomic_write_bytes(model / "README.md", text.encode())
    return text


def dag_recheck_text(check: dict) -> str:
    """What benchmarks/dag_recheck.py found, in the card's words."""
    agrees = "the decode-set rule keeps this graph" if check["model_graph_agrees_with_decode_sets"] else \
        "the decode-set rule would choose " + ", ".join(f"{g} ← {p or 'none'}"
                                                        for g, p in check["dag_decode_sets"]["parents"].items())
    text = f"`benchmarks/dag_recheck.py`, q{check['quality']}, {check['images']} validation pictures at 512²: {agrees}"
    bound = check.get("picture_parent_bound") or {}
    if bound:
        closest = min((r for e in bound.values() for r in e["by_quality"].values()),
                      key=lambda r: r["parent_bytes"] / max(r["child_bytes"], 1e-9))
        pays = [e for e, r in bound.items() if r["can_pay_at_any_quality"]]
        text += ("; the picture layers are roots by construction, and " +
                 (f"{', '.join(pays)} could pay as a parent under the decode-set rule" if pays else
                  "none could pay as a latent layer's parent under the decode-set rule at any quality (its bytes "
                  f"exceed the child's whole layer: closest {closest['parent_bytes']:.0f} B against "
                  f"{closest['child_bytes']:.0f} B)"))
    return text


def _positions(merged: dict) -> str | None:
    """The added model's exported qualities on its trained scale (`tamc export --quality-positions`)."""
    m = _load(Path(merged["added"]["path"]) / "manifest.json") or {}
    pos = [q.get("trained_position") for q in m.get("qualities", [])]
    return ",".join(f"{p:g}" for p in pos) if pos and None not in pos else None


def _views_text(c: dict) -> str:
    """What stage 2's batches held (its --views and --crop)."""
    if c.get("views") == "mix":
        return f"{c['crop']}² crops of training rooms alternating with whole rooms downsampled to {c['crop']}²"
    return f"whole {c['crop']}² training rooms"


def write_merged_card(run: Path, model: Path, quality_json: Path | None, *, base_card: Path | None = None,
                      dag_recheck: Path | None = None, notes: Path | None = None, recipe: dict | None = None) -> str:
    """The card of a model made by `tamc train merge`: a group trained alone beside the layers of a
    base model. RUN holds the group's records; `base_card` (default RUN/base_card.md) is the base
    model's card, whose recipe made every layer the merge kept; `dag_recheck` the record of
    benchmarks/dag_recheck.py on the merged model."""
    manifest = json.loads((model / "manifest.json").read_text())
    recipe = _recipe_of(manifest, recipe)
    merged = manifest["provenance"]["merged"]
    s2 = _load(run / "stage2" / "stage2.json") or {}
    start = _load(run / "start_group.json") or {}
    q = (_load(quality_json) if quality_json else None) or {}
    # made.json: what bin/train-scene-layer recorded for the shipped model's card
    made = _load(run / "made.json") or {}
    positions = made.get("positions") or _positions(merged)
    check = _load(Path(dag_recheck)) if dag_recheck else None
    recheck = dag_recheck_text(check) if check else made.get("dag_recheck")
    added = merged["added"]["groups"]
    lines = _head_lines(manifest, model)
    c = s2.get("config", {})
    lines.append(f"- {', '.join('`' + g + '`' for g in added)}: a layer of its own for the scene tasks, a DAG root "
                 f"(docs/TRAINING.md, \"A scene layer of its own\"). Started from model "
                 f"`{start.get('model_id', '?')}`: its encoder a copy of that model's `{start.get('encoder_of', '?')}` "
                 f"encoder, its decoders that model's serving seg, depth and normal decoders (`tamc train start-group`).")
    if s2:
        lines.append(f"- Stage 2 of that group alone: {c['steps_entropy']} steps entropy model only + "
                     f"{c['steps_finetune']} steps fine-tuning, batches of {c['batch']} {_views_text(c)}"
                     f"{' under random photometric changes' if c.get('augment') else ''}, λ = {c['lambdas']}, "
                     f"starting gains {'…'.join(f'{v:g}' for v in c['gain_range'])}; {s2['seconds'] / 60:.1f} min on "
                     f"{s2.get('hardware', 'the CPU')}. Exported; it analyses a picture at scene scale, downsampled by "
                     f"the power of two that brings its longer side nearest to "
                     f"{(manifest.get('scene_scale') or {}).get('size', 256)} px.")
    if positions:
        why = made.get("positions_why", "trained q3-q5 reach the same losses, so three of the five sit between "
                                        "trained q2 and q3, where the curve bends")
        lines.append(f"- Export: its qualities at positions {positions} on the trained ones (`tamc export "
                     f"--quality-positions`, docs/MODEL.md): {why}.")
    lines.append(f"- Merged (`tamc train merge`) with model `{merged['base']['model_id']}`, whose layers "
                 f"{', '.join('`' + g + '`' for g in merged['base']['groups'])} are kept byte for byte (they code "
                 f"exactly the bits they coded there) and serve the picture's tasks; its groups left serving nothing "
                 f"are dropped.")
    if recheck:
        lines.append(f"- DAG re-checked on this model's rate-trained latents ({recheck}).")
    lines += _recipe_lines(recipe)
    base_card = Path(base_card) if base_card else run / "base_card.md"
    if base_card.exists():
        text = base_card.read_text()
        kept = text.split("## Data and recipe", 1)[-1].split("\n## ", 1)[0].strip()
        lines += ["", f"The kept layers' recipe (model `{merged['base']['model_id'][:8]}…`'s card):", ""]
        lines += ["> " + ln if ln else ">" for ln in kept.splitlines()]
    if q:
        lines += quality_lines(q)
    notes = Path(notes) if notes else run / "card_notes.md"
    if notes.exists():
        lines += ["", notes.read_text().strip()]
    first = ""
    if made.get("command"):
        # the commands that first made it, before the recipe was a file
        first = (f"`{made.get('base_reproduce', 'unknown')}` (model `{merged['base']['model_id'][:8]}…`), "
                 f"then `{made['command']}`")
    if recipe:
        reproduce = _reproduce(recipe) + (f"; made first by the scripts the recipe replaced: {first}" if first else "")
    else:
        reproduce = first or _reproduce(None)
    lines += ["", f"Reproduce: {reproduce}; numbers: "
              f"`python benchmarks/model_quality.py --model models/default --anchor model`.", ""]
    text = "\n".join(lines)
    atomic_write_bytes(model / "README.md", text.encode())
    return text


def _decoders_command(s3: dict, source: str, export: Path, name: str) -> str:
    """The `tamc train decoders` command line a stage-3 record stands for."""
    c = s3["config"]
    opts = [f"-m {source}", *(f"--data {d}" for d in c["data"]), *(f"--val {v}" for v in c["val"]),
            f"--out {Path(c['out']).name}", f"--steps {c['steps']}", f"--lr {c['lr']:g}", f"--precision {c['precision']}",
            "--augment" if c.get("augment") else "--no-augment", f"--eval-every {c['eval_every']}"]
    if c.get("tasks"):
        opts.append(f"--tasks {','.join(c['tasks'])}")
    if c.get("val_limit"):
        opts.append(f"--val-limit {c['val_limit']}")
    if c.get("val_qualities"):
        opts.append(f"--val-qualities {','.join(map(str, c['val_qualities']))}")
    return f"tamc train decoders {' '.join(opts)} --export {export} --name {name}"


def picture_lines(manifest: dict) -> list[str]:
    """The card's lines on a model's picture layers (docs/MODEL.md, "Picture layers"), from its manifest."""
    lines = []
    made = (manifest.get("provenance") or {}).get("picture_layer") or {}
    for g, spec in (manifest.get("pictures") or {}).items():
        by_group = (made.get("groups") or {}).get(g) or {}
        chosen = {c["q"]: c for c in by_group.get("chosen", [])}
        served = ", ".join(t for t, sg in manifest["serving"].items() if sg == g)
        lines.append(f"- `{g}`: a picture layer serving {served} (docs/MODEL.md, \"Picture layers\"): the picture coded "
                     f"by {spec['coding'].upper()} through Pillow{' (libavif ' + made['libavif'] + ')' if made.get('libavif') else ''}, "
                     f"its container boxes deflated with a fixed dictionary (docs/FORMAT.md, \"Picture payload\"); rgb "
                     f"is the decoded picture, edge and keypoint CONTRACT.md's filters of it. A DAG root and no "
                     f"layer's parent: a scene task never reads it.")
        if made.get("data"):
            names = {"psnr": "rgb PSNR", "rgb": "rgb L1", "edge": "edge L1", "keypoint": "keypoint L1"}
            crit = " and ".join(names.get(c, c) for c in by_group.get("criteria", ["psnr"]))
            lines.append(f"- Its settings, chosen on the first {made['images']} pictures of `{made['data']}` (never the "
                         f"test split): AVIF swept at 1, 1/2 and 1/4 of the picture's sides (the bench's settings); for "
                         f"each quality's target rate the scale nearest AVIF's best over scales there by {crit} (the "
                         f"least worst excess over the best scale), then that scale's setting whose mean rate is nearest "
                         f"the target:")
        lines += ["", "| q | target bpp | setting | bpp (layer) | bpp (plain AVIF) | rgb PSNR (dB) |", "|---|---|---|---|---|---|"]
        for s in spec["qualities"]:
            c = chosen.get(s["q"], {})
            fmt = (lambda k, f: format(c[k], f) if k in c else "—")
            lines.append(f"| {s['q']} | {s.get('target_bpp', '—')} | `{s['setting']}` | {fmt('bpp', '.4f')} | "
                         f"{fmt('avif_bpp', '.4f')} | {fmt('psnr_db', '.2f')} |")
        lines.append("")
    base = made.get("base")
    if base:
        lines.append(f"- Every other layer kept byte for byte from model `{base['model_id']}` "
                     f"({', '.join('`' + g + '`' for g in base['groups'])}: they code exactly the bits they coded there); "
                     f"dropped: {', '.join('`' + g + '`' for g in base['dropped']) or 'none'}.")
    return lines


def write_picture_card(model: Path, base_card: Path | None = None, *, command: str | None = None,
                       notes: str | None = None, quality: Path | None = None, refits: tuple[Path, ...] = (),
                       dag_recheck: Path | None = None) -> str:
    """The card of a model made by `tamc train picture-layer`: its picture layer, any later stage 3
    (`refits`: its runs), the DAG re-check, then the source model's card's recipe (`base_card`),
    which made every layer kept; then, given `quality` (a benchmarks/model_quality.py record of
    this model), what it measures on the test split."""
    manifest = json.loads((model / "manifest.json").read_text())
    base = ((manifest.get("provenance") or {}).get("picture_layer") or {}).get("base") or {}
    lines = _head_lines(manifest, model) + picture_lines(manifest)
    lines += [_refit_line(s3) for s3 in (_load(Path(r) / "decoders.json") for r in refits) if s3]
    check = _load(Path(dag_recheck)) if dag_recheck else None
    if check:
        lines.append(f"- DAG re-checked on this model's rate-trained latents ({dag_recheck_text(check)}).")
    if base_card and Path(base_card).exists():
        kept = Path(base_card).read_text().split("## Data and recipe", 1)[-1].split("\n## ", 1)[0].strip()
        lines += ["", f"The kept layers' recipe (model `{base.get('model_id', '?')[:8]}…`'s card):", ""]
        lines += ["> " + ln if ln else ">" for ln in kept.splitlines()]
    q = _load(quality) if quality else None
    if q:
        if q.get("model_id") != manifest["model_id"]:
            from ..errors import TamcInputError

            raise TamcInputError(f"{quality} measures model {q.get('model_id')}, not {manifest['model_id']}")
        lines += quality_lines(q)
    if notes:
        lines += ["", notes.strip()]
    if command:
        lines += ["", f"Reproduce: the source model's recipe, then `{command}`.", ""]
    text = "\n".join(lines) + ("" if lines[-1] == "" else "\n")
    atomic_write_bytes(model / "README.md", text.encode())
    return text


def main(argv: list[str] | None = None) -> str:
    """The card of MODEL from RUN's records (a merged model's card when its manifest says it was merged)."""
    import argparse

    from ..errors import TamcInputError

    ap = argparse.ArgumentParser(prog="python -m tamc_codec.train.card", description=main.__doc__)
    ap.add_argument("--model", required=True, help="the model folder (its README.md is written)")
    ap.add_argument("--run", required=True, help="the folder of the records of the stages that made it")
    ap.add_argument("--quality", help="benchmarks/model_quality.py's record of the model")
    ap.add_argument("--source-run", help="a continued model: the run of the stages before its stage 2")
    ap.add_argument("--refit", action="append", default=[], help="a later stage 3's run (repeatable)")
    ap.add_argument("--base-card", help="a merged model: the base model's card")
    ap.add_argument("--dag-recheck", help="a merged or picture-layer model: benchmarks/dag_recheck.py's record")
    ap.add_argument("--notes", help="a Markdown file added after the numbers (default RUN/card_notes.md)")
    ap.add_argument("--recipe-record", help="RUN/recipe.json of `tamc train run`: the recipe the card names")
    a = ap.parse_args(argv)
    model, run = Path(a.model), Path(a.run)
    manifest = _load(model / "manifest.json")
    if manifest is None:
        raise TamcInputError(f"{model}: no readable manifest.json")
    recipe = _load(Path(a.recipe_record)) if a.recipe_record else None
    quality = Path(a.quality) if a.quality else None
    notes = Path(a.notes) if a.notes else None
    if "picture_layer" in (manifest.get("provenance") or {}):
        base = (manifest["provenance"]["picture_layer"].get("base") or {}).get("path")
        made = manifest["provenance"]["picture_layer"]
        how = (f"--settings {made['settings_from']}" if made.get("settings_from") else
               f"--from-data {made.get('data')} --images {made.get('images')}")
        groups = ",".join(made.get("groups") or manifest["pictures"])
        refit = [r for r in (_load(Path(r) / "decoders.json") for r in a.refit) if r]
        command = f"tamc train picture-layer -m {base} {how} --groups {groups} --out {'PICTURE' if refit else model} " \
                  f"--name {manifest['name']}"
        for k, s3 in enumerate(refit):
            command += f"`, then `{_decoders_command(s3, 'PICTURE' if k == 0 else 'PREVIOUS', model, manifest['name'])}"
        return write_picture_card(model, Path(a.base_card) if a.base_card else (Path(base) / "README.md" if base else None),
                                  notes=notes.read_text() if notes and notes.exists() else None, quality=quality,
                                  command=command, refits=tuple(Path(r) for r in a.refit),
                                  dag_recheck=Path(a.dag_recheck) if a.dag_recheck else None)
    if "merged" in (manifest.get("provenance") or {}):
        return write_merged_card(run, model, quality, base_card=Path(a.base_card) if a.base_card else None,
                                 dag_recheck=Path(a.dag_recheck) if a.dag_recheck else None, notes=notes, recipe=recipe)
    return write_card(run, model, quality, source_run=Path(a.source_run) if a.source_run else None,
                      refits=tuple(Path(r) for r in a.refit), notes=notes, recipe=recipe)


if __name__ == "__main__":
    print(main())
