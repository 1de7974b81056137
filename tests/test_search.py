"""The encoder's symbol search (runtime.search): what it may move, how far it goes, and that its
files decode exactly and cost no more than rounding's on the shipped model."""
import json
from pathlib import Path

import numpy as np
import pytest

from tamc_codec import runtime
from tamc_codec.effort import EFFORTS, check_effort
from tamc_codec.errors import TamcInputError
from tamc_codec.runtime.search import output_distance, search_symbols

ROOT = Path(__file__).resolve().parents[1]
MODEL = ROOT / "models" / "default"
SAMPLE = ROOT / "samples" / "room.png"


class CountedCost:
    """Squared distance to a target plus a rate term, counting its calls and the moves tried."""

    def __init__(self, target, rate: float = 0.0):
        self.target = [np.asarray(t) for t in target]
        self.rate = rate
        self.calls: list[tuple[np.ndarray, np.ndarray]] = []

    def __call__(self, a, b):
        self.calls.append((a.copy(), b.copy()))
        return float(((a - self.target[0]) ** 2).sum() + ((b - self.target[1]) ** 2).sum()
                     + self.rate * (np.abs(a).sum() + np.abs(b).sum()))


def sym(*v):
    return np.array(v, np.int32)


def test_effort_zero_keeps_the_rounded_symbols():
    cost = CountedCost([sym(0, 0), sym(0)])
    a, b = search_symbols((sym(3, -1), sym(2)), (np.zeros(2), np.zeros(1)), cost, 0)
    np.testing.assert_array_equal(a, [3, -1])
    np.testing.assert_array_equal(b, [2])


def test_a_sweep_moves_non_zero_symbols_toward_zero_where_the_cost_falls():
    # the target asks 1 -> 0 and -2 -> -1 (cost falls); 2 -> 1 and -1 -> 0 raise it; 0 is never moved,
    # even where moving it away from zero would pay (target 1)
    cost = CountedCost([sym(2, 0, -1, 1), sym(-1, 0)])
    a, b = search_symbols((sym(2, 1, -1, 0), sym(-2, 0)), (np.zeros(4), np.zeros(2)), cost, 1)
    np.testing.assert_array_equal(a, [2, 0, -1, 0])
    np.testing.assert_array_equal(b, [-1, 0])
    for tried_a, tried_b in cost.calls[1:]:  # every move tried is one step toward zero of one symbol
        moved = np.concatenate([tried_a - [2, 1, -1, 0], tried_b - [-2, 0]])
        assert np.count_nonzero(moved) <= 2  # the tried move, plus at most one kept before it


def test_more_effort_keeps_moving_until_nothing_pays():
    start, target = (sym(3, -3), sym(2)), [sym(0, 0), sym(0)]
    once = search_symbols(start, (np.zeros(2), np.zeros(1)), CountedCost(target), 1)
    more = search_symbols(start, (np.zeros(2), np.zeros(1)), CountedCost(target), 2)
    np.testing.assert_array_equal(once[0], [2, -2])  # one sweep: one step each
    np.testing.assert_array_equal(more[0], [0, 0])   # three sweeps reach the target
    np.testing.assert_array_equal(more[1], [0])


def test_a_bounded_effort_tries_the_moves_nearest_the_rounding_boundary_first():
    sweeps, budget = EFFORTS[1]
    n = budget + 100
    residual = np.linspace(2.0, 0.6, n)  # the last symbols are the nearest to rounding to zero
    cost = CountedCost([np.zeros(n, np.int32), np.zeros(0, np.int32)])
    a, _ = search_symbols((np.ones(n, np.int32), np.zeros(0, np.int32)), (residual, np.zeros(0)), cost, 1)
    assert len(cost.calls) == budget + 1
    assert np.count_nonzero(a == 0) == budget
    assert (a[-budget:] == 0).all() and (a[:n - budget] == 1).all()


def test_output_distance_is_zero_at_the_reference_and_grows_away_from_it():
    rng = np.random.default_rng(0)
    ref = rng.normal(size=(11, 8, 8)).astype(np.float32)
    near, far = ref + 0.1, ref + rng.normal(size=ref.shape).astype(np.float32)
    for task in ("seg", "depth"):
        here = output_distance(task, ref, ref)
        assert output_distance(task, far, ref) > here
        if task == "depth":
            assert here == 0.0 and output_distance(task, near, ref) == pytest.approx(0.1, rel=1e-5)


@pytest.mark.parametrize("bad", [-1, 3, True, 1.5])
def test_unknown_efforts_are_refused_in_one_line(bad):
    with pytest.raises(TamcInputError, match="effort must be one of 0, 1, 2"):
        check_effort(bad)
    with pytest.raises(TamcInputError, match="effort must be one of"):
        runtime.encode_image(np.zeros((64, 64, 3), np.uint8), "seg", 1, str(MODEL), effort=bad)


def test_a_searched_file_decodes_exactly_and_costs_no_more_than_rounding():
    from PIL import Image

    image = np.asarray(Image.open(SAMPLE).convert("RGB"))
    rt = runtime.load_model(str(MODEL))
    rounded = runtime.encode_image(image, "seg,depth,normal", 2, rt)
    searched = runtime.encode_image(image, "seg,depth,normal", 2, rt, effort=1)
    assert len(searched.data) < len(rounded.data)
    group = rt.serving["seg"]
    assert not np.array_equal(searched.latents[group], rounded.latents[group])
    for t in ("seg", "depth", "normal"):
        decoded = runtime.decode_task(searched.data, t, rt)
        expected = runtime.raw_output(t, runtime.task_prediction(rt, t, searched.latents, *image.shape[:2]), rt)
        np.testing.assert_array_equal(decoded.output, expected)


def test_the_cli_encodes_at_an_effort_and_refuses_unknown_ones(capsys, tmp_path):
    from PIL import Image

    from tamc_helpers import tamc

    small = tmp_path / "room.png"
    Image.open(SAMPLE).convert("RGB").crop((0, 0, 256, 256)).save(small)
    sizes = {}
    for effort in (0, 1):
        out = tmp_path / f"room{effort}.tamc"
        code, report, err = tamc(capsys, "encode", small, "-o", out, "--tasks", "seg", "--quality", "2",
                                 "--effort", effort, "--json")
        assert code == 0, err
        assert json.loads(report)["effort"] == effort
        sizes[effort] = out.stat().st_size
    assert sizes[1] < sizes[0]
    code, _, err = tamc(capsys, "decode", tmp_path / "room1.tamc", "--task", "seg", "-o", tmp_path / "seg.png")
    assert code == 0, err
    code, _, err = tamc(capsys, "encode", small, "-o", tmp_path / "bad.tamc", "--effort", "3")
    assert code == 2 and "Traceback" not in err and "--effort" in err
    assert not (tmp_path / "bad.tamc").exists()
