"""What training batches show (``--views``, ``--large-data``, ``--large-crop``; stages 1 and 2):
the datasets that training batches alternate between."""
from __future__ import annotations

from ..data.torch_dataset import MultiTaskDataset
from ..errors import TamcInputError
from . import VIEWS


def training_views(crops: MultiTaskDataset, data: str, views: str,
                   large_data: str | None = None, large_crop: int | None = None) -> list[MultiTaskDataset]:
    """The datasets that training batches alternate between (Stage1Config.views, large_data
    and large_crop); `crops` is the training folder `data` read as random crops."""
    if views not in VIEWS:
        raise TamcInputError(f"unknown views {views!r} (known: {', '.join(VIEWS)})")
    sources = [crops]
    crop = crops.crop
    if views in ("mix", "rooms"):
        if crop is None or crop >= crops.size or crops.size % crop:
            raise TamcInputError(f"--views {views} needs a crop that divides the scene size ({crops.size}) "
                                 f"into whole scenes at a smaller scale; got --crop {crop}")
        sources.append(MultiTaskDataset(data, crops.tasks, crop=None, train=True, downsample=crops.size // crop))
    if views == "rooms":
        sources.append(MultiTaskDataset(data, crops.tasks, crop=None, train=True))
    if large_crop is not None and large_data is None:
        raise TamcInputError("--large-crop is the crop of --large-data's scenes; give --large-data too")
    if large_data is not None:
        large_side = large_crop or crop
        large = MultiTaskDataset(large_data, crops.tasks, train=True)
        if large.size <= crops.size:
            raise TamcInputError(f"--large-data scenes ({large.size}²) must be larger than --data's "
                                 f"({crops.size}²): they add the scale of larger pictures")
        if large_side is not None and not 0 < large_side <= large.size:
            raise TamcInputError(f"--large-crop {large_side} does not fit --large-data's scenes ({large.size}²)")
        large.crop = large_side
        sources.append(large)
    return sources


__all__ = ["training_views"]
