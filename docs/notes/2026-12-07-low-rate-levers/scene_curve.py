"""Rate and loss / trivial of a model's scene tasks at every quality, and of its anchor (the unquantised latent),
on the first N pictures of a data folder; what `tamc bench --codecs tamc --anchor model` measures, in one JSON.

Usage: python scene_curve.py MODEL N DATA OUT.json [EFFORT [QUALITIES]]  (EFFORT: encode_image's, default 0)"""
import sys, json, time, numpy as np, torch
from tamc_codec.runtime.codec import load_model, encode_image, task_prediction
from tamc_codec.runtime.resample import downsample
from tamc_codec.bench.evaluate import open_images
from tamc_codec.tasks.losses import task_loss
model, N, data, out = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
effort = int(sys.argv[5]) if len(sys.argv) > 5 else 0
rt = load_model(model)
tasks = ["seg", "depth", "normal"]
imgs = open_images(data, tasks, N)
triv = rt.trivial_loss
Q = len(rt.manifest["qualities"])
qs = [int(v) for v in sys.argv[6].split(",")] if len(sys.argv) > 6 else list(range(1, Q + 1))
res = {q: {"bytes": 0, "seconds": 0.0, **{t: 0.0 for t in tasks}} for q in qs}
anchor = {t: 0.0 for t in tasks}
for i in range(imgs.count):
    img, tg = imgs.item(i)
    h, w = img.shape[:2]
    x = (img.astype(np.float32) / 255.0).transpose(2, 0, 1)[None]
    g = rt.serving["seg"]
    y = rt.run(g, "analysis", 2, image=downsample(x, rt.factor(g, h, w)))[0]
    for t in tasks:
        p = task_prediction(rt, t, {g: y}, h, w)
        anchor[t] += float(task_loss(t, torch.from_numpy(p)[None], tg[t][None])) / triv[t]
    for q in qs:
        t0 = time.time()
        r = encode_image(img, tasks, q, rt, effort=effort)
        res[q]["seconds"] += time.time() - t0
        d = res[q]
        d["bytes"] += len(r.data)
        for t in tasks:
            p = task_prediction(rt, t, r.latents, h, w)
            d[t] += float(task_loss(t, torch.from_numpy(p)[None], tg[t][None])) / triv[t]
n = imgs.count
rec = {"model": model, "effort": effort, "id": rt.id, "data": data, "n": n, "anchor": {t: anchor[t] / n for t in tasks},
       "points": [{"q": q, "bpp": d["bytes"] * 8 / n / (512 * 512), "encode_s": d["seconds"] / n, **{t: d[t] / n for t in tasks}} for q, d in res.items()]}
json.dump(rec, open(out, "w"), indent=1)
print("anchor", *(f"{t} {rec['anchor'][t]:.4f}" for t in tasks))
for p in rec["points"]:
    print(p["q"], f"bpp {p['bpp']:.5f}", f"encode {p['encode_s']:.1f} s", *(f"{t} {p[t]:.4f}" for t in tasks))
