"""Fixed hyper-latents (docs/MODEL.md): a group that codes no z writes two sub-streams, decodes
exactly what its encoder assumed, and the rest of the model is untouched."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tamc_codec.bitstream import TamcReader
from tamc_codec.errors import TamcInputError
from tamc_codec.runtime import decode_task, encode_image, load_model
from tamc_codec.runtime.layer_codec import LayerCodec

SCENE = Path(__file__).resolve().parent / "data" / "tiny_scene.png"


@pytest.fixture(scope="module")
def pictures(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("fixed_pictures")
    img = np.asarray(Image.open(SCENE).convert("RGB"))
    for i, p in enumerate((img, img[:, ::-1], img[::-1], np.rot90(img, 2))):
        Image.fromarray(np.ascontiguousarray(p)).save(folder / f"{i}.png")
    return folder


@pytest.fixture(scope="module")
def fixed_model(tiny_exported, pictures, tmp_path_factory) -> tuple[Path, dict]:
    from tamc_codec.picture_layer.build import read_pictures
    from tamc_codec.train.fixed_hyper import choose_fixed_hyper, write_fixed_hyper_model

    measured = choose_fixed_hyper(tiny_exported, read_pictures(pictures)[0])
    out = tmp_path_factory.mktemp("fixed") / "m"
    # the tiny model's z is worth its bytes or not: fix two groups, a root and its child, regardless
    chosen = {g: measured[g]["fixed"] for g in ("seg+depth+normal", "depth+edge")}
    write_fixed_hyper_model(tiny_exported, out, chosen, name="fixed")
    return out, measured


def test_the_search_never_costs_information_and_records_every_quality(tiny_exported, fixed_model):
    _, measured = fixed_model
    rt = load_model(str(tiny_exported))
    assert set(measured) == set(rt.groups)
    for g, r in measured.items():
        k = rt.groups.index(g)
        assert r["fixed"].shape == (rt.qualities, rt.tables[f"z{k}/medians"].shape[0])
        assert r["fixed"].dtype == np.int32
        assert len(r["coded_bytes"]) == len(r["fixed_bytes"]) == rt.qualities
        assert r["chosen"] == all(f < c for f, c in zip(r["fixed_bytes"], r["coded_bytes"]))


def test_a_fixed_group_codes_two_substreams_and_decodes_bit_exactly(tiny_exported, fixed_model):
    out, _ = fixed_model
    rt, base = load_model(str(out)), load_model(str(tiny_exported))
    assert rt.id != base.id and rt.manifest["fixed_hyper"] == ["seg+depth+normal", "depth+edge"]
    # every network is the source's
    for f in base.manifest["files"]:
        if f != "tables.npz":
            assert (out / f).read_bytes() == (Path(tiny_exported) / f).read_bytes()
    for q in (1, rt.qualities):
        enc = encode_image(str(SCENE), "all", q, rt)
        subs = {layer["group"]: layer["substreams"] for layer in enc.layers}
        assert len(subs["seg+depth+normal"]) == len(subs["depth+edge"]) == 2
        assert len(subs["edge+keypoint+rgb"]) == 3
        reader = TamcReader(enc.data)
        for t in rt.serving:
            dec = decode_task(enc.data, t, rt)
            assert dec.output.shape[:2] == (enc.height, enc.width)
        for li, entry in enumerate(reader.layers):
            assert len(reader.read_payload(li).streams) == len(subs[rt.groups[entry.group]])
        # the decoder's latents are the encoder's, bit for bit
        g = "depth+edge"
        li = next(i for i, e in enumerate(reader.layers) if rt.groups[e.group] == g)
        root = next(i for i, e in enumerate(reader.layers) if rt.groups[e.group] == "seg+depth+normal")
        step = rt.latent_stride * rt.factor(g, enc.height, enc.width)
        grid = (enc.padded_height // step, enc.padded_width // step)
        parent = LayerCodec(rt, "seg+depth+normal", q, grid).decode(reader.read_payload(root), "root")
        assert np.array_equal(parent.latent, enc.latents["seg+depth+normal"])
        child = LayerCodec(rt, g, q, grid, parent.context).decode(reader.read_payload(li), "child")
        assert np.array_equal(child.latent, enc.latents[g])


def test_a_file_of_the_other_coding_fails_with_a_clear_error(tiny_exported, fixed_model):
    from tamc_codec.errors import TamcError

    out, _ = fixed_model
    rt, base = load_model(str(out)), load_model(str(tiny_exported))
    data = encode_image(str(SCENE), "all", 1, base).data
    with pytest.raises(TamcError):
        decode_task(data, "seg", rt)


def test_the_cli_measures_fixes_named_groups_and_refuses_unknown_ones(tiny_exported, pictures, tmp_path, capsys):
    from tamc_helpers import assert_one_line_error, tamc

    out = tmp_path / "m"
    code, stdout, err = tamc(capsys, "train", "fixed-hyper", "-m", tiny_exported, "--from-data", pictures,
                             "--images", 2, "--groups", "seg+depth+normal", "--out", out)
    assert code == 0, err
    m = json.loads((out / "manifest.json").read_text())
    assert m["fixed_hyper"] == ["seg+depth+normal"]
    assert m["provenance"]["fixed_hyper"]["images"] == 2
    assert "seg+depth+normal: mean layer bytes" in stdout
    code, _, err = tamc(capsys, "train", "fixed-hyper", "-m", tiny_exported, "--from-data", pictures,
                        "--images", 2, "--groups", "seg", "--out", tmp_path / "x")
    assert_one_line_error(code, err, "is not a learned group")
    assert not (tmp_path / "x").exists()


def test_writing_refuses_the_source_folder(tiny_exported):
    from tamc_codec.train.fixed_hyper import write_fixed_hyper_model

    with pytest.raises(TamcInputError):
        write_fixed_hyper_model(tiny_exported, tiny_exported, {}, name="x")
