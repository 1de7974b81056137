"""Re-check an exported model's DAG on its rate-trained latents (docs/DAG.md, "Re-checking a model").

The DAG is first chosen on stage-1 latents, before any rate training. This script takes what the
exported codec really quantises, y · gain[q] of every coded group at the codec's own scale (scene
groups at scene scale), on validation pictures at the test pictures' size, and asks `tamc dag`'s
coding estimator twice: with the file's total bits alone (Algorithm 1 with "only where it pays"),
and with the decode-set rule (an edge must also pay for the receivers of the child's tasks, who
decode the parent's whole chain). It then compares, in the estimator's bits per picture, the
model's own graph with no parents at all and with random graphs: the file's total and what each
task's receiver reads.

    python benchmarks/dag_recheck.py [--model models/default] [--data data/val512] [--quality 3]

Writes benchmarks/results/dag_recheck.json. Bits are the small coder's (docs/DAG.md, coding
estimator), not the codec's: they rank graphs; the codec's own layer bytes are printed beside them.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from tamc_codec.atomic import atomic_write_bytes
from tamc_codec.runtime import encode_image, load_model
from tamc_codec.runtime.resample import downsample
from tamc_codec.dag.dag import build_dag, topological_order
from tamc_codec.data.folder import open_data


def quantiser_latents(rt, folder, images: int, quality: int, groups: list[str]) -> dict[str, np.ndarray]:
    """{group: float32[N, C, h, w]}: y · gain[quality] as the codec quantises it, for the latent `groups`."""
    out: dict[str, list[np.ndarray]] = {g: [] for g in groups}
    for i in range(images):
        rgb = np.ascontiguousarray(folder.stored(i)["rgb"])
        h, w = rgb.shape[:2]
        x = (rgb.astype(np.float32) / 255.0).transpose(2, 0, 1)[None]
        for g in groups:
            gain, _ = rt.gains(g, quality)
            y = rt.run(g, "analysis", 0, image=downsample(x, rt.factor(g, h, w)))[0]
            out[g].append(y * gain[None, :, None, None])
    return {g: np.concatenate(v).astype(np.float32) for g, v in out.items()}


def mean_layer_bytes(rt, folder, images: int, quality: int) -> dict[str, float]:
    """{group: the codec's mean layer bytes} over the first `images` pictures at `quality`."""
    total: dict[str, float] = {}
    for i in range(images):
        enc = encode_image(np.ascontiguousarray(folder.stored(i)["rgb"]), "all", quality, rt)
        for layer in enc.layers:
            total[layer["group"]] = total.get(layer["group"], 0) + layer["bytes"] / images
    return total


def picture_parent_bound(layer_bytes: dict[int, dict[str, float]], pictures: list[str],
                         latent_groups: list[str]) -> dict:
    """Whether a picture layer could pay, under the decode-set rule, as a latent layer's parent, at
    any quality. Context can at most remove the child's whole layer, while every receiver of the
    child's tasks would then also read the parent's: the edge cannot pay where the parent's bytes
    are at least the child's, whatever the conditional entropy (so no estimator is needed)."""
    out = {}
    for p in pictures:
        for c in latent_groups:
            rows = {q: {"parent_bytes": round(b[p], 1), "child_bytes": round(b[c], 1),
                        "can_pay": bool(b[p] < b[c])} for q, b in layer_bytes.items()}
            out[f"{p} -> {c}"] = {"by_quality": rows, "can_pay_at_any_quality": any(r["can_pay"] for r in rows.values())}
    return out


def graph_bits(dag: dict, parents: dict[str, str | None], serving: dict[str, str]) -> dict:
    """Estimated bits per picture of every layer coded along `parents`, the file's total, and what
    each task's receiver reads (its group and the group's ancestors)."""
    elements = {g: int(np.prod(shape[1:])) for g, shape in dag["latents"].items()}
    layer = {g: elements[g] * (dag["conditional"][g][p] if p else dag["entropy"][g]) for g, p in parents.items()}

    def chain(g: str | None) -> float:
        total = 0.0
        while g is not None:
            total += layer[g]
            g = parents[g]
        return total

    return {"layers": layer, "total": sum(layer.values()), "per_task": {t: chain(g) for t, g in serving.items()}}


def random_graphs(groups: list[str], count: int, seed: int) -> list[dict[str, str | None]]:
    """Random DAGs over `groups`: a random order, each group a parent drawn from those before it or none."""
    rng = np.random.default_rng(seed)
    graphs = []
    for _ in range(count):
        order = [groups[i] for i in rng.permutation(len(groups))]
        graphs.append({g: (order[rng.integers(0, k)] if k and rng.random() < 0.75 else None)
                       for k, g in enumerate(order)})
    return graphs


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="models/default")
    p.add_argument("--data", default="data/val512")
    p.add_argument("--images", type=int, default=50)
    p.add_argument("--quality", type=int, default=3)
    p.add_argument("--random", type=int, default=20, help="random graphs to compare")
    p.add_argument("--out", default=str(Path(__file__).parent / "results" / "dag_recheck.json"))
    a = p.parse_args()
    t0 = time.perf_counter()
    rt = load_model(a.model)
    folder = open_data(a.data, ["rgb"])
    n = min(a.images, len(folder))
    # A picture layer (a standard codec's bitstream) takes no context and gives none: it is a root by
    # construction, and the graph to re-check is the one over the latent layers and their tasks.
    pictures = [g for g in rt.order if rt.is_picture(g)]
    latent_groups = [g for g in rt.order if g not in pictures]
    latents = quantiser_latents(rt, folder, n, a.quality, latent_groups)
    serving = {t: g for t, g in rt.serving.items() if g in latent_groups}
    by_total = build_dag(latents)
    by_receivers = build_dag(latents, serving=serving)
    groups = list(latents)
    model_graph = {g: p for g, p in rt.parents.items() if g in latent_groups}
    candidates = {"model": model_graph, "chosen (decode sets)": by_receivers["parents"],
                  "chosen (file total)": by_total["parents"], "no parents": {g: None for g in groups}}
    # with one latent layer every graph is "no parents": nothing random to draw
    for k, graph in enumerate(random_graphs(groups, a.random if len(groups) > 1 else 0, seed=0)):
        topological_order(groups, graph)  # a drawn graph is acyclic by construction; checked anyway
        candidates[f"random {k}"] = graph
    bits = {name: graph_bits(by_receivers, graph, serving) for name, graph in candidates.items()}
    randoms = [v for k, v in bits.items() if k.startswith("random")]
    layer_bytes = {q: mean_layer_bytes(rt, folder, min(n, 8), q) for q in range(1, rt.qualities + 1)}
    codec_bytes = layer_bytes[a.quality]
    result = {
        "model": rt.id, "data": a.data, "images": n, "quality": a.quality, "command": sys.argv,
        "dag_file_total": {k: by_total[k] for k in ("entropy", "conditional", "parents", "order", "decisions")},
        "dag_decode_sets": {k: by_receivers[k] for k in ("parents", "order", "decisions")},
        "latents": by_receivers["latents"],
        "model_parents": dict(rt.parents),
        "picture_layers": pictures,
        "model_graph_agrees_with_decode_sets": model_graph == by_receivers["parents"],
        "estimated_bits_per_picture": bits,
        "random_mean": {"total": float(np.mean([r["total"] for r in randoms])),
                        "per_task": {t: float(np.mean([r["per_task"][t] for r in randoms])) for t in serving}}
        if randoms else None,
        "codec_layer_bytes_mean": codec_bytes,
        "codec_layer_bytes_mean_by_quality": layer_bytes,
        "picture_parent_bound": picture_parent_bound(layer_bytes, pictures, latent_groups),
        "seconds": round(time.perf_counter() - t0, 1),
    }
    atomic_write_bytes(Path(a.out), (json.dumps(result, indent=2) + "\n").encode())
    print(f"model {rt.id[:8]}, {n} pictures of {a.data}, quality {a.quality}")
    print(f"model graph:          {model_graph}")
    if pictures:
        print(f"picture layers (roots by construction, not re-checked): {', '.join(pictures)}")
    print(f"chosen (file total):  {by_total['parents']}")
    print(f"chosen (decode sets): {by_receivers['parents']}")
    head = "  ".join(f"{t:>9s}" for t in serving)
    print(f"{'estimated kbit / picture':28s} {'file':>9s}  {head}")
    rows = {k: v for k, v in bits.items() if not k.startswith("random")}
    if randoms:
        rows["random (mean)"] = {"total": result["random_mean"]["total"], "per_task": result["random_mean"]["per_task"]}
    for name, r in rows.items():
        print(f"{name:28s} {r['total'] / 1e3:9.2f}  " + "  ".join(f"{r['per_task'][t] / 1e3:9.2f}" for t in serving))
    print("codec layer bytes (mean of 8): " + ", ".join(f"{g} {b:.0f}" for g, b in codec_bytes.items()))
    for edge, r in result["picture_parent_bound"].items():
        worst = min(r["by_quality"].values(), key=lambda v: v["parent_bytes"] / max(v["child_bytes"], 1e-9))
        print(f"{edge}: {'could pay' if r['can_pay_at_any_quality'] else 'cannot pay'} under the decode-set rule "
              f"(closest: parent {worst['parent_bytes']:.0f} B against the child's {worst['child_bytes']:.0f} B)")
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
