import re
from pathlib import Path

import pytest

from tamc_codec import contract
from tamc_codec.tasks import labels
from tamc_codec.tasks.registry import SEG_CLASSES, TASK_SPECS

DOC = (Path(__file__).resolve().parents[1] / "docs" / "CONTRACT.md").read_text()


def test_task_codes_match_contract_doc():
    rows = re.findall(r"^\| (\d) \| `(\w+)` \|", DOC, flags=re.M)
    assert [(int(c), n) for c, n in rows] == list(enumerate(contract.TASKS))
    for alias, name in contract.TASK_ALIASES.items():
        assert f"`{alias}`" in DOC and name in contract.TASKS


def test_seg_classes_match_contract_doc():
    for i, name in enumerate(SEG_CLASSES):
        if i >= 2:
            assert re.search(rf"\| {i} \| {name} \|", DOC), name


def test_label_scales_match_contract_doc():
    assert "round(512·z)" in DOC and labels.DEPTH_SCALE == 512
    assert "round(32768·e)" in DOC and labels.EDGE_SCALE == 32768
    assert "round(2²⁰·k)" in DOC and labels.KEYPOINT_SCALE == 2**20
    assert "σ = 3" in DOC and labels.EDGE_SIGMA == 3.0


def test_split_seed_ranges():
    assert contract.split_of_seed(0) == "train"
    assert contract.split_of_seed(999_999) == "train"
    assert contract.split_of_seed(1_000_000) == "val"
    assert contract.split_of_seed(2_500_000) == "test"
    with pytest.raises(ValueError):
        contract.split_of_seed(3_000_000)
    assert "1,000,000 … 1,999,999" in DOC


def test_group_ids_are_canonical():
    assert contract.group_id(["depth", "seg"]) == "seg+depth"
    assert contract.group_id(["rgb", "edge", "keypoint"]) == "edge+keypoint+rgb"
    assert contract.group_tasks("seg+depth") == ["seg", "depth"]
    with pytest.raises(ValueError):
        contract.group_tasks("depth+seg")
    with pytest.raises(ValueError):
        contract.group_id([])


def test_parse_task_list_aliases_and_errors():
    assert contract.parse_task_list("all") == list(contract.TASKS)
    assert contract.parse_task_list("depth_zbuffer, seg") == ["seg", "depth"]
    assert contract.parse_task_list("autoencoder") == ["rgb"]
    with pytest.raises(ValueError, match="unknown task 'sky'"):
        contract.parse_task_list("seg,sky")
    with pytest.raises(ValueError):
        contract.parse_task_list(" , ")
    with pytest.raises(ValueError):
        contract.parse_task_list("segment_semantic", allow_aliases=False)


def test_task_masks_round_trip():
    assert contract.task_mask(["seg"]) == 1
    assert contract.task_mask(["rgb", "depth"]) == 0b100010
    assert contract.mask_tasks(0b100010) == ["depth", "rgb"]
    with pytest.raises(ValueError):
        contract.mask_tasks(1 << 6)


def test_registry_matches_tasks():
    assert list(TASK_SPECS) == list(contract.TASKS)
    assert TASK_SPECS["seg"].channels == len(SEG_CLASSES)
    assert TASK_SPECS["normal"].channels == 3 and TASK_SPECS["rgb"].channels == 3
