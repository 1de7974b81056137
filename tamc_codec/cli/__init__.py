"""The ``tamc`` command line: a thin layer over the library.

Subcommands live in their own modules and are imported only when run, so that
``tamc --help`` and ``tamc info`` start without numpy-heavy or torch imports.
"""
from __future__ import annotations

import importlib
import importlib.util
import sys

import click

from ..errors import TamcError

# name -> (module, attribute, one-line help shown by `tamc --help`).
# The help text is repeated here so that listing commands imports none of them.
COMMANDS: dict[str, tuple[str, str, str]] = {
    "encode": ("tamc_codec.cli.codec_cmds", "encode", "Compress images into layered .tamc files."),
    "decode": ("tamc_codec.cli.codec_cmds", "decode", "Decode one task from a .tamc file, reading only its layers."),
    "info": ("tamc_codec.cli.codec_cmds", "info", "Show a .tamc file's header and layers (no model needed)."),
    "data": ("tamc_codec.cli.data_cmds", "data", "Generate and inspect multi-task training data."),
    "group": ("tamc_codec.cli.group_cmd", "group", "Choose task groups by lookahead gradient coherence."),
    "dag": ("tamc_codec.cli.dag_cmd", "dag", "Build the causal DAG of group latents by conditional entropy."),
    "train": ("tamc_codec.cli.train_cmds", "train", "Train a model: a whole recipe (train run), or one stage."),
    "export": ("tamc_codec.cli.train_cmds", "export", "Export a trained model for the codec (ONNX, tables, manifest)."),
    "bench": ("tamc_codec.cli.bench_cmd", "bench", "Rate-performance curves and BD-rates against JPEG, WebP, AVIF."),
}


def _available(name: str) -> bool:
    module = COMMANDS[name][0]
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        return False


def _defines(name: str) -> bool:
    """Whether the command's module defines it, checked by text so nothing is imported."""
    module, attr, _ = COMMANDS[name]
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None:
        return False
    try:
        with open(spec.origin, encoding="utf-8") as fh:
            source = fh.read()
    except OSError:
        return False
    return f"def {attr}(" in source


class LazyGroup(click.Group):
    """A click group whose subcommands are imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return [name for name in COMMANDS if _available(name) and _defines(name)]

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in COMMANDS or not _available(name):
            return None
        module, attr, _ = COMMANDS[name]
        # A module may exist before all the commands mapped to it do.
        return getattr(importlib.import_module(module), attr, None)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, COMMANDS[name][2]) for name in self.list_commands(ctx)]
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="tamc-codec", prog_name="tamc")
def cli() -> None:
    """tamc: multi-task machine-vision compression.

    tamc analyses an image once with trained group encoders, then entropy-codes the
    grouped task representations into one layered .tamc file. A receiver decodes only
    the layers its task needs: seg, depth, normal, edge, keypoint or rgb.

    \b
    Typical use:
      tamc encode photo.png --tasks seg,depth      # writes photo.tamc
      tamc decode photo.tamc --task depth          # writes photo.depth.png
      tamc info photo.tamc                         # layers, sizes, tasks

    Run `tamc COMMAND --help` for each command's manual.
    """


def main(argv: list[str] | None = None) -> None:
    """Console entry point: user errors become one line on stderr and exit status 2;
    SIGINT and SIGTERM end it after removing any temporary file, with status 130 or 143."""
    from ..atomic import signals_handled

    try:
        with signals_handled():
            cli.main(args=argv, prog_name="tamc", standalone_mode=False)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Abort as exc:
        # click turns KeyboardInterrupt (and so Terminated) raised inside a command into Abort
        if isinstance(exc.__cause__, KeyboardInterrupt):
            _interrupted(exc.__cause__)
        click.echo("tamc: aborted", err=True)
        sys.exit(130)
    except TamcError as exc:
        click.echo(f"tamc: error: {_one_line(str(exc))}", err=True)
        sys.exit(2)
    except KeyboardInterrupt as exc:
        _interrupted(exc)
    except MemoryError:
        click.echo("tamc: error: out of memory", err=True)
        sys.exit(2)
    except OSError as exc:
        # Disk full, permission denied, missing folders: the user's environment, not a bug.
        click.echo(f"tamc: error: {_one_line(str(exc))}", err=True)
        sys.exit(2)
    except Exception as exc:
        # An extension module's initialisation wraps what a signal handler raised inside it
        # (SIGTERM during `import onnxruntime` becomes ImportError): still an interruption.
        interruption = _interruption_behind(exc)
        if interruption is None:
            raise
        _interrupted(interruption)


def _interruption_behind(exc: BaseException) -> KeyboardInterrupt | None:
    seen: set[int] = set()
    e: BaseException | None = exc
    while e is not None and id(e) not in seen:
        if isinstance(e, KeyboardInterrupt):
            return e
        seen.add(id(e))
        e = e.__cause__ or e.__context__
    return None


def _interrupted(exc: KeyboardInterrupt) -> None:
    from ..atomic import Terminated

    if isinstance(exc, Terminated):
        click.echo("tamc: terminated", err=True)
        sys.exit(128 + exc.signum)
    click.echo("tamc: interrupted", err=True)
    sys.exit(130)


def _one_line(text: str) -> str:
    return " ".join(text.split()) or "unknown error"
