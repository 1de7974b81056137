"""Start-up and coding speed of the tamc CLI, beside CompressAI's mbt2018-mean.

    python benchmarks/bench_codec_speed.py [--model NAME_OR_DIR] [--repeat 3] [--cores 2]
                                           [--out benchmarks/results/codec_speed.json] [--no-compressai]

Every number is the wall clock of a whole process (interpreter start, imports, model
loading, work, output), the median of --repeat runs, on a 768x512 generated scene,
limited to --cores CPU cores (TAMC_THREADS and OMP_NUM_THREADS are set to match):

    tamc --help                      target <= 0.3 s
    tamc info FILE                   target <= 0.3 s
    tamc encode --tasks all          target <= 3 s
    tamc decode --task T (each T)    target <= 1.5 s

CompressAI runs in its own process per repeat: mbt2018_mean(quality=1, pretrained=False)
(random weights: the speed does not depend on them), update(), compress and decompress
of the same image; its import, model set-up, compress and decompress times are reported
separately, with the whole process's wall clock. A receiver's process needs the import,
the set-up and decompress: that sum is the "decode-side" figure beside tamc's decode.

The model defaults to the shipped default model (models/default, else the first model in
models/). Results with anything else (the test suite's tiny model, say) belong elsewhere:
pass --out.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "codec_speed.json"
SIZE = (512, 768)  # H, W
TARGETS = {"help": 0.3, "info": 0.3, "encode": 3.0, "decode": 1.5}

COMPRESSAI_PROG = r"""
import json, sys, time
t0 = time.perf_counter()
import torch
from compressai.zoo import mbt2018_mean
t1 = time.perf_counter()
import numpy as np
from PIL import Image
torch.set_num_threads(int(sys.argv[2]))
torch.manual_seed(0)
x = torch.from_numpy(np.asarray(Image.open(sys.argv[1]).convert("RGB"), dtype=np.float32) / 255.0)
x = x.permute(2, 0, 1)[None].contiguous()
net = mbt2018_mean(quality=1, pretrained=False).eval()
net.update(force=True)
t2 = time.perf_counter()
with torch.no_grad():
    out = net.compress(x)
    t3 = time.perf_counter()
    rec = net.decompress(out["strings"], out["shape"])
    t4 = time.perf_counter()
nbytes = sum(len(s) for strings in out["strings"] for s in strings)
print(json.dumps({"import_s": t1 - t0, "setup_s": t2 - t1, "compress_s": t3 - t2, "decompress_s": t4 - t3,
                  "bytes": nbytes, "shape": list(rec["x_hat"].shape)}))
"""


def _image(path: Path) -> None:
    from PIL import Image

    from tamc_codec.data import synth, textures

    # a test-split scene: photographic textures no model was trained on
    rgb = synth.render(synth.build_scene(2_000_000, textures.PHOTO_SPLITS["test"]), SIZE[1])["rgb"][: SIZE[0]]
    Image.fromarray(rgb).save(path)


def _default_model() -> Path:
    from tamc_codec.errors import TamcModelError
    from tamc_codec.runtime.model import shipped_models_dir

    models = shipped_models_dir()
    candidates = [models / "default"] + (sorted(models.iterdir()) if models.is_dir() else [])
    for d in candidates:
        if (d / "manifest.json").exists():
            return d
    raise TamcModelError(f"no model in {models}; pass --model DIR (results with a test model need --out elsewhere)")


def _tamc_command() -> list[str]:
    """What users type: the console script installed beside this interpreter.

    Not the first `tamc` on PATH: version-manager shims (pyenv's is a bash script
    that re-resolves the interpreter) add 0.1-0.3 s that is not tamc's.
    """
    script = Path(sysconfig.get_path("scripts")) / ("tamc.exe" if os.name == "nt" else "tamc")
    if script.is_file():
        return [str(script)]
    exe = shutil.which("tamc")
    return [exe] if exe else [sys.executable, "-m", "tamc_codec"]


def _limit_cores(cores: int):
    if not hasattr(os, "sched_setaffinity"):
        return None
    allowed = sorted(os.sched_getaffinity(0))[:cores]
    return lambda: os.sched_setaffinity(0, allowed)


def _timed(cmd: list[str], env: dict, preexec, repeat: int) -> tuple[list[float], str]:
    times, out = [], ""
    for _ in range(repeat):
        t = time.perf_counter()
        r = subprocess.run(cmd, capture_output=True, text=True, env=env, preexec_fn=preexec, timeout=600)
        times.append(time.perf_counter() - t)
        if r.returncode != 0:
            sys.exit(f"failed ({r.returncode}): {' '.join(cmd)}\n{r.stderr.strip()}")
        out = r.stdout
    return times, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", help="model folder or name (default: the shipped default model)")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--cores", type=int, default=2)
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument("--no-compressai", action="store_true", help="skip the CompressAI comparison")
    args = ap.parse_args()

    from tamc_codec.errors import TamcError
    from tamc_codec.runtime.model import find_model

    try:
        model = find_model(args.model) if args.model else _default_model()
    except TamcError as exc:
        sys.exit(f"bench_codec_speed: {exc}")
    manifest = json.loads((model / "manifest.json").read_text())
    env = dict(os.environ, TAMC_THREADS=str(args.cores), OMP_NUM_THREADS=str(args.cores))
    preexec = _limit_cores(args.cores)
    tamc = _tamc_command()
    rows: list[tuple[str, float, float | None, str]] = []
    timings: dict[str, dict] = {}

    def record(key: str, label: str, times: list[float], target: float | None, note: str = "") -> float:
        med = statistics.median(times)
        timings[key] = {"median_s": round(med, 4), "runs_s": [round(t, 4) for t in times], "target_s": target}
        rows.append((label, med, target, note))
        return med

    with tempfile.TemporaryDirectory(prefix="tamc_speed_") as tmp_name:
        tmp = Path(tmp_name)
        img = tmp / "scene.png"
        _image(img)
        coded = tmp / "scene.tamc"

        times, _ = _timed([*tamc, "--help"], env, preexec, args.repeat)
        record("help", "tamc --help", times, TARGETS["help"])
        times, out = _timed([*tamc, "encode", str(img), "-o", str(coded), "--tasks", "all", "--model", str(model),
                             "--json"], env, preexec, args.repeat)
        enc = json.loads(out)
        record("encode_all", "tamc encode --tasks all", times, TARGETS["encode"],
               f"{enc['total_bytes']} bytes, {enc['bpp']:.4f} bpp, q{enc['quality']}")
        times, _ = _timed([*tamc, "info", str(coded)], env, preexec, args.repeat)
        record("info", "tamc info", times, TARGETS["info"])
        decode_reads = {}
        for task in enc["tasks"]:
            times, out = _timed([*tamc, "decode", str(coded), "--task", task, "-o", str(tmp / f"{task}.png"),
                                 "--model", str(model), "--json"], env, preexec, args.repeat)
            d = json.loads(out)
            decode_reads[task] = {"bytes_read": d["bytes_read"], "file_size": d["file_size"],
                                  "groups_read": d["groups_read"]}
            record(f"decode_{task}", f"tamc decode --task {task}", times, TARGETS["decode"],
                   f"read {d['bytes_read']} of {d['file_size']} bytes")

        compressai = None
        if not args.no_compressai:
            runs, walls = [], []
            for _ in range(args.repeat):
                t = time.perf_counter()
                r = subprocess.run([sys.executable, "-c", COMPRESSAI_PROG, str(img), str(args.cores)],
                                   capture_output=True, text=True, env=env, preexec_fn=preexec, timeout=900)
                walls.append(time.perf_counter() - t)
                if r.returncode != 0:
                    sys.exit(f"compressai run failed:\n{r.stderr.strip()[-2000:]}")
                runs.append(json.loads(r.stdout.strip().splitlines()[-1]))
            med = {k: statistics.median(x[k] for x in runs) for k in ("import_s", "setup_s", "compress_s", "decompress_s")}
            compressai = {"model": "mbt2018_mean(quality=1, pretrained=False)", "bytes": runs[0]["bytes"],
                          **{k: round(v, 4) for k, v in med.items()},
                          "decode_side_s": round(med["import_s"] + med["setup_s"] + med["decompress_s"], 4),
                          "process_wall_s": round(statistics.median(walls), 4),
                          "runs": runs}
            rows.append(("compressai: import torch + compressai", med["import_s"], None, "in-process"))
            rows.append(("compressai: build model + update()", med["setup_s"], None, ""))
            rows.append(("compressai: compress", med["compress_s"], None, f"{runs[0]['bytes']} bytes"))
            rows.append(("compressai: decompress", med["decompress_s"], None, ""))
            rows.append(("compressai: decode side (import+setup+decompress)", compressai["decode_side_s"], None, ""))
            rows.append(("compressai: whole process", compressai["process_wall_s"], None, "all of the above"))

    width = max(len(r[0]) for r in rows)
    print(f"{SIZE[1]}x{SIZE[0]} image, model {manifest.get('name')} ({model}), {args.cores} cores, "
          f"median of {args.repeat}, wall clock including process start")
    print(f"{'':<{width}}  {'seconds':>8}  {'target':>7}")
    for label, sec, target, note in rows:
        verdict = "" if target is None else ("ok" if sec <= target else "SLOW")
        tgt = "" if target is None else f"<= {target:g}"
        print(f"{label:<{width}}  {sec:8.3f}  {tgt:>7}  {verdict:<4}  {note}")

    result = {
        "schema": "tamc.bench.codec_speed/1",
        "image": {"height": SIZE[0], "width": SIZE[1], "scene_seed": 2_000_000},
        "model": {"name": manifest.get("name"), "id": manifest.get("model_id"), "path": str(model)},
        "command": tamc,
        "cores": args.cores,
        "repeat": args.repeat,
        "timings": timings,
        "targets_met": all(v["target_s"] is None or v["median_s"] <= v["target_s"] for v in timings.values()),
        "encode": {k: enc[k] for k in ("total_bytes", "bpp", "quality", "tasks", "layers")},
        "decode_reads": decode_reads,
        "compressai": compressai,
        "machine": {"python": platform.python_version(), "platform": platform.platform(),
                    "cpu_count": os.cpu_count()},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
