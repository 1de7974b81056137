"""tamc bench: curve arithmetic with known answers, real byte counts, the quick run's schema."""
from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path

import numpy as np
import pytest

from tamc_codec.bench import curves

RATES = [0.1, 0.2, 0.4, 0.8, 1.6]


# --------------------------------------------------------------------------- iso-quality rate


def test_iso_rate_interpolates_in_log_rate():
    # loss falls by 1 per doubling of rate: 2.5 lies halfway between 0.2 and 0.4 in log rate
    r = curves.iso_rate(RATES, [5, 4, 3, 2, 1], target=3.5)
    assert r["status"] == "reached"
    assert r["bpp"] == pytest.approx(math.sqrt(0.2 * 0.4))
    exact = curves.iso_rate(RATES, [5, 4, 3, 2, 1], target=2.0)
    assert exact["bpp"] == pytest.approx(0.8)


def test_iso_rate_higher_is_better():
    r = curves.iso_rate(RATES, [20, 25, 30, 35, 40], target=32.5, higher_is_better=True)
    assert r["bpp"] == pytest.approx(math.sqrt(0.4 * 0.8))


def test_iso_rate_not_reached_and_lowest_rate():
    assert curves.iso_rate(RATES, [5, 4, 3, 2, 1], target=0.5) == {"bpp": None, "status": "not_reached"}
    low = curves.iso_rate(RATES, [5, 4, 3, 2, 1], target=6.0)
    assert low == {"bpp": 0.1, "status": "at_lowest_rate"}


def test_iso_rate_ignores_non_monotone_points():
    # the 0.4 bpp point does worse than the 0.2 one: no user picks it, and it must not
    # create an early crossing
    wandering = curves.iso_rate(RATES, [5, 3, 3.6, 2, 1], target=2.5)
    clean = curves.iso_rate([0.1, 0.2, 0.8, 1.6], [5, 3, 2, 1], target=2.5)
    assert wandering == clean
    r, v = curves.pareto_front(RATES, [5, 3, 3.6, 2, 1], higher_is_better=False)
    assert r.tolist() == [0.1, 0.2, 0.8, 1.6] and v.tolist() == [5, 3, 2, 1]


def test_pareto_front_drops_non_finite_and_equal_rates():
    r, v = curves.pareto_front([0.1, 0.1, 0.2, 0.3], [20.0, 22.0, float("inf"), 25.0], higher_is_better=True)
    assert r.tolist() == [0.1, 0.3] and v.tolist() == [22.0, 25.0]


def test_envelope_keeps_the_best_point_of_any_curve_at_each_rate():
    # two curves that cross: b is better at low rates, a at high ones; a's 0.1 and 0.2 bpp points
    # are beaten by cheaper points of b, and equal rates and a NaN loss never make the front
    a = ([0.1, 0.2, 0.4, 0.8, 0.8], [5.0, 4.0, 3.0, 2.0, 2.5])
    b = ([0.05, 0.15, 0.3, 0.6, 0.7], [4.5, 3.5, 3.2, 2.5, float("nan")])
    front = curves.envelope({"a": a, "b": b}, higher_is_better=False)
    assert front == [("b", 0), ("b", 1), ("b", 2), ("a", 2), ("b", 3), ("a", 3)]
    rates = [{"a": a, "b": b}[n][0][i] for n, i in front]
    losses = [{"a": a, "b": b}[n][1][i] for n, i in front]
    assert all(x < y for x, y in zip(rates, rates[1:])) and all(x > y for x, y in zip(losses, losses[1:]))
    # the envelope is the Pareto front of the union, so iso rates read off either agree
    r, v = curves.pareto_front(a[0] + b[0], a[1] + b[1], higher_is_better=False)
    assert r.tolist() == rates and v.tolist() == losses
    assert curves.envelope({"a": ([0.2, 0.1], [30.0, 20.0])}, higher_is_better=True) == [("a", 1), ("a", 0)]


def test_best_rate_picks_the_lowest_and_flags_censoring():
    rates = {"jpeg": {"bpp": 0.09, "status": "reached"}, "avif": {"bpp": 0.06, "status": "at_lowest_rate"},
             "avif@1/2": {"bpp": 0.04, "status": "reached"}, "webp": {"bpp": None, "status": "not_reached"}}
    assert curves.best_rate(rates) == {"name": "avif@1/2", "bpp": 0.04, "status": "reached", "censored": False}
    rates["avif@1/4"] = {"bpp": 0.02, "status": "at_lowest_rate"}
    assert curves.best_rate(rates) == {"name": "avif@1/4", "bpp": 0.02, "status": "at_lowest_rate", "censored": True}
    # at an equal rate, the measured one is named
    rates["avif-best"] = {"bpp": 0.02, "status": "reached"}
    assert curves.best_rate(rates)["name"] == "avif-best"
    assert curves.best_rate({"webp": {"bpp": None, "status": "not_reached"}}) is None


def _synthetic_curve(rates, losses, task="seg"):
    return [{"setting": q, "bpp": r, "images": 1, "tasks": {task: {"bpp": r, "loss": v, "normalised_loss": None,
                                                                   "miou": 1 - v}}}
            for q, (r, v) in enumerate(zip(rates, losses))]


def test_summary_reports_families_and_the_best_classical_rate():
    from tamc_codec.bench.run import summarise

    # anchor loss 1.0: target 1.15. Full-size JPEG meets it at its lowest rate (censored at 0.1);
    # at half size it crosses it at 0.05 bpp (measured), and the envelope of both is measured too
    curves_out = {"jpeg": _synthetic_curve([0.1, 0.2, 0.4], [1.1, 1.03, 1.01]),
                  "jpeg@1/2": _synthetic_curve([0.025, 0.1, 0.2], [1.25, 1.05, 1.06]),
                  "tamc": _synthetic_curve([0.02, 0.05, 0.1], [1.3, 1.15, 1.02])}
    anchor = {"tasks": {"seg": {"loss": 1.0, "miou": 0.0}}}
    s = summarise(["seg"], curves_out, anchor)["seg"]
    assert s["iso_rate"]["jpeg"] == {"bpp": 0.1, "status": "at_lowest_rate"}
    half = s["iso_rate"]["jpeg@1/2"]
    assert half["status"] == "reached" and half["bpp"] == pytest.approx(0.05)  # halfway in log rate
    assert s["iso_rate"]["jpeg-best"] == pytest.approx(half)
    assert s["best_classical"]["name"] in ("jpeg@1/2", "jpeg-best") and not s["best_classical"]["censored"]
    assert s["best_classical"]["bpp"] == pytest.approx(0.05)
    # iso_ratio compares with the codecs at full size, as before the variants; iso_ratio_best with all
    assert s["iso_ratio"]["best_baseline"] == "jpeg" and s["iso_ratio"]["bound"] == "lower"
    assert s["iso_ratio_best"]["ratio"] == pytest.approx(1.0) and s["iso_ratio_best"]["bound"] == "exact"
    # the envelope: half size up to 0.1 bpp (where it beats the full size's cheapest point), then full size
    assert [(p["variant"], p["setting"]) for p in s["envelope"]["jpeg-best"]] == [
        ("jpeg@1/2", 0), ("jpeg@1/2", 1), ("jpeg", 1), ("jpeg", 2)]
    assert set(s["bd_rate"]) == {"jpeg", "jpeg@1/2", "jpeg-best"}
    assert s["bd_rate"]["jpeg-best"]["loss"]["points_base"] == 4


def test_iso_ratio_bounds():
    exact = curves.iso_ratio({"bpp": 0.1, "status": "reached"},
                             {"jpeg": {"bpp": 0.4, "status": "reached"}, "webp": {"bpp": 0.2, "status": "reached"}})
    assert exact["best_baseline"] == "webp" and exact["ratio"] == pytest.approx(0.5) and exact["bound"] == "exact"
    upper = curves.iso_ratio({"bpp": 0.1, "status": "at_lowest_rate"}, {"jpeg": {"bpp": 0.4, "status": "reached"}})
    assert upper["bound"] == "upper"
    none = curves.iso_ratio({"bpp": 0.1, "status": "reached"}, {"jpeg": {"bpp": None, "status": "not_reached"}})
    assert none["ratio"] is None and none["bound"] == "none"


# --------------------------------------------------------------------------- BD-rate


def _psnr_like(rates):
    return [30 + 6 * math.log2(r / 0.1) for r in rates]


@pytest.mark.parametrize("factor", [0.8, 1.25])
def test_bd_rate_of_a_rate_scaled_copy(factor):
    q = _psnr_like(RATES)
    res = curves.bd_rate(RATES, q, [r * factor for r in RATES], q, higher_is_better=True)
    assert res["status"] == "ok" and res["overlap"] == pytest.approx(1.0)
    assert res["value"] == pytest.approx((factor - 1) * 100, abs=1e-6)


def test_bd_rate_on_losses_negates_them():
    loss = [1.0 / (1 + r) for r in RATES]
    res = curves.bd_rate(RATES, loss, [r * 0.5 for r in RATES], loss, higher_is_better=False)
    assert res["value"] == pytest.approx(-50.0, abs=1e-6)


def test_bd_rate_drops_non_monotone_points():
    q = _psnr_like(RATES)
    test_r = [r * 0.8 for r in RATES] + [0.9]
    test_q = q + [q[1]]  # far more bits for a quality already reached: off the front
    res = curves.bd_rate(RATES, q, test_r, test_q, higher_is_better=True)
    assert res["dropped"] == 1 and res["points_test"] == 5
    assert res["value"] == pytest.approx(-20.0, abs=1e-6)


def test_bd_rate_stays_sane_where_a_curve_is_nearly_flat():
    # the recorded seg curves of the shipped model's bench: WebP's top two settings differ by 0.5 bpp and
    # 5e-6 in loss; tamc needs fewer bits than WebP at every shared loss, so the BD-rate must be negative
    webp_r = [0.0732, 0.1362, 0.3007, 0.4947, 0.8080, 1.5205, 2.0696]
    webp_l = [0.60280, 0.53309, 0.53253, 0.53077, 0.52886, 0.524677, 0.524672]
    tamc_r = [0.0479, 0.1134, 0.4814, 1.0666]
    tamc_l = [0.66539, 0.53946, 0.52492, 0.52151]
    res = curves.bd_rate(webp_r, webp_l, tamc_r, tamc_l, higher_is_better=False)
    assert res["status"] == "ok" and -60 < res["value"] < 0


def test_bd_rate_no_overlap():
    q = _psnr_like(RATES)
    res = curves.bd_rate(RATES, q, RATES, [v + 100 for v in q], higher_is_better=True)
    assert res == {**res, "value": None, "status": "no_overlap", "overlap": 0.0}


def test_bd_rate_overlap_threshold():
    q = np.array(_psnr_like(RATES))  # 30 .. 54 dB
    span = q[-1] - q[0]
    # shift the test curve up so that the shared range is 10% / 40% of the union
    for shared, status in ((0.10, "no_overlap"), (0.40, "ok")):
        shift = span * (1 - shared) / (1 + shared)
        res = curves.bd_rate(RATES, q, RATES, q + shift, higher_is_better=True)
        assert res["overlap"] == pytest.approx(shared)
        assert res["status"] == status


def test_bd_rate_too_few_points():
    res = curves.bd_rate([0.1], [30.0], RATES, _psnr_like(RATES), higher_is_better=True)
    assert res["status"] == "too_few_points" and res["value"] is None


# --------------------------------------------------------------------------- intervals of a test mean


def test_bootstrap_interval_covers_the_mean_and_narrows_with_more_pictures():
    from tamc_codec.bench.intervals import bootstrap_interval

    rng = np.random.default_rng(3)
    few, many = rng.normal(0.5, 0.1, 50), rng.normal(0.5, 0.1, 800)
    lo, hi = bootstrap_interval(few)
    assert lo < few.mean() < hi
    # a normal mean's 95 % interval is about ±1.96 standard errors wide
    assert hi - lo == pytest.approx(2 * 1.96 * few.std() / math.sqrt(few.size), rel=0.15)
    lo_m, hi_m = bootstrap_interval(many)
    assert hi_m - lo_m < (hi - lo) / 3
    assert bootstrap_interval(few) == (lo, hi)  # seeded: a recorded interval is reproduced
    assert bootstrap_interval([0.4]) == (0.4, 0.4)


def test_bootstrap_interval_refuses_nothing():
    from tamc_codec.bench.intervals import bootstrap_interval

    with pytest.raises(ValueError):
        bootstrap_interval([])
    with pytest.raises(ValueError):
        bootstrap_interval([0.1, 0.2], level=1.0)


# --------------------------------------------------------------------------- baselines


@pytest.mark.parametrize("codec", ["jpeg", "webp", "avif"])
def test_baseline_bytes_are_real(codec):
    from PIL import Image

    from tamc_codec.bench import baselines

    if not baselines.available(codec):
        pytest.skip(f"Pillow without {codec}")
    rng = np.random.default_rng(0)
    img = np.clip(rng.normal(128, 40, (48, 64, 3)).cumsum(axis=1) / 8 % 256, 0, 255).astype(np.uint8)
    coded = baselines.code(img, codec, 50)
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format=baselines.PILLOW_FORMAT[codec], quality=50, **baselines.OPTIONS[codec])
    assert coded.nbytes == len(buf.getvalue())
    assert coded.bpp == pytest.approx(8 * coded.nbytes / (48 * 64))
    assert coded.decoded.shape == img.shape and coded.decoded.dtype == np.uint8
    sweep = baselines.SWEEPS[codec]
    assert len(sweep) >= 8
    low, high = baselines.code(img, codec, sweep[0]), baselines.code(img, codec, sweep[-1])
    assert low.nbytes < high.nbytes


def _textured(h: int, w: int) -> np.ndarray:
    """Smooth waves with a little noise: detail a codec must pay for, which survives down-scaling."""
    y, x = np.mgrid[:h, :w].astype(float)
    waves = [np.sin(x / (7 + 3 * c) + c) * np.cos(y / (9 - 2 * c)) for c in range(3)]
    noise = np.random.default_rng(0).normal(0, 6, (h, w, 3))
    return np.clip(128 + 90 * np.stack(waves, axis=-1) + noise, 0, 255).astype(np.uint8)


@pytest.mark.parametrize("codec", ["jpeg", "webp", "avif"])
def test_downscaled_variant_is_full_size_and_cheaper(codec):
    from tamc_codec.bench import baselines

    if not baselines.available(codec):
        pytest.skip(f"Pillow without {codec}")
    img = _textured(96, 128)
    full = baselines.code(img, codec, 50)
    nbytes = [full.nbytes]
    for scale in (2, 4):
        small = baselines.code(img, codec, 50, scale)
        assert small.decoded.shape == img.shape and small.decoded.dtype == np.uint8 and small.scale == scale
        # the rate is the small picture's bytes over the original picture's pixels
        assert small.bpp == pytest.approx(8 * small.nbytes / (96 * 128))
        nbytes.append(small.nbytes)
        # brought back to full size, it is the picture, blurred: far closer to it than to its mean
        err = np.abs(small.decoded.astype(float) - img).mean()
        assert err < 0.5 * np.abs(img.astype(float) - img.mean()).mean()
    assert nbytes[0] > nbytes[1] > nbytes[2]


@pytest.mark.parametrize("codec", ["jpeg", "webp", "avif"])
def test_eighth_variant_codes_an_eighth_and_returns_full_size(codec):
    """1/8: the picture coded is the box-downsampled one, ceil(side / 8) a side (sides that are not a
    multiple of 8 edge-padded, as at 1/2 and 1/4), and what comes back is the full picture's size,
    its rate over the full picture's pixels."""
    from PIL import Image

    from tamc_codec.bench import baselines
    from tamc_codec.runtime.picture import avif_threads

    if not baselines.available(codec):
        pytest.skip(f"Pillow without {codec}")
    assert 8 in baselines.SCALES and baselines.parse_scale("1/8") == baselines.parse_scale("0.125") == 8
    h, w = 203, 261  # neither a multiple of 8
    y, x = np.mgrid[:h, :w].astype(float)
    waves = [np.sin(x / (25 + 7 * c) + c) * np.cos(y / (31 - 5 * c)) for c in range(3)]  # detail 1/8 keeps
    img = np.clip(128 + 90 * np.stack(waves, axis=-1) + np.random.default_rng(0).normal(0, 4, (h, w, 3)),
                  0, 255).astype(np.uint8)
    low = baselines.SCALED_SWEEPS[8][codec][-1]
    coded = baselines.code(img, codec, low, 8)
    small = baselines.downscale(img, 8)
    assert small.shape == (26, 33, 3)
    buf = io.BytesIO()
    Image.fromarray(small).save(buf, format=baselines.PILLOW_FORMAT[codec], **baselines.encoder_args(codec, low),
                                **({"max_threads": avif_threads()} if codec == "avif" else {}))
    assert coded.nbytes == len(buf.getvalue())  # the bytes of the 1/8 picture, nothing else
    with Image.open(io.BytesIO(buf.getvalue())) as im:
        assert im.size == (33, 26)
    assert coded.scale == 8 and coded.decoded.shape == img.shape and coded.decoded.dtype == np.uint8
    assert coded.bpp == pytest.approx(8 * coded.nbytes / (h * w))
    assert np.abs(coded.decoded.astype(float) - img).mean() < 0.5 * np.abs(img.astype(float) - img.mean()).mean()
    assert coded.nbytes < baselines.code(img, codec, low, 4).nbytes
    # low-rate settings only, each a setting the codec has (AVIF's below its floor included)
    for c, values in baselines.SCALED_SWEEPS[8].items():
        assert values == sorted(values) and len(values) <= 5
        assert values[0] == baselines.SWEEPS[c][0] and values[-1] < baselines.SCALED_SWEEPS[4][c][-1]


@pytest.mark.parametrize("scale", [2, 4, 8])
def test_downscaling_handles_odd_sides(scale):
    from tamc_codec.bench import baselines

    h, w = 37, 53
    ramp = np.broadcast_to(np.arange(w, dtype=np.uint8)[None, :, None] * 4, (h, w, 3)).copy()
    small = baselines.downscale(ramp, scale)
    assert small.shape == (-(-h // scale), -(-w // scale), 3)
    # each small pixel is the mean of its block; the last, partial column's block is edge-padded
    assert small[0, 0, 0] == pytest.approx(ramp[0, :scale, 0].mean(), abs=0.5)
    assert small[0, -1, 0] == pytest.approx(np.r_[ramp[0, (w // scale) * scale:, 0],
                                                   [ramp[0, -1, 0]] * (-w % scale)].mean(), abs=0.5)
    back = baselines.upscale(small, scale, h, w)
    assert back.shape == (h, w, 3)
    # a ramp comes back in place (no shift of half a block): the error is the box blur's, small
    assert np.abs(back.astype(float) - ramp)[:, scale:-scale].mean() < 2.0
    coded = baselines.code(ramp, "jpeg", 95, scale)
    assert coded.decoded.shape == (h, w, 3) and coded.bpp == pytest.approx(8 * coded.nbytes / (h * w))


def test_below_the_lowest_quality():
    from tamc_codec.bench import baselines

    if not baselines.available("avif"):
        pytest.skip("Pillow without avif")
    img = _textured(96, 128)
    floor = baselines.code(img, "avif", 0).nbytes
    assert all(baselines.code(img, "avif", q).nbytes < floor for q in baselines.BELOW_FLOOR["avif"])
    assert baselines.SWEEPS["avif"][0] == min(baselines.BELOW_FLOOR["avif"])
    with pytest.raises(ValueError, match="no setting -1"):
        baselines.code(img, "jpeg", -1)  # Pillow would take it for its default quality


def test_variant_names_and_settings():
    from tamc_codec.bench import baselines

    assert baselines.variant_name("avif", 2, filtered=True) == "avif@1/2+filter"
    assert baselines.parse_variant("avif@1/4+filter") == ("avif", 4, True)
    assert baselines.parse_variant("webp@1/8") == ("webp", 8, False) and baselines.variant_name("jpeg", 8) == "jpeg@1/8"
    assert baselines.parse_variant("avif-best") is None and baselines.parse_variant("jpeg@1/3") is None
    assert baselines.families(["tamc", "jpeg", "jpeg+filter", "jpeg@1/2", "jpeg@1/2+filter", "webp"]) == {
        "jpeg-best": ["jpeg", "jpeg@1/2"], "jpeg-best+filter": ["jpeg+filter", "jpeg@1/2+filter"]}
    st = baselines.settings(["avif"], quick=False, scales=[1, 4])
    assert list(st) == ["avif", "avif@1/4"]
    assert st["avif"]["scale"] == 1.0 and "resample" not in st["avif"] and "-2" in st["avif"]["below_floor"]
    assert st["avif@1/4"]["scale"] == 0.25 and st["avif@1/4"]["values"] == baselines.SCALED_SWEEPS[4]["avif"]
    assert "lanczos" in st["avif@1/4"]["resample"]["up"]
    eighth = baselines.settings(["avif"], quick=False, scales=[8])["avif@1/8"]
    assert eighth["scale"] == 0.125 and eighth["scale_label"] == "1/8" and "-2" in eighth["below_floor"]


def test_scales_option_parses_and_refuses_bad_values(capsys):
    from tamc_codec.cli import main
    from tamc_codec.cli.bench_cmd import _scales
    from tamc_codec.errors import TamcInputError

    assert _scales("1,1/2,1/4") == [1, 2, 4]
    assert _scales("1,1/2,1/4,1/8,1/16") == [1, 2, 4, 8, 16]
    assert _scales(" 0.5 , 1,1/2") == [1, 2]
    assert _scales("0.125,1/8") == [8]
    for bad in ("1/3", "2", "0", "half", ",", "1/0", "1/32"):
        with pytest.raises(TamcInputError, match="--scales"):
            _scales(bad)
    with pytest.raises(SystemExit) as exc:
        main(["bench", "--scales", "1,1/3", "--no-progress"])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and err.count("\n") == 1
    assert "unknown scale '1/3' in --scales; choose from 1, 1/2, 1/4, 1/8, 1/16" in err
    from tamc_codec.bench.run import BenchConfig

    assert BenchConfig(out="x").scales == [1, 2, 4, 8, 16]  # the default: every scale


# --------------------------------------------------------------------------- the quick run


def test_bench_quick_writes_valid_results(tiny_model, tmp_path):
    from tamc_codec.bench.report import RESULTS_SCHEMA, schema_errors, table
    from tamc_codec.cli import main

    root = tiny_model.parent
    out = tmp_path / "bench"
    main(["bench", "--quick", "--model", str(tiny_model), "--anchor", str(root / "s1" / "anchor.pt"),
          "--data", str(root / "val"), "--out", str(out), "--no-progress", "--threads", "1"])
    results = json.loads((out / "results.json").read_text())
    assert schema_errors(results) == []
    jsonschema = pytest.importorskip("jsonschema")
    jsonschema.validate(results, RESULTS_SCHEMA)
    assert results["tasks"] == ["seg", "depth", "normal", "edge", "keypoint", "rgb"]
    assert set(results["codecs"]) >= {"tamc", "jpeg", "webp", "avif", "jpeg+filter", "jpeg@1/2", "avif@1/4+filter"}
    assert results["families"]["avif-best"] == ["avif", "avif@1/2", "avif@1/4", "avif@1/8", "avif@1/16"]
    assert results["provenance"]["codec_settings"]["webp@1/2"]["scale"] == 0.5
    assert results["provenance"]["codec_settings"]["jpeg@1/8"]["scale_label"] == "1/8"
    inputs = results["provenance"]["classical_inputs"]
    assert inputs["data"]["images"] == results["provenance"]["data"]["images_used"] == 2 and set(inputs["data"]["sha256"]) == set(results["tasks"])
    assert inputs["anchor"]["kind"] == "stage1" and set(inputs["anchor"]["tasks"]) == set(results["tasks"])
    assert results["provenance"]["reused"] is None
    for name in ("jpeg@1/2", "avif@1/4", "webp@1/8"):
        full = {p["setting"]: p["bpp"] for p in results["curves"][name.split("@")[0]]}
        assert all(p["bpp"] < full[p["setting"]] for p in results["curves"][name] if p["setting"] in full)
    assert results["provenance"]["model"]["id"]
    check = results["provenance"]["tamc_decode_check"]
    assert check["checked"] > 0 and check["matched"] == check["checked"]
    for p in results["curves"]["tamc"]:
        # a task never costs more than the whole file, and at least the header
        assert all(0 < r["bpp"] <= p["bpp"] + 1e-9 for r in p["tasks"].values())
    for t, s in results["summary"].items():
        assert s["iso_target_loss"] == pytest.approx(1.15 * s["anchor_loss"])
        assert "avif-best" in s["iso_rate"] and "avif-best" in s["bd_rate"]
        best = s["best_classical"]
        if best is not None:
            assert best["bpp"] == min(r["bpp"] for n, r in s["iso_rate"].items() if n != "tamc" and r["bpp"])
    with open(out / "curves.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert {r["codec"] for r in rows} >= {"anchor", "tamc", "jpeg", "avif+filter"}
    assert {r["scale"] for r in rows if r["codec"] == "jpeg@1/4+filter"} == {"1/4"}
    printed = table(results)
    assert "avif-best+filter" in printed and "tamc / best classical" in printed and "best classical:" in printed
    assert (out / "overview.png").stat().st_size > 0
    assert all((out / f"curve_{t}.png").exists() for t in results["tasks"])


# --------------------------------------------------------------------------- --reuse


def _bench(tiny_model, out, *extra) -> dict:
    """A small quick bench on the tiny model's two validation scenes, against its stage-1 anchor."""
    from tamc_codec.cli import main

    root = tiny_model.parent
    main(["bench", "--quick", "--model", str(tiny_model), "--anchor", str(root / "s1" / "anchor.pt"),
          "--data", str(root / "val"), "--codecs", "tamc,jpeg,avif", "--tasks", "seg,depth,edge",
          "--out", str(out), "--no-progress", "--threads", "1", *extra])
    return json.loads((out / "results.json").read_text())


def _untimed(curves: dict) -> dict:
    return {n: [{k: v for k, v in p.items() if not k.endswith("_s")} for p in pts] for n, pts in curves.items()}


@pytest.fixture(scope="module")
def reuse_source(tiny_model, tmp_path_factory):
    """An earlier bench at full and half size, whose classical rows later runs take."""
    out = tmp_path_factory.mktemp("reuse") / "first"
    return out, _bench(tiny_model, out, "--scales", "1,1/2")


def test_reuse_takes_the_classical_rows_and_gives_the_same_results(tiny_model, reuse_source, tmp_path):
    first_dir, first = reuse_source
    fresh = _bench(tiny_model, tmp_path / "fresh", "--scales", "1,1/2,1/8")
    again = _bench(tiny_model, tmp_path / "again", "--scales", "1,1/2,1/8", "--reuse", str(first_dir))
    # identical to a run that computes everything: the summary, and every row but its timings
    assert again["summary"] == fresh["summary"]
    assert _untimed(again["curves"]) == _untimed(fresh["curves"]) and again["anchor"]["tasks"] == fresh["anchor"]["tasks"]
    reused = again["provenance"]["reused"]
    assert reused["from"] == str(first_dir / "results.json") and reused["created"] == first["created"]
    assert reused["rows"] == {"jpeg": [5, 50, 95], "jpeg+filter": [5, 50, 95], "jpeg@1/2": [5], "jpeg@1/2+filter": [5],
                              "avif": [10, 50, 90], "avif+filter": [10, 50, 90], "avif@1/2": [10],
                              "avif@1/2+filter": [10]}
    assert reused["count"] == 16 and reused["anchor_line_max_rel_diff"] == 0.0
    # rows the earlier run lacks (the new scale) are computed, and tamc always is
    assert reused["computed"] == {"jpeg@1/8": [5], "jpeg@1/8+filter": [5], "avif@1/8": [10], "avif@1/8+filter": [10]}
    for name in reused["rows"]:
        assert again["curves"][name] == first["curves"][name]  # the earlier run's rows, timings included
    assert again["provenance"]["classical_inputs"] == fresh["provenance"]["classical_inputs"]
    # a task the earlier run did not measure: its rows are computed, the label filter's reused
    more = _bench(tiny_model, tmp_path / "more", "--scales", "1", "--codecs", "jpeg", "--tasks", "seg,normal,edge",
                  "--reuse", str(first_dir))
    assert more["provenance"]["reused"]["rows"] == {"jpeg+filter": [5, 50, 95]}
    assert more["provenance"]["reused"]["computed"] == {"jpeg": [5, 50, 95]}


def _refused(tiny_model, out, capsys, *extra) -> str:
    with pytest.raises(SystemExit) as exc:
        _bench(tiny_model, out, *extra)
    err = capsys.readouterr().err.strip().splitlines()
    assert exc.value.code == 2 and len(err) == 1, err
    return err[0]


def test_reuse_refuses_other_inputs_naming_what_differs(tiny_model, reuse_source, tmp_path, capsys):
    import shutil

    from PIL import Image

    first_dir, first = reuse_source
    msg = _refused(tiny_model, tmp_path / "a", capsys, "--images", "1", "--reuse", str(first_dir))
    assert "number of images (1 here, 2 there)" in msg
    msg = _refused(tiny_model, tmp_path / "b", capsys, "--anchor", "model", "--reuse", str(first_dir))
    assert "anchor kind (model here, stage1 there)" in msg

    def edited(name: str, change) -> Path:
        doc = json.loads(json.dumps(first))
        change(doc["provenance"])
        (tmp_path / name).mkdir()
        (tmp_path / name / "results.json").write_text(json.dumps(doc))
        return tmp_path / name

    old = edited("old", lambda p: p.pop("classical_inputs"))
    assert "predates --reuse" in _refused(tiny_model, tmp_path / "c", capsys, "--reuse", str(old))
    pillow = edited("pillow", lambda p: p["classical_inputs"]["codec_versions"].update(pillow="0.0"))
    msg = _refused(tiny_model, tmp_path / "d", capsys, "--reuse", str(pillow))
    assert f"pillow ({first['provenance']['classical_inputs']['codec_versions']['pillow']} here, 0.0 there)" in msg
    networks = edited("networks", lambda p: p["classical_inputs"]["anchor"]["tasks"].update(depth="0" * 64))
    assert "anchor networks for depth" in _refused(tiny_model, tmp_path / "e", capsys, "--reuse", str(networks))
    assert "no results.json" in _refused(tiny_model, tmp_path / "f", capsys, "--reuse", str(tmp_path / "none"))
    # the same scenes with one picture changed
    data = tmp_path / "val"
    shutil.copytree(tiny_model.parent / "val", data)
    pic = data / "rgb" / "000001.png"
    pixels = np.asarray(Image.open(pic)).copy()
    pixels[0, 0] ^= 1
    Image.fromarray(pixels).save(pic)
    msg = _refused(tiny_model, tmp_path / "g", capsys, "--data", str(data), "--reuse", str(first_dir))
    assert "data files (pictures)" in msg and "labels" not in msg


def test_model_anchor_fingerprint_is_its_networks_not_the_model_id(tiny_model):
    """--anchor model: the rows depend on the analysis and task-decoder graphs, not on the entropy
    coding (hyper graphs, tables) that makes one model's id differ from another's."""
    from tamc_codec.bench.evaluate import ModelAnchor
    from tamc_codec.runtime.manifest import file_sha256
    from tamc_codec.runtime.model import RuntimeModel

    rt = RuntimeModel(tiny_model)  # not load_model's shared instance: its id is changed below
    tasks = list(rt.serving)
    fp = ModelAnchor(rt, tasks).fingerprint()
    m = rt.manifest
    want = {m["graphs"][rt.serving[t]]["analysis"]["file"] for t in tasks if not rt.is_picture(rt.serving[t])}
    want |= {m["graphs"][a]["analysis"]["file"] for t in tasks for a in rt.decoder_context(t)}
    want |= {m["decoders"][t]["file"] for t in tasks if not rt.is_picture(rt.serving[t])}
    assert set(fp["files"]) == want and all(fp["files"][f] == file_sha256(tiny_model / f) for f in want)
    assert set(fp["tasks"]) == set(tasks) and fp["kind"] == "model" and "onnxruntime" in fp["runtime"]
    rt.id = rt.manifest["model_id"] = "0" * 32  # another model with the same networks
    assert ModelAnchor(rt, tasks).fingerprint() == fp


def test_model_anchor_is_the_codec_without_quantisation(tiny_model):
    """The model's own networks on the unquantised latent, at the picture's size: what the codec's
    decoded predictions approach as the quality rises."""
    from tamc_codec.bench.evaluate import ModelAnchor, open_images, tamc_predictions
    from tamc_codec.runtime import encode_image, load_model

    rt = load_model(str(tiny_model))
    images = open_images(tiny_model.parent / "val", None, 1)
    image, _ = images.item(0)
    image = image[:60, :50]  # not a multiple of the padding
    tasks = list(rt.serving)
    preds = ModelAnchor(rt, tasks).predict(image)
    assert set(preds) == set(tasks) and all(p.shape[-2:] == (60, 50) for p in preds.values())
    gaps = []
    for q in (1, rt.qualities):
        decoded = tamc_predictions(rt, encode_image(image, tasks, q, rt), tasks)
        gaps.append(np.mean([np.abs(decoded[t] - preds[t]).mean() for t in tasks]))
    assert gaps[1] < gaps[0]


def test_bench_without_a_stage1_anchor_uses_the_model(tiny_model, tmp_path, monkeypatch):
    """After install there is no anchor.pt: the bench still runs, on the model's own networks,
    says so, and divides losses by the trivial losses the model's reference.json carries."""
    from tamc_codec.cli import main

    monkeypatch.chdir(tmp_path)  # no models/default/anchor/anchor.pt below the working directory
    out = tmp_path / "bench"
    main(["bench", "--quick", "--model", str(tiny_model), "--data", str(tiny_model.parent / "val"),
          "--codecs", "tamc,jpeg", "--tasks", "seg,edge", "--images", "1", "--qualities", "1,3",
          "--out", str(out), "--no-progress", "--threads", "1"])
    results = json.loads((out / "results.json").read_text())
    anchor = results["provenance"]["anchor"]
    reference = json.loads((tiny_model / "reference.json").read_text())
    assert anchor["kind"] == "model" and anchor["model_id"] == reference["model_id"]
    assert anchor["trivial_loss"] == pytest.approx({t: reference["trivial_loss"][t] for t in reference["trivial_loss"]})
    for t, r in results["anchor"]["tasks"].items():
        assert r["normalised_loss"] == pytest.approx(r["loss"] / reference["trivial_loss"][t])


def test_schema_checker_catches_errors():
    from tamc_codec.bench.report import schema_errors

    errors = schema_errors({"schema": "tamc.bench/2"})
    assert any("schema" in e for e in errors) and any("missing 'curves'" in e for e in errors)


# --------------------------------------------------------------------------- ablation logic


def _variant(kind, name, scale, tasks=("seg", "depth")):
    pts = []
    for q, r in enumerate(RATES, start=1):
        loss = 1.0 / (1 + r)
        pts.append({"quality": q, "bpp_total": r * scale, "bpp_groups": {}, "mean_normalised_loss": loss,
                    "tasks": {t: {"loss": loss, "normalised_loss": loss, "bpp": r * scale / 2} for t in tasks}})
    return {"kind": kind, "name": name, "points": pts}


def test_ablation_comparisons_and_report(tmp_path):
    from tamc_codec.bench.ablation import _compare, ablation_table, plot_ablation, random_dag

    variants = {"dag:chosen": _variant("dag", "chosen", 1.0), "dag:none": _variant("dag", "none", 1.3),
                "grouping:grouped": _variant("grouping", "grouped", 1.0),
                "grouping:single": _variant("grouping", "single", 1.5)}
    dag = _compare(variants, "dag", "chosen")
    assert dag["none"]["total"]["value"] == pytest.approx(30.0, abs=1e-6)
    assert dag["none"]["tasks"]["seg"]["value"] == pytest.approx(30.0, abs=1e-6)
    assert all(p["bits_ratio"] == pytest.approx(1.3) for p in dag["none"]["per_quality"])
    grouping = _compare(variants, "grouping", "grouped")
    abl = {"budget": {"stage1_steps": 1, "entropy_steps": 1, "batch": 1, "crop": 64}, "images": 2,
           "variants": variants, "comparisons": {"dag": dag, "grouping": grouping}}
    assert "+50.0" in ablation_table(abl)
    assert [p.name for p in plot_ablation(abl, tmp_path)] == ["ablation_dag.png", "ablation_grouping.png"]

    groups = ["a", "b", "c"]
    chosen = {"a": None, "b": "a", "c": "a"}
    d = random_dag(groups, np.random.default_rng(0), chosen)
    assert sorted(d["order"]) == groups and sum(p is None for p in d["parents"].values()) == 1
    assert d["parents"] != chosen
    for g, p in d["parents"].items():  # parents come earlier in the coding order
        assert p is None or d["order"].index(p) < d["order"].index(g)


def test_global_context_variant_joins_the_earlier_variants(tiny_model, tmp_path):
    import torch

    from tamc_codec.bench.ablation import MANIFEST, AblationBudget, train_ablation

    root = tiny_model.parent
    out = tmp_path / "abl"
    out.mkdir()
    earlier = {"kind": "dag", "name": "none", "codec": "dag-none/codec.pt", "dag": None, "parents": {}}
    (out / MANIFEST).write_text(json.dumps({"variants": [earlier]}))
    budget = AblationBudget(entropy_steps=2, batch=2, crop=32, hyper_channels=8, lambdas=[0.1, 2.0], val_limit=2,
                            trivial_samples=4)
    m = train_ablation(root / "s1" / "anchor.pt", root / "dag.json", root / "train", root / "val", out, budget,
                       kinds=("global",), progress=False, log=lambda *_: None)
    assert [(v["kind"], v["name"]) for v in m["variants"]] == [("dag", "none"), ("dag", "chosen-global")]
    assert not (out / "dag-random-1.json").exists()  # random DAGs belong to the dag kind
    codec = torch.load(out / "dag-chosen-global" / "codec.pt", weights_only=False)
    assert any(".global_ctx." in k for k in codec["model"])
