"""The task registry: one entry per task with everything other parts need to know.

Losses live in :mod:`tamc_codec.tasks.losses` (torch), metrics in
:mod:`tamc_codec.tasks.metrics` and pictures in :mod:`tamc_codec.tasks.pictures`
(numpy), so that this module stays importable without torch.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..contract import TASK_CODES, TASKS

#: Semantic classes of the generated scenes (CONTRACT.md); 0 is ignored.
SEG_CLASSES: tuple[str, ...] = (
    "uncertain", "background", "box", "sphere", "cylinder", "cone",
    "table", "chair", "lamp", "shelf", "sofa",
)
SEG_IGNORE = 0


@dataclass(frozen=True)
class TaskSpec:
    name: str
    code: int
    #: channels a network predicts for the task (logits for seg)
    channels: int
    #: "classes" (cross-entropy over channels) or "dense" (regression)
    kind: str
    #: training target = (raw - offset) / scale; raw units per CONTRACT.md
    offset: float
    scale: float
    #: whether the label has invalid pixels (depth 65535, seg 0)
    masked: bool
    #: loss name and the human metric reported by benchmarks
    loss: str
    metric: str
    metric_higher_is_better: bool


# Normalisation constants measured on the generated training split with
# `python benchmarks/label_stats.py` (mean -> offset, std -> scale, rounded).
TASK_SPECS: dict[str, TaskSpec] = {
    "seg": TaskSpec("seg", 0, len(SEG_CLASSES), "classes", 0.0, 1.0, True,
                    "cross-entropy (class 0 ignored)", "mIoU", True),
    "depth": TaskSpec("depth", 1, 1, "dense", 3.3, 1.5, True,
                      "masked L1, 3x3 shift minimum", "abs-rel", False),
    "normal": TaskSpec("normal", 2, 3, "dense", 0.0, 1.0, True,
                       "masked L1, 3x3 shift minimum", "angular error (deg)", False),
    "edge": TaskSpec("edge", 3, 1, "dense", 0.06, 0.085, False,
                     "L1", "L1", False),
    "keypoint": TaskSpec("keypoint", 4, 1, "dense", 0.001, 0.0016, False,
                         "L1", "L1", False),
    "rgb": TaskSpec("rgb", 5, 3, "dense", 0.0, 1.0, False,
                    "L1", "PSNR (dB)", True),
}

assert tuple(TASK_SPECS) == TASKS and all(TASK_SPECS[t].code == TASK_CODES[t] for t in TASKS)


def spec(task: str) -> TaskSpec:
    try:
        return TASK_SPECS[task]
    except KeyError:
        raise ValueError(f"unknown task {task!r} (known: {', '.join(TASKS)})") from None
