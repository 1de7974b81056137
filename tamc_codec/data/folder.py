"""Data folders on disk: writing generated scenes, and reading them (or plain photos) back.

Layout (docs/CONTRACT.md): ``DIR/meta.json`` and ``DIR/<task>/NNNNNN.png``. meta.json
is written last, so a folder without it is an unfinished generation.
"""
from __future__ import annotations

import json
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Callable, Iterable

import numpy as np

from ..contract import IMAGE_DERIVED_TASKS, SPLIT_SEED_BASE, SPLIT_SEED_SPAN, TASKS, split_of_seed
from ..errors import TamcInputError
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


def read_image(path: str | Path | BinaryIO, *, max_pixels: int | None = None,
               check_size: Callable[[int, int], None] | None = None,
               notices: list[str] | None = None, name: str | None = None) -> np.ndarray:
    """An image file as uint8 RGB (the policy in docs/CLI.md); one-line TamcInputError when unusable.

    EXIF orientation is applied; palette, grey and 16-bit images become 8-bit RGB; alpha is
    composited on black; an embedded ICC profile is converted to sRGB; of several frames
    (animations, multi-page TIFF) the first is read, with a notice.

    path: a file, or a seekable binary stream (standard input read into memory, say).
    max_pixels: refuse images of more pixels, from the header alone.
    check_size: called with (height, width) from the header, before any pixel is decoded;
    raises TamcInputError to refuse the image (the codec's padded-size limit).
    When either is given, PIL's own decompression-bomb limit is lifted for the call, as the
    caller's limits replace it.
    notices: receives one line per change the caller's user should hear about (transparency
    dropped, an ICC profile that could not be applied, frames after the first ignored, damage
    Pillow warned about).
    name: how messages call the image (default: the path).
    """
    label = str(path) if name is None else name

    def note(text: str) -> None:
        if notices is not None:
            notices.append(f"{label}: {text}")

    # Pillow warns about damage it works around (corrupt EXIF, say) on stderr, in several lines;
    # they become notices, so that the user still hears of them and errors stay one line.
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        try:
            return _read_image(path, label, max_pixels, check_size, note)
        finally:
            for text in dict.fromkeys(" ".join(str(w.message).split()) for w in seen):
                note(f"Pillow: {text}")


def _read_image(path: str | Path | BinaryIO, name: str, max_pixels: int | None,
                check_size: Callable[[int, int], None] | None, note: Callable[[str], None]) -> np.ndarray:
    from PIL import Image, ImageOps, UnidentifiedImageError

    bomb_limit = Image.MAX_IMAGE_PIXELS
    if max_pixels is not None or check_size is not None:
        Image.MAX_IMAGE_PIXELS = None
    try:
        with Image.open(path) as im:
            w, h = im.size
            if w == 0 or h == 0:
                raise TamcInputError(f"{name}: the image is empty ({w}x{h} pixels)")
            if max_pixels is not None and w * h > max_pixels:
                raise TamcInputError(f"{name}: {w}x{h} is {w * h:,} pixels, more than the limit of {max_pixels:,}")
            if check_size is not None:
                try:
                    check_size(h, w)
                except TamcInputError as exc:
                    raise TamcInputError(f"{name}: {exc}") from None
            # is_animated, not n_frames: counting a GIF's frames walks all of them, which a crafted
            # file can make take minutes; is_animated looks for a second frame only
            if getattr(im, "is_animated", False):
                note("several frames (an animation or pages); only the first is coded")
            icc = im.info.get("icc_profile")
            # PIL decodes lazily and some plugins stop quietly at a truncation; load
            # here so that a damaged file fails inside this try, not later.
            im.load()
            try:
                im = ImageOps.exif_transpose(im)
            except Exception as exc:  # malformed EXIF is metadata damage, the pixels are fine
                note(f"EXIF orientation unreadable ({exc.__class__.__name__}); used as stored")
            if im.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (im.mode == "P" and "transparency" in im.info):
                im = im.convert("RGBA")
                if im.getchannel("A").getextrema()[0] < 255:
                    note("transparency dropped (composited on black)")
                background = Image.new("RGBA", im.size, (0, 0, 0, 255))
                im = Image.alpha_composite(background, im).convert("RGB")
            if im.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
                a = np.asarray(im, dtype=np.float64)
                im = Image.fromarray(np.clip(a / 257.0, 0, 255).astype(np.uint8))
            if icc:
                im = _to_srgb(im, icc, note)
            return np.asarray(im.convert("RGB"), dtype=np.uint8).copy()
    except TamcInputError:
        raise
    except FileNotFoundError:
        raise TamcInputError(f"{name}: no such file") from None
    except IsADirectoryError:
        raise TamcInputError(f"{name}: is a folder, not an image") from None
    except Image.DecompressionBombError:
        raise TamcInputError(f"{name}: too many pixels (more than PIL's limit of {2 * bomb_limit:,})") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, EOFError) as exc:
        detail = "truncated" if "truncated" in str(exc) else exc.__class__.__name__
        raise TamcInputError(f"{name}: not a readable image ({detail})") from None
    finally:
        Image.MAX_IMAGE_PIXELS = bomb_limit


def _to_srgb(im, icc: bytes, note: Callable[[str], None]):
    """`im` converted from its embedded ICC profile to sRGB; unchanged (with a notice) when that fails."""
    import io

    try:
        from PIL import ImageCms

        src = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        # Already sRGB: a conversion could only add rounding (lcms maps its own sRGB exactly, others by ±1).
        if ImageCms.getProfileDescription(src).strip().lower().startswith("srgb"):
            return im
        if im.mode not in ("RGB", "L", "CMYK"):
            im = im.convert("RGB")
        return ImageCms.profileToProfile(im, src, ImageCms.createProfile("sRGB"), outputMode="RGB")
    except Exception as exc:  # ImageCms raises PyCMSError, OSError or ValueError for profiles it cannot use
        reason = " ".join(str(exc).split())[:80] or exc.__class__.__name__
        note(f"ICC profile not applied ({reason}); pixels used as they are")
        return im


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
