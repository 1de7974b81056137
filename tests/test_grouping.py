"""Lookahead task grouping (paper §3.2, Alg. 2): affinity, selection, DMTG, grouping.json."""
from __future__ import annotations

import copy
import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
nn = torch.nn

from tamc_codec.contract import TASKS  # noqa: E402
from tamc_codec.errors import TamcInputError  # noqa: E402
from tamc_codec.grouping.affinity import LookaheadNet, lookahead, measure_affinity  # noqa: E402
from tamc_codec.grouping.dmtg import DMTGNet, train_dmtg  # noqa: E402
from tamc_codec.grouping.grouping_io import (build_grouping, load_grouping, save_grouping,  # noqa: E402
                                             validate_grouping)
from tamc_codec.grouping.selection import (branch_and_bound, exhaustive, group_scores,  # noqa: E402
                                           grouping_parts, objective_of)

# --------------------------------------------------------------------------- toy problem
# Four tasks in two clusters: a and b read the same two hidden factors of the input,
# c and d two others. A shared encoder with a narrow bottleneck must serve both.

TOY = ["a", "b", "c", "d"]


class Toy(nn.Module):
    def __init__(self, width: int = 8):
        super().__init__()
        self.encoder = nn.Sequential(nn.Linear(16, 32), nn.BatchNorm1d(32), nn.GELU(),
                                     nn.Linear(32, width), nn.GELU())
        self.heads = nn.ModuleDict({t: nn.Linear(width, 3) for t in TOY})

    def forward(self, x):
        z = self.encoder(x)
        return {t: h(z) for t, h in self.heads.items()}


def toy_batches(seed: int, n: int = 64):
    g = torch.Generator().manual_seed(seed)
    factors = {"ab": torch.randn(16, 2, generator=g), "cd": torch.randn(16, 2, generator=g)}
    mix = {t: torch.randn(2, 3, generator=g) for t in TOY}
    while True:
        x = torch.randn(n, 16, generator=g)
        h = {k: torch.tanh(x @ a) for k, a in factors.items()}
        yield {"image": x, **{t: h["ab" if t in "ab" else "cd"] @ mix[t] for t in TOY}}


def toy_loss(task, pred, batch):
    return ((pred - batch[task]) ** 2).mean()


@pytest.fixture(autouse=True)
def _one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.mark.parametrize("seed", [0, 1])
def test_planted_clusters_are_found(seed):
    torch.manual_seed(seed)
    res = measure_affinity(Toy(), toy_batches(seed), TOY, steps=150, every=5, lr=3e-3,
                           lookahead_lr=0.05, loss_fn=toy_loss)
    c = res.mean
    assert res.count == 30 and c.shape == (4, 4) and res.std.shape == (4, 4)
    within = [c[0, 1], c[1, 0], c[2, 3], c[3, 2]]
    across = [c[u, v] for u in (0, 1) for v in (2, 3)] + [c[u, v] for u in (2, 3) for v in (0, 1)]
    assert min(within) > 0 > max(across), c
    sel = branch_and_bound(c, 2)
    assert sel.groups == (0b0011, 0b1100)
    parts = grouping_parts(TOY, c, 2)
    assert parts["groups"] == [["a", "b"], ["c", "d"]]
    assert parts["assignment"] == {"a": "a+b", "b": "a+b", "c": "c+d", "d": "c+d"}


# --------------------------------------------------------------------------- lookahead


def _small_net():
    torch.manual_seed(3)
    net = LookaheadNet(["seg", "depth", "rgb"], widths=(8, 8, 8, 8), head_widths=(8, 8, 8))
    return net


def _batch(seed=0, n=4, size=32):
    g = torch.Generator().manual_seed(seed)
    depth = torch.randn(n, 1, size, size, generator=g)
    depth[:, :, :3] = float("nan")
    return {"image": torch.rand(n, 3, size, size, generator=g),
            "seg": torch.randint(0, 11, (n, size, size), generator=g),
            "depth": depth, "rgb": torch.rand(n, 3, size, size, generator=g)}


def _snapshot(model, opt):
    return ({k: v.detach().clone() for k, v in model.state_dict().items()},
            {k: (None if p.grad is None else p.grad.clone()) for k, p in model.named_parameters()},
            copy.deepcopy(opt.state_dict()), model.training)


def _same(a, b):
    sa, ga, oa, ta = a
    sb, gb, ob, tb = b
    assert sa.keys() == sb.keys() and ta == tb
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k
    for k in ga:
        assert (ga[k] is None) == (gb[k] is None) and (ga[k] is None or torch.equal(ga[k], gb[k])), k
    assert oa["param_groups"] == ob["param_groups"]
    for k in oa["state"]:
        for name, v in oa["state"][k].items():
            assert torch.equal(v, ob["state"][k][name]), (k, name)


def test_lookahead_leaves_training_state_bit_identical():
    from tamc_codec.grouping.affinity import default_loss

    net = _small_net()
    tasks = list(net.tasks)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    for s in range(2):  # optimiser moments, BN running statistics and .grad all non-trivial
        b = _batch(s)
        out = net(b["image"])
        opt.zero_grad()
        sum(default_loss(t, out[t], b) for t in tasks).backward()
        opt.step()
    before = _snapshot(net, opt)
    c = lookahead(net, _batch(7), tasks, lr=0.1, norm=[2.0, 1.0, 0.5])
    _same(before, _snapshot(net, opt))
    assert c.shape == (3, 3) and np.all(np.isfinite(c))
    assert np.all(np.diag(c) > 0)  # a small step on u lowers u's own loss
    net.eval()
    before = _snapshot(net, opt)
    lookahead(net, _batch(8), tasks, lr=0.1)
    _same(before, _snapshot(net, opt))


def test_lookahead_matches_a_manual_step_and_ignores_loss_scale():
    from tamc_codec.grouping.affinity import default_loss

    net = _small_net()
    tasks = list(net.tasks)
    b = _batch(1)
    norm = torch.tensor([2.3, 0.7, 0.2])
    c = lookahead(net, b, tasks, lr=0.2, norm=norm)
    for u in range(3):
        ref = copy.deepcopy(net)
        out = ref(b["image"])
        loss_u = default_loss(tasks[u], out[tasks[u]], b) / norm[u]
        shared = list(ref.encoder.parameters())
        grads = torch.autograd.grad(loss_u, shared, allow_unused=True)
        with torch.no_grad():
            before = [default_loss(t, out[t], b).item() for t in tasks]
            for p, g in zip(shared, grads):
                if g is not None:
                    p -= 0.2 * g
            out2 = ref(b["image"])
            after = [default_loss(t, out2[t], b).item() for t in tasks]
        np.testing.assert_allclose(c[u], 1 - np.array(after) / np.array(before), rtol=1e-4, atol=1e-6)
    # scaling a task's loss and its normaliser alike changes nothing (the normalisation's point)
    scaled = lambda t, p, bb: default_loss(t, p, bb) * (100.0 if t == "depth" else 1.0)  # noqa: E731
    c2 = lookahead(net, b, tasks, lr=0.2, norm=norm * torch.tensor([1.0, 100.0, 1.0]), loss_fn=scaled)
    np.testing.assert_allclose(c2, c, rtol=1e-4, atol=1e-6)


def test_measure_affinity_on_tamc_tasks_runs():
    net = _small_net()

    def batches():
        s = 0
        while True:
            s += 1
            yield _batch(s)

    res = measure_affinity(net, batches(), list(net.tasks), steps=4, every=2, norm_batches=1)
    assert res.count == 2 and np.all(np.isfinite(res.mean)) and len(res.history) == 4
    assert set(res.initial_loss) == {"seg", "depth", "rgb"}


# --------------------------------------------------------------------------- selection


def test_group_scores_follow_the_tag_rule():
    a = np.array([[0.0, 0.2, -0.1], [0.4, 0.0, 0.3], [0.1, -0.5, 0.0]])
    t = group_scores(a)
    assert t.shape == (8, 3)
    assert t[0b001, 0] == 0.0 and np.isneginf(t[0b001, 1])  # alone: no help
    assert t[0b011, 0] == pytest.approx(0.4) and t[0b011, 1] == pytest.approx(0.2)
    assert t[0b111, 1] == pytest.approx((0.2 - 0.5) / 2)  # mean of the other members' Ĉ into 1
    assert t[0b111, 2] == pytest.approx((-0.1 + 0.3) / 2)


def _instances(count: int):
    rng = np.random.default_rng(2024)
    for k in range(count):
        n = int(rng.choice([2, 3, 3, 4, 4, 4, 5]))
        a = rng.normal(0.0, 0.3, (n, n))
        if k % 4 == 0:
            a = np.round(a, 1)  # many exact ties between solutions
        if k % 7 == 0:
            a = np.abs(a)        # every group helps: the budget binds
        costs = None
        budgets = [1, 1.5, 2, 2.5, 3] if n < 5 else [1, 2, 2.5]
        if k % 2 and n < 5:
            cost_table = {g: float(rng.choice([0.5, 1.0, 1.5])) for g in range(1, 1 << n)}
            costs = cost_table
            budgets = [1, 1.5, 2, 2.5]
        yield a, float(rng.choice(budgets)), costs


def test_branch_and_bound_equals_exhaustive_search():
    checked = 0
    for a, budget, costs in _instances(240):
        try:
            ref = exhaustive(a, budget, costs)
        except TamcInputError:
            with pytest.raises(TamcInputError):
                branch_and_bound(a, budget, costs)
            continue
        got = branch_and_bound(a, budget, costs)
        assert got.groups == ref.groups and got.objective == ref.objective, (a, budget, costs)
        assert got.assignment == ref.assignment and got.cost <= budget + 1e-9
        checked += 1
    assert checked >= 200


def test_branch_and_bound_prunes_six_tasks():
    a = np.random.default_rng(5).normal(0, 0.3, (6, 6))
    for k in (2, 3):
        got = branch_and_bound(a, k)
        ref = exhaustive(a, k)
        assert got.groups == ref.groups
    # larger budgets are out of the exhaustive reference's reach but not of the search
    sel = branch_and_bound(a, 6)
    assert len(sel.groups) <= 6 and objective_of(group_scores(a), sel.groups) == sel.objective
    assert sel.nodes < 20000


def test_selection_details():
    # with no help between tasks every singleton wins, ties to fewer groups
    zero = np.zeros((3, 3))
    assert branch_and_bound(zero, 3).groups == (0b111,)
    # strong mutual help everywhere: one group of all
    assert branch_and_bound(np.ones((3, 3)), 3).groups == (0b111,)
    # harm across the board: singletons when the budget allows, else the least harmful cover
    harm = -np.ones((3, 3))
    assert branch_and_bound(harm, 3).groups == (0b001, 0b010, 0b100)
    assert branch_and_bound(harm, 2).objective == pytest.approx(-2.0)  # a pair and a singleton
    with pytest.raises(TamcInputError, match="smaller than the cheapest"):
        branch_and_bound(zero, 0.5)
    # fractional budget with cheaper small networks (Standley: half-size costs 0.5)
    cheap = {g: (0.5 if bin(g).count("1") == 1 else 1.0) for g in range(1, 8)}
    assert branch_and_bound(harm, 1.5, cheap).groups == (0b001, 0b010, 0b100)


# --------------------------------------------------------------------------- DMTG


def test_dmtg_learns_an_assignment_on_the_toy_problem():
    torch.manual_seed(0)
    model = DMTGNet(TOY, 2, branch=Toy)
    res = train_dmtg(model, toy_batches(0), steps=40, lr=3e-3, logit_lr=0.05, loss_fn=toy_loss)
    assert res.probs.shape == (4, 2) and np.allclose(res.probs.sum(axis=1), 1)
    assert sorted(t for g in res.groups for t in g) == TOY and all(res.groups)
    assert res.loss.shape == (4, 2)


# --------------------------------------------------------------------------- grouping.json


def _grouping(**kw):
    tasks = list(TASKS)
    a = np.random.default_rng(0).normal(0, 0.1, (6, 6))
    parts = grouping_parts(tasks, a, 3)
    base = dict(method="lookahead", tasks=tasks, affinity=a, affinity_std=np.abs(a),
                groups=parts["groups"], group_scores=parts["group_scores"],
                assignment=parts["assignment"], budget=3, settings={"steps": 1, "seed": 0},
                runtime_s=1.5, data={"path": "x", "count": 1})
    base.update(kw)
    return build_grouping(**base), parts


def test_grouping_json_round_trip(tmp_path):
    d, parts = _grouping()
    assert d["schema"] == "tamc.grouping/1" and d["serving"] == d["assignment"]
    assert d["objective"] == pytest.approx(parts["objective"])
    assert len(d["groups"]) <= 3
    p = save_grouping(d, tmp_path / "g.json")
    assert load_grouping(p) == json.loads(json.dumps(d))
    assert not [f for f in tmp_path.iterdir() if f.name != "g.json"]  # no temp files left


@pytest.mark.parametrize("edit, message", [
    (lambda d: d.pop("groups"), "missing keys: groups"),
    (lambda d: d.update(schema="tamc.grouping/2"), "schema"),
    (lambda d: d.update(method="magic"), "method"),
    (lambda d: d.update(tasks=["depth", "seg"] + d["tasks"][2:]), "code order"),
    (lambda d: d.update(tasks=["seg", "fog"]), "unknown task"),
    (lambda d: d["affinity"].pop(), "6x6"),
    (lambda d: d["affinity"][0].__setitem__(0, float("nan")), "finite"),
    (lambda d: d.update(affinity=None), "may be null only"),
    (lambda d: d["groups"].append("depth+seg"), "canonical"),
    (lambda d: d["groups"].append(d["groups"][0]), "repeats"),
    (lambda d: d["assignment"].pop("seg"), "every task"),
    (lambda d: d["serving"].update(seg="depth+normal"), "not one of the groups"),
    (lambda d: d.update(budget=0), "budget"),
    (lambda d: d.update(runtime_s=-1), "negative"),
    (lambda d: d.update(objective="high"), "objective"),
])
def test_grouping_json_rejects_schema_violations(edit, message):
    d, _ = _grouping()
    d = json.loads(json.dumps(d))
    edit(d)
    with pytest.raises(TamcInputError, match=message):
        validate_grouping(d)


def test_grouping_json_serving_must_contain_the_task():
    d, _ = _grouping()
    other = next(g for g in d["groups"] if "seg" not in g.split("+"))
    d["serving"]["seg"] = other
    with pytest.raises(TamcInputError, match="does not contain seg"):
        validate_grouping(d)


def test_dmtg_json_without_affinity():
    tasks = ["seg", "depth"]
    d = build_grouping(method="dmtg", tasks=tasks, affinity=None, groups=[["seg", "depth"]],
                       group_scores={"seg+depth": {"seg": 0.9, "depth": 0.8}},
                       assignment={"seg": "seg+depth", "depth": "seg+depth"}, budget=1,
                       settings={}, runtime_s=0.0, data={}, assignment_probs=[[0.9], [0.8]])
    validate_grouping(d)
    assert d["objective"] == pytest.approx(1.7)
