"""Recipes (recipes/*.toml) and `tamc train run`: the shipped recipe parses and says what made the
shipped model, bad recipes fail in one line, and a tiny recipe runs end to end and resumes."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("tomllib")  # recipes are read with Python 3.11's tomllib

from tamc_codec.cli.recipe_cmd import command_defaults, load_recipe, run_recipe
from tamc_codec.errors import TamcInputError
from tamc_codec.train.recipe import KINDS, resolved, start_run

ROOT = Path(__file__).resolve().parents[1]
RECIPES = sorted((ROOT / "recipes").glob("*.toml"))
RESULTS = ROOT / "benchmarks" / "results"


def _cli(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)}
    return subprocess.run([sys.executable, "-m", "tamc_codec", *args], capture_output=True, text=True, cwd=cwd,
                          env=env, timeout=300)


@pytest.mark.parametrize("path", RECIPES, ids=[p.name for p in RECIPES])
def test_shipped_recipes_parse_and_validate(path):
    r = load_recipe(path)
    assert r.stages and r.model
    for s in r.stages:
        assert s.kind in KINDS
        # experiment switches are not part of a shipped recipe
        assert "experimental" not in s.settings, f"{path.name}: stage {s.name}"
        resolved(r, s, "runs/x")  # every placeholder names a known folder


def test_the_default_recipe_ends_with_the_shipped_models_card():
    r = load_recipe(ROOT / "recipes" / "default.toml")
    assert r.name == "default" and r.model == "{run}/final"
    assert [s.kind for s in r.stages[-7:]] == ["merge", "card", "picture-layer", "decoders", "dag-recheck", "quality",
                                               "card"]
    assert r.stage("card-final").settings["quality"] == r.stage("quality-final").settings["out"]
    assert r.stage("card-final").settings["model"] == r.model
    # the scene layer's model and its card, then the picture layer, then its scene decoders fitted (stage 3)
    assert r.stage("scene128-card").settings["model"] == r.stage("scene128-merge").settings["out"] \
        == r.stage("picture").settings["model"]
    assert r.stage("picture").settings["out"] == r.stage("final-decoders").settings["model"]
    assert r.stage("final-decoders").settings["export"] == r.model == r.stage("quality-final").settings["model"] \
        == r.stage("dag-recheck-final").settings["model"]
    # the card names that stage 3 and the DAG re-check
    assert r.stage("card-final").settings["refit"] == [r.stage("final-decoders").settings["out"]]
    assert r.stage("card-final").settings["dag-recheck"] == r.stage("dag-recheck-final").settings["out"]
    # the shipped model's card names the recipe file
    assert "`recipes/default.toml`" in (ROOT / "models" / "default" / "README.md").read_text()


BAD = {
    "unknown key": ('id = "s"\nkind = "stage1"\ndata = "d"\nval = "v"\nout = "o"\nstepz = 3', "unknown key 'stepz'"),
    "unknown kind": ('id = "s"\nkind = "stage9"', "key 'kind': unknown stage kind 'stage9'"),
    "bad type": ('id = "s"\nkind = "stage1"\ndata = "d"\nval = "v"\nout = "o"\nsteps = "many"',
                 "key 'steps': expected an integer"),
    "bad choice": ('id = "s"\nkind = "stage1"\ndata = "d"\nval = "v"\nout = "o"\nviews = "all"',
                   "key 'views': expected one of crop, mix, rooms"),
    "flag not bool": ('id = "s"\nkind = "stage1"\ndata = "d"\nval = "v"\nout = "o"\ncoords = 1',
                      "key 'coords': expected true or false"),
    "missing required": ('id = "s"\nkind = "stage2"\nanchor = "a"\ndag = "d"\ndata = "d"\nout = "o"',
                         "missing key 'val'"),
    "no output": ('id = "s"\nkind = "group"\ndata = "d"', "missing key 'out'"),
    "runner's key": ('id = "s"\nkind = "stage1"\ndata = "d"\nval = "v"\nout = "o"\nmax-minutes = 3',
                     "unknown key 'max-minutes' for a stage1 stage (set by `tamc train run` itself)"),
    "unknown folder": ('id = "s"\nkind = "dag"\nlatents = "{nowhere}/l.npz"\nout = "o"', "unknown folder {nowhere}"),
    "bad switch": ('id = "s"\nkind = "stage2"\nanchor = "a"\ndag = "d"\ndata = "d"\nval = "v"\nout = "o"\n'
                   'experimental = ["hyperchannels=8"]', "'hyperchannels=8' is not KEY=VALUE with KEY one of"),
    "duplicate id": ('id = "s"\nkind = "dag"\nlatents = "l"\nout = "o"\n[[stage]]\nid = "s"\nkind = "dag"\n'
                     'latents = "l"\nout = "p"', "another stage has the id 's'"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_recipes_give_one_line_errors_naming_the_file_and_key(tmp_path, case):
    body, expected = BAD[case]
    path = tmp_path / "bad.toml"
    path.write_text(f"[[stage]]\n{body}\n")
    with pytest.raises(TamcInputError) as info:
        load_recipe(path)
    message = str(info.value)
    assert message.startswith(f"{path}: ") and expected in message and "\n" not in message


def test_bad_recipe_files_and_top_level_keys(tmp_path):
    path = tmp_path / "r.toml"
    path.write_text("x = [")
    with pytest.raises(TamcInputError, match="r.toml: not valid TOML"):
        load_recipe(path)
    path.write_text('nme = "x"\n')
    with pytest.raises(TamcInputError, match="r.toml: unknown key 'nme'"):
        load_recipe(path)
    path.write_text('name = "x"\n')
    with pytest.raises(TamcInputError, match="r.toml: no stages"):
        load_recipe(path)
    path.write_text('[paths]\na = "{b}/x"\nb = "{run}/b"\n[[stage]]\nid = "s"\nkind = "dag"\nlatents = "{a}"\nout = "o"\n')
    with pytest.raises(TamcInputError, match=r"r.toml: paths: key 'a': unknown folder \{b\} \(known: \{run\}\)"):
        load_recipe(path)
    with pytest.raises(TamcInputError, match="nothing.toml: unreadable"):
        load_recipe(tmp_path / "nothing.toml")


def test_cli_error_is_one_line(tmp_path):
    (tmp_path / "bad.toml").write_text('[[stage]]\nid = "s"\nkind = "stage1"\nsteps = "many"\n')
    r = _cli("train", "run", str(tmp_path / "bad.toml"), str(tmp_path / "run"), "--dry-run")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.strip().count("\n") == 0 and "key 'steps': expected an integer" in r.stderr


def test_dry_run_lists_every_stage_and_writes_nothing(tmp_path):
    run = tmp_path / "run"
    r = _cli("train", "run", "recipes/default.toml", str(run), "--dry-run")
    assert r.returncode == 0, r.stderr
    names = [s.name for s in load_recipe(ROOT / "recipes" / "default.toml").stages]
    heads = [ln for ln in r.stdout.splitlines() if ln.startswith("== stage ")]
    assert [h.split()[3].rstrip(":") for h in heads] == names
    assert heads[0].startswith(f"== stage 1/{len(names)} ")
    assert f"tamc train stage1 --data data/train --val data/val --grouping {run}/grouping.json" in r.stdout
    assert f"tamc train merge {run}/refit/model {run}/scene/model_scene --out {run}/model --name default" in r.stdout
    assert not run.exists()
    r = _cli("train", "run", "recipes/default.toml", str(run), "--dry-run", "--until", "nope")
    assert r.returncode == 2 and "--until nope:" in r.stderr and "stages: data-train" in r.stderr


TINY = """
name = "tiny"
model = "{run}/model"
[paths]
data = "{run}/data"

[[stage]]
id = "data-train"
kind = "data"
count = 4
size = 64
split = "train"
workers = 1
out = "{data}/train"

[[stage]]
id = "data-val"
kind = "data"
count = 2
size = 64
split = "val"
workers = 1
out = "{data}/val"

[[stage]]
id = "stage1"
kind = "stage1"
data = "{data}/train"
val = "{data}/val"
groups = "seg+depth+normal,edge+keypoint+rgb"
out = "{run}/stage1"
steps = 2
batch = 2
crop = 64
latent-channels = 8
eval-every = 2
ckpt-every = 2
norm = "group"
coords = true

[[stage]]
id = "dag"
kind = "dag"
latents = "{run}/stage1/latents.npz"
steps = 5
out = "{run}/dag.json"

[[stage]]
id = "stage2"
kind = "stage2"
anchor = "{run}/stage1/anchor.pt"
dag = "{run}/dag.json"
data = "{data}/train"
val = "{data}/val"
out = "{run}/stage2"
lambdas = [0.1, 0.5, 2]
steps-entropy = 1
steps-finetune = 1
batch = 2
crop = 64
experimental = ["hyper-channels=8"]

[[stage]]
id = "export"
kind = "export"
codec-pt = "{run}/stage2/codec.pt"
out = "{run}/model"
dag = "{run}/dag.json"
name = "tiny"

[[stage]]
id = "quality"
kind = "quality"
model = "{run}/model"
anchor = "model"
data = "{data}/val"
out = "{run}/model_quality.json"

[[stage]]
id = "card"
kind = "card"
model = "{run}/model"
run = "{run}"
quality = "{run}/model_quality.json"
"""


def test_a_tiny_recipe_runs_end_to_end_then_skips_every_finished_stage(tmp_path):
    pytest.importorskip("torch")
    recipe_file = tmp_path / "tiny.toml"
    recipe_file.write_text(TINY)
    run = tmp_path / "run"
    lines: list[str] = []
    recipe = load_recipe(recipe_file)
    assert run_recipe(recipe, run, echo=lines.append) == "done"
    assert "== stage 1/8 data-train" in lines[0] and lines[-1] == f"done: {run}/model"
    manifest = json.loads((run / "model" / "manifest.json").read_text())
    assert manifest["provenance"]["recipe"] == {"recipe": recipe_file.as_posix(), "sha256": recipe.sha256}
    # the recipe's copy and hash are kept with the run, and the card names the recipe file
    assert (run / "recipe.toml").read_text() == TINY
    assert json.loads((run / "recipe.json").read_text())["sha256"] == recipe.sha256
    card = (run / "model" / "README.md").read_text()
    assert f"- Recipe: `{recipe_file.as_posix()}`" in card and f"tamc train run {recipe_file.as_posix()} RUN" in card
    s2 = json.loads((run / "stage2" / "stage2.json").read_text())["config"]
    assert s2["hyper_channels"] == 8 and s2["lambdas"] == [0.1, 0.5, 2.0]
    # a second run does nothing but say so
    again: list[str] = []
    assert run_recipe(load_recipe(recipe_file), run, echo=again.append) == "done"
    assert sum(": done (" in ln for ln in again) == 8 and not any(ln.startswith("   tamc") for ln in again)

    # the run follows its recipe: an edited recipe needs another run folder
    recipe_file.write_text(TINY.replace("steps = 2\n", "steps = 3\n"))
    with pytest.raises(TamcInputError, match="was started from .*tiny.toml .* differs"):
        run_recipe(load_recipe(recipe_file), run, echo=again.append)


def test_max_minutes_starts_no_stage_after_the_budget_and_a_stage_without_output_pauses(tmp_path, monkeypatch):
    import tamc_codec.train.recipe as recipe_mod

    recipe_file = tmp_path / "tiny.toml"
    recipe_file.write_text(TINY)
    lines: list[str] = []
    assert run_recipe(load_recipe(recipe_file), tmp_path / "run", max_minutes=0, echo=lines.append) == "paused"
    assert lines == ["== stage 1/8 data-train: not started, 0 minutes have passed; run the same command again to go on"]
    # a stage that ends without its output (stage 1 paused by --max-minutes, say) stops the run there
    ran: list[list[str]] = []
    monkeypatch.setattr(recipe_mod, "_execute", lambda stage, line, commands: ran.append(line))
    lines.clear()
    assert run_recipe(load_recipe(recipe_file), tmp_path / "run", echo=lines.append) == "paused"
    assert len(ran) == 1 and ran[0][:3] == ["tamc", "data", "synth"] and ran[0][-1] == "--force"
    assert lines[-1].startswith("stage data-train paused before its output")
    # stage 1 is given the minutes left
    (tmp_path / "run" / "data" / "train").mkdir(parents=True)
    (tmp_path / "run" / "data" / "val").mkdir(parents=True)
    (tmp_path / "run" / "data" / "train" / "meta.json").write_text("{}")
    (tmp_path / "run" / "data" / "val" / "meta.json").write_text("{}")
    run_recipe(load_recipe(recipe_file), tmp_path / "run", max_minutes=30, echo=lines.append)
    assert ran[-1][:3] == ["tamc", "train", "stage1"] and ran[-1][-2] == "--max-minutes" and float(ran[-1][-1]) <= 30


def test_start_run_keeps_the_recipe_and_refuses_another(tmp_path):
    a, b = tmp_path / "a.toml", tmp_path / "b.toml"
    a.write_text(TINY)
    b.write_text(TINY + "\n# edited\n")
    start_run(load_recipe(a), tmp_path / "run")
    start_run(load_recipe(a), tmp_path / "run")  # the same recipe goes on
    with pytest.raises(TamcInputError, match="remove .*recipe.json to go on with this recipe"):
        start_run(load_recipe(b), tmp_path / "run")


# ---- the shipped recipe against the records of the runs that made the shipped model ----

def _click_defaults(kind: str) -> dict:
    return command_defaults(KINDS[kind].command)


def _as_record(value):
    """A recipe or CLI value in the form the records keep: comma lists as lists of numbers or names."""
    if isinstance(value, str) and "," in value:
        parts = value.split(",")
        try:
            return [float(x) for x in parts]
        except ValueError:
            return parts
    if isinstance(value, list):
        return [float(x) if isinstance(x, (int, float)) else x for x in value]
    if isinstance(value, tuple):
        return list(value)
    return value


# recipe key -> the record's field, where the names differ
_FIELD = {"global-context": "use_global"}
_NET = {"latent-channels", "norm", "encoder-norm"}   # stage 1 keeps these in config["net"]
_PATHS = {"data", "val", "large-data"}                # compared by folder name
_SKIP = {"out", "grouping", "groups", "init", "anchor", "dag", "model", "export", "name", "experimental", "coords"}


def _check_against_record(recipe, stage_name: str, record_file: str, switches: dict | None = None) -> int:
    """Every option of the stage: the recipe's value, else the command's default, equals what the
    record of the run that made the shipped model holds (where the record holds the field)."""
    stage = recipe.stage(stage_name)
    config = json.loads((RESULTS / record_file).read_text())["config"]
    settings = resolved(recipe, stage, "RUN")
    values = {**_click_defaults(stage.kind), **settings}
    checked = 0
    for key, value in values.items():
        if key in _SKIP:
            continue
        field = _FIELD.get(key, key.replace("-", "_"))
        where = config.get("net", {}) if key in _NET and stage.kind == "stage1" else config
        if field not in where:
            continue
        got, want = where[field], _as_record(value)
        if key in _PATHS and got is not None and want is not None:
            got = [Path(x).name for x in got] if isinstance(got, list) else Path(got).name
            want = [Path(x).name for x in want] if isinstance(want, list) else Path(want).name
        elif key == "tasks" and isinstance(want, str):
            want = want.split(",")
        elif key == "val-qualities":
            want = [int(q) for q in want.split(",")] if isinstance(want, str) else (want or [])
        assert got == want, f"{stage_name} {key}: recipe {want!r}, {record_file} {got!r}"
        checked += 1
    for field, want in (switches or {}).items():
        if field in config:
            assert config[field] == want, f"{stage_name} {field}: {config[field]!r} in {record_file}"
    return checked


def test_the_default_recipe_has_the_settings_that_made_the_shipped_model():
    r = load_recipe(ROOT / "recipes" / "default.toml")
    # stage 1 (GPU, runs/v7) and 1b, stage 2 and 3 of the first release (runs/v8)
    assert _check_against_record(r, "stage1", "stage1.json") >= 18
    net = json.loads((RESULTS / "stage1.json").read_text())["config"]["net"]
    assert net["coords"] is True and net["global_context"] is False
    assert r.stage("stage1").settings["coords"] is True
    assert _check_against_record(r, "stage1b", "stage1b.json") >= 19
    stage2_switches = {"use_global": False, "no_parents": False, "hyper_channels": 32, "augment_pixels": False}
    assert _check_against_record(r, "stage2", "stage2.json", stage2_switches) >= 15
    assert _check_against_record(r, "stage3", "decoders.json", {"scene_decoding": True}) >= 11
    # the continuation (runs/v9c) and the seg refit (model e2e87c71)
    assert _check_against_record(r, "continue-stage2", "stage2_continue_rooms256_augment.json", stage2_switches) >= 17
    decoder_switches = {"scene_decoding": True, "context": False}
    assert _check_against_record(r, "continue-stage3", "decoders_continue_rooms256_augment.json", decoder_switches) >= 12
    assert _check_against_record(r, "refit-seg", "decoders_refit_seg.json", decoder_switches) >= 12
    # the scene layer (runs/scene)
    assert _check_against_record(r, "scene-stage2", "stage2_scene.json", stage2_switches) >= 17
    # the shipped model's stage 3 (runs/s3)
    assert _check_against_record(r, "final-decoders", "decoders_scene128.json", decoder_switches) >= 13
    start = json.loads((RESULTS / "start_group_scene.json").read_text())
    assert r.stage("scene-start").settings["group"] == start["group"]
    assert r.stage("scene-start").settings["from"] == start["encoder_of"]


def test_the_default_recipe_agrees_with_the_grouping_dag_and_data_records():
    r = load_recipe(ROOT / "recipes" / "default.toml")
    grouping = json.loads((RESULTS / "grouping.json").read_text())
    g = {**_click_defaults("group"), **r.stage("group").settings}
    assert g["budget"] == grouping["budget"] and g["method"] == grouping["method"]
    for key in ("steps", "seed", "size", "lr", "every", "lookahead-lr", "batch-size"):
        assert g[key] == grouping["settings"][key.replace("-", "_")], key
    dag = json.loads((RESULTS / "dag.json").read_text())
    d = {**_click_defaults("dag"), **r.stage("dag").settings}
    assert d["estimator"] == dag["estimator"] and d["threads"] == dag["settings"]["threads"]
    assert d["min-gain"] == dag["settings"]["min_gain"] and d["seed"] == dag["settings"]["seed"]
    assert dag["data"]["path"].endswith("/stage1b/latents.npz") and d["latents"].endswith("/stage1b/latents.npz")
    # every data folder the records name, as the recipe renders it
    data = {Path(s.settings["out"]).name: s.settings for s in r.stages if s.kind == "data"}
    assert (data["train"]["count"], data["train"]["size"]) == (grouping["data"]["count"], grouping["data"]["size"])
    large = json.loads((RESULTS / "stage1b.json").read_text())["large_data"]
    assert (data["train512"]["count"], data["train512"]["size"], data["train512"]["seed"]) == \
        (large["scenes"], large["size"], large["first_seed"])
    for record in ("decoders.json", "decoders_refit_seg.json", "decoders_scene128.json"):
        rec = json.loads((RESULTS / record).read_text())
        for src, limit in [(s, rec["config"].get("limit")) for s in rec["sources"]] + \
                [(s, rec["config"].get("val_limit")) for s in rec["val"]]:
            name = Path(src["path"]).name
            count = min(data[name]["count"], limit or data[name]["count"])
            assert (count, data[name]["size"]) == (src["scenes"], src["size"]), (record, name)
    assert data["trainwide"]["materials"] == "wide"


def test_the_default_recipe_agrees_with_the_shipped_manifest():
    r = load_recipe(ROOT / "recipes" / "default.toml")
    m = json.loads((ROOT / "models" / "default" / "manifest.json").read_text())
    picture = r.stage("picture").settings
    assert m["name"] == picture["name"] == r.stage("final-decoders").settings["name"]
    assert r.model == r.stage("final-decoders").settings["export"]
    # the picture layer: the targets its AVIF settings were chosen for, on validation pictures
    assert sorted(m["pictures"]) == sorted(picture["groups"].split(","))
    for pics in m["pictures"].values():
        assert [q["target_bpp"] for q in pics["qualities"]] == pytest.approx(picture["targets"])
    assert "test" not in picture["from-data"]
    # the scene layer: trained at 128², exported at the recipe's quality positions
    export = r.stage("scene128-export").settings
    assert m["scene_scale"]["size"] == export["scene-size"]
    scene_group = r.stage("scene128-start").settings["group"]
    assert m["scene_scale"]["groups"] == [scene_group]
    lambdas = np.log(r.stage("scene128-stage2").settings["lambdas"])
    for q, pos in zip(m["qualities"], export["quality-positions"]):
        assert q["lambda_by_group"][scene_group] == pytest.approx(
            np.exp(np.interp(pos - 1, np.arange(len(lambdas)), lambdas)), abs=1e-6)
    stage2_switches = {"use_global": False, "no_parents": False, "hyper_channels": 32, "augment_pixels": False}
    assert _check_against_record(r, "scene128-stage2", "stage2_scene128.json", stage2_switches) >= 17


@pytest.mark.parametrize(("command", "switches"), [
    (("train", "stage1"), ("global-context",)),
    (("train", "stage2"), ("global-context", "no-parents", "augment-pixels", "hyper-channels")),
    (("train", "decoders"), ("scene-decoding", "context")),
    (("export",), ("no-scene-scale",)),
])
def test_experiment_switches_live_under_one_marked_option(command, switches):
    from tamc_codec.cli.recipe_cmd import _command

    options = {o for p in _command(command).params for o in p.opts + p.secondary_opts}
    for key in switches:
        assert not {f"--{key}", f"--no-{key}", f"--{key.removeprefix('no-')}"} & options, key
    r = _cli(*command, "--help")
    assert r.returncode == 0, r.stderr
    text = " ".join(r.stdout.split())
    assert "--experimental KEY=VALUE EXPERIMENTAL, not part of any recipe and not used by the shipped model" in text
    assert all(f"{key} (" in text for key in switches)
    assert "--recipe-record" not in text  # set by `tamc train run`, hidden


def test_experimental_values_are_checked():
    from tamc_codec.cli.train_cmds import STAGE2_SWITCHES, _switches

    assert _switches((), STAGE2_SWITCHES) == {"global-context": False, "no-parents": False, "augment-pixels": False,
                                              "hyper-channels": 32}
    got = _switches(("hyper-channels=8", "no-parents=yes"), STAGE2_SWITCHES)
    assert got["hyper-channels"] == 8 and got["no-parents"] is True
    for bad, message in (("hyperchannels=8", "KEY one of"), ("hyper-channels=0", "positive integer"),
                         ("no-parents=maybe", "1 or 0"), ("no-parents", "KEY=VALUE")):
        with pytest.raises(TamcInputError, match=message):
            _switches((bad,), STAGE2_SWITCHES)
    r = _cli("train", "stage2", "--anchor", "none", "--dag", "none", "--data", "d", "--val", "v", "--out", "o",
             "--experimental", "parents=0")
    assert r.returncode == 2 and "--experimental 'parents=0': expected KEY=VALUE with KEY one of" in r.stderr


MODEL_STAGES = """
name = "from a model"
model = "{run}/model"
[paths]
data = "DATA"
source = "SOURCE"

[[stage]]
id = "refit"
kind = "decoders"
model = "{source}"
data = ["{data}/train"]
val = ["{data}/val"]
out = "{run}/refit"
tasks = "depth"
steps = 1
eval-every = 1
limit = 2
val-limit = 1
workers = 1
export = "{run}/refit/model"
name = "tiny"

[[stage]]
id = "start"
kind = "start-group"
model = "{run}/refit/model"
group = "keypoint+rgb"
from = "edge+keypoint+rgb"
val = "{data}/val"
out = "{run}/added"

[[stage]]
id = "added-dag"
kind = "dag"
latents = "{run}/added/latents.npz"
steps = 2
out = "{run}/added/dag.json"

[[stage]]
id = "added-stage2"
kind = "stage2"
anchor = "{run}/added/anchor.pt"
dag = "{run}/added/dag.json"
data = "{data}/train"
val = "{data}/val"
out = "{run}/added/stage2"
lambdas = [0.1, 0.5, 2]
steps-entropy = 1
steps-finetune = 1
batch = 2
crop = 64
val-limit = 1
experimental = ["hyper-channels=8"]

[[stage]]
id = "added-export"
kind = "export"
codec-pt = "{run}/added/stage2/codec.pt"
out = "{run}/added/model"
dag = "{run}/added/dag.json"
name = "added"
quality-positions = [1, 1.5, 3]

[[stage]]
id = "merge"
kind = "merge"
base = "{run}/refit/model"
added = "{run}/added/model"
out = "{run}/model"
name = "tiny"

[[stage]]
id = "card"
kind = "card"
model = "{run}/model"
run = "{run}/added"
"""


def test_a_recipe_from_an_exported_model_refits_starts_a_group_merges_and_writes_the_card(tiny_model, tmp_path):
    """The stage kinds the shipped recipe's later steps use: stage 3 with an export, start-group,
    merge and a merged model's card, each model naming the recipe."""
    recipe_file = tmp_path / "r.toml"
    recipe_file.write_text(MODEL_STAGES.replace("DATA", str(tiny_model.parent)).replace("SOURCE", str(tiny_model)))
    run = tmp_path / "run"
    recipe = load_recipe(recipe_file)
    assert run_recipe(recipe, run, echo=lambda m: None) == "done"
    named = {"recipe": recipe_file.as_posix(), "sha256": recipe.sha256}
    for folder in ("refit/model", "added/model", "model"):
        assert json.loads((run / folder / "manifest.json").read_text())["provenance"]["recipe"] == named, folder
    merged = json.loads((run / "model" / "manifest.json").read_text())
    assert merged["groups"][0] == "keypoint+rgb" and merged["name"] == "tiny"
    card = (run / "model" / "README.md").read_text()
    assert "- Export: its qualities at positions 1,1.5,3 on the trained ones" in card
    assert f"Reproduce: `tamc train run {recipe_file.as_posix()} RUN`" in card
