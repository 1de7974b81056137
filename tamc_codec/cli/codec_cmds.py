"""``tamc info`` (and, later, ``tamc encode`` / ``tamc decode``).

This module is imported on the fast path: module level imports stay stdlib +
click + the stdlib-only bitstream package. Commands that need numpy or the model
runtime import them inside their function bodies.
"""
from __future__ import annotations

import json
from pathlib import Path

import click

from ..bitstream.container import Header, LayerEntry, TamcReader


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


# `encode` and `decode` are added here later (see tamc_codec/cli/__init__.py COMMANDS).
