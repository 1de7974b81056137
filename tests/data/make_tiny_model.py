"""Make tests/data/tiny_model: a tiny exported model, and the picture and files it codes.

The runtime's tests read it without torch: encode and decode run on its ONNX graphs and tables
alone. It is built by the real pipeline (tests/model_fixture.py: generated data, stage 1, a
fixed DAG, stage 2, export), so it has what a shipped model has: three groups, a DAG edge, five
files' worth of tables. Its outputs are poor; tests check the codec's mechanics with it.

tests/data/tiny_model_expected.json records, for the committed picture tiny_scene.png, the bytes
every quality codes and the sha256 of every task's decoded raw output: the runtime must keep
producing them (tests/test_runtime.py). Re-run only when the model itself has to change:

    python tests/data/make_tiny_model.py

When the file format changes (not the model), re-record only the expected bytes of the committed
model; every task's output must come out as recorded before:

    python tests/data/make_tiny_model.py --expected-only
"""
from __future__ import annotations

import hashlib
import json
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
OUT = HERE / "tiny_model"
SCENE = HERE / "tiny_scene.png"


def expected(model: Path, scene: Path) -> dict:
    from tamc_codec.runtime import decode_task, encode_image, load_model

    rt = load_model(str(model))
    out = {"model_id": rt.id, "scene": scene.name, "qualities": {}}
    for q in range(1, rt.qualities + 1):
        data = encode_image(scene, "all", q, rt).data
        tasks = {t: hashlib.sha256(np.ascontiguousarray(decode_task(data, t, rt).output).tobytes()).hexdigest()
                 for t in rt.serving}
        out["qualities"][str(q)] = {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data), "tasks": tasks}
    return out


def expected_only() -> None:
    """Re-record tiny_model_expected.json for the committed model, refusing if a decoded output moved."""
    path = HERE / "tiny_model_expected.json"
    before = json.loads(path.read_text())
    after = expected(OUT, SCENE)
    if after["model_id"] != before["model_id"] or any(
            after["qualities"][q]["tasks"] != before["qualities"][q]["tasks"] for q in before["qualities"]):
        raise SystemExit("the committed model decodes other outputs than recorded: not a format-only change")
    path.write_text(json.dumps(after, indent=1) + "\n")
    for q in sorted(after["qualities"]):
        print(f"quality {q}: {before['qualities'][q]['bytes']} -> {after['qualities'][q]['bytes']} bytes")


def main() -> None:
    if "--expected-only" in sys.argv[1:]:
        expected_only()
        return
    sys.path.insert(0, str(HERE.parent))
    from model_fixture import build_tiny_model
    from PIL import Image

    from tamc_codec.data.folder import synthesize

    with tempfile.TemporaryDirectory() as tmp:
        model = build_tiny_model(Path(tmp))
        if OUT.exists():
            shutil.rmtree(OUT)
        shutil.copytree(model, OUT)
        synthesize(Path(tmp) / "scene", 1, 96, 2_000_007, workers=1)  # a test-split seed
        rgb = next((Path(tmp) / "scene" / "rgb").glob("*.png"))
        Image.open(rgb).crop((0, 0, 96, 80)).save(SCENE)  # off the 64-pixel grid: padding is exercised
    (HERE / "tiny_model_expected.json").write_text(json.dumps(expected(OUT, SCENE), indent=1) + "\n")


if __name__ == "__main__":
    main()
