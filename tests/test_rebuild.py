"""Networks rebuilt from an exported model: they compute what its graphs compute, and stages 1
and 2 can start from them."""
import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from tamc_codec.errors import TamcModelError  # noqa: E402
from tamc_codec.runtime.model import RuntimeModel  # noqa: E402
from tamc_codec.train.anchor import anchor_trivial, load_anchor  # noqa: E402


def test_the_rebuilt_network_computes_what_the_exported_graphs_compute(tiny_model):
    rt = RuntimeModel(tiny_model)
    model = load_anchor(tiny_model)
    assert model.groups == list(rt.groups) and model.serving == dict(rt.serving)
    image = np.random.default_rng(3).random((1, 3, 128, 64)).astype(np.float32)
    with torch.no_grad():
        latents = model.encode(torch.from_numpy(image))
    for g in rt.groups:
        theirs = rt.run(g, "analysis", image=image)[0]
        np.testing.assert_allclose(latents[g].numpy(), theirs, atol=1e-4)
        for task, serving in rt.serving.items():
            if serving == g:
                with torch.no_grad():
                    mine = model.decode(g, task, torch.from_numpy(theirs)).numpy()
                np.testing.assert_allclose(mine, rt.run(None, task, y=theirs)[0], atol=1e-4)
    reference = json.loads((tiny_model / "reference.json").read_text())
    assert anchor_trivial(tiny_model) == reference["trivial_loss"]


def test_a_model_whose_graph_was_altered_is_refused(tiny_model, tmp_path):
    import shutil

    import onnx
    from onnx import numpy_helper

    from tamc_codec.runtime.manifest import file_sha256, model_id

    copy = tmp_path / "model"
    shutil.copytree(tiny_model, copy)
    rt = RuntimeModel(copy)
    spec = rt.manifest["graphs"][rt.groups[0]]["analysis"]
    m = onnx.load(str(copy / spec["file"]))
    # a graph whose weights no longer fit the network's layout (a bias with the wrong length)
    init = next(i for i in m.graph.initializer if i.name.startswith("net.0.bias"))
    arr = numpy_helper.to_array(init)
    init.CopyFrom(numpy_helper.from_array(np.concatenate([arr, arr[:1]]), init.name))
    onnx.save(m, str(copy / spec["file"]))
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["files"][spec["file"]] = file_sha256(copy / spec["file"])
    manifest["model_id"] = model_id(manifest)
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(TamcModelError, match="encoder"):
        load_anchor(copy)


def test_stage2_starts_from_an_exported_model(tiny_model, tmp_path):
    from tamc_codec.train.stage2 import Stage2Config, train_stage2

    root = tiny_model.parent
    record = train_stage2(Stage2Config(anchor=str(tiny_model), dag=str(root / "dag.json"), data=str(root / "train"),
                                       val=str(root / "val"), out=str(tmp_path / "s2"), lambdas=[0.1, 0.5, 2.0],
                                       steps_entropy=2, steps_finetune=2, batch=2, crop=64, hyper_channels=8),
                          progress=False)
    assert record["steps"] == 4 and record["serving"] == dict(RuntimeModel(tiny_model).serving)
    assert (tmp_path / "s2" / "codec.pt").is_file()
