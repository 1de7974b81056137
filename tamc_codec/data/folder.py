"""Data folders on disk: writing generated scenes, and reading them (or plain photos) back.

Layout (docs/CONTRACT.md): ``DIR/meta.json`` and ``DIR/<task>/NNNNNN.png``. meta.json
is written last, so a folder without it is an unfinished generation.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from ..contract import IMAGE_DERIVED_TASKS, SPLIT_SEED_BASE, SPLIT_SEED_SPAN, TASKS, split_of_seed
from ..errors import TamcInputError
from ..runtime.images import read_image
from ..tasks import labels
from ..tasks.registry import SEG_CLASSES

META = "meta.json"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".tif", ".tiff", ".bmp")


def _write_png(path: Path, array: np.ndarray) -> None:
    from PIL import Image

    tmp = path.with_name(path.name + ".tmp")
    Image.fromarray(array).save(tmp, format="PNG", compress_level=1)
    os.replace(tmp, path)


def _render_one(job: tuple[str, int, int, int, tuple[str, ...], str]) -> int:
    out, index, seed, size, photos, material_set = job
    from . import synth

    s = synth.generate(seed, size, photos, material_set)
    root = Path(out)
    name = f"{index:06d}.png"
    _write_png(root / "rgb" / name, s["rgb"])
    _write_png(root / "seg" / name, s["seg"].astype(np.uint8))
    _write_png(root / "depth" / name, labels.depth_to_png(s["depth"], s["valid"]))
    normal = labels.normal_to_png(s["normal"])
    normal[~s["valid"]] = 0
    _write_png(root / "normal" / name, normal)
    _write_png(root / "edge" / name, labels.edge_to_png(s["edge"]))
    _write_png(root / "keypoint" / name, labels.keypoint_to_png(s["keypoint"]))
    return index


def synthesize(out: str | Path, count: int, size: int, seed: int, *, workers: int | None = None,
               force: bool = False, progress: Callable[[int], None] | None = None,
               materials: str = "standard") -> dict:
    """Render `count` scenes with seeds seed..seed+count-1 into `out`; returns meta.json's content.

    `materials` picks the material set (textures.MATERIAL_SETS); `wide` is for training splits only,
    so validation and test scenes always look the way the reported numbers assume.
    """
    from . import synth, textures

    if count < 1:
        raise TamcInputError("--count must be at least 1")
    if not 32 <= size <= 2048 or size % 16:
        raise TamcInputError(f"--size must be a multiple of 16 between 32 and 2048 (got {size})")
    try:
        split = split_of_seed(seed)
        if split_of_seed(seed + count - 1) != split:
            raise ValueError
    except ValueError:
        raise TamcInputError(
            f"scene seeds {seed}..{seed + count - 1} must lie inside one split's range "
            f"(train {SPLIT_SEED_BASE['train']}, val {SPLIT_SEED_BASE['val']}, test {SPLIT_SEED_BASE['test']}, "
            f"{SPLIT_SEED_SPAN} seeds each)") from None
    if materials not in textures.MATERIAL_SETS:
        raise TamcInputError(f"--materials must be one of {', '.join(textures.MATERIAL_SETS)} (got {materials!r})")
    if materials != "standard" and split != "train":
        raise TamcInputError(f"--materials {materials} is for the train split only; {split} scenes use the standard set")
    root = Path(out)
    if root.exists() and not root.is_dir():
        raise TamcInputError(f"{root} exists and is not a folder")
    if root.exists() and any(root.iterdir()) and not force:
        raise TamcInputError(f"{root} is not empty; choose another --out or pass --force to overwrite it")
    for t in TASKS:
        (root / t).mkdir(parents=True, exist_ok=True)
    (root / META).unlink(missing_ok=True)
    photos = textures.PHOTO_SPLITS[split]
    jobs = [(str(root), i, seed + i, size, photos, materials) for i in range(count)]
    workers = workers or min(os.cpu_count() or 1, count)
    if workers > 1:
        import multiprocessing as mp

        # fork keeps start-up cheap; every scene depends on its seed alone, so the
        # worker that renders it does not matter
        ctx = mp.get_context("fork")
        with ctx.Pool(workers) as pool:
            for _ in pool.imap_unordered(_render_one, jobs, chunksize=2):
                if progress:
                    progress(1)
    else:
        for job in jobs:
            _render_one(job)
            if progress:
                progress(1)
    meta = {
        "generator": {"name": synth.GENERATOR, "version": synth.GENERATOR_VERSION},
        "first_seed": seed,
        "count": count,
        "size": size,
        "split": split,
        "classes": list(SEG_CLASSES),
        "intrinsics": synth.intrinsics(size),
        "textures": list(photos),
        "materials": materials,
        "label_scales": dict(labels.LABEL_SCALES),
        "tasks": list(TASKS),
    }
    tmp = root / (META + ".tmp")
    tmp.write_text(json.dumps(meta, indent=2) + "\n")
    os.replace(tmp, root / META)
    return meta


# --------------------------------------------------------------------------- reading


def _read_label(path: Path) -> np.ndarray:
    from PIL import Image

    try:
        with Image.open(path) as im:
            return np.asarray(im).copy()
    except FileNotFoundError:
        raise TamcInputError(f"{path}: missing label file") from None
    except OSError as exc:
        raise TamcInputError(f"{path}: unreadable label ({exc})") from None


@dataclass
class SceneFolder:
    """A generated data folder. Items are dicts of raw labels in CONTRACT.md units."""

    root: Path
    meta: dict
    tasks: tuple[str, ...]

    @classmethod
    def open(cls, path: str | Path, tasks: Iterable[str] | None = None) -> "SceneFolder":
        root = Path(path)
        if not root.is_dir():
            raise TamcInputError(f"{root}: no such data folder")
        meta_path = root / META
        if not meta_path.is_file():
            raise TamcInputError(f"{root}: no {META}; the folder is not generated data or its generation did not finish")
        try:
            meta = json.loads(meta_path.read_text())
            count = int(meta["count"])
        except (ValueError, KeyError, TypeError) as exc:
            raise TamcInputError(f"{meta_path}: malformed ({exc})") from None
        tasks = tuple(TASKS if tasks is None else tasks)
        for t in tasks:
            if t not in TASKS:
                raise TamcInputError(f"unknown task {t!r}")
            folder = root / t
            have = {p.name for p in folder.glob("*.png")} if folder.is_dir() else set()
            missing = [f"{i:06d}.png" for i in range(count) if f"{i:06d}.png" not in have]
            if missing:
                raise TamcInputError(
                    f"{root}: task {t!r} has no labels for {len(missing)} of {count} scenes (first missing: {t}/{missing[0]})")
        return cls(root, meta, tasks)

    def __len__(self) -> int:
        return int(self.meta["count"])

    def __getitem__(self, i: int) -> dict[str, np.ndarray]:
        if not 0 <= i < len(self):
            raise IndexError(i)
        name = f"{i:06d}.png"
        out: dict[str, np.ndarray] = {"image": _read_label(self.root / "rgb" / name)}
        for t in self.tasks:
            a = _read_label(self.root / t / name)
            if t == "depth":
                out["depth"], out["valid"] = labels.depth_from_png(a)
            elif t == "normal":
                out["normal"] = labels.normal_from_png(a)
            elif t == "edge":
                out["edge"] = labels.edge_from_png(a)
            elif t == "keypoint":
                out["keypoint"] = labels.keypoint_from_png(a)
            elif t == "rgb":
                out["rgb"] = a
            else:
                out["seg"] = a
        return out

    def stored(self, i: int) -> dict[str, np.ndarray]:
        """Item i as stored on disk (uint8/uint16 PNG arrays), for compact caches."""
        name = f"{i:06d}.png"
        return {t: _read_label(self.root / t / name) for t in set(self.tasks) | {"rgb"}}


@dataclass
class ImageFolder:
    """A plain folder of photos: only the image-derived tasks (edge, keypoint, rgb) have labels."""

    root: Path
    files: list[Path]
    tasks: tuple[str, ...]

    @classmethod
    def open(cls, path: str | Path, tasks: Iterable[str] | None = None) -> "ImageFolder":
        root = Path(path)
        if not root.is_dir():
            raise TamcInputError(f"{root}: no such folder")
        tasks = tuple(IMAGE_DERIVED_TASKS if tasks is None else tasks)
        bad = [t for t in tasks if t not in IMAGE_DERIVED_TASKS]
        if bad:
            raise TamcInputError(
                f"a plain image folder has no labels for {', '.join(bad)} (only {', '.join(IMAGE_DERIVED_TASKS)})")
        files = sorted(p for p in root.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise TamcInputError(f"{root}: no images ({', '.join(IMAGE_SUFFIXES)})")
        return cls(root, files, tasks)

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> dict[str, np.ndarray]:
        img = read_image(self.files[i])
        out: dict[str, np.ndarray] = {"image": img}
        if "rgb" in self.tasks:
            out["rgb"] = img
        if "edge" in self.tasks:
            out["edge"] = labels.edge_label(img)
        if "keypoint" in self.tasks:
            out["keypoint"] = labels.keypoint_label(img)
        return out


def open_data(path: str | Path, tasks: Iterable[str] | None = None) -> SceneFolder | ImageFolder:
    """A generated folder if it has meta.json, else a plain image folder."""
    root = Path(path)
    if (root / META).exists():
        return SceneFolder.open(root, tasks)
    if root.is_dir() and (root / "rgb").is_dir() and not any(p.suffix.lower() in IMAGE_SUFFIXES for p in root.iterdir()):
        raise TamcInputError(f"{root}: no {META}; the folder is not generated data or its generation did not finish")
    return ImageFolder.open(root, tasks)
