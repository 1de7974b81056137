"""Greedy rate-distortion optimised rounding of the scene layer (encoder side only): nonzero symbols move one
step toward zero where the decoders' outputs change by less than mu x the bits saved. Measured against ground truth.

Usage: python greedy_rounding.py MODEL N QUALITIES MUS (e.g. models/default 8 2,3 2e-5,6e-5); mu in loss / trivial per bit."""
import sys, json, time, numpy as np, torch
from tamc_codec.runtime.codec import load_model, task_prediction
from tamc_codec.runtime.layer_codec import LayerCodec
from tamc_codec.runtime.resample import downsample
from tamc_codec.bench.evaluate import open_images
from tamc_codec.tasks.losses import task_loss
model, N, qs, mus = sys.argv[1], int(sys.argv[2]), [int(v) for v in sys.argv[3].split(",")], [float(v) for v in sys.argv[4].split(",")]
rt = load_model(model); G = rt.serving["seg"]; tasks = ["seg", "depth", "normal"]; triv = rt.trivial_loss
gauss = rt.gaussian
imgs = open_images("data/val512", tasks, N)
def dec(lat):  # decoder outputs at the decoder's own grid
    return {t: rt.run(None, t, 2, y=lat)[0][0] for t in tasks}
def proxy(out, ref):
    d = 0.0
    for t in tasks:
        if t == "seg":
            lr = ref[t] - ref[t].max(0); pr = np.exp(lr); pr /= pr.sum(0)
            lo = out[t] - out[t].max(0); lo = lo - np.log(np.exp(lo).sum(0))
            d += float(-(pr * lo).sum(0).mean()) / triv[t]
        else:
            d += float(np.abs(out[t] - ref[t]).mean()) / triv[t]
    return d / 3
res = {}
t0 = time.time()
for i in range(imgs.count):
    img, tg = imgs.item(i); h, w = img.shape[:2]
    x = (img.astype(np.float32) / 255.0).transpose(2, 0, 1)[None]
    y = rt.run(G, "analysis", 2, image=downsample(x, rt.factor(G, h, w)))[0]
    ref = dec(y)
    for q in qs:
        c = LayerCodec(rt, G, q, y.shape[-2:]); A = c.anchor
        psi = c._psi(c._fixed_symbols()); ys = y * c.gain[None, :, None, None]
        m1, s1 = c._params("pass1", psi, None); i1 = gauss.indexes(s1[A])
        def state(sym1, sym2=None):
            yh = np.zeros(c.shape, np.float32); yh[A] = sym1 + m1[A]
            m2, s2 = c._params("pass2", psi, yh); i2 = gauss.indexes(s2[~A])
            if sym2 is None: sym2 = np.rint(ys[~A] - m2[~A]).astype(np.int32)
            yh[~A] = sym2 + m2[~A]
            bits = gauss.information_content(sym1, i1) + gauss.information_content(sym2, i2)
            return yh, sym2, bits
        sym1 = np.rint(ys[A] - m1[A]).astype(np.int32)
        yh, sym2, bits = state(sym1)
        base = (yh, bits)
        for mu in mus:
            s1c, s2c = sym1.copy(), sym2.copy()
            yh, _, bits = state(s1c, s2c); J = proxy(dec(yh * c.inv_gain[None, :, None, None]), ref) + mu * bits
            for sweep in range(2):
                cands = [(0, k) for k in np.flatnonzero(s1c)] + [(1, k) for k in np.flatnonzero(s2c)]
                changed = False
                for part, k in cands:
                    a, b = s1c.copy(), s2c.copy()
                    (a if part == 0 else b)[k] -= np.sign((a if part == 0 else b)[k])
                    yh2, _, bits2 = state(a, b)
                    J2 = proxy(dec(yh2 * c.inv_gain[None, :, None, None]), ref) + mu * bits2
                    if J2 < J:
                        s1c, s2c, J, bits, yh = a, b, J2, bits2, yh2; changed = True
                if not changed: break
            for key, (yy, bb) in (((q, 0.0), base), ((q, mu), (yh, bits))):
                d = res.setdefault(key, {"bits": 0.0, **{t: 0.0 for t in tasks}})
                if key[1] == 0.0 and mu != mus[0]: continue
                d["bits"] += bb
                lat = {G: yy * c.inv_gain[None, :, None, None]}
                for t in tasks:
                    p = task_prediction(rt, t, lat, h, w)
                    d[t] += float(task_loss(t, torch.from_numpy(p)[None], tg[t][None])) / triv[t]
    print(i, time.time() - t0, file=sys.stderr, flush=True)
for (q, mu), d in sorted(res.items()):
    print(q, mu, f"latent bpp {d['bits']/imgs.count/512**2:.5f}", *(f"{t} {d[t]/imgs.count:.4f}" for t in tasks), flush=True)
