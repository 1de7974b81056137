"""Dead-zone rounding of the scene layer at encode time (notes 2026-12-07-low-rate-levers.md).

Usage: python deadzone.py N DATA THETAS OUT.json  (e.g. 24 data/val512 0.5,0.45,0.4,0.35,0.3 deadzone_val512.json).
A symbol is sign(r) * floor(|r| + theta) instead of round(r); theta 0.5 is the codec's rounding. Prints and
writes the mean file bpp and loss / trivial of seg, depth and normal per quality and theta, and the anchor."""
import sys, json, time, numpy as np, torch
from tamc_codec.runtime.codec import load_model, encode_image, task_prediction, pad_picture
from tamc_codec.runtime import layer_codec as lc
from tamc_codec.bench.evaluate import open_images
from tamc_codec.tasks.losses import task_loss

THETA = {"v": 0.5}
orig_rint = np.rint
def dz(x):
    t = THETA["v"]
    if t == 0.5: return orig_rint(x)
    return np.sign(x) * np.floor(np.abs(x) + t)
class NP:  # np proxy used inside layer_codec
    def __getattr__(self, k): return dz if k == "rint" else getattr(np, k)
lc.np = NP()

rt = load_model("models/default")
tasks = ["seg", "depth", "normal"]
N = int(sys.argv[1]) if len(sys.argv) > 1 else 16
data = sys.argv[2] if len(sys.argv) > 2 else "data/val512"
thetas = [float(t) for t in (sys.argv[3] if len(sys.argv) > 3 else "0.5,0.4,0.3").split(",")]
imgs = open_images(data, tasks, N)
triv = rt.trivial_loss
res = {}
anchor = {t: 0.0 for t in tasks}
t0 = time.time()
for i in range(imgs.count):
    img, tg = imgs.item(i)
    h, w = img.shape[:2]
    x = (img.astype(np.float32) / 255.0).transpose(2, 0, 1)[None]
    from tamc_codec.runtime.resample import downsample
    g = rt.serving["seg"]
    y = rt.run(g, "analysis", 2, image=downsample(x, rt.factor(g, h, w)))[0]
    for t in tasks:
        p = task_prediction(rt, t, {g: y}, h, w)
        anchor[t] += float(task_loss(t, torch.from_numpy(p)[None], tg[t][None])) / triv[t]
    for q in range(1, 6):
        for th in thetas:
            THETA["v"] = th
            r = encode_image(img, tasks, q, rt)
            d = res.setdefault(f"{q}/{th}", {"bytes": 0, **{t: 0.0 for t in tasks}})
            d["bytes"] += len(r.data)
            for t in tasks:
                p = task_prediction(rt, t, r.latents, h, w)
                d[t] += float(task_loss(t, torch.from_numpy(p)[None], tg[t][None])) / triv[t]
print("s", time.time() - t0, file=sys.stderr)
print("anchor", *(f"{t} {anchor[t]/imgs.count:.4f}" for t in tasks))
json.dump({"anchor": {t: anchor[t]/imgs.count for t in tasks}, "n": imgs.count, "points": {k: {"bpp": d["bytes"]*8/imgs.count/(512*512), **{t: d[t]/imgs.count for t in tasks}} for k, d in res.items()}}, open(sys.argv[4], "w"), indent=1)
for k, d in res.items():
    print(k, f"bpp {d['bytes']*8/imgs.count/(512*512):.5f}", *(f"{t} {d[t]/imgs.count:.4f}" for t in tasks))
