"""``tamc encode``, ``tamc decode`` and ``tamc info`` (the manual is docs/CLI.md).

This module is imported on the fast path: module level imports stay stdlib +
click + the stdlib-only bitstream package, so ``tamc info`` and every ``--help``
start without numpy. Commands that need numpy, PIL or the model runtime import
them inside their function bodies.
"""
from __future__ import annotations

import io
import json
import os
import sys
import time
from pathlib import Path

import click

from ..bitstream.container import Header, LayerEntry, TamcReader
from ..effort import DEFAULT_EFFORT, EFFORTS
from ..errors import TamcError, TamcInputError
from ..limits import DECODE_BYTES_PER_PIXEL, ENCODE_BYTES_PER_PIXEL, MAX_PIXELS, MAX_STDIN_BYTES, check_padded

MAX_PIXELS_TEXT = f"{MAX_PIXELS:,}"
#: What INPUT, FILE, -o and --raw take for standard input or output. Kept a str where paths are
#: Path objects, so that a file named "-" (given as ./-) stays a file.
STDIO = "-"


def _info_dict(path: Path, reader: TamcReader) -> dict:
    h: Header = reader.header
    return {
        "file": str(path),
        "file_size": reader.file_size,
        "format_version": h.version,
        # a version-3 file stores the id's first 4 bytes (8 hex digits) and no padded size (null: the
        # model's padding of the image size gives it)
        "model_id": h.model_id_hex,
        "image_size": [h.height, h.width],
        "padded_size": None if h.padded_height is None else [h.padded_height, h.padded_width],
        "quality": h.quality,
        "tasks": h.task_names,
        "header_size": reader.header_size,
        "layers": [_layer_dict(e) for e in reader.layers],
    }


def _layer_dict(e: LayerEntry) -> dict:
    return {
        "index": e.index,
        "group": e.group,
        "parent": e.parent,
        "offset": e.offset,
        "length": e.length,
        "crc32": e.crc_hex,  # 8 hex digits, or 4 in version 3 (the CRC-32's low 16 bits)
        "tasks": e.task_names,
        "coding": e.coding_name,
    }


@click.command("info")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the same information as JSON.")
def info(file: Path, as_json: bool) -> None:
    """Show FILE's header and layers; needs no model.

    Validates the header and index (magic, version, bounds, header CRC) but reads
    no layer data, so it is fast and a corrupt layer is reported only on decode.
    Offsets are absolute byte positions in the file; group indices refer to the
    model manifest's `groups` list; parent is the layer (in this file) a layer is
    coded conditionally on; coding is how the layer is coded: latent (a tamc
    latent layer) or avif (the picture, coded by AVIF).

    A format-version-3 file stores the first 4 bytes of its model's id and no
    padded size (the model's padding gives it), so info shows the id prefix and
    no padded size (--json: padded_size null); versions 1 and 2 store both.
    """
    with TamcReader(file) as reader:
        d = _info_dict(file, reader)
    if as_json:
        click.echo(json.dumps(d, indent=2))
        return
    click.echo(f"{d['file']}: {d['file_size']} bytes, .tamc format version {d['format_version']}")
    h: Header = reader.header
    click.echo(f"  model id     {d['model_id']}" + (" (its first 4 bytes)" if h.model_id_is_prefix else ""))
    padded = ("" if d["padded_size"] is None
              else f", padded to {d['padded_size'][0]}x{d['padded_size'][1]}")
    click.echo(f"  image size   {d['image_size'][0]}x{d['image_size'][1]} (HxW){padded}")
    click.echo(f"  quality      {d['quality']}")
    click.echo(f"  tasks        {', '.join(d['tasks']) or '(none)'}")
    click.echo(f"  header       {d['header_size']} bytes (header + index)")
    click.echo(f"  layers       {len(d['layers'])}")
    click.echo("  layer  group  parent  coding    offset    length  tasks")
    for layer in d["layers"]:
        parent = "-" if layer["parent"] is None else str(layer["parent"])
        click.echo(f"  {layer['index']:>5}  {layer['group']:>5}  {parent:>6}  {layer['coding']:>6}  {layer['offset']:>8}  "
                   f"{layer['length']:>8}  {', '.join(layer['tasks']) or '(context only)'}")



# --------------------------------------------------------------------------- output paths


def _same_path(a: Path, b: Path) -> bool:
    try:
        if a.exists() and b.exists():
            return os.path.samefile(a, b)
    except OSError:
        pass
    return os.path.abspath(a) == os.path.abspath(b)


def _target(given: Path | None, default: Path | None, *, folder_only: bool = False) -> Path:
    """Where an output goes: `default` (beside the input), inside `given` if it is a folder, else `given`.
    `default` None: the input has no name to derive one from (standard input), so a folder is refused."""
    if given is None:
        dest = default
    elif given.is_dir():
        if default is None:
            raise TamcInputError(f"-o {given}: standard input has no name; give a file name, or - for standard output")
        dest = given / default.name
    elif folder_only:
        raise TamcInputError(f"-o {given}: with several inputs, -o must name an existing folder")
    elif str(given).endswith(("/", os.sep)):
        raise TamcInputError(f"-o {given}: no such folder")
    else:
        dest = given
    assert dest is not None
    parent = dest.parent if str(dest.parent) else Path(".")
    if not parent.is_dir():
        raise TamcInputError(f"{dest}: the output folder {parent} does not exist")
    if dest.is_dir():
        raise TamcInputError(f"{dest}: is a folder; give a file name")
    return dest


def _path_or_stdio(value: str | None) -> Path | str | None:
    return value if value is None or value == STDIO else Path(value)


def _read_stdin(what: str) -> bytes:
    """Standard input, whole (PIL and the .tamc reader seek), at most MAX_STDIN_BYTES."""
    stream = getattr(sys.stdin, "buffer", None)
    if stream is None:
        raise TamcInputError("-: there is no standard input")
    if stream.isatty():
        raise TamcInputError(f"-: standard input is a terminal; pipe {what} into it, or name a file")
    data = stream.read(MAX_STDIN_BYTES + 1)
    if len(data) > MAX_STDIN_BYTES:
        raise TamcInputError(f"-: standard input holds more than {MAX_STDIN_BYTES >> 20} MiB; save it to a file "
                             "and name that")
    return data


def _check_stdout(option: str) -> None:
    """Refuse, before any work, to pour binary data onto a terminal."""
    if sys.stdout.isatty():
        raise TamcInputError(f"{option} -: standard output is a terminal; redirect it, or name a file")


def _write_stdout(data: bytes) -> None:
    """Write `data` to standard output in one go, once it is complete (a pipe cannot be atomic)."""
    try:
        sys.stdout.flush()
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
    except BrokenPipeError:
        # the reader went away (`| head`); without this, Python reports the failed flush again at exit
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        raise TamcInputError("-: standard output was closed before all the data was written") from None


def _import_codec():
    """tamc_codec.runtime, with the extension modules coding needs, imported with signals deferred:
    pybind11 swallows an exception a signal handler raises inside numpy's initialisation (it prints
    it and raises 'ImportError: import numpy failed'), so SIGTERM there would end in a traceback."""
    from ..atomic import signals_deferred

    with signals_deferred():
        import onnxruntime  # noqa: F401
        from PIL import Image  # noqa: F401

        from .. import runtime
    return runtime


def _note(line: str, bar=None) -> None:
    if bar is not None and not bar.disable:
        bar.write(line, file=sys.stderr)
    else:
        click.echo(line, err=True)


def _say(line: str, bar=None, *, err: bool = False) -> None:
    """A report line: on stdout, unless the coded data goes there (err)."""
    if bar is not None and not bar.disable:
        bar.write(line, file=sys.stderr if err else sys.stdout)
    else:
        click.echo(line, err=err)


# --------------------------------------------------------------------------- encode


@click.command("encode")
@click.argument("inputs", nargs=-1, required=True, metavar="INPUT...", type=click.Path(allow_dash=True))
@click.option("-o", "--output", type=click.Path(allow_dash=True), metavar="OUT",
              help="Output file (one input), existing folder, or - for standard output. "
                   "Default: INPUT with the suffix .tamc, beside it (standard output for INPUT -).")
@click.option("--tasks", default="all", show_default=True, metavar="LIST",
              help="Tasks the file must serve: comma-separated names or aliases (seg, depth, normal, edge, "
                   "keypoint, rgb), or 'all' (every task the model serves).")
@click.option("--quality", type=int, default=None, metavar="Q",
              help="1 = lowest rate .. Q = highest quality (Q from the model). Default: the model's highest.")
@click.option("--effort", type=click.IntRange(min(EFFORTS), max(EFFORTS)), default=DEFAULT_EFFORT, show_default=True,
              help="How hard the encoder searches each learned layer's symbols for the requested tasks: 0 "
                   "rounds them (fastest); 1 tries up to 512 moves a layer, for fewer bits at the same or "
                   "better task quality (seconds a picture; docs/CLI.md, \"Effort\"); 2 searches until "
                   "nothing moves. Every effort decodes the same way, and the file never depends on the "
                   "thread count.")
@click.option("--model", "model_name", metavar="NAME_OR_DIR",
              help="Model folder or name (see MODELS below). Default: models/default, else the first installed.")
@click.option("--allow-large", is_flag=True,
              help=f"Encode images whose padded size exceeds {MAX_PIXELS_TEXT} pixels (4096x4096); "
                   f"needs about {ENCODE_BYTES_PER_PIXEL} bytes of memory per padded pixel.")
@click.option("--json", "as_json", is_flag=True,
              help="Print the report as JSON (an object; a list of objects for several inputs).")
@click.option("-v", "--verbose", is_flag=True, help="Also print the model, padded size and time taken.")
def encode(inputs: tuple[str, ...], output: str | None, tasks: str, quality: int | None, effort: int,
           model_name: str | None, allow_large: bool, as_json: bool, verbose: bool) -> None:
    """Compress images into layered .tamc files.

    Each INPUT (PNG, JPEG, WebP, TIFF or BMP) is analysed once; only the task
    groups that serve the requested tasks, plus their ancestors in the model's
    DAG, are coded (the smallest such set). photo.png becomes photo.tamc beside
    it, or goes to -o. Outputs are written whole or not at all: a failure never
    leaves a partial file or touches an existing one.

    \b
    Standard input and output: INPUT - reads the image from standard input
    (it must be the only input) and writes the .tamc to standard output unless
    -o names a file; -o - writes to standard output. The report then goes to
    standard error.

    \b
    Image policy: EXIF orientation is applied; palette, grey and 16-bit images
    become 8-bit RGB; transparency is composited on black (with a notice); an
    embedded ICC profile is converted to sRGB (a profile that cannot be used
    gives a notice, and the pixels are taken as they are); of an animation or
    a multi-page file only the first frame is coded (with a notice). The image
    is padded to the model's multiple by repeating its edges; the file records
    the original size, and decoding returns it.

    \b
    Size limit: the networks run on the padded image, and the padding grows
    with the long side (a 1x9000 image is padded to 2048x10240). Images whose
    padded size exceeds 16,777,216 pixels are refused from their header, before
    any pixel is decoded, unless --allow-large is given; at the limit encoding
    takes about 6 GB of memory.

    \b
    Report: bytes per layer, header bytes, total bytes and bits per pixel over
    the original (unpadded) pixel count.

    \b
    Several inputs: one progress bar (on a terminal); -o must be an existing
    folder. An input that fails is reported on one line and the others are
    still encoded; the exit status is then 2.

    \b
    MODELS: --model takes a folder with a manifest.json, or a name looked up in
    the shipped models/ folder, then in each folder of $TAMC_MODEL_PATH.

    \b
    Examples:
      tamc encode photo.png --tasks seg,depth       # writes photo.tamc
      tamc encode *.jpg -o coded/ --quality 2        # several inputs, one folder
      convert in.tif png:- | tamc encode - > in.tamc # standard input and output
    """
    codec = _import_codec()
    from ..atomic import atomic_write_bytes
    from ..runtime.images import read_image
    from . import _one_line

    several = len(inputs) > 1
    sources = [_path_or_stdio(i) for i in inputs]
    out = _path_or_stdio(output)
    if several and (STDIO in sources or out == STDIO):
        raise TamcInputError("-: standard input and output take one image; name files for several inputs")
    rt = codec.load_model(model_name)
    names = codec.parse_tasks(tasks, rt)
    q = codec.check_quality(quality, rt)
    targets: list[Path | str] = []
    for src in sources:
        if out == STDIO or (out is None and src == STDIO):
            _check_stdout("-o")
            targets.append(STDIO)
        else:
            default = None if src == STDIO else src.with_suffix(".tamc")
            targets.append(_target(out, default, folder_only=several))
    seen: dict[str, Path | str] = {}
    for src, dest in zip(sources, targets):
        if dest == STDIO:
            continue
        if src != STDIO and _same_path(src, dest):
            raise TamcInputError(f"{src}: the output would overwrite the input; choose another -o")
        key = os.path.abspath(dest)
        if key in seen:
            raise TamcInputError(f"{seen[key]} and {src} would both be written to {dest}")
        seen[key] = src

    def check_size(h: int, w: int) -> None:
        codec.check_image_size(rt, h, w, allow_large)

    bar = None
    if several:
        from tqdm import tqdm

        bar = tqdm(total=len(inputs), unit="image", disable=None, file=sys.stderr, dynamic_ncols=True)
    reports: list[dict] = []
    failed = 0
    to_stdout = STDIO in targets
    try:
        for src, dest in zip(sources, targets):
            t0 = time.perf_counter()
            try:
                notices: list[str] = []
                try:
                    image = io.BytesIO(_read_stdin("an image")) if src == STDIO else src
                    img = read_image(image, check_size=check_size, notices=notices, name=str(src))
                    enc = codec.encode_image(img, names, q, rt, allow_large=allow_large, effort=effort)
                except MemoryError:
                    raise TamcInputError(f"{src}: out of memory (the image is too large for this machine)") from None
                finally:
                    for n in notices:
                        _note(f"tamc: notice: {n}", bar)
                if dest == STDIO:
                    _write_stdout(enc.data)
                else:
                    atomic_write_bytes(dest, enc.data)
            except (TamcError, OSError) as exc:
                if not several:
                    raise
                failed += 1
                _note(f"tamc: error: {_one_line(str(exc))}", bar)
                reports.append({"input": str(src), "output": str(dest), "error": _one_line(str(exc))})
                continue
            finally:
                if bar is not None:
                    bar.update(1)
            r = _encode_report(src, dest, enc, rt, names, q, effort, notices, time.perf_counter() - t0)
            reports.append(r)
            if not as_json:
                for line in _encode_lines(r, verbose):
                    _say(line, bar, err=to_stdout)
    finally:
        if bar is not None:
            bar.close()
    if as_json:
        click.echo(json.dumps(reports if several else reports[0], indent=2), err=to_stdout)
    if failed:
        click.echo(f"tamc: error: {failed} of {len(inputs)} inputs failed", err=True)
        # not ctx.exit: the CLI runs click with standalone_mode=False, which turns that into a return value
        sys.exit(2)


def _encode_report(src: Path | str, dest: Path | str, enc, rt, names: list[str], q: int, effort: int,
                   notices: list[str], seconds: float) -> dict:
    layers = [{"index": i, "group": l["group"], "parent": l["parent"], "tasks": l["tasks"], "bytes": l["bytes"],
               "coding": l.get("coding", "latent")} for i, l in enumerate(enc.layers)]
    total = len(enc.data)
    return {
        "input": str(src),
        "output": str(dest),
        "model": rt.manifest.get("name", rt.folder.name),
        "model_dir": str(rt.folder),
        "model_id": rt.id,
        "image_size": [enc.height, enc.width],
        "padded_size": [enc.padded_height, enc.padded_width],
        "quality": q,
        "effort": effort,
        "tasks": names,
        "layers": layers,
        "header_bytes": total - sum(l["bytes"] for l in layers),
        "total_bytes": total,
        "bpp": enc.bpp,
        "seconds": round(seconds, 4),
        "notices": notices,
    }


def _encode_lines(r: dict, verbose: bool) -> list[str]:
    h, w = r["image_size"]
    lines = [f"{r['input']} -> {r['output']}: {h}x{w} (HxW), quality {r['quality']}, tasks {', '.join(r['tasks'])}"]
    width = max([len(l["group"]) for l in r["layers"]] + [5])
    lines.append(f"  layer  {'group':<{width}}  {'bytes':>9}  serves")
    for l in r["layers"]:
        lines.append(f"  {l['index']:>5}  {l['group']:<{width}}  {l['bytes']:>9}  {', '.join(l['tasks']) or '(context only)'}")
    lines.append(f"  {'':>5}  {'header + index':<{width}}  {r['header_bytes']:>9}")
    lines.append(f"  total {r['total_bytes']} bytes, {r['bpp']:.4f} bpp")
    if verbose:
        ph, pw = r["padded_size"]
        lines.append(f"  model {r['model']} ({r['model_id']}) in {r['model_dir']}")
        lines.append(f"  padded to {ph}x{pw}; effort {r['effort']}; {r['seconds']:.3f} s")
    return lines


# --------------------------------------------------------------------------- decode


@click.command("decode")
@click.argument("file", type=click.Path(allow_dash=True))
@click.option("--task", "-t", required=True, metavar="TASK",
              help="The task to decode: seg, depth, normal, edge, keypoint or rgb (or a Taskonomy alias).")
@click.option("-o", "--output", type=click.Path(allow_dash=True), metavar="OUT.png",
              help="Picture to write (or an existing folder, or - for PNG on standard output). "
                   "Default: FILE.TASK.png beside FILE (standard output for FILE -).")
@click.option("--raw", type=click.Path(allow_dash=True), metavar="OUT.npy|OUT.png",
              help="Also write the raw output (units in docs/CONTRACT.md): .npy the exact array, .png the label "
                   "storage (16-bit for depth, edge, keypoint), - .npy on standard output. "
                   "Without -o, only it is written.")
@click.option("--model", "model_name", metavar="NAME_OR_DIR",
              help="Model folder or name. Default: the installed model whose id the file names.")
@click.option("--allow-large", is_flag=True,
              help=f"Decode files whose padded image exceeds {MAX_PIXELS_TEXT} pixels; "
                   f"needs about {DECODE_BYTES_PER_PIXEL} bytes of memory per padded pixel.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON (includes bytes read).")
@click.option("-v", "--verbose", is_flag=True, help="Print the layers read, bytes read against file size, and time.")
def decode(file: str, task: str, output: str | None, raw: str | None, model_name: str | None,
           allow_large: bool, as_json: bool, verbose: bool) -> None:
    """Decode one task from a .tamc file, reading only the layers it needs.

    The layers read are the one serving TASK and its ancestors in the model's
    DAG; the rest of the file is never fetched (-v and --json report bytes
    read against the file size). Outputs have the original image size.

    \b
    Picture (default FILE.TASK.png, e.g. photo.depth.png): a colour map for
    seg (fixed palette), depth (near = bright) and normal (x, y, z as R, G,
    B); grey for edge and keypoint; the image itself for rgb. The format
    follows OUT's extension (.png recommended).

    \b
    --raw OUT.npy writes the task's array as docs/CONTRACT.md defines it:
      seg uint8[H,W] class ids       depth float32[H,W] metres (z-buffer)
      normal float32[H,W,3] unit     edge, keypoint float32[H,W] responses
      rgb uint8[H,W,3] sRGB
    --raw OUT.png writes it as docs/CONTRACT.md stores labels, quantised:
      seg 8-bit ids, depth 16-bit 512*z (1/512 m steps, up to 128 m), normal
      8-bit RGB, edge and keypoint 16-bit, rgb 8-bit RGB. Other extensions
      are refused.

    \b
    Standard input and output: FILE - reads the .tamc from standard input,
    and then writes the picture to standard output unless -o or --raw names a
    file; -o - writes the picture (PNG) and --raw - the array (.npy) to
    standard output, not both. The report then goes to standard error.

    \b
    Size limit: a file whose padded image exceeds 16,777,216 pixels is refused
    from its header (and, for a version-3 file, the model's padding), before
    anything is allocated, unless --allow-large.

    \b
    MODELS: the file names the model that made it by id (a format-version-3
    file by the id's first 4 bytes); tamc looks for it in the shipped models/
    folder, then in each folder of $TAMC_MODEL_PATH (separated by ':').
    --model NAME_OR_DIR uses that model instead; it must have the same id. A
    missing model is an error naming the id.

    Outputs are written whole or not at all; the input is never overwritten.

    \b
    Examples:
      tamc decode photo.tamc --task depth             # writes photo.depth.png
      tamc decode photo.tamc -t seg --raw seg.npy -v  # array only, with stats
      tamc decode photo.tamc -t depth --raw d.png     # 16-bit depth, 512*z
      cat photo.tamc | tamc decode - -t edge > e.png  # standard input and output
    """
    from ..contract import TASK_ALIASES, TASKS

    t0 = time.perf_counter()
    name = TASK_ALIASES.get(task.strip(), task.strip())
    if name not in TASKS:
        raise TamcInputError(f"unknown task {task!r} (known: {', '.join(TASKS)})")
    src, out, raw_to = _path_or_stdio(file), _path_or_stdio(output), _path_or_stdio(raw)
    if out == STDIO and raw_to == STDIO:
        raise TamcInputError("-o - and --raw -: the picture and the raw array cannot both go to standard output")
    source = _read_stdin(".tamc data") if src == STDIO else src
    with TamcReader(source) as reader:
        hdr = reader.header
        available = sorted({t for e in reader.layers for t in e.task_names}, key=TASKS.index)
    if name not in available:
        raise TamcInputError(f"{src}: task {name!r} is not in this file (it has: {', '.join(available) or 'none'})")
    if hdr.padded_height is not None and hdr.padded_width is not None:  # versions 1 and 2 declare it
        try:
            check_padded(hdr.height, hdr.width, hdr.padded_height, hdr.padded_width, "decode", allow_large)
        except TamcInputError as exc:
            raise TamcInputError(f"{src}: {exc}") from None

    picture_path: Path | str | None = None
    fmt = "PNG"
    if out is not None or raw_to is None:
        if out == STDIO or (out is None and src == STDIO):
            _check_stdout("-o")
            picture_path = STDIO
        else:
            picture_path = _target(out, None if src == STDIO else src.with_suffix(f".{name}.png"))
    raw_path: Path | str | None = None
    if raw_to == STDIO:
        _check_stdout("--raw")
        raw_path = STDIO
    elif raw_to is not None:
        raw_path = _target(raw_to, None if src == STDIO else src.with_suffix(f".{name}.npy"))
    files = [p for p in (picture_path, raw_path) if isinstance(p, Path)]
    for p in files:
        if src != STDIO and _same_path(p, src):
            raise TamcInputError(f"{p}: the output would overwrite the input")
    if isinstance(picture_path, Path):
        fmt = _picture_format(picture_path)
    if isinstance(raw_path, Path) and raw_path.suffix.lower() not in (".npy", ".png"):
        raise TamcInputError(f"--raw {raw_path}: unknown raw format {raw_path.suffix or '(no extension)'!r}; "
                             "use .npy (the exact array) or .png (docs/CONTRACT.md's label storage)")
    if len(files) == 2 and _same_path(*files):
        raise TamcInputError(f"{raw_path}: the picture and the raw array would be the same file")

    import contextlib

    codec = _import_codec()
    rt = codec.load_model(model_name, model_id=hdr.model_id_hex)
    codec.check_file_model(rt, hdr)
    if hdr.padded_height is None:  # version 3: the model's padding of the image size
        try:
            check_padded(hdr.height, hdr.width, *codec.file_padded_size(rt, hdr), "decode", allow_large)
        except TamcInputError as exc:
            raise TamcInputError(f"{src}: {exc}") from None
    try:
        res = codec.decode_task(source, name, rt, allow_large)
    except MemoryError:
        raise TamcInputError(f"{src}: out of memory decoding a {hdr.height}x{hdr.width} image") from None
    to_stdout: bytes | None = None
    with contextlib.ExitStack() as stack:
        # Both outputs go to temporary files first, so a failure leaves neither half-made;
        # standard output gets its bytes only once the files are in place.
        if raw_path is not None:
            suffix = ".npy" if raw_path == STDIO else raw_path.suffix.lower()
            to_stdout = _write_output(stack, raw_path, lambda fh: _save_raw(fh, name, res.output, suffix))
        if picture_path is not None:
            to_stdout = _write_output(stack, picture_path,
                                      lambda fh: _save_picture(fh, name, res.output, fmt)) or to_stdout
    if to_stdout is not None:
        _write_stdout(to_stdout)
    seconds = time.perf_counter() - t0

    with TamcReader(source) as reader:
        groups = [rt.groups[reader.layers[i].group] for i in res.layers]
    r = {
        "file": str(src),
        "task": name,
        "output": None if picture_path is None else str(picture_path),
        "raw": None if raw_path is None else str(raw_path),
        "model": rt.manifest.get("name", rt.folder.name),
        "model_dir": str(rt.folder),
        "model_id": rt.id,
        "image_size": [hdr.height, hdr.width],
        "shape": list(res.output.shape),
        "dtype": str(res.output.dtype),
        "layers_read": res.layers,
        "groups_read": groups,
        "layers_in_file": len(reader.layers),
        "bytes_read": res.bytes_read,
        "file_size": res.file_size,
        "seconds": round(seconds, 4),
    }
    err = STDIO in (picture_path, raw_path)
    if as_json:
        click.echo(json.dumps(r, indent=2), err=err)
        return
    written = " and ".join(p for p in (r["output"], r["raw"]) if p)
    _say(f"{src} -> {written}: {name}, {hdr.height}x{hdr.width} (HxW)", err=err)
    if verbose:
        _say(f"  read layers {', '.join(map(str, res.layers))} of {r['layers_in_file']} ({', '.join(groups)})",
             err=err)
        _say(f"  read {res.bytes_read} of {res.file_size} bytes ({100.0 * res.bytes_read / res.file_size:.1f}%)",
             err=err)
        _say(f"  model {r['model']} ({rt.id}) in {rt.folder}", err=err)
        _say(f"  {seconds:.3f} s", err=err)


def _picture_format(path: Path) -> str:
    """The PIL format OUT's extension names; TamcInputError when PIL cannot write it."""
    from PIL import Image

    suffix = path.suffix.lower()
    # registered_extensions() imports every PIL plugin (0.1 s); PNG needs none of them
    fmt = "PNG" if suffix == ".png" else Image.registered_extensions().get(suffix)
    if fmt is None or (fmt != "PNG" and fmt not in Image.SAVE):
        raise TamcInputError(f"{path}: unknown picture format {path.suffix or '(no extension)'!r}; "
                             "use .png (and --raw for arrays)")
    return fmt


def _write_output(stack, dest: Path | str, save) -> bytes | None:
    """Run save(file) into `dest`'s temporary file (renamed when `stack` closes), or into memory for
    standard output, whose bytes are returned."""
    from ..atomic import atomic_path

    if dest == STDIO:
        buf = io.BytesIO()
        save(buf)
        return buf.getvalue()
    with open(stack.enter_context(atomic_path(dest)), "wb") as fh:
        save(fh)
    return None


def _save_picture(fh, task: str, raw, fmt: str) -> None:
    from PIL import Image

    from ..tasks.pictures import picture

    # a picture is for looking at: fast zlib beats 25% smaller files (0.03 s against 0.1 s at 768x512)
    extra = {"compress_level": 1} if fmt == "PNG" else {}
    Image.fromarray(picture(task, raw)).save(fh, format=fmt, **extra)


def _save_raw(fh, task: str, raw, suffix: str) -> None:
    if suffix == ".npy":
        import numpy as np

        np.save(fh, raw, allow_pickle=False)
        return
    from PIL import Image

    from ..tasks.labels import label_png

    Image.fromarray(label_png(task, raw)).save(fh, format="PNG")
