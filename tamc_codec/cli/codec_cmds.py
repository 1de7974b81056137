"""``tamc encode``, ``tamc decode`` and ``tamc info`` (the manual is docs/CLI.md).

This module is imported on the fast path: module level imports stay stdlib +
click + the stdlib-only bitstream package, so ``tamc info`` and every ``--help``
start without numpy. Commands that need numpy, PIL or the model runtime import
them inside their function bodies.
"""
from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import click

from ..bitstream.container import Header, LayerEntry, TamcReader
from ..errors import TamcError, TamcInputError

#: Copies of tamc_codec.codec.MAX_PIXELS and the format's side limit for help texts
#: (importing codec would import numpy); tests check they agree.
MAX_PIXELS_TEXT = "16,777,216"
MAX_SIDE = 65535


def _info_dict(path: Path, reader: TamcReader) -> dict:
    h: Header = reader.header
    return {
        "file": str(path),
        "file_size": reader.file_size,
        "format_version": h.version,
        "model_id": h.model_id_hex,
        "image_size": [h.height, h.width],
        "padded_size": [h.padded_height, h.padded_width],
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
        "crc32": f"{e.crc32:08x}",
        "tasks": e.task_names,
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
    coded conditionally on.
    """
    with TamcReader(file) as reader:
        d = _info_dict(file, reader)
    if as_json:
        click.echo(json.dumps(d, indent=2))
        return
    click.echo(f"{d['file']}: {d['file_size']} bytes, .tamc format version {d['format_version']}")
    click.echo(f"  model id     {d['model_id']}")
    click.echo(f"  image size   {d['image_size'][0]}x{d['image_size'][1]} (HxW), padded to "
               f"{d['padded_size'][0]}x{d['padded_size'][1]}")
    click.echo(f"  quality      {d['quality']}")
    click.echo(f"  tasks        {', '.join(d['tasks']) or '(none)'}")
    click.echo(f"  header       {d['header_size']} bytes (header + index)")
    click.echo(f"  layers       {len(d['layers'])}")
    click.echo("  layer  group  parent    offset    length  tasks")
    for layer in d["layers"]:
        parent = "-" if layer["parent"] is None else str(layer["parent"])
        click.echo(f"  {layer['index']:>5}  {layer['group']:>5}  {parent:>6}  {layer['offset']:>8}  "
                   f"{layer['length']:>8}  {', '.join(layer['tasks']) or '(context only)'}")



# --------------------------------------------------------------------------- output paths


def _same_path(a: Path, b: Path) -> bool:
    try:
        if a.exists() and b.exists():
            return os.path.samefile(a, b)
    except OSError:
        pass
    return os.path.abspath(a) == os.path.abspath(b)


def _target(given: Path | None, default: Path, *, folder_only: bool = False) -> Path:
    """Where an output goes: `default` (beside the input), inside `given` if it is a folder, else `given`."""
    if given is None:
        dest = default
    elif given.is_dir():
        dest = given / default.name
    elif folder_only:
        raise TamcInputError(f"-o {given}: with several inputs, -o must name an existing folder")
    elif str(given).endswith(("/", os.sep)):
        raise TamcInputError(f"-o {given}: no such folder")
    else:
        dest = given
    parent = dest.parent if str(dest.parent) else Path(".")
    if not parent.is_dir():
        raise TamcInputError(f"{dest}: the output folder {parent} does not exist")
    if dest.is_dir():
        raise TamcInputError(f"{dest}: is a folder; give a file name")
    return dest


def _note(line: str, bar=None) -> None:
    if bar is not None and not bar.disable:
        bar.write(line, file=sys.stderr)
    else:
        click.echo(line, err=True)


def _say(line: str, bar=None) -> None:
    if bar is not None and not bar.disable:
        bar.write(line, file=sys.stdout)
    else:
        click.echo(line)


# --------------------------------------------------------------------------- encode


@click.command("encode")
@click.argument("inputs", nargs=-1, required=True, metavar="INPUT...", type=click.Path(path_type=Path))
@click.option("-o", "--output", type=click.Path(path_type=Path), metavar="OUT",
              help="Output file (one input) or existing folder. Default: INPUT with the suffix .tamc, beside it.")
@click.option("--tasks", default="all", show_default=True, metavar="LIST",
              help="Tasks the file must serve: comma-separated names or aliases (seg, depth, normal, edge, "
                   "keypoint, rgb), or 'all' (every task the model serves).")
@click.option("--quality", type=int, default=None, metavar="Q",
              help="1 = lowest rate .. Q = highest quality (Q from the model). Default: the model's highest.")
@click.option("--model", "model_name", metavar="NAME_OR_DIR",
              help="Model folder or name (see MODELS below). Default: models/default, else the first installed.")
@click.option("--allow-large", is_flag=True,
              help=f"Encode images above {MAX_PIXELS_TEXT} pixels (4096x4096); needs several GB of memory.")
@click.option("--json", "as_json", is_flag=True,
              help="Print the report as JSON (an object; a list of objects for several inputs).")
@click.option("-v", "--verbose", is_flag=True, help="Also print the model, padded size and time taken.")
def encode(inputs: tuple[Path, ...], output: Path | None, tasks: str, quality: int | None,
           model_name: str | None, allow_large: bool, as_json: bool, verbose: bool) -> None:
    """Compress images into layered .tamc files.

    Each INPUT (PNG, JPEG, WebP, TIFF or BMP) is analysed once; only the task
    groups that serve the requested tasks, plus their ancestors in the model's
    DAG, are coded (the smallest such set). photo.png becomes photo.tamc beside
    it, or goes to -o. Outputs are written whole or not at all: a failure never
    leaves a partial file or touches an existing one.

    \b
    Image policy: EXIF orientation is applied; palette, grey and 16-bit images
    become 8-bit RGB; transparency is composited on black (with a notice); an
    embedded ICC profile is converted to sRGB (a profile that cannot be used
    gives a notice, and the pixels are taken as they are). The image is padded
    to the model's multiple by repeating its edges; the file records the
    original size, and decoding returns it.

    \b
    Size limit: images above 16,777,216 pixels are refused from their header,
    before any pixel is decoded, unless --allow-large is given.

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
    """
    from .. import codec
    from ..atomic import atomic_write_bytes
    from ..contract import TASKS
    from ..data.folder import read_image
    from . import _one_line

    rt = codec.load_model(model_name)
    names = codec._tasks([t for t in TASKS if t in rt.serving] if tasks.strip().lower() == "all" else tasks, rt)
    q = codec._quality(quality, rt)
    several = len(inputs) > 1
    targets = [_target(output, src.with_suffix(".tamc"), folder_only=several) for src in inputs]
    seen: dict[str, Path] = {}
    for src, dest in zip(inputs, targets):
        if _same_path(src, dest):
            raise TamcInputError(f"{src}: the output would overwrite the input; choose another -o")
        key = os.path.abspath(dest)
        if key in seen:
            raise TamcInputError(f"{seen[key]} and {src} would both be written to {dest}")
        seen[key] = src
    max_pixels = None if allow_large else codec.MAX_PIXELS

    bar = None
    if several:
        from tqdm import tqdm

        bar = tqdm(total=len(inputs), unit="image", disable=None, file=sys.stderr, dynamic_ncols=True)
    reports: list[dict] = []
    failed = 0
    try:
        for src, dest in zip(inputs, targets):
            t0 = time.perf_counter()
            try:
                notices: list[str] = []
                try:
                    img = read_image(src, max_pixels=max_pixels, max_side=MAX_SIDE, notices=notices)
                    enc = codec.encode_image(img, names, q, rt, allow_large=allow_large)
                except MemoryError:
                    raise TamcInputError(f"{src}: out of memory (the image is too large for this machine)") from None
                finally:
                    for n in notices:
                        _note(f"tamc: notice: {n}", bar)
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
            r = _encode_report(src, dest, enc, rt, names, q, notices, time.perf_counter() - t0)
            reports.append(r)
            if not as_json:
                for line in _encode_lines(r, verbose):
                    _say(line, bar)
    finally:
        if bar is not None:
            bar.close()
    if as_json:
        click.echo(json.dumps(reports if several else reports[0], indent=2))
    if failed:
        click.echo(f"tamc: error: {failed} of {len(inputs)} inputs failed", err=True)
        # not ctx.exit: the CLI runs click with standalone_mode=False, which turns that into a return value
        sys.exit(2)


def _encode_report(src: Path, dest: Path, enc, rt, names: list[str], q: int, notices: list[str],
                   seconds: float) -> dict:
    pad = rt.pad
    layers = [{"index": i, "group": l["group"], "parent": l["parent"], "tasks": l["tasks"], "bytes": l["bytes"]}
              for i, l in enumerate(enc.layers)]
    total = len(enc.data)
    return {
        "input": str(src),
        "output": str(dest),
        "model": rt.manifest.get("name", rt.folder.name),
        "model_dir": str(rt.folder),
        "model_id": rt.id,
        "image_size": [enc.height, enc.width],
        "padded_size": [-(-enc.height // pad) * pad, -(-enc.width // pad) * pad],
        "quality": q,
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
        lines.append(f"  padded to {ph}x{pw}; {r['seconds']:.3f} s")
    return lines


# --------------------------------------------------------------------------- decode


@click.command("decode")
@click.argument("file", type=click.Path(path_type=Path))
@click.option("--task", "-t", required=True, metavar="TASK",
              help="The task to decode: seg, depth, normal, edge, keypoint or rgb (or a Taskonomy alias).")
@click.option("-o", "--output", type=click.Path(path_type=Path), metavar="OUT.png",
              help="Picture to write (or an existing folder). Default: FILE.TASK.png beside FILE.")
@click.option("--raw", type=click.Path(path_type=Path), metavar="OUT.npy",
              help="Also write the raw array (.npy; units in docs/CONTRACT.md). Without -o, only the array is written.")
@click.option("--model", "model_name", metavar="NAME_OR_DIR",
              help="Model folder or name. Default: the installed model whose id the file names.")
@click.option("--allow-large", is_flag=True,
              help=f"Decode files whose padded image exceeds {MAX_PIXELS_TEXT} pixels.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON (includes bytes read).")
@click.option("-v", "--verbose", is_flag=True, help="Print the layers read, bytes read against file size, and time.")
def decode(file: Path, task: str, output: Path | None, raw: Path | None, model_name: str | None,
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

    \b
    MODELS: the file names the model that made it by id; tamc looks for it in
    the shipped models/ folder, then in each folder of $TAMC_MODEL_PATH
    (separated by ':'). --model NAME_OR_DIR uses that model instead; it must
    have the same id. A missing model is an error naming the id.

    Outputs are written whole or not at all; the input is never overwritten.

    \b
    Examples:
      tamc decode photo.tamc --task depth             # writes photo.depth.png
      tamc decode photo.tamc -t seg --raw seg.npy -v  # array only, with stats
    """
    from ..contract import TASK_ALIASES, TASKS

    t0 = time.perf_counter()
    name = TASK_ALIASES.get(task.strip(), task.strip())
    if name not in TASKS:
        raise TamcInputError(f"unknown task {task!r} (known: {', '.join(TASKS)})")
    with TamcReader(file) as reader:
        hdr = reader.header
        available = sorted({t for e in reader.layers for t in e.task_names}, key=TASKS.index)
    if name not in available:
        raise TamcInputError(f"{file}: task {name!r} is not in this file (it has: {', '.join(available) or 'none'})")
    if hdr.padded_height * hdr.padded_width > int(MAX_PIXELS_TEXT.replace(",", "")) and not allow_large:
        raise TamcInputError(f"{file}: the image is {hdr.height}x{hdr.width}, more than {MAX_PIXELS_TEXT} pixels; "
                             "pass --allow-large to decode it anyway (needs several GB of memory)")

    from PIL import Image

    picture_path = None
    if output is not None or raw is None:
        picture_path = _target(output, file.with_suffix(f".{name}.png"))
        if _same_path(picture_path, file):
            raise TamcInputError(f"{picture_path}: the output would overwrite the input")
        suffix = picture_path.suffix.lower()
        # registered_extensions() imports every PIL plugin (0.1 s); PNG needs none of them
        fmt = "PNG" if suffix == ".png" else Image.registered_extensions().get(suffix)
        if fmt is None or (fmt != "PNG" and fmt not in Image.SAVE):
            raise TamcInputError(f"{picture_path}: unknown picture format {picture_path.suffix or '(no extension)'!r}; "
                                 "use .png (and --raw for arrays)")
    raw_path = _target(raw, file.with_suffix(f".{name}.npy")) if raw is not None else None
    for p in (picture_path, raw_path):
        if p is not None and _same_path(p, file):
            raise TamcInputError(f"{p}: the output would overwrite the input")
    if picture_path is not None and raw_path is not None and _same_path(picture_path, raw_path):
        raise TamcInputError(f"{raw_path}: the picture and the raw array would be the same file")

    import contextlib

    import numpy as np

    from .. import codec
    from ..atomic import atomic_path
    from ..tasks.pictures import picture

    rt = codec.load_model(model_name, model_id=hdr.model_id_hex)
    try:
        res = codec.decode_task(file, name, rt)
    except MemoryError:
        raise TamcInputError(f"{file}: out of memory decoding a {hdr.height}x{hdr.width} image") from None
    with contextlib.ExitStack() as stack:
        # Both outputs go to temporary files first, so a failure leaves neither half-made.
        if raw_path is not None:
            with open(stack.enter_context(atomic_path(raw_path)), "wb") as fh:
                np.save(fh, res.output, allow_pickle=False)
        if picture_path is not None:
            with open(stack.enter_context(atomic_path(picture_path)), "wb") as fh:
                # a picture is for looking at: fast zlib beats 25% smaller files (0.03 s against 0.1 s at 768x512)
                extra = {"compress_level": 1} if fmt == "PNG" else {}
                Image.fromarray(picture(name, res.output)).save(fh, format=fmt, **extra)
    seconds = time.perf_counter() - t0

    with TamcReader(file) as reader:
        groups = [rt.groups[reader.layers[i].group] for i in res.layers]
    r = {
        "file": str(file),
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
    if as_json:
        click.echo(json.dumps(r, indent=2))
        return
    written = " and ".join(p for p in (r["output"], r["raw"]) if p)
    click.echo(f"{file} -> {written}: {name}, {hdr.height}x{hdr.width} (HxW)")
    if verbose:
        click.echo(f"  read layers {', '.join(map(str, res.layers))} of {r['layers_in_file']} "
                   f"({', '.join(groups)})")
        click.echo(f"  read {res.bytes_read} of {res.file_size} bytes ({100.0 * res.bytes_read / res.file_size:.1f}%)")
        click.echo(f"  model {r['model']} ({rt.id}) in {rt.folder}")
        click.echo(f"  {seconds:.3f} s")
