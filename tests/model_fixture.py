"""A tiny trained-and-exported model for codec tests (seconds to build, not a test module).

Three groups with a DAG edge, every stage of the real pipeline: generated data ->
stage 1 -> DAG -> stage 2 -> export. Its outputs are poor (tiny nets, few steps);
the tests check the codec's mechanics, not quality.
"""
from __future__ import annotations

import json
from pathlib import Path

GROUPS = ["seg+depth+normal", "depth+edge", "edge+keypoint+rgb"]
PARENTS = {"seg+depth+normal": None, "depth+edge": "seg+depth+normal", "edge+keypoint+rgb": "seg+depth+normal"}


def build_tiny_model(root: Path, parent_input: str = "dequantised") -> Path:
    from tamc_codec.data.folder import synthesize
    from tamc_codec.nets.multitask import NetConfig
    from tamc_codec.train.export import export_model
    from tamc_codec.train.stage1 import Stage1Config, train_stage1
    from tamc_codec.train.stage2 import Stage2Config, train_stage2

    root = Path(root)
    synthesize(root / "train", 6, 64, 0, workers=1)
    synthesize(root / "val", 2, 64, 1_000_000, workers=1)
    # the shipped recipe's network options, so the codec tests run the graphs they build
    net = NetConfig(latent_channels=8, encoder_channels=(8, 8, 8), decoder_channels=(8, 8, 8),
                    full_res_channels=8, norm="group", coords=True).to_dict()
    train_stage1(Stage1Config(data=str(root / "train"), val=str(root / "val"), groups=GROUPS, out=str(root / "s1"),
                              steps=6, batch=2, crop=64, warmup=1, eval_every=6, ckpt_every=6, trivial_samples=4,
                              net=net), progress=False)
    _fix_serving(root / "s1" / "anchor.pt")
    from tamc_codec.dag.dag import fixed_dag

    (root / "dag.json").write_text(json.dumps(fixed_dag(GROUPS, PARENTS, GROUPS, "manual")))
    train_stage2(Stage2Config(anchor=str(root / "s1" / "anchor.pt"), dag=str(root / "dag.json"),
                              data=str(root / "train"), val=str(root / "val"), out=str(root / "s2"),
                              lambdas=[0.1, 0.5, 2.0], steps_entropy=4, steps_finetune=2, batch=2, crop=64,
                              hyper_channels=8, ckpt_every=6, parent_input=parent_input), progress=False)
    _amplify_latents(root / "s2" / "codec.pt", 16.0)
    export_model(root / "s2" / "codec.pt", root / "model", name="tiny")
    return root / "model"


SERVING = {"seg": "seg+depth+normal", "normal": "seg+depth+normal", "depth": "depth+edge", "edge": "depth+edge",
           "keypoint": "edge+keypoint+rgb", "rgb": "edge+keypoint+rgb"}


def _fix_serving(anchor_pt: Path) -> None:
    """Every group serves something, whatever a few training steps measured."""
    import torch

    state = torch.load(anchor_pt, map_location="cpu", weights_only=False)
    state["describe"]["serving"] = dict(SERVING)
    torch.save(state, anchor_pt)


def _amplify_latents(codec_pt: Path, factor: float) -> None:
    """Scale every encoder's output up (and decoders' inputs down to match).

    A few training steps leave latents near zero, where every quality codes the same
    all-zero symbols; real models have latents of several quantisation steps, and the
    codec tests need that regime to see rates differ.
    """
    import torch

    state = torch.load(codec_pt, map_location="cpu", weights_only=False)
    sd = state["model"]
    last: dict[str, int] = {}
    for k in sd:
        parts = k.split(".")  # base.encoders.<group>.net.<i>.weight
        if k.startswith("base.encoders.") and parts[3] == "net":
            last[parts[2]] = max(last.get(parts[2], 0), int(parts[4]))
    for k in list(sd):
        parts = k.split(".")
        if k.startswith("base.encoders.") and parts[3] == "net" and int(parts[4]) == last[parts[2]]:
            sd[k] = sd[k] * factor
        elif k.startswith("base.decoders.") and k.endswith("net.0.weight"):
            sd[k] = sd[k] / factor
    torch.save(state, codec_pt)


def with_scene_scale(model: Path, folder: Path, groups: list[str], size: int, tasks: tuple[str, ...] = (),
                     keep_reference: bool = True) -> Path:
    """A copy of an exported model whose manifest puts `groups` (analysis) and `tasks` (decoding)
    at scene scale `size`; its reference.json follows the new model id if `keep_reference`, else
    it is left stale (naming the source's id)."""
    import shutil

    from tamc_codec.runtime.manifest import REFERENCE, model_id

    shutil.copytree(model, folder)
    m = json.loads((folder / "manifest.json").read_text())
    m["scene_scale"] = {"size": size, "groups": list(groups), **({"tasks": list(tasks)} if tasks else {})}
    m["model_id"] = model_id(m)
    (folder / "manifest.json").write_text(json.dumps(m))
    ref_path = folder / REFERENCE
    if keep_reference and ref_path.exists():
        ref = json.loads(ref_path.read_text())
        ref_path.write_text(json.dumps({**ref, "model_id": m["model_id"]}))
    return folder
