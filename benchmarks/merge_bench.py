"""One bench result from the classical curves of several `tamc bench` runs and the tamc curve of one.

A classical curve (a codec variant's sweep) depends on the pictures, the codec libraries and the
anchor's networks, not on the tamc model measured, so runs that measured different variants on the
same inputs (e.g. the full-size to 1/4 variants in one run and 1/8 and 1/16 in another, which
`tamc bench --scales` allows) make one result. Inputs are checked where every run records them: the
data's description, the codec library versions and the anchor line, which must agree exactly. Runs
written since `tamc bench --reuse` exists should use that instead; this serves results from before.

    python benchmarks/merge_bench.py --classical benchmarks/results/bench_picture \\
        --classical runs/pic816/bench --tamc runs/pic816/bench --out benchmarks/results/bench_picture_all_scales

Writes results.json, the CSV files and the plots as `tamc bench` does, with provenance.combined naming
every run and its command.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from tamc_codec.bench import baselines
from tamc_codec.bench.report import write_all
from tamc_codec.bench.reuse import CODEC_VERSIONS
from tamc_codec.bench.run import _speed, summarise


def _load(folder: str) -> dict:
    path = Path(folder) / "results.json"
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        sys.exit(f"merge_bench: cannot read {path} ({exc})")
    if doc.get("schema") != "tamc.bench/1":
        sys.exit(f"merge_bench: {path} is not a tamc bench results.json")
    doc["_path"] = str(path)
    return doc


def _inputs(doc: dict) -> dict:
    """What a classical curve depends on, as every run records it."""
    prov = doc["provenance"]
    data = dict(prov.get("data") or {})
    data.pop("path", None)
    return {"data": data, "codec_versions": {k: prov["versions"].get(k) for k in CODEC_VERSIONS},
            "anchor_line": {t: r.get("loss") for t, r in doc["anchor"]["tasks"].items()}}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--classical", action="append", required=True, help="a bench run whose classical curves to take")
    p.add_argument("--tamc", required=True, help="the bench run whose tamc curve, anchor line and tasks to take")
    p.add_argument("--out", required=True)
    a = p.parse_args()
    base = _load(a.tamc)
    tasks = base["tasks"]
    want = _inputs(base)
    curves = {"tamc": base["curves"]["tamc"]}
    for folder in a.classical:
        doc = _load(folder)
        have = _inputs(doc)
        for key in want:
            mine = {t: v for t, v in have[key].items() if t in tasks} if key == "anchor_line" else have[key]
            theirs = {t: v for t, v in want[key].items() if t in tasks} if key == "anchor_line" else want[key]
            if mine != theirs:
                sys.exit(f"merge_bench: {doc['_path']} measured other inputs than {base['_path']}: {key} differs")
        missing = [t for t in tasks if t not in doc["tasks"]]
        if missing:
            sys.exit(f"merge_bench: {doc['_path']} has no {', '.join(missing)}")
        for name, points in doc["curves"].items():
            if name == "tamc":
                continue
            if name in curves:
                if points != curves[name]:
                    sys.exit(f"merge_bench: {name} is in two runs with different points")
                continue
            curves[name] = [{**pt, "tasks": {t: pt["tasks"][t] for t in tasks}} for pt in points]
    order = [n for n in curves if n != "tamc"]
    order.sort(key=lambda n: (baselines.CODECS.index(n.split("@")[0].split("+")[0]), n))
    curves = {"tamc": curves["tamc"], **{n: curves[n] for n in order}}
    results = dict(base)
    results.pop("_path")
    results["codecs"] = list(curves)
    results["families"] = baselines.families(list(curves))
    results["curves"] = curves
    results["summary"] = summarise(tasks, curves, base["anchor"])
    results["speed"] = _speed(curves, base["anchor"])
    results["provenance"] = {**base["provenance"], "combined": {
        "note": "classical curves of several bench runs on the same pictures, codec libraries and anchor "
                "(benchmarks/merge_bench.py); the tamc curve, anchor line and model of the --tamc run",
        "command": sys.argv, "tamc_from": base["_path"],
        "classical_from": [{"results": _load(f)["_path"], "command": _load(f)["provenance"].get("command"),
                            "created": _load(f).get("created")} for f in a.classical]}}
    written = write_all(results, a.out)
    for t in tasks:
        s = results["summary"][t]
        best = s.get("best_classical") or {}
        bd = s["bd_rate"]
        print(f"{t:9s} tamc iso {s['iso_rate'].get('tamc', {}).get('bpp')}  best classical {best}  "
              + "  ".join(f"{n} {bd[n]['loss']}" for n in bd if n.endswith("-best+filter") or n.endswith("-best")))
    print(f"wrote {written['json'][0]}")


if __name__ == "__main__":
    main()
