"""An exported model, loaded for coding: ONNX sessions (lazily) and the entropy tables.

Only numpy, onnxruntime and constriction are imported; never torch.
"""
from __future__ import annotations

import os
from functools import cached_property
from pathlib import Path

import numpy as np

from ..errors import TamcModelError
from .manifest import DEFAULT_PARENT_INPUT, dag_ancestors, file_sha256, read_manifest, read_reference, scene_factor

#: Where models are looked up by id or name, after the shipped ones (docs/MODEL.md).
MODEL_PATH_ENV = "TAMC_MODEL_PATH"
#: How onnxruntime words an allocation failure: it raises its own Fail (or RuntimeException)
#: class with this text, not MemoryError, so callers could not tell it from a bug.
_ALLOCATION_FAILURES = ("Failed to allocate memory", "bad_alloc")


def _out_of_memory(exc: Exception) -> bool:
    return any(text in str(exc) for text in _ALLOCATION_FAILURES)


def shipped_models_dir() -> Path:
    return Path(__file__).resolve().parents[2] / "models"


def search_path() -> list[Path]:
    paths = [shipped_models_dir()]
    for p in os.environ.get(MODEL_PATH_ENV, "").split(os.pathsep):
        if p:
            paths.append(Path(p))
    return paths


def find_model(name_or_dir: str | None = None, model_id: str | None = None) -> Path:
    """A model folder: an explicit folder or name, else the one whose id matches (`model_id`: all 32
    hex digits, or a version-3 file's first 8), else the default."""
    if name_or_dir:
        p = Path(name_or_dir)
        if (p / "manifest.json").exists():
            return p
        for root in search_path():
            if (root / name_or_dir / "manifest.json").exists():
                return root / name_or_dir
        raise TamcModelError(f"no model {name_or_dir!r} (looked in {', '.join(str(r) for r in search_path())})")
    candidates = [d for root in search_path() if root.is_dir() for d in sorted(root.iterdir())
                  if (d / "manifest.json").exists()]
    if model_id is not None:
        # the model that wrote the file, else one that codes exactly as it did (CONTRACT.md, same
        # coding); a version-3 file names the first 8 hex digits only: the first model found whose
        # id starts so (its layer and scale-index checks catch a wrong one)
        model_id = model_id.lower()
        manifests = []
        for d in candidates:
            try:
                m = read_manifest(d)
            except TamcModelError:
                continue
            if m["model_id"].startswith(model_id):
                return d
            manifests.append((d, m))
        for d, m in manifests:
            if any(i.startswith(model_id) for i in m.get("same_coding_as", ())):
                return d
        raise TamcModelError(f"the file was made by model {model_id}, which is not installed "
                             f"(searched {', '.join(str(r) for r in search_path())}; set {MODEL_PATH_ENV} or pass --model)")
    if not candidates:
        raise TamcModelError("no tamc model is installed (models/ is empty); pass --model DIR")
    default = [d for d in candidates if d.name == "default"]
    return default[0] if default else candidates[0]


class RuntimeModel:
    """Graphs and tables of one exported model. Sessions are created on first use."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        self.manifest = read_manifest(self.folder)
        self.id = self.manifest["model_id"]
        self.groups: list[str] = list(self.manifest["groups"])
        self.order: list[str] = list(self.manifest["dag"]["order"])
        self.parents: dict[str, str | None] = dict(self.manifest["dag"]["parents"])
        self.serving: dict[str, str] = dict(self.manifest["serving"])
        self.qualities = len(self.manifest["qualities"])
        # which form of a decoded parent latent the child's parameter graphs take (docs/MODEL.md)
        self.parent_input: str = self.manifest.get("parent_input", DEFAULT_PARENT_INPUT)
        self.pad = int(self.manifest["padding_multiple"])
        #: picture pixels per latent position, and latent positions per hyper-latent position (the
        #: padding multiple is their product, so that every grid divides evenly: docs/MODEL.md)
        self.latent_stride = int(self.manifest["latent_stride"])
        self.hyper_stride = self.pad // self.latent_stride
        scene = self.manifest.get("scene_scale") or {}
        self.scene_groups: frozenset[str] = frozenset(scene.get("groups", ()))
        self.scene_tasks: frozenset[str] = frozenset(scene.get("tasks", ()))
        self.scene_size: int = int(scene.get("size", 0))
        #: picture groups (docs/MODEL.md, picture layers): group id -> its coding and per-quality settings
        self.pictures: dict[str, dict] = dict(self.manifest.get("pictures", {}))
        #: model ids whose files this model decodes bit-exactly (CONTRACT.md, same coding)
        self.reads: frozenset[str] = frozenset([self.id, *self.manifest.get("same_coding_as", ())])
        #: the first model that coded as this one does: equal ids, equal bits for every picture
        self.coding_id: str = (self.manifest.get("same_coding_as") or [self.id])[0]
        self._sessions: dict[str, object] = {}
        self._verified: set[str] = set()

    def verified_file(self, fname: str) -> Path:
        """The path of model file `fname`, checked once against its sha256 in the manifest."""
        path = self.folder / fname
        if fname not in self._verified:
            expected = self.manifest["files"].get(fname)
            if expected is None:
                raise TamcModelError(f"{self.folder}: {fname} is not listed in the manifest")
            if not path.exists():
                raise TamcModelError(f"{self.folder}: missing model file {fname}")
            if file_sha256(path) != expected:
                raise TamcModelError(f"{self.folder}: {fname} does not match its hash in the manifest")
            self._verified.add(fname)
        return path

    def session(self, fname: str, threads: int = 0):
        key = f"{fname}@{threads}"
        if key not in self._sessions:
            import onnxruntime as ort

            opts = ort.SessionOptions()
            opts.intra_op_num_threads = threads
            opts.inter_op_num_threads = 1
            # fatal only: a failed run's own log line would come before the CLI's one-line error
            opts.log_severity_level = 4
            try:
                self._sessions[key] = ort.InferenceSession(str(self.verified_file(fname)), sess_options=opts,
                                                           providers=["CPUExecutionProvider"])
            except TamcModelError:
                raise
            except Exception as exc:  # onnxruntime raises its own exception types
                if _out_of_memory(exc):
                    raise MemoryError(f"onnxruntime could not allocate memory loading {fname}") from None
                raise TamcModelError(f"{self.folder}: cannot load {fname} ({exc})") from None
        return self._sessions[key]

    def run(self, group: str | None, part: str, threads: int = 0, **inputs: np.ndarray) -> list[np.ndarray]:
        """Run one graph; an allocation failure inside onnxruntime raises MemoryError, as numpy's do."""
        spec = self.manifest["decoders"][part] if group is None else self.manifest["graphs"][group][part]
        sess = self.session(spec["file"], threads)
        feed = {name: np.ascontiguousarray(inputs[name], dtype=np.float32) for name in spec["inputs"]}
        try:
            return sess.run(spec["outputs"], feed)
        except MemoryError:
            raise
        except Exception as exc:
            if _out_of_memory(exc):
                raise MemoryError(f"onnxruntime could not allocate memory running {spec['file']}") from None
            raise

    @cached_property
    def trivial_loss(self) -> dict[str, float]:
        """Each task's trivial-predictor loss from reference.json, the unit of "loss / trivial";
        empty when the folder has none for this model."""
        ref = read_reference(self.folder, self.id)
        return {t: float(v) for t, v in ref["trivial_loss"].items()} if ref else {}

    @cached_property
    def tables(self) -> dict[str, np.ndarray]:
        with np.load(self.verified_file(self.manifest["tables"])) as z:
            return {k: z[k] for k in z.files}

    @cached_property
    def gaussian(self):
        from ..entropy import GaussianConditionalCoder

        return GaussianConditionalCoder.from_arrays(self.tables, prefix="gauss/")

    def hyper_coder(self, group: str):
        from ..entropy import FactorizedCoder

        k = self.groups.index(group)
        return FactorizedCoder.from_arrays(self.tables, prefix=f"z{k}/"), self.tables[f"z{k}/medians"]

    def fixed_hyper(self, group: str, quality: int) -> np.ndarray | None:
        """The hyper-latent symbols (Cz,) every position of `group`'s z takes at `quality` when the
        model fixes them (docs/MODEL.md, fixed hyper-latents: no z is coded), else None."""
        if group not in self.manifest.get("fixed_hyper", ()):
            return None
        return self.tables[f"z{self.groups.index(group)}/fixed"][quality - 1]

    def gains(self, group: str, quality: int) -> tuple[np.ndarray, np.ndarray]:
        k = self.groups.index(group)
        return self.tables[f"gain{k}"][quality - 1], self.tables[f"inv_gain{k}"][quality - 1]

    def is_picture(self, group: str) -> bool:
        """Whether `group` is a picture layer (coded by a picture codec, not a learned latent)."""
        return group in self.pictures

    def picture_codec(self, group: str, quality: int):
        """The codec of picture group `group` at `quality` (runtime.picture.PictureCodec)."""
        from .picture import PictureCodec

        return PictureCodec(self.pictures[group], quality, group)

    def factor(self, group: str, height: int, width: int) -> int:
        """How many times smaller than the picture `group` analyses it (CONTRACT.md, scene scale)."""
        if group not in self.scene_groups:
            return 1
        return scene_factor(self.scene_size, height, width)

    def task_factor(self, task: str, height: int, width: int) -> int:
        """How many times smaller than the picture `task`'s decoder reads its group's latent and
        predicts (CONTRACT.md, scene scale): the scene factor for a task decoded at scene scale,
        else its group's own factor."""
        if task in self.scene_tasks:
            return scene_factor(self.scene_size, height, width)
        return self.factor(self.serving[task], height, width)

    def pad_multiple(self, height: int, width: int) -> int:
        """The multiple a picture is padded to: every group's downsampled picture, and every
        latent a decoder reads at scene scale, pads evenly."""
        factors = [self.factor(g, height, width) for g in self.groups]
        factors += [self.task_factor(t, height, width) for t in self.serving]
        return self.pad * max(factors + [1])

    def ancestors(self, group: str) -> list[str]:
        """`group`'s DAG ancestors in coding order: the layers decoding it needs first."""
        up = dag_ancestors(self.parents, group)
        return [a for a in self.order if a in up]

    def decoder_context(self, task: str) -> list[str]:
        """The ancestor groups whose latents `task`'s decoder also reads, in the order it stacks
        them (CONTRACT.md, decoder context); [] for a decoder that reads its group alone."""
        if self.serving[task] in self.pictures:
            return []
        return list(self.manifest["decoders"][task].get("context", ()))

    def needed_groups(self, tasks: list[str]) -> list[str]:
        """The groups serving `tasks` and all their DAG ancestors, in coding order."""
        need: set[str] = set()
        for t in tasks:
            g: str | None = self.serving[t]
            while g is not None and g not in need:
                need.add(g)
                g = self.parents[g]
        return [g for g in self.order if g in need]
