"""The model card: written from the run's records, and honest about qualities that do not pay."""
from __future__ import annotations

import json
from pathlib import Path

from tamc_codec.train.card import write_card


def _model(folder: Path) -> Path:
    folder.mkdir()
    (folder / "weights.bin").write_bytes(b"\0" * 1000)
    manifest = {"name": "tiny", "model_id": "0" * 32, "weights_precision": "float16", "format_version": 1,
                "qualities": [{"q": 1, "lambda": 0.01}, {"q": 2, "lambda": 0.1}], "files": ["weights.bin"], "groups": ["a"],
                "serving": {"seg": "a", "rgb": "a"}, "dag": {"order": ["a"], "parents": {"a": None}}}
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return folder


def _quality(path: Path) -> Path:
    def row(q, seg, rgb):
        return {"quality": q, "bpp_all": 0.1 * q, "tasks": {
            "seg": {"bpp": 0.1 * q, "normalised": seg, "miou": 0.2},
            "rgb": {"bpp": 0.1 * q, "normalised": rgb, "psnr_db": 20.0}}}
    path.write_text(json.dumps({
        "images": 3,
        "anchor": {"seg": {"normalised": 0.9, "miou": 0.21}, "rgb": {"normalised": 0.3, "psnr_db": 24.0}},
        "qualities": [row(1, 1.4, 0.8), row(2, 0.95, 0.4)],
        "checks": {"q>=3_halves_trivial": {"seg": False, "rgb": True}, "rate_span_highest_over_lowest": 2.0}}))
    return path


def test_card_names_the_qualities_that_lose_to_the_trivial_predictor(tmp_path):
    model = _model(tmp_path / "model")
    run = tmp_path / "run"
    run.mkdir()
    text = write_card(run, model, _quality(tmp_path / "q.json"))
    assert (model / "README.md").read_text() == text
    assert "| q1 | 0.100 | 1.400 @ 0.100 | 0.800 @ 0.100 |" in text
    assert "not worth coding for those tasks: q1: seg." in text
    assert "- q>=3_halves_trivial: yes for rgb; no for seg" in text
    assert "- rate_span_highest_over_lowest: 2" in text
    assert "--lowest-blend" not in text


def test_card_gives_the_intervals_of_the_qualities_it_checks(tmp_path):
    model = _model(tmp_path / "model")
    q = _quality(tmp_path / "q.json")
    assert "intervals of loss / trivial" not in write_card(tmp_path, model, q)  # a record without them
    d = json.loads(q.read_text())
    d["qualities"].append({**d["qualities"][1], "quality": 3})
    d["ci95"] = {"method": "percentile bootstrap", "level": 0.95,
                 **{f"q{k}": {"seg": [0.4, 0.6], "rgb": [0.1, 0.2]} for k in (1, 2, 3)}}
    q.write_text(json.dumps(d))
    text = write_card(tmp_path, model, q)
    assert "95% intervals of loss / trivial over the test pictures (percentile bootstrap), q ≥ 3:" in text
    assert "- seg: q3 0.400–0.600" in text and "- rgb: q3 0.100–0.200" in text


def test_card_says_when_the_lowest_quality_is_blended(tmp_path):
    model = _model(tmp_path / "model")
    m = json.loads((model / "manifest.json").read_text())
    m["qualities"] = [{"q": 1, "lambda": 0.01, "gain_blend": 0.75}, {"q": 2, "lambda": 0.1}]
    (model / "manifest.json").write_text(json.dumps(m))
    assert "gains 0.75 of the way (log scale)" in write_card(tmp_path, model, _quality(tmp_path / "q.json"))


def test_card_without_losing_qualities_says_nothing_about_them(tmp_path):
    model = _model(tmp_path / "model")
    q = _quality(tmp_path / "q.json")
    d = json.loads(q.read_text())
    d["qualities"][0]["tasks"]["seg"]["normalised"] = 0.99
    q.write_text(json.dumps(d))
    assert "trivial predictor (loss" not in write_card(tmp_path, model, q)


def test_card_states_the_stage1_warmup_and_precision(tmp_path):
    model = _model(tmp_path / "model")
    run = tmp_path / "run"
    (run / "stage1").mkdir(parents=True)
    s1 = {"steps": 5400, "seconds": 3300.0, "images_per_s": 13.4, "parameters": 6_700_000, "groups": ["a"],
          "config": {"crop": 128, "views": "mix", "batch": 8, "lr": 0.002, "seed": 0, "shared_warmup": 1200,
                     "precision": "bf16", "net": {"latent_channels": 64, "norm": "group"}}}
    (run / "stage1" / "stage1.json").write_text(json.dumps(s1))
    text = write_card(run, model, _quality(tmp_path / "q.json"))
    assert "5400 steps × batch 8 of 128² crops alternating with whole scenes downsampled to 128² (the first 1200 " \
           "with all groups' encoders trained as one; bf16 autocast)" in text
    # a run from before the options says nothing about them
    s1["config"].pop("shared_warmup"), s1["config"].pop("precision")
    (run / "stage1" / "stage1.json").write_text(json.dumps(s1))
    assert "autocast" not in write_card(run, model, _quality(tmp_path / "q.json"))


def test_card_names_the_gpu_that_trained_stage1(tmp_path):
    model = _model(tmp_path / "model")
    run = tmp_path / "run"
    (run / "stage1").mkdir(parents=True)
    s1 = {"steps": 6000, "seconds": 666.0, "images_per_s": 303.0, "parameters": 6_700_000, "groups": ["a"],
          "hardware": "NVIDIA H100 80GB HBM3 GPU",
          "config": {"crop": 128, "views": "mix", "batch": 32, "lr": 0.002, "seed": 0, "device": "cuda",
                     "net": {"latent_channels": 64}}}
    (run / "stage1" / "stage1.json").write_text(json.dumps(s1))
    text = write_card(run, model, _quality(tmp_path / "q.json"))
    assert "6000 steps × batch 32 of 128² crops alternating with whole scenes downsampled to 128² (on NVIDIA H100 " \
           "80GB HBM3 GPU)" in text
    assert "- Hardware: stage 1 on NVIDIA H100 80GB HBM3 GPU, the other stages on the" in text
    # no recipe record: the card does not make one up
    assert "Reproduce: not recorded (the model was not made by `tamc train run RECIPE`)" in text
    # a record from before `hardware` was written still says where it ran
    del s1["hardware"]
    (run / "stage1" / "stage1.json").write_text(json.dumps(s1))
    assert "- Hardware: stage 1 on cuda," in write_card(run, model, _quality(tmp_path / "q.json"))


def test_card_states_stage1b_and_its_larger_scenes(tmp_path):
    model = _model(tmp_path / "model")
    run = tmp_path / "run"
    (run / "stage1").mkdir(parents=True)
    (run / "stage1b").mkdir()
    served = lambda v: {"seg": {"normalised": v}, "rgb": {"normalised": v / 2}}  # noqa: E731
    s1 = {"steps": 6000, "seconds": 666.0, "images_per_s": 303.0, "parameters": 6_700_000, "groups": ["a"],
          "hardware": "NVIDIA H100 80GB HBM3 GPU", "served": served(0.8),
          "config": {"crop": 128, "views": "mix", "batch": 32, "lr": 0.002, "seed": 0, "device": "cuda",
                     "workers": 14, "shared_warmup": 1300, "net": {}}}
    s1b = {"steps": 3000, "seconds": 1800.0, "images_per_s": 13.0, "hardware": "x86_64 CPU, 2 threads",
           "served": served(0.6), "large_data": {"scenes": 1200, "size": 512, "first_seed": 500000},
           "config": {"crop": 128, "views": "mix", "batch": 8, "lr": 0.0005, "device": "cpu", "precision": "bf16"}}
    (run / "stage1" / "stage1.json").write_text(json.dumps(s1))
    (run / "stage1b" / "stage1.json").write_text(json.dumps(s1b))
    text = write_card(run, model, _quality(tmp_path / "q.json"))
    assert "- Stage 1b data: 1200 more training scenes at 512×512 (seeds from 500,000)" in text
    assert "- Stage 1b: 3000 steps × batch 8 from stage 1's networks, its views and 128² crops of the larger " \
           "scenes (every third batch), lr 0.0005, bf16 on x86_64 CPU, 2 threads; 30.0 min" in text
    assert "seg 0.800 → 0.600, rgb 0.400 → 0.300." in text
    assert "the other stages (stage 1b included) on the" in text
    # larger crops of the larger scenes, fewer per batch: said
    s1b["config"]["large_crop"] = 256
    s1b["large_data"].update({"crop": 256, "batch": 2})
    (run / "stage1b" / "stage1.json").write_text(json.dumps(s1b))
    text = write_card(run, model, _quality(tmp_path / "q.json"))
    assert "and 256² crops of the larger scenes (every third batch, 2 per batch)" in text


def test_card_states_which_groups_work_at_scene_scale(tmp_path):
    model = _model(tmp_path / "model")
    run = tmp_path / "run"
    run.mkdir()
    assert "Scene scale" not in write_card(run, model, _quality(tmp_path / "q.json"))
    m = json.loads((model / "manifest.json").read_text())
    m["scene_scale"] = {"size": 256, "groups": ["a"]}
    (model / "manifest.json").write_text(json.dumps(m))
    text = write_card(run, model, _quality(tmp_path / "q.json"))
    assert "- Scene scale: the groups serving only seg, depth or normal (`a`) analyse a picture downsampled" in text
    assert "nearest to 256 px" in text


def test_card_states_stage3_with_its_validation_before_and_after(tmp_path):
    model = _model(tmp_path / "model")
    run = tmp_path / "run"
    (run / "decoders").mkdir(parents=True)
    by = {"source": {"val q3": {"seg": 0.46}, "val q5": {"seg": 0.45}, "val512 q3": {"seg": 0.75}, "val512 q5": {"seg": 0.73}},
          0: {"val q3": {"seg": 0.5}, "val q5": {"seg": 0.5}, "val512 q3": {"seg": 0.9}, "val512 q5": {"seg": 0.86}},
          500: {"val q3": {"seg": 0.42}, "val q5": {"seg": 0.41}, "val512 q3": {"seg": 0.48}, "val512 q5": {"seg": 0.47}}}
    s3 = {"config": {"steps": 500, "lr": 3e-4}, "seconds": 600.0, "scene_tasks": ["seg"], "scene_size": 256,
          "sources": [{"scenes": 4000, "size": 256}, {"scenes": 1200, "size": 512}],
          "val": [{"scenes": 200, "size": 256}, {"scenes": 50, "size": 512}], "val_qualities": [3, 5],
          "history": [{"step": k, "val": {}, "by_source": v} for k, v in by.items()],
          "before": {"seg": 0.6}, "after": {"seg": 0.445}, "best_step": {"seg": 500},
          "context": {"seg": ["keypoint+rgb"]}}
    (run / "decoders" / "decoders.json").write_text(json.dumps(s3))
    text = write_card(run, model, _quality(tmp_path / "q.json"))
    assert "seg decoders fitted for 500 steps, lr 0.0003, to the latents its own codec decodes from whole " \
           "training scenes (4000 at 256² and 1200 at 512²" in text
    assert "seg decoded at scene scale" in text
    assert "seg reads `keypoint+rgb`" in text
    assert "seg 0.600 → 0.445 (val 0.450 → 0.410; val512 0.730 → 0.470 at the highest quality)" in text


def test_card_of_a_continued_model_names_its_source_and_the_recipe(tmp_path):
    model = _model(tmp_path / "model")
    source = _model(tmp_path / "source")
    m = json.loads((source / "manifest.json").read_text())
    (source / "manifest.json").write_text(json.dumps({**m, "model_id": "9" * 32}))
    first, run = tmp_path / "first", tmp_path / "run"
    (run / "stage2").mkdir(parents=True)
    (first / "stage1").mkdir(parents=True)
    s2 = {"seconds": 1390.0, "config": {"steps_entropy": 600, "steps_finetune": 1400, "lambdas": [0.01, 0.1],
                                        "gain_range": [0.2, 12.0], "use_global": False, "parent_input": "quantised",
                                        "batch": 2, "crop": 256, "views": "crop", "large_data": None,
                                        "anchor": str(source)}}
    (run / "stage2" / "stage2.json").write_text(json.dumps(s2))
    (first / "stage1" / "stage1.json").write_text(json.dumps({
        "steps": 6000, "seconds": 666.0, "images_per_s": 303.0, "parameters": 6_700_000, "groups": ["a"],
        "config": {"crop": 128, "views": "mix", "batch": 32, "lr": 0.002, "seed": 0, "net": {}}}))
    recipe = {"recipe": "recipes/default.toml", "sha256": "ab" * 32}
    text = write_card(run, model, _quality(tmp_path / "q.json"), source_run=first, recipe=recipe)
    assert f"- Continued from model `{'9' * 32}`: its encoders and serving decoders rebuilt from its graphs" in text
    assert "on batches of 2 whole 256² training rooms." in text
    # the stages before the continued stage 2 come from the source run's records
    assert "- Stage 1: 6000 steps × batch 32 of 128² crops alternating" in text
    assert "- Recipe: `recipes/default.toml` (sha256 `abababababababab…`)" in text
    assert "Reproduce: `tamc train run recipes/default.toml RUN`" in text
    # a model `tamc train run` exported names its recipe in its manifest: the card reads it there
    m = json.loads((model / "manifest.json").read_text())
    (model / "manifest.json").write_text(json.dumps({**m, "provenance": {"recipe": recipe}}))
    assert "Reproduce: `tamc train run recipes/default.toml RUN`" in write_card(run, model, None)


def test_card_states_a_later_refit_of_the_decoders(tmp_path):
    model = _model(tmp_path / "model")
    run, refit = tmp_path / "run", tmp_path / "refit"
    run.mkdir()
    refit.mkdir()
    by = {"source": {"val q5": {"seg": 0.41}, "val512 q5": {"seg": 0.46}},
          250: {"val q5": {"seg": 0.39}, "val512 q5": {"seg": 0.44}}}
    (refit / "decoders.json").write_text(json.dumps({
        "config": {"steps": 2000, "lr": 1e-3, "augment": True, "data": ["data/trainwide", "data/train512"]},
        "source_model": "c" * 32, "seconds": 378.0, "sources": [{"scenes": 4000, "size": 256}, {"scenes": 1200, "size": 512}],
        "val_qualities": [3, 5], "history": [{"step": k, "by_source": v} for k, v in by.items()],
        "before": {"seg": 0.432}, "after": {"seg": 0.419}, "best_step": {"seg": 250}}))
    text = write_card(run, model, None, refits=(refit,))
    assert "- Decoders refitted: stage 3 again from model `cccccccc…`, the seg decoder alone, 2000 steps, lr 0.001, " \
           "on the latents the codec decodes from whole training scenes (4000 at 256² and 1200 at 512², under random " \
           "photometric changes; training folders `data/trainwide`, `data/train512`)" in text
    assert "seg 0.432 → 0.419 (val 0.410 → 0.390; val512 0.460 → 0.440 at the highest quality)" in text


def test_merged_card_reads_the_added_models_positions_the_dag_recheck_and_the_base_card(tmp_path):
    from tamc_codec.train.card import write_merged_card

    base_dir, added_dir = _model(tmp_path / "base"), _model(tmp_path / "added")
    m = json.loads((added_dir / "manifest.json").read_text())
    m["qualities"] = [{"q": 1, "trained_position": 1.0}, {"q": 2, "trained_position": 2.33}]
    (added_dir / "manifest.json").write_text(json.dumps(m))
    model = _model(tmp_path / "model")
    m = json.loads((model / "manifest.json").read_text())
    m["provenance"] = {"merged": {"base": {"model_id": "e" * 32, "path": str(base_dir), "groups": ["b"]},
                                  "added": {"model_id": "6" * 32, "path": str(added_dir), "groups": ["a"]}}}
    (model / "manifest.json").write_text(json.dumps(m))
    (base_dir / "README.md").write_text("# x\n\n## Data and recipe\n\n- Stage 1: as the base did.\n\n## Measured\n")
    check = tmp_path / "check.json"
    check.write_text(json.dumps({"quality": 3, "images": 50, "model_graph_agrees_with_decode_sets": False,
                                 "dag_decode_sets": {"parents": {"a": None, "b": "a"}}}))
    run = tmp_path / "run"
    run.mkdir()
    recipe = {"recipe": "recipes/default.toml", "sha256": "cd" * 32}
    text = write_merged_card(run, model, None, base_card=base_dir / "README.md", dag_recheck=check, recipe=recipe)
    assert "- Export: its qualities at positions 1,2.33 on the trained ones" in text
    assert "(`benchmarks/dag_recheck.py`, q3, 50 validation pictures at 512²: the decode-set rule would choose " \
           "a ← none, b ← a)" in text
    assert "> - Stage 1: as the base did." in text and "Measured" not in text
    assert "- Recipe: `recipes/default.toml`" in text
    assert "Reproduce: `tamc train run recipes/default.toml RUN`" in text
    # the shipped model's records name the scripts that first made it: kept beside the recipe
    (run / "made.json").write_text(json.dumps({"command": "bin/train-scene-layer models/default runs/scene",
                                               "base_reproduce": "bin/train-default"}))
    text = write_merged_card(run, model, None, base_card=base_dir / "README.md", recipe=recipe)
    assert "Reproduce: `tamc train run recipes/default.toml RUN` (docs/TRAINING.md, \"The recipe file\"); made first " \
           "by the scripts the recipe replaced: `bin/train-default` (model `eeeeeeee…`), then `bin/train-scene-layer models/default runs/scene`" in text


def test_the_dag_recheck_text_says_whether_a_picture_layer_could_be_a_parent():
    from tamc_codec.train.card import dag_recheck_text

    rows = {"1": {"parent_bytes": 1085.4, "child_bytes": 62.0, "can_pay": False},
            "5": {"parent_bytes": 38053.8, "child_bytes": 811.5, "can_pay": False}}
    check = {"quality": 3, "images": 50, "model_graph_agrees_with_decode_sets": True,
             "dag_decode_sets": {"parents": {"seg+depth+normal": None}},
             "picture_parent_bound": {"rgb -> seg+depth+normal": {"by_quality": rows, "can_pay_at_any_quality": False}}}
    text = dag_recheck_text(check)
    assert "keeps this graph" in text and "none could pay" in text and "1085 B against 62 B" in text
    rows["1"] = {"parent_bytes": 50.0, "child_bytes": 62.0, "can_pay": True}
    check["picture_parent_bound"]["rgb -> seg+depth+normal"]["can_pay_at_any_quality"] = True
    assert "rgb -> seg+depth+normal could pay" in dag_recheck_text(check)
    del check["picture_parent_bound"]
    assert "roots by construction" not in dag_recheck_text(check)
