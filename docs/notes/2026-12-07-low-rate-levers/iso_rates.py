"""Iso rates of scene_curve.py files: the bpp at which each reaches 1.15 x each one's anchor loss
(linear in log rate between points, as the bench). Usage: python iso_rates.py A.json B.json ..."""
import sys, json, math
def iso(points, t, target):
    pts = sorted(points, key=lambda p: p["bpp"])
    if pts[0][t] <= target: return f"<={pts[0]['bpp']:.5f}"
    for a, b in zip(pts, pts[1:]):
        if b[t] <= target:
            f = (a[t] - target) / (a[t] - b[t])
            return f"{math.exp(math.log(a['bpp']) + f * (math.log(b['bpp']) - math.log(a['bpp']))):.5f}"
    return "n/r"
recs = [json.load(open(f)) for f in sys.argv[1:]]
for t in ["seg", "depth", "normal"]:
    for ref in recs:
        target = 1.15 * ref["anchor"][t]
        print(t, f"target {target:.4f} (1.15 x anchor of {ref['model']})", *(f"{r['model']}: {iso(r['points'], t, target)}" for r in recs))
