"""The `tamc` commands a recipe runs (`tamc train run`), read from their click definitions.

tamc_codec/train/recipe.py reads, checks and runs a recipe without knowing the command line;
this module tells it which options each command takes (so a recipe's keys are the commands'
option names, and a new option is a recipe key at once) and runs a command in this process.
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import click

from ..errors import TamcError
from ..train import recipe as _recipe
from ..train.recipe import Setting


def _command(command: tuple[str, ...]) -> click.Command:
    from . import cli

    ctx = click.Context(cli)
    cmd: click.Command = cli
    for part in command:
        cmd = cmd.get_command(ctx, part)  # type: ignore[union-attr]
    return cmd


def _setting(p: click.Parameter) -> Setting | None:
    if isinstance(p, click.Argument):
        key, opt, off = p.name.replace("_", "-"), None, None
    else:
        longs = [o for o in p.opts if o.startswith("--")]
        if not longs:
            return None
        opt = max(longs, key=len)
        key = opt[2:]
        off = next((o for o in p.secondary_opts if o.startswith("--")), None)
    t = p.type
    choices: tuple[str, ...] = ()
    if isinstance(p, click.Option) and p.is_flag:
        kind = "bool" if off else "flag"
    elif isinstance(t, click.Choice):
        kind, choices = "choice", tuple(t.choices)
    elif isinstance(t, (click.types.IntParamType, click.IntRange)):
        kind = "int"
    elif isinstance(t, (click.types.FloatParamType, click.FloatRange)):
        kind = "float"
    else:
        kind = "str"
    # --experimental carries the switches it takes (train_cmds._experimental)
    keys = tuple(getattr(p, "experimental_keys", ()))
    return Setting(key, kind, opt, off, bool(getattr(p, "multiple", False)), bool(p.required), choices, keys)


@lru_cache(maxsize=None)
def _options(command: tuple[str, ...]) -> tuple[Setting, ...]:
    return tuple(s for s in map(_setting, _command(command).params) if s is not None)


class ClickCommands:
    """`tamc_codec.train.recipe.Commands` for the `tamc` command line."""

    def options(self, command: tuple[str, ...]) -> tuple[Setting, ...]:
        return _options(command)

    def run(self, args: list[str]) -> None:
        from . import cli

        try:
            cli.main(args=args, prog_name="tamc", standalone_mode=False)
        except SystemExit as exc:
            if exc.code not in (0, None):
                raise TamcError(f"`tamc {' '.join(args[:2])} …` ended with status {exc.code}") from None


COMMANDS = ClickCommands()


def load_recipe(path: str | Path) -> _recipe.Recipe:
    """`tamc_codec.train.recipe.load_recipe` with the `tamc` commands' options."""
    return _recipe.load_recipe(path, COMMANDS)


def run_recipe(recipe: _recipe.Recipe, run_dir: str | Path, **kwargs) -> str:
    """`tamc_codec.train.recipe.run_recipe` running the `tamc` commands in this process."""
    return _recipe.run_recipe(recipe, run_dir, COMMANDS, **kwargs)


def command_defaults(command: tuple[str, ...]) -> dict:
    """Each option's default, by recipe key (what a stage that leaves the key out runs with)."""
    out = {}
    for p in _command(command).params:
        s = _setting(p)
        if s is not None:
            out[s.key] = p.default
    return out
