"""Task losses and metrics of every codec on the same images, computed the same way.

Every path ends in a *prediction* in the networks' normalised units (logits for seg):

- anchor (CTA and the uncompressed line): the stage-1 network on an image, or the exported
  model's own networks with the latent unquantised (``ModelAnchor``);
- label filter (CTA, edge / keypoint / rgb): CONTRACT.md's filter applied to the decoded
  image, normalised like a label (for rgb the filter is the identity: the decoded image);
- tamc (ATC): the model's task decoder on the latent the .tamc file decodes to.

Loss (``task_loss``, the training loss) and the human metric (``TaskMetrics``, CONTRACT
units) are then computed from that prediction and the normalised target by one code
path, so a number means the same thing for every codec.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..contract import TASKS
from ..errors import TamcInputError
from ..tasks.registry import TASK_SPECS

#: MS-SSIM's five scales with an 11-pixel window need sides above (11 - 1) * 2**4.
MSSSIM_MIN_SIDE = 161
#: Tasks whose label is a filter of the image, so a CTA receiver can run the filter itself.
FILTER_TASKS = ("edge", "keypoint", "rgb")
#: The headline metric of each task (a key of TaskMetrics.result() or "ms_ssim").
PRIMARY_METRIC = {"seg": "miou", "depth": "abs_rel", "normal": "angular_error_deg", "edge": "l1",
                  "keypoint": "l1", "rgb": "psnr_db"}
HIGHER_IS_BETTER = {"miou": True, "abs_rel": False, "rmse": False, "angular_error_deg": False, "l1": False,
                    "psnr_db": True, "ms_ssim": True}


# --------------------------------------------------------------------------- data


@dataclass
class BenchImages:
    """The images of a data folder with normalised targets (arrays.py target format)."""

    path: Path
    kind: str            # "scenes" or "images"
    folder: object
    tasks: list[str]
    count: int
    info: dict = field(default_factory=dict)

    def item(self, i: int) -> tuple[np.ndarray, dict]:
        import torch

        from ..data.arrays import normalise

        if self.kind == "scenes":
            stored = self.folder.stored(i)
            image = np.ascontiguousarray(stored["rgb"])
            targets = {t: torch.from_numpy(np.ascontiguousarray(normalise(t, stored[t]))) for t in self.tasks}
            return image, targets
        raw = self.folder[i]
        image = raw["image"]
        targets = {}
        for t in self.tasks:
            if t == "rgb":
                targets[t] = torch.from_numpy(np.moveaxis(image, -1, 0).astype(np.float32) / 255.0)
            else:
                s = TASK_SPECS[t]
                targets[t] = torch.from_numpy(((raw[t] - s.offset) / s.scale)[None].astype(np.float32))
        return image, targets


def open_images(path: str | Path, tasks: list[str] | None, limit: int | None) -> BenchImages:
    from ..data.folder import SceneFolder, open_data

    folder = open_data(path, tasks)
    kind = "scenes" if isinstance(folder, SceneFolder) else "images"
    chosen = list(folder.tasks) if tasks is None else list(tasks)
    count = len(folder) if limit is None else min(limit, len(folder))
    info: dict = {"path": str(path), "kind": kind, "count": len(folder), "images_used": count}
    if kind == "scenes":
        meta = folder.meta
        info.update({"generator": meta.get("generator"), "first_seed": meta.get("first_seed"),
                     "size": meta.get("size"), "split": meta.get("split"),
                     "seeds": [meta.get("first_seed"), meta.get("first_seed", 0) + count - 1]})
    else:
        info["files"] = [p.name for p in folder.files[:count]]
    return BenchImages(Path(path), kind, folder, sorted(chosen, key=TASKS.index), count, info)


def ensure_test_split(path: str | Path, count: int, size: int = 512, log=print) -> Path:
    """The documented test split at `path`, generated (deterministically) when absent."""
    from ..contract import SPLIT_SEED_BASE
    from ..data.folder import META, synthesize

    root = Path(path)
    if (root / META).exists():
        return root
    if root.exists() and any(root.iterdir()):
        raise TamcInputError(f"{root} exists but has no {META}; remove it or pass --data")
    log(f"generating {count} test scenes at {size}x{size} into {root} (seeds from {SPLIT_SEED_BASE['test']})")
    from tqdm import tqdm

    with tqdm(total=count, desc="synth test", unit="scene", dynamic_ncols=True) as bar:
        synthesize(root, count, size, SPLIT_SEED_BASE["test"], progress=bar.update)
    return root


# --------------------------------------------------------------------------- predictors


class _GroupAnchor:
    """What both anchors do alike: pad the picture as the codec does, analyse each group that
    serves a task once, at the scale the codec analyses it (CONTRACT.md, scene scale), and bring
    each task's prediction back to the picture's size. Subclasses say how a group is analysed
    and how a task is decoded."""

    tasks: list[str]
    groups: list[str]
    serving: dict[str, str]

    def _factor(self, group: str, h: int, w: int) -> int:
        raise NotImplementedError

    def _task_factor(self, task: str, h: int, w: int) -> int:
        """The scale a task is decoded at (CONTRACT.md, scene scale); by default its group's."""
        return self._factor(self.serving[task], h, w)

    def _pad_multiple(self, h: int, w: int) -> int:
        raise NotImplementedError

    def _latent(self, group: str, x: np.ndarray):
        raise NotImplementedError

    def _decode(self, group: str, task: str, latent) -> np.ndarray:
        raise NotImplementedError

    def _context(self, task: str) -> list[str]:
        """The groups besides its own whose latents `task`'s decoder reads."""
        return []

    def _predict(self, task: str, latents: dict, h: int, w: int) -> np.ndarray:
        """`task`'s prediction at the picture's size from the groups' latents."""
        from ..runtime.resample import downsample, upsample

        g = self.serving[task]
        f, ft = self._factor(g, h, w), self._task_factor(task, h, w)
        return upsample(self._decode(g, task, downsample(latents[g], ft // f)), ft)[:, :h, :w]

    def predict(self, image: np.ndarray) -> dict[str, np.ndarray]:
        from ..runtime import pad_picture
        from ..runtime.resample import downsample

        h, w = image.shape[:2]
        x = (pad_picture(image, self._pad_multiple(h, w)).astype(np.float32) / 255.0).transpose(2, 0, 1)[None]
        need = {self.serving[t] for t in self.tasks} | {a for t in self.tasks for a in self._context(t)}
        latents = {g: self._latent(g, downsample(x, self._factor(g, h, w))) for g in self.groups if g in need}
        return {t: self._predict(t, latents, h, w) for t in self.tasks}


class Anchor(_GroupAnchor):
    """The stage-1 network as a task model on any image (the CTA receivers' analysis).

    With `scale_of` (an exported model, runtime.model.RuntimeModel) each group analyses the
    picture at the scale that model's codec uses (CONTRACT.md, scene scale), so that the anchor
    is the codec's own analysis without the coding."""

    def __init__(self, path: str | Path, tasks: list[str], scale_of=None):
        import torch

        from ..train.anchor import load_anchor

        self.path = Path(path)
        if not self.path.is_file():
            raise TamcInputError(f"{self.path}: no anchor (stage-1 anchor.pt); pass --anchor")
        self.model = load_anchor(self.path)
        self.trivial = dict(torch.load(self.path, map_location="cpu", weights_only=False)["trivial"])
        missing = [t for t in tasks if t not in self.model.serving]
        if missing:
            raise TamcInputError(f"the anchor {self.path} has no decoder for {', '.join(missing)}")
        self.tasks = list(tasks)
        self.serving = self.model.serving
        self.groups = [g for g in self.model.groups if g in {self.serving[t] for t in tasks}]
        self.scale_of = scale_of

    def _factor(self, group: str, h: int, w: int) -> int:
        return 1 if self.scale_of is None else self.scale_of.factor(group, h, w)

    def _pad_multiple(self, h: int, w: int) -> int:
        from ..train.export import PAD_MULTIPLE  # the networks' own: the anchor pads as the codec would

        return PAD_MULTIPLE if self.scale_of is None else self.scale_of.pad_multiple(h, w)

    def _latent(self, group: str, x: np.ndarray):
        import torch

        with torch.no_grad():
            return self.model.encode(torch.from_numpy(x), [group])[group]

    def _decode(self, group: str, task: str, latent) -> np.ndarray:
        import torch

        with torch.no_grad():
            return self.model.decode(group, task, latent)[0].float().numpy()

    def provenance(self) -> dict:
        from ..runtime.manifest import file_sha256

        return {"kind": "stage1", "path": str(self.path), "sha256": file_sha256(self.path),
                "groups": self.model.groups, "serving": self.model.serving, "trivial_loss": self.trivial}

    def fingerprint(self) -> dict:
        """What this anchor's predictions depend on, per task (bench.reuse): the network file's
        SHA-256, the group serving the task and the scale it is analysed at (the benchmarked
        model's scene scale and padding), and torch's version."""
        import torch

        from ..runtime.manifest import file_sha256
        from .reuse import digest

        sha = file_sha256(self.path)
        if self.scale_of is None:
            from ..train.export import PAD_MULTIPLE

            scale: dict = {"padding_multiple": PAD_MULTIPLE}
        else:
            m = self.scale_of.manifest
            scale = {"scene_scale": m.get("scene_scale"), "padding_multiple": m.get("padding_multiple"),
                     "groups": list(m.get("groups", [])), "serving": dict(m.get("serving", {}))}
        tasks = {t: digest({"network": sha, "group": self.serving[t], "scale": scale}) for t in self.tasks}
        return {"kind": "stage1", "runtime": {"torch": torch.__version__}, "files": {self.path.name: sha},
                "sha256": digest({self.path.name: sha}), "tasks": tasks}


class ModelAnchor(_GroupAnchor):
    """An exported model's own networks without the coding, as a task model on any image: each
    serving group's analysis at the codec's scale, its latent unquantised (the limit of ever
    finer quantisation), the serving decoders. Needs nothing beyond the model folder, so `tamc
    bench` runs right after install; its line is what the model's networks reach when rate is no
    object, which is not the stage-1 anchor the model was trained from (docs/BENCH.md)."""

    def __init__(self, rt, tasks: list[str], threads: int | None = None):
        missing = [t for t in tasks if t not in rt.serving]
        if missing:
            raise TamcInputError(f"model {rt.folder} does not serve {', '.join(missing)}")
        self.rt = rt
        self.tasks = list(tasks)
        self.serving = rt.serving
        self.groups = list(rt.order)
        self.trivial = dict(rt.trivial_loss)
        self.threads = threads

    def _factor(self, group: str, h: int, w: int) -> int:
        return self.rt.factor(group, h, w)

    def _pad_multiple(self, h: int, w: int) -> int:
        return self.rt.pad_multiple(h, w)

    def _latent(self, group: str, x: np.ndarray) -> np.ndarray:
        from ..runtime import default_threads

        if self.rt.is_picture(group):  # a picture layer's limit is the picture itself
            return np.clip(np.rint(x[0].transpose(1, 2, 0) * 255.0), 0, 255).astype(np.uint8)
        return self.rt.run(group, "analysis", default_threads() if self.threads is None else self.threads, image=x)[0]

    def _context(self, task: str) -> list[str]:
        return self.rt.decoder_context(task)

    def _predict(self, task: str, latents: dict, h: int, w: int) -> np.ndarray:
        from ..runtime import task_prediction

        return task_prediction(self.rt, task, latents, h, w, self.threads)

    def provenance(self) -> dict:
        return {"kind": "model", "path": str(self.rt.folder), "model_id": self.rt.id, "groups": self.rt.groups,
                "serving": self.rt.serving, "trivial_loss": self.trivial}

    def fingerprint(self) -> dict:
        """What this anchor's predictions depend on, per task (bench.reuse): the SHA-256 of each
        graph file it runs for the task (the analysis of its group and of the groups its decoder
        reads as context, the task decoder; none for a picture layer's task, whose prediction is
        the filter of the picture), how they are wired and the scale they run at, and
        onnxruntime's version. Not the model id: models that share these networks and differ in
        their entropy coding give the same rows."""
        import onnxruntime

        from ..runtime.manifest import file_sha256
        from .reuse import digest

        rt, m = self.rt, self.rt.manifest
        shared = {"scene_scale": m.get("scene_scale"), "padding_multiple": m.get("padding_multiple"),
                  "groups": list(m.get("groups", [])), "serving": dict(m.get("serving", {}))}
        files: dict[str, str] = {}
        tasks: dict[str, str] = {}
        for t in self.tasks:
            g = rt.serving[t]
            graphs = [m["graphs"][a]["analysis"] for a in [g, *self._context(t)] if not rt.is_picture(a)]
            if not rt.is_picture(g):
                graphs.append(m["decoders"][t])
            own = {}
            for spec in graphs:
                if spec["file"] not in files:
                    files[spec["file"]] = file_sha256(rt.folder / spec["file"])
                own[spec["file"]] = files[spec["file"]]
            tasks[t] = digest({"files": own, "group": g, "picture": rt.is_picture(g), "context": self._context(t),
                               "io": [[spec.get("inputs"), spec.get("outputs")] for spec in graphs], **shared})
        return {"kind": "model", "runtime": {"onnxruntime": onnxruntime.__version__}, "files": files,
                "sha256": digest(files), "tasks": tasks}


def filter_prediction(task: str, image: np.ndarray) -> np.ndarray:
    """The exact label filter on an image, in the normalised units networks predict: the same
    function a picture layer's receiver runs (runtime.picture.picture_prediction)."""
    from ..runtime.picture import picture_prediction

    return picture_prediction(task, image)


# --------------------------------------------------------------------------- scoring


class TaskScore:
    """Loss and metrics of one task at one curve point, accumulated over images."""

    def __init__(self, task: str):
        from ..train.evaluation import TaskMetrics

        self.task = task
        self.metrics = TaskMetrics(task)
        self.loss_sum = 0.0
        self.n = 0
        self.bits = 0.0
        self.pixels = 0
        self.msssim_sum = 0.0
        self.msssim_n = 0

    def add(self, pred: np.ndarray, target, bits: float | None = None) -> None:
        import torch

        from ..tasks.losses import task_loss

        if self.task == "rgb":
            # what a receiver gets is an 8-bit image
            pred = np.rint(np.clip(pred, 0.0, 1.0) * 255.0) / 255.0
        p = torch.from_numpy(np.ascontiguousarray(pred, dtype=np.float32))[None]
        tgt = target[None]
        self.loss_sum += float(task_loss(self.task, p, tgt))
        self.metrics.update(p, tgt)
        self.n += 1
        h, w = target.shape[-2:]
        if bits is not None:
            self.bits += bits
            self.pixels += h * w
        if self.task == "rgb" and min(h, w) >= MSSSIM_MIN_SIDE:
            from pytorch_msssim import ms_ssim

            self.msssim_sum += float(ms_ssim(p * 255.0, tgt * 255.0, data_range=255.0, size_average=True))
            self.msssim_n += 1

    def result(self, trivial: dict[str, float]) -> dict:
        loss = self.loss_sum / max(self.n, 1)
        out: dict = {}
        if self.pixels:
            out["bpp"] = self.bits / self.pixels
        out["loss"] = loss
        out["normalised_loss"] = loss / trivial[self.task] if trivial.get(self.task) else None
        out.update({k: _num(v) for k, v in self.metrics.result().items()})
        if self.task == "rgb":
            out["ms_ssim"] = self.msssim_sum / self.msssim_n if self.msssim_n else None
        return out


def _num(v: float) -> float | None:
    v = float(v)
    return v if np.isfinite(v) else None


class Point:
    """One setting of one codec: rate, times and every task's score."""

    def __init__(self, setting, tasks: list[str]):
        self.setting = setting
        self.scores = {t: TaskScore(t) for t in tasks}
        self.bits = 0.0
        self.pixels = 0
        self.times: dict[str, list[float]] = {}

    def time(self, key: str, seconds: float) -> None:
        self.times.setdefault(key, []).append(seconds)

    def result(self, trivial: dict[str, float]) -> dict:
        out = {"setting": self.setting, "bpp": self.bits / self.pixels if self.pixels else None,
               "images": max((s.n for s in self.scores.values()), default=0)}
        for k, v in self.times.items():
            out[f"{k}_s"] = float(np.mean(v))
        out["tasks"] = {t: s.result(trivial) for t, s in self.scores.items()}
        return out


# --------------------------------------------------------------------------- tamc (ATC)


def tamc_layer_bytes(data: bytes, tasks: list[str]) -> dict[str, int]:
    """Bytes a receiver of each task reads: header and index, then its layer chain."""
    from ..bitstream import TamcReader

    with TamcReader(data) as reader:
        head = reader.header_size
        return {t: head + sum(reader.layers[i].length for i in reader.layers_for_task(t)) for t in tasks}


def tamc_predictions(rt, enc, tasks: list[str], threads: int | None = None) -> dict[str, np.ndarray]:
    """Task decoder outputs (normalised units) on the latents the file decodes to."""
    from ..runtime import task_prediction

    return {t: task_prediction(rt, t, enc.latents, enc.height, enc.width, threads) for t in tasks}


def timed_decode(rt, data: bytes, task: str, expected_pred: np.ndarray,
                 threads: int | None = None) -> tuple[float, bool]:
    """Decode one task through the public API; time it and check it matches the prediction used."""
    from ..runtime import decode_task, raw_output

    t0 = time.perf_counter()
    res = decode_task(data, task, rt, threads=threads)
    seconds = time.perf_counter() - t0
    want = raw_output(task, expected_pred, rt)
    if want.dtype == np.uint8:
        same = bool(np.array_equal(want, res.output))
    else:
        same = bool(np.allclose(want, res.output, rtol=1e-4, atol=1e-5))
    return seconds, same


def quick_qualities(q: int, count: int = 3) -> list[int]:
    """`count` qualities spread over 1..q, ends included."""
    return sorted({int(round(v)) for v in np.linspace(1, q, min(count, q))})


__all__ = ["BenchImages", "open_images", "ensure_test_split", "Anchor", "filter_prediction", "TaskScore", "Point",
           "tamc_layer_bytes", "tamc_predictions", "timed_decode", "quick_qualities", "PRIMARY_METRIC",
           "HIGHER_IS_BETTER", "FILTER_TASKS"]
