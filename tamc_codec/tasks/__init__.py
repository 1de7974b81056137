"""Task registry, label definitions, losses, metrics and pictures (docs/CONTRACT.md)."""
from .registry import SEG_CLASSES, TASK_SPECS, TaskSpec, spec

__all__ = ["SEG_CLASSES", "TASK_SPECS", "TaskSpec", "spec"]
