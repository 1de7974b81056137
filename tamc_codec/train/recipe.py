"""A recipe: how a model is made, as one TOML file (recipes/*.toml), run by `tamc train run`.

A recipe lists its stages in order. Each stage names a command (its `kind`) and gives that
command's settings as data, every key named as the command's option on its command line
(`steps-entropy = 600` is `--steps-entropy 600`; a flag is `true`; a comma-separated option
such as `--lambdas` may be a list). Strings may name folders as `{run}` (the run folder given
to `tamc train run`) or `{NAME}` for a folder of the recipe's `[paths]` table:

    name = "default"                       # what the recipe makes
    model = "{run}/model"                  # the model folder it ends with
    [paths]
    data = "data"                          # relative to the directory tamc runs in
    [[stage]]
    id = "stage2"                          # unique; `tamc train run --until stage2`
    kind = "stage2"                        # `tamc train stage2`
    anchor = "{run}/stage1/anchor.pt"      # a previous stage's output
    lambdas = [0.01, 0.1, 0.6, 2.5, 32]

A stage is done when its output exists (`Kind.output`), so `tamc train run` skips it on the
next run; a training stage paused or interrupted before its output resumes from its own
checkpoint. docs/TRAINING.md, "The recipe file".

The library does not know the command line: the options a `tamc` command takes, and how to run
it, come from a `Commands` (the CLI's, tamc_codec/cli/recipe_cmd.py, reads them from its click
commands). Reading needs Python 3.11 (`tomllib`); nothing here imports torch.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Protocol

from ..errors import TamcInputError

RECORD = "recipe.json"   # in the run folder: which recipe (path, sha256) the run follows
COPY = "recipe.toml"     # in the run folder: the recipe file as it was when the run started
RECORD_SCHEMA = "tamc.recipe_run/1"

# keys the runner sets itself, never a recipe
_RUNNER_KEYS = {"quiet", "max-minutes", "recipe-record", "json", "force", "help"}


@dataclass(frozen=True)
class Setting:
    """One key a stage kind accepts: how a value is checked and written on the command line."""
    key: str
    type: str                      # "int", "float", "str", "bool", "flag", "choice"
    opt: str | None = None         # the option (None: a positional argument)
    off: str | None = None         # a boolean pair's negative option (--no-augment)
    multiple: bool = False         # repeatable option: a list repeats it
    required: bool = False
    choices: tuple[str, ...] = ()
    keys: tuple[str, ...] = ()     # --experimental: the switches it takes


@dataclass(frozen=True)
class Kind:
    """A stage kind: the command it runs and the file that says it is done."""
    command: tuple[str, ...] = ()  # a `tamc` subcommand run in this process
    script: str | None = None      # or a script of the repository's benchmarks/ folder
    output: Callable[[dict], str | None] = lambda s: s.get("out")
    fixed: tuple[str, ...] = ()    # arguments the runner always adds
    recipe_record: bool = False    # writes a model: its manifest names the recipe (hidden --recipe-record)
    settings: tuple[Setting, ...] = ()  # for kinds that are not click commands


class Commands(Protocol):
    """The `tamc` commands a recipe's stages run."""

    def options(self, command: tuple[str, ...]) -> tuple[Setting, ...]:
        """Every option and argument of `tamc COMMAND...` (the runner's own, --max-minutes, included)."""

    def run(self, args: list[str]) -> None:
        """Run `tamc ARGS...`; a failure raises."""


def _marker(name: str) -> Callable[[dict], str | None]:
    return lambda s: f"{s['out']}/{name}" if s.get("out") else None


def _decoders_output(s: dict) -> str | None:
    if s.get("export"):
        return f"{s['export']}/manifest.json"
    return f"{s['out']}/decoders.json" if s.get("out") else None


def _start_group_output(s: dict) -> str | None:
    if not s.get("out"):
        return None
    return f"{s['out']}/latents.npz" if s.get("val") else f"{s['out']}/start_group.json"


KINDS: dict[str, Kind] = {
    # `tamc data synth`: scenes
    "data": Kind(("data", "synth"), output=_marker("meta.json"), fixed=("--force",)),
    # `tamc group`: the groups; `tamc dag`: the DAG of their latents
    "group": Kind(("group",)),
    "dag": Kind(("dag",)),
    # `tamc train stage1`: encoders and decoders; `tamc train stage2`: entropy models, then everything
    "stage1": Kind(("train", "stage1"), output=_marker("stage1.json")),
    "stage2": Kind(("train", "stage2"), output=_marker("stage2.json")),
    # `tamc export`: a model folder from stage 2; `tamc train decoders`: stage 3, with --export a model
    "export": Kind(("export",), output=_marker("manifest.json"), recipe_record=True),
    "decoders": Kind(("train", "decoders"), output=_decoders_output, recipe_record=True),
    # `tamc train start-group`: a group started from a model; `tamc train merge`: put beside a model's layers
    "start-group": Kind(("train", "start-group"), output=_start_group_output),
    "merge": Kind(("train", "merge"), output=_marker("manifest.json"), recipe_record=True),
    # `tamc train picture-layer`: the picture's tasks served by an AVIF picture layer
    "picture-layer": Kind(("train", "picture-layer"), output=_marker("manifest.json")),
    # `tamc train fixed-hyper`: small layers code no hyper-latent
    "fixed-hyper": Kind(("train", "fixed-hyper"), output=_marker("manifest.json")),
    # benchmarks/model_quality.py: the test-split report the card prints
    "quality": Kind(script="model_quality.py", settings=(
        Setting("model", "str", "--model", required=True), Setting("anchor", "str", "--anchor", required=True),
        Setting("data", "str", "--data", required=True), Setting("images", "int", "--images"),
        Setting("out", "str", "--out", required=True))),
    # benchmarks/dag_recheck.py: the DAG re-checked on the model's coded latents
    "dag-recheck": Kind(script="dag_recheck.py", settings=(
        Setting("model", "str", "--model", required=True), Setting("data", "str", "--data", required=True),
        Setting("images", "int", "--images"), Setting("quality", "int", "--quality"),
        Setting("random", "int", "--random"), Setting("out", "str", "--out", required=True))),
    # tamc_codec.train.card: MODEL/README.md from the records
    "card": Kind(output=lambda s: f"{s['model']}/README.md" if s.get("model") else None, recipe_record=True, settings=(
        Setting("model", "str", "--model", required=True), Setting("run", "str", "--run", required=True),
        Setting("quality", "str", "--quality"), Setting("source-run", "str", "--source-run"),
        Setting("refit", "str", "--refit", multiple=True), Setting("base-card", "str", "--base-card"),
        Setting("dag-recheck", "str", "--dag-recheck"), Setting("notes", "str", "--notes"))),
}

_TOP_KEYS = {"name", "description", "model", "paths", "stage"}
_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_-]*)\}")


@dataclass
class Stage:
    name: str
    kind: str
    settings: dict              # as written in the recipe (placeholders not filled in)


@dataclass
class Recipe:
    path: Path
    sha256: str
    name: str
    description: str
    model: str | None
    paths: dict[str, str]
    stages: list[Stage] = field(default_factory=list)

    def stage(self, name: str) -> Stage:
        for s in self.stages:
            if s.name == name:
                return s
        raise KeyError(name)


def kind_settings(kind: str, commands: Commands) -> tuple[Setting, ...]:
    """The keys a stage of this kind may set (not the runner's own)."""
    k = KINDS[kind]
    return k.settings if not k.command else tuple(st for st in commands.options(k.command)
                                                  if st.key not in _RUNNER_KEYS)


def _type_name(s: Setting) -> str:
    base = {"int": "an integer", "float": "a number", "str": "a string", "bool": "true or false",
            "flag": "true or false", "choice": "one of " + ", ".join(s.choices)}[s.type]
    if s.key == "experimental":
        base = "a list of 'KEY=VALUE' strings"
    elif s.multiple:
        base = f"{base} or a list of them"
    elif s.type == "str":
        base = "a string or a list (joined with commas)"
    return base


def _check_value(s: Setting, v) -> bool:
    if s.multiple and isinstance(v, list):
        return bool(v) and all(_check_value(Setting(s.key, s.type, choices=s.choices), x) for x in v)
    if s.type in ("bool", "flag"):
        return isinstance(v, bool)
    if isinstance(v, bool):
        return False
    if s.type == "int":
        return isinstance(v, int)
    if s.type == "float":
        return isinstance(v, (int, float))
    if s.type == "choice":
        return isinstance(v, str) and v in s.choices
    if isinstance(v, list):  # a comma-separated option written as a list
        return bool(v) and all(isinstance(x, (str, int, float)) and not isinstance(x, bool) for x in v)
    return isinstance(v, (str, int, float))


def _fail(path, msg: str) -> TamcInputError:
    return TamcInputError(f"{path}: {msg}")


def load_recipe(path: str | Path, commands: Commands) -> Recipe:
    """Read and check a recipe: unknown keys, unknown stage kinds, wrong types and unknown
    placeholders are errors of one line naming the file, the stage and the key."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        raise TamcInputError("reading a recipe needs Python 3.11 or later (tomllib)") from None
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise _fail(path, f"unreadable ({exc.strerror or exc})") from None
    try:
        doc = tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise _fail(path, f"not valid TOML ({exc})") from None
    unknown = sorted(set(doc) - _TOP_KEYS)
    if unknown:
        raise _fail(path, f"unknown key '{unknown[0]}' (a recipe has {', '.join(sorted(_TOP_KEYS))})")
    for key in ("name", "description", "model"):
        if key in doc and not isinstance(doc[key], str):
            raise _fail(path, f"key '{key}': expected a string")
    paths = doc.get("paths", {})
    if not isinstance(paths, dict):
        raise _fail(path, "key 'paths': expected a table of folder names")
    for k, v in paths.items():
        if not isinstance(v, str):
            raise _fail(path, f"paths: key '{k}': expected a string")
        if k == "run":
            raise _fail(path, "paths: key 'run' is the run folder given to `tamc train run`, not a path to set")
    stages_raw = doc.get("stage")
    if not isinstance(stages_raw, list) or not stages_raw or not all(isinstance(s, dict) for s in stages_raw):
        raise _fail(path, "no stages: a recipe lists them as [[stage]] tables")
    known = {"run", *paths}
    recipe = Recipe(path, hashlib.sha256(raw).hexdigest(), doc.get("name", path.stem), doc.get("description", ""),
                    doc.get("model"), dict(paths))
    for i, k in enumerate(paths):  # a path may name {run} and the paths before it
        _check_placeholders(path, "paths", {k: paths[k]}, {"run", *list(paths)[:i]})
    if recipe.model:
        _check_placeholders(path, "model", {"model": recipe.model}, known)
    for i, s in enumerate(stages_raw, 1):
        name = s.get("id")
        where = f"stage {i}" + (f" '{name}'" if isinstance(name, str) else "")
        if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", name):
            raise _fail(path, f"{where}: key 'id': expected a name of letters, digits, '-', '_' or '.'")
        if any(t.name == name for t in recipe.stages):
            raise _fail(path, f"{where}: key 'id': another stage has the id '{name}'")
        kind = s.get("kind")
        if kind not in KINDS:
            raise _fail(path, f"{where}: key 'kind': unknown stage kind {kind!r} (known: {', '.join(KINDS)})")
        settings = {k: v for k, v in s.items() if k not in ("id", "kind")}
        spec = {st.key: st for st in kind_settings(kind, commands)}
        for key, value in settings.items():
            if key not in spec:
                hint = " (set by `tamc train run` itself)" if key in _RUNNER_KEYS else ""
                raise _fail(path, f"{where}: unknown key '{key}' for a {kind} stage{hint}")
            st = spec[key]
            if key == "experimental":
                _check_experimental(path, where, st, value)
            elif not _check_value(st, value):
                raise _fail(path, f"{where}: key '{key}': expected {_type_name(st)}, got {value!r}")
        missing = [st.key for st in spec.values() if st.required and st.key not in settings]
        if missing:
            raise _fail(path, f"{where}: missing key '{missing[0]}' (a {kind} stage needs it)")
        if KINDS[kind].output(settings) is None:
            raise _fail(path, f"{where}: missing key 'out' (where the stage writes: its output says it is done)")
        _check_placeholders(path, where, settings, known)
        recipe.stages.append(Stage(name, kind, settings))
    return recipe


def _check_experimental(path, where: str, st: Setting, value) -> None:
    if not isinstance(value, list) or not all(isinstance(x, str) for x in value):
        raise _fail(path, f"{where}: key 'experimental': expected {_type_name(st)}, got {value!r}")
    for x in value:
        k = x.split("=", 1)[0].strip()
        if "=" not in x or k not in st.keys:
            raise _fail(path, f"{where}: key 'experimental': {x!r} is not KEY=VALUE with KEY one of {', '.join(st.keys)}")


def _check_placeholders(path, where: str, settings: dict, known: set[str]) -> None:
    for key, value in settings.items():
        for v in value if isinstance(value, list) else [value]:
            if isinstance(v, str):
                for m in _PLACEHOLDER.finditer(v):
                    if m.group(1) not in known:
                        raise _fail(path, f"{where}: key '{key}': unknown folder {{{m.group(1)}}} "
                                          f"(known: {', '.join('{' + k + '}' for k in sorted(known))})")


def _fill(text: str, folders: dict[str, str]) -> str:
    return _PLACEHOLDER.sub(lambda m: folders[m.group(1)], text)


def folders(recipe: Recipe, run_dir: str | Path) -> dict[str, str]:
    """{run} and the recipe's [paths], each filled in (a path may name {run} or an earlier path)."""
    out = {"run": str(run_dir)}
    for k, v in recipe.paths.items():
        out[k] = _fill(v, out)
    return out


def resolved(recipe: Recipe, stage: Stage, run_dir: str | Path) -> dict:
    """The stage's settings with every folder placeholder filled in."""
    f = folders(recipe, run_dir)
    return {k: ([_fill(x, f) if isinstance(x, str) else x for x in v] if isinstance(v, list)
                else _fill(v, f) if isinstance(v, str) else v) for k, v in stage.settings.items()}


def _text(v) -> str:
    if isinstance(v, float):
        return repr(v)
    return str(v)


def arguments(kind: str, settings: dict, commands: Commands) -> list[str]:
    """The command line of a stage's settings (after the command's name), positionals first."""
    known = kind_settings(kind, commands)
    spec = {st.key: st for st in known}
    positional = [_text(settings[st.key]) for st in known if st.opt is None and st.key in settings]
    args: list[str] = []
    for key, v in settings.items():
        st = spec[key]
        if st.opt is None:
            continue
        if st.type in ("bool", "flag"):
            if v:
                args.append(st.opt)
            elif st.off:
                args.append(st.off)
        elif st.multiple or key == "experimental":
            for x in v if isinstance(v, list) else [v]:
                args += [st.opt, _text(x)]
        else:
            args += [st.opt, ",".join(_text(x) for x in v) if isinstance(v, list) else _text(v)]
    return positional + args + list(KINDS[kind].fixed)


def stage_output(stage: Stage, settings: dict) -> Path:
    out = KINDS[stage.kind].output(settings)
    assert out is not None  # load_recipe checked
    return Path(out)


def command_line(stage: Stage, settings: dict, commands: Commands, record: str | None = None) -> list[str]:
    """What the stage runs, as a user would type it."""
    k = KINDS[stage.kind]
    args = arguments(stage.kind, settings, commands)
    if k.recipe_record and record and (stage.kind != "decoders" or settings.get("export")):
        args += ["--recipe-record", record]
    if k.command:
        return ["tamc", *k.command, *args]
    if k.script:
        return ["python", f"benchmarks/{k.script}", *args]
    return ["python", "-m", "tamc_codec.train.card", *args]


def benchmarks_folder() -> Path:
    """The repository's benchmarks/ folder (the scripts are not part of the installed package)."""
    return Path(__file__).resolve().parents[2] / "benchmarks"


def _record(recipe: Recipe) -> dict:
    """What the run folder, the manifest and the card name: the recipe file (relative to the directory
    tamc runs in when it lies below it, e.g. recipes/default.toml) and its sha256."""
    where = recipe.path.resolve()
    try:
        shown = where.relative_to(Path.cwd().resolve()).as_posix()
    except ValueError:
        shown = where.as_posix()
    return {"schema": RECORD_SCHEMA, "recipe": shown, "sha256": recipe.sha256, "name": recipe.name}


def start_run(recipe: Recipe, run_dir: Path) -> dict:
    """Keep the recipe's copy and sha256 in the run folder; a run started from another recipe
    (or from this file before an edit) is refused, since its finished stages followed that one."""
    from ..atomic import atomic_write_bytes

    run_dir.mkdir(parents=True, exist_ok=True)
    rec_path = run_dir / RECORD
    record = _record(recipe)
    if rec_path.exists():
        try:
            before = json.loads(rec_path.read_text())
        except (OSError, ValueError):
            before = {}
        if before.get("sha256") not in (None, recipe.sha256):
            raise TamcInputError(
                f"{run_dir} was started from {before.get('recipe', 'another recipe')} (sha256 "
                f"{str(before.get('sha256'))[:12]}…, copy in {run_dir / COPY}); {recipe.path} differs (sha256 "
                f"{recipe.sha256[:12]}…): use another run folder, or remove {rec_path} to go on with this recipe")
    atomic_write_bytes(run_dir / COPY, recipe.path.read_bytes())
    atomic_write_bytes(rec_path, (json.dumps(record, indent=1) + "\n").encode())
    return record


def run_recipe(recipe: Recipe, run_dir: str | Path, commands: Commands, *, until: str | None = None,
               dry_run: bool = False, max_minutes: float | None = None, echo: Callable[[str], None] = print) -> str:
    """Run the recipe's stages in order into RUN_DIR, each skipped when its output exists.

    Returns "done", "paused" (a stage stopped before its output: run again to continue) or
    "dry-run". `until` stops after that stage; `max_minutes` starts no stage after that many
    minutes and gives stage 1 what is left (it pauses itself with a checkpoint).
    """
    run_dir = Path(run_dir)
    stages = recipe.stages
    if until is not None:
        names = [s.name for s in stages]
        if until not in names:
            raise TamcInputError(f"--until {until}: {recipe.path} has no such stage (stages: {', '.join(names)})")
        stages = stages[:names.index(until) + 1]
    record_path = str(run_dir / RECORD)
    if not dry_run:
        start_run(recipe, run_dir)
    total = len(recipe.stages)
    t0 = time.monotonic()
    for i, stage in enumerate(stages, 1):
        settings = resolved(recipe, stage, run_dir)
        output = stage_output(stage, settings)
        line = command_line(stage, settings, commands, record_path)
        head = f"== stage {i}/{total} {stage.name}"
        if output.exists():
            echo(f"{head}: done ({output} exists)")
            continue
        if dry_run:
            echo(head)
            echo("   " + shlex.join(line))
            continue
        if max_minutes is not None:
            left = max_minutes - (time.monotonic() - t0) / 60
            if left <= 0:
                echo(f"{head}: not started, {max_minutes:g} minutes have passed; run the same command again to go on")
                return "paused"
            k = KINDS[stage.kind]
            if k.command and any(st.key == "max-minutes" for st in commands.options(k.command)):
                line = [*line, "--max-minutes", f"{left:.2f}"]
        echo(f"{head} ({time.strftime('%H:%M:%S')})")
        echo("   " + shlex.join(line))
        _execute(stage, line, commands)
        if not output.exists():
            echo(f"stage {stage.name} paused before its output ({output}); run the same command again to continue")
            return "paused"
    if dry_run:
        return "dry-run"
    if until is None and recipe.model:
        echo(f"done: {_fill(recipe.model, folders(recipe, run_dir))}")
    return "done"


def _execute(stage: Stage, line: list[str], commands: Commands) -> None:
    from ..errors import TamcError

    k = KINDS[stage.kind]
    if k.command:
        commands.run(line[1:])
        return
    if k.script:
        import subprocess

        script = benchmarks_folder() / k.script
        if not script.exists():
            raise TamcInputError(f"stage {stage.name}: {script} is missing (it runs from a checkout of the repository)")
        # the scripts import tamc_codec: this one, wherever the environment would look first
        root = str(benchmarks_folder().parent)
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)}
        rc = subprocess.run([sys.executable, str(script), *line[2:]], env=env).returncode
        if rc:
            raise TamcError(f"stage {stage.name}: benchmarks/{k.script} ended with status {rc}")
        return
    from .card import main as card_main

    card_main(line[3:])


__all__ = ["KINDS", "Commands", "Recipe", "Setting", "Stage", "load_recipe", "run_recipe", "resolved", "command_line",
           "stage_output", "folders", "RECORD", "COPY"]
