"""The causal DAG of group latents (paper §3.3, Alg. 1): planted structure, degenerate inputs,
the dag.json object and its topological order."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

from tamc_codec.dag.cond_coding import CodingSettings, discretised_gaussian_bits
from tamc_codec.dag.dag import (
    SCHEMA,
    build_dag,
    choose_parents,
    entropy_order,
    load_dag_json,
    load_latents,
    save_dag_json,
    topological_order,
    validate_dag,
    validate_latents,
)
from tamc_codec.dag.kde import KDESettings, kde_excess_entropy, projection
from tamc_codec.errors import TamcInputError

# Small and quick: the ridge-regression start carries the linear dependence, so few steps do.
FAST_CODING = CodingSettings(steps=10)
FAST_KDE = KDESettings(samples=1000, permutations=9)


def planted(n=16, c=8, h=8, w=8, seed=0):
    """A (seg), B = A + noise (depth, so H(A) < H(B)), C independent and widest (normal)."""
    rng = np.random.default_rng(seed)
    a = 3.0 * rng.standard_normal((n, c, h, w))
    b = a + rng.standard_normal((n, c, h, w))
    cc = 6.0 * rng.standard_normal((n, c, h, w))
    return {"seg": a.astype(np.float32), "depth": b.astype(np.float32),
            "normal": cc.astype(np.float32)}


def check_dag(dag):
    """Fields of CONTRACT.md's dag.json, finite numbers, and a topological order."""
    validate_dag(dag)
    assert dag["schema"] == SCHEMA
    groups = dag["groups"]
    assert set(dag["entropy"]) == set(groups)
    for c in groups:
        assert set(dag["conditional"][c]) == set(groups) - {c}
        for v in dag["conditional"][c].values():
            assert math.isfinite(v) and 0 <= v <= dag["entropy"][c] + 1e-12
    pos = {g: i for i, g in enumerate(dag["order"])}
    for p, c in dag["edges"]:
        assert pos[p] < pos[c]
        assert dag["entropy"][p] <= dag["entropy"][c]
    json.dumps(dag, allow_nan=False)


@pytest.mark.parametrize("estimator", ["coding", "kde"])
def test_planted_structure_is_recovered(estimator):
    dag = build_dag(planted(), estimator, coding=FAST_CODING, kde=FAST_KDE)
    check_dag(dag)
    assert dag["estimator"] == estimator
    assert dag["entropy"]["seg"] < dag["entropy"]["depth"] < dag["entropy"]["normal"]
    assert dag["parents"] == {"seg": None, "depth": "seg", "normal": None}
    assert dag["edges"] == [["seg", "depth"]]
    assert dag["order"].index("seg") < dag["order"].index("depth")
    # The independent latent was offered a parent and refused it, for the stated reason.
    assert dag["decisions"]["normal"]["candidate"] is not None
    assert dag["decisions"]["normal"]["accepted"] is False


def test_chain_is_recovered_with_coding():
    rng = np.random.default_rng(1)
    a = 3.0 * rng.standard_normal((16, 8, 8, 8))
    b = a + 1.0 * rng.standard_normal(a.shape)
    c = b + 1.5 * rng.standard_normal(a.shape)  # given B, only the last noise is left
    lat = {"seg": a, "depth": b, "edge": c}
    dag = build_dag(lat, "coding", coding=FAST_CODING)
    check_dag(dag)
    assert dag["parents"] == {"seg": None, "depth": "seg", "edge": "depth"}
    assert dag["order"] == ["seg", "depth", "edge"]


def test_spatial_sizes_may_differ():
    lat = planted(h=8, w=8)
    # The parent at twice the resolution, each value repeated 2×2: still co-located with B.
    lat["seg"] = np.repeat(np.repeat(lat["seg"], 2, axis=2), 2, axis=3)
    for est in ("coding", "kde"):
        dag = build_dag(lat, est, coding=FAST_CODING, kde=FAST_KDE)
        check_dag(dag)
        assert dag["parents"]["depth"] == "seg", est
        assert dag["parents"]["normal"] is None, est


@pytest.mark.parametrize("estimator", ["coding", "kde"])
def test_one_group(estimator):
    lat = {"depth+normal": planted()["depth"]}
    dag = build_dag(lat, estimator, coding=FAST_CODING, kde=FAST_KDE)
    check_dag(dag)
    assert dag["edges"] == [] and dag["order"] == ["depth+normal"]
    assert dag["parents"] == {"depth+normal": None}
    assert dag["conditional"] == {"depth+normal": {}}


@pytest.mark.parametrize("estimator", ["coding", "kde"])
def test_constant_latents_give_zero_entropy_and_no_edges(estimator):
    lat = {"seg": np.full((6, 4, 4, 4), 2.0, np.float32),
           "depth": np.full((6, 4, 4, 4), -7.0, np.float32)}
    dag = build_dag(lat, estimator, coding=FAST_CODING, kde=FAST_KDE)
    check_dag(dag)
    assert dag["edges"] == []
    for h in dag["entropy"].values():
        assert 0 <= h < 1e-3


def test_constant_group_beside_informative_ones():
    lat = planted()
    lat["edge"] = np.zeros_like(lat["seg"])
    for est in ("coding", "kde"):
        dag = build_dag(lat, est, coding=FAST_CODING, kde=FAST_KDE)
        check_dag(dag)
        assert dag["parents"]["edge"] is None
        assert dag["parents"]["depth"] == "seg"


def test_kde_caps_reduced_dimension_at_channels_and_samples():
    rng = np.random.default_rng(0)
    # Two channels: d capped at 2 whatever was asked.
    lat = {"seg": rng.standard_normal((4, 2, 3, 3)), "depth": rng.standard_normal((4, 2, 3, 3))}
    dag = build_dag(lat, "kde", kde=KDESettings(dim=16))
    check_dag(dag)
    assert dag["settings"]["effective_dim"] == 2
    # Two images of one position: 2 samples span one dimension.
    lat = {"seg": rng.standard_normal((2, 8, 1, 1)), "depth": rng.standard_normal((2, 8, 1, 1))}
    dag = build_dag(lat, "kde", kde=KDESettings(dim=4))
    check_dag(dag)
    assert dag["settings"]["effective_dim"] == 1


def test_coding_with_two_images():
    rng = np.random.default_rng(0)
    lat = {"seg": 3 * rng.standard_normal((2, 4, 4, 4)), "depth": 3 * rng.standard_normal((2, 4, 4, 4))}
    check_dag(build_dag(lat, "coding", coding=FAST_CODING))


@pytest.mark.parametrize("estimator", ["coding", "kde"])
def test_one_image_is_a_clear_error(estimator):
    lat = {"seg": np.ones((1, 4, 4, 4), np.float32), "depth": np.ones((1, 4, 4, 4), np.float32)}
    with pytest.raises(TamcInputError, match="at least 2 images"):
        build_dag(lat, estimator)


@pytest.mark.parametrize("bad, match", [
    ({"seg": np.array([[[[np.nan]]]] * 2, np.float32)}, "NaN or infinite"),
    ({"seg": np.full((2, 1, 2, 2), np.inf, np.float32)}, "NaN or infinite"),
    ({"depth+seg": np.zeros((2, 1, 2, 2), np.float32)}, "not a group id"),
    ({"sky": np.zeros((2, 1, 2, 2), np.float32)}, "not a group id"),
    ({"seg": np.zeros((2, 2, 2), np.float32)}, r"expected \[N, C, h, w\]"),
    ({"seg": np.zeros((2, 1, 2, 2)), "depth": np.zeros((3, 1, 2, 2))}, "image count"),
    ({"seg": np.zeros((2, 0, 2, 2))}, "empty"),
    ({}, "no group latents"),
])
def test_bad_latents_are_rejected(bad, match):
    with pytest.raises(TamcInputError, match=match):
        validate_latents(bad)


def test_unknown_estimator_is_rejected():
    with pytest.raises(TamcInputError, match="unknown estimator"):
        build_dag(planted(), "mutual")


def test_load_latents(tmp_path):
    good = tmp_path / "latents.npz"
    np.savez(good, **planted(n=3))
    lat = load_latents(good)
    assert list(lat) == ["seg", "depth", "normal"] and lat["seg"].dtype == np.float32
    with pytest.raises(TamcInputError, match="not found"):
        load_latents(tmp_path / "missing.npz")
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"not a zip at all")
    with pytest.raises(TamcInputError, match="not a readable"):
        load_latents(junk)
    npy = tmp_path / "one.npz"
    with open(npy, "wb") as fh:
        np.save(fh, np.zeros(3))
    with pytest.raises(TamcInputError, match="single .npy"):
        load_latents(npy)
    wrong = tmp_path / "wrong.npz"
    np.savez(wrong, **{"normal+depth": np.zeros((2, 1, 2, 2), np.float32)})
    with pytest.raises(TamcInputError, match="not a group id"):
        load_latents(wrong)


def test_choose_parents_follows_eq10_and_breaks_ties_canonically():
    H = {"seg": 1.0, "depth": 1.0, "normal": 2.0, "edge": 3.0}
    cond = {
        "seg": {"depth": 0.2, "normal": 0.1, "edge": 0.1},
        "depth": {"seg": 0.5, "normal": 0.1, "edge": 0.1},
        "normal": {"seg": 1.5, "depth": 1.5, "edge": 0.0},   # edge has higher H: not allowed
        "edge": {"seg": 2.0, "depth": 2.9, "normal": 1.0},
    }
    assert entropy_order(H) == ["seg", "depth", "normal", "edge"]
    parents, decisions = choose_parents(H, cond, lambda c, p: (True, {}))
    # seg and depth tie on H: canonical order makes seg the lower one; normal's two candidates
    # tie on H(c|p) and the lower-entropy one wins.
    assert parents == {"seg": None, "depth": "seg", "normal": "seg", "edge": "normal"}
    assert decisions["seg"]["candidate"] is None
    parents, _ = choose_parents(H, cond, lambda c, p: (False, {}))
    assert all(p is None for p in parents.values())


def test_topological_order_and_cycles():
    groups = ["seg", "depth", "normal"]
    assert topological_order(groups, {"seg": "normal", "depth": None, "normal": None}) == [
        "depth", "normal", "seg"]
    with pytest.raises(TamcInputError, match="cycle"):
        topological_order(groups, {"seg": "depth", "depth": "seg", "normal": None})
    with pytest.raises(TamcInputError, match="own parent"):
        topological_order(groups, {"seg": "seg"})
    with pytest.raises(TamcInputError, match="not a group"):
        topological_order(groups, {"seg": "rgb"})


def test_validate_dag_rejects_inconsistent_objects():
    dag = build_dag(planted(), "coding", coding=FAST_CODING)
    bad = json.loads(json.dumps(dag))
    bad["order"] = ["depth", "seg", "normal"]
    with pytest.raises(TamcInputError, match="before its parent"):
        validate_dag(bad)
    bad = json.loads(json.dumps(dag))
    bad["edges"] = []
    with pytest.raises(TamcInputError, match="disagree"):
        validate_dag(bad)
    bad = json.loads(json.dumps(dag))
    bad["parents"]["seg"] = "depth"
    bad["edges"].append(["depth", "seg"])
    with pytest.raises(TamcInputError, match="cycle"):
        validate_dag(bad)
    with pytest.raises(TamcInputError, match="tamc.dag/1"):
        validate_dag({"schema": "other"})


def test_save_and_load_round_trip(tmp_path):
    dag = build_dag(planted(), "kde", kde=FAST_KDE)
    out = tmp_path / "dag.json"
    save_dag_json(dag, out)
    assert load_dag_json(out) == json.loads(json.dumps(dag))
    assert [p.name for p in tmp_path.iterdir()] == ["dag.json"]  # no temporary left behind
    with pytest.raises(TamcInputError, match="not JSON"):
        (tmp_path / "x.json").write_text("{")
        load_dag_json(tmp_path / "x.json")


def test_estimates_are_deterministic():
    a = build_dag(planted(), "kde", kde=FAST_KDE)
    b = build_dag(planted(), "kde", kde=FAST_KDE)
    assert a["entropy"] == b["entropy"] and a["conditional"] == b["conditional"]


def test_plot_writes_png(tmp_path):
    from tamc_codec.dag.plots import plot_dag
    dag = build_dag(planted(), "kde", kde=FAST_KDE)
    path = plot_dag(dag, tmp_path / "dag.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_kde_excess_entropy_limits():
    x = np.zeros((50, 3))
    assert kde_excess_entropy(x, 1.0) == 0.0
    far = np.arange(40.0)[:, None] * 1e3  # every point alone: the ln N ceiling
    assert kde_excess_entropy(far, 1.0, chunk=7) == pytest.approx(math.log(40))
    p = projection(6, 3, seed=0)
    assert np.allclose(p @ p.T, np.eye(3))


def test_discretised_gaussian_bits():
    import torch
    y = torch.tensor([0.0, 1.0, -3.0, 40.0])
    bits = discretised_gaussian_bits(y, torch.zeros(4), torch.ones(4))
    p0 = math.erf(0.5 / math.sqrt(2))
    assert float(bits[0]) == pytest.approx(-math.log2(p0), rel=1e-5)
    assert float(bits[1]) == pytest.approx(float(bits[1]))  # finite
    assert float(bits[3]) == pytest.approx(-math.log2(1e-9), rel=1e-6)  # floor, not inf
    assert torch.isfinite(bits).all()
