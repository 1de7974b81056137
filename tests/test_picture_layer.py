"""Picture layers (issue 30): the coding field (format version 2, kept by version 3), the AVIF
payload, the runtime's picture layer on a tiny model made by `tamc train picture-layer` from
tests/data/tiny_model, partial decoding."""
from __future__ import annotations

import hashlib
import importlib.util
import json
import shutil
import zlib
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from tamc_codec.bitstream import CODING_AVIF, CODING_LATENT, LayerSpec, TamcReader, pack
from tamc_codec.bitstream.avif import AVIF_DICTIONARY, avif_split, pack_avif, unpack_avif
from tamc_codec.bitstream.varint import encode_varint
from tamc_codec.errors import TamcFormatError, TamcInputError, TamcModelError

from tamc_helpers import index_positions, reseal_header, small_header, tamc

DATA = Path(__file__).parent / "data"
TINY = DATA / "tiny_model"
SCENE = DATA / "tiny_scene.png"
#: the tiny picture model's settings: one per scale
SETTINGS = [{"q": 1, "scale": 4, "setting": -2}, {"q": 2, "scale": 2, "setting": 20}, {"q": 3, "scale": 1, "setting": 50}]


def _image() -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(SCENE).convert("RGB"))


@pytest.fixture(scope="module")
def picture_model(tmp_path_factory) -> Path:
    """tests/data/tiny_model with its learned edge+keypoint+rgb group replaced by an AVIF picture layer."""
    from tamc_codec.cli.picture_cmd import picture_layer

    folder = tmp_path_factory.mktemp("models") / "tiny-picture"
    settings = folder.parent / "settings.json"
    settings.write_text(json.dumps(SETTINGS))
    picture_layer.main(["-m", str(TINY), "--settings", str(settings), "--out", str(folder)], standalone_mode=False)
    return folder


# --------------------------------------------------------------------------- the coding field


def test_writer_writes_version_3_whatever_the_layers():
    latent = pack(small_header(), [(LayerSpec(0, None, 1), b"abc")])
    assert latent[4] == 3 and TamcReader(latent).header.version == 3
    both = pack(small_header(), [(LayerSpec(0, None, 1), b"abc"), (LayerSpec(1, None, 2, CODING_AVIF), b"xy")])
    assert both[4] == 3
    r = TamcReader(both)
    assert r.header.version == 3 and [e.coding_name for e in r.layers] == ["latent", "avif"]
    assert r.read_layer(1) == b"xy" and r.header_size == TamcReader(latent).header_size + 4 + 1 + 2
    with pytest.raises(TamcFormatError, match="not a latent layer"):
        r.read_payload(1)
    # the old versions, written only on request: version 2 holds a picture layer, version 1 does not
    old = small_header(padded_height=128, padded_width=192)
    v2 = pack(replace(old, version=2), [(LayerSpec(0, None, 1), b"abc"), (LayerSpec(1, None, 2, CODING_AVIF), b"xy")])
    v1 = pack(replace(old, version=1), [(LayerSpec(0, None, 1), b"abc")])
    assert v2[4] == 2 and v1[4] == 1
    assert TamcReader(v2).header_size == TamcReader(v1).header_size + 1 + 10
    assert [e.coding_name for e in TamcReader(v2).layers] == ["latent", "avif"]
    with pytest.raises(TamcFormatError, match="version 1 holds latent layers only"):
        pack(replace(old, version=1), [(LayerSpec(0, None, 1), b"abc"), (LayerSpec(1, None, 2, CODING_AVIF), b"xy")])


@pytest.mark.parametrize("specs, msg", [
    ([LayerSpec(0, None, 1), LayerSpec(1, 0, 2, CODING_AVIF)], "has no parent"),
    ([LayerSpec(0, None, 1, CODING_AVIF), LayerSpec(1, 0, 2)], "no layer's parent"),
    ([LayerSpec(0, None, 1, 7)], "unknown coding 7"),
])
def test_writer_rejects_misplaced_picture_layers(specs, msg):
    with pytest.raises(TamcFormatError, match=msg):
        pack(small_header(), [(s, b"x") for s in specs])


@pytest.mark.parametrize("version", [2, 3])
def test_reader_rejects_bad_codings(version):
    header = small_header(version=version, **({"padded_height": 128, "padded_width": 192} if version < 3 else {}))
    data = pack(header, [(LayerSpec(0, None, 1), b"abc"), (LayerSpec(1, None, 2, CODING_AVIF), b"xy"),
                         (LayerSpec(2, 0, 4), b"z")])
    (_, _), (e1, _), (e2, _) = index_positions(data)
    edit = lambda pos, b: reseal_header(data[:pos] + b + data[pos + len(b):])
    with pytest.raises(TamcFormatError, match="unknown coding 9"):
        TamcReader(edit(e1 + 3, b"\x09"))
    with pytest.raises(TamcFormatError, match="has no parent"):
        TamcReader(edit(e1 + 1, b"\x01"))            # the picture layer claims layer 0 as parent
    with pytest.raises(TamcFormatError, match="no layer's parent"):
        TamcReader(edit(e2 + 1, b"\x02"))            # layer 2 claims the picture layer as parent
    with pytest.raises(TamcFormatError, match="version 4"):
        TamcReader(data[:4] + b"\x04" + data[5:])


def test_golden_v2():
    data = (DATA / "golden_v2.tamc").read_bytes()
    exp = json.loads((DATA / "golden_v2.json").read_text())
    avif = (DATA / "golden_v2_picture.avif").read_bytes()
    assert len(data) == exp["file_size"] and hashlib.sha256(data).hexdigest() == exp["sha256"]
    r = TamcReader(data)
    assert r.header.version == 2 and r.header.model_id.hex() == exp["header"]["model_id"]
    assert r.header.task_names == exp["header"]["tasks"] and r.header_size == exp["header_size"]
    for e, x in zip(r.layers, exp["layers"]):
        assert (e.group, e.parent, e.coding_name, e.task_names, e.offset, e.length, f"{e.crc32:08x}") == (
            x["group"], x["parent"], x["coding"], x["tasks"], x["offset"], x["length"], x["crc32"])
    # the latent layers are golden v1's layers, byte for byte
    v1 = TamcReader((DATA / "golden_v1.tamc").read_bytes())
    assert r.read_layer(0) == v1.read_layer(0) and r.read_layer(1) == v1.read_layer(1)
    assert r.layers_for_task("normal") == [0, 1] and r.layers_for_task("rgb") == [2]
    # the picture layer holds the frozen AVIF file exactly, and AV1 decoding is exact
    frozen = r.read_layer(2)
    assert unpack_avif(frozen) == avif and hashlib.sha256(avif).hexdigest() == exp["layers"][2]["avif_sha256"]
    from tamc_codec.runtime.picture import decode_avif

    pixels = decode_avif(avif, tuple(exp["layers"][2]["picture_size"]))
    assert hashlib.sha256(pixels.tobytes()).hexdigest() == exp["layers"][2]["picture_sha256"]
    # the writer still produces the frozen container around the frozen payload (deflate's own
    # bytes may differ between zlib builds; inflating them may not)
    spec = importlib.util.spec_from_file_location("make_golden_v2", DATA / "make_golden_v2.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert mod.build(picture_payload=frozen)[0] == data


def test_info_says_how_each_layer_is_coded(capsys):
    code, out, _ = tamc(capsys, "info", str(DATA / "golden_v2.tamc"))
    assert code == 0 and "format version 2" in out and "coding" in out
    rows = [line.split() for line in out.splitlines() if line.strip()[:1].isdigit()]
    assert [row[3] for row in rows] == ["latent", "latent", "avif"]
    code, out, _ = tamc(capsys, "info", str(DATA / "golden_v2.tamc"), "--json")
    assert [x["coding"] for x in json.loads(out)["layers"]] == ["latent", "latent", "avif"]
    code, out, _ = tamc(capsys, "info", str(DATA / "golden_v1.tamc"), "--json")
    assert {x["coding"] for x in json.loads(out)["layers"]} == {"latent"}


# --------------------------------------------------------------------------- the AVIF payload


def test_avif_payload_round_trips_byte_for_byte_and_is_small():
    from tamc_codec.runtime.picture import downscale, encode_avif

    rng = np.random.default_rng(0)
    image = _image()
    pictures = [image, image[:37, :61], np.ascontiguousarray(image[::-1, ::-1][:80, :17]),
                rng.integers(0, 256, (23, 45, 3), dtype=np.uint8), np.full((1, 1, 3), 200, np.uint8)]
    for img in pictures:
        for scale in (1, 2, 4):
            for options in ({"quality": 0, "advanced": {"tune": "ssim"}}, {"quality": 35}, {"quality": 90}):
                data = encode_avif(downscale(img, scale), {"speed": 8, **options})
                payload = pack_avif(data)
                assert unpack_avif(payload) == data
                assert avif_split(data) > 200 and len(payload) <= len(data) - avif_split(data) + 40
    for raw in (b"", b"abc", bytes(range(256)) * 3, AVIF_DICTIONARY):
        assert unpack_avif(pack_avif(raw)) == raw


@pytest.mark.parametrize("make, msg", [
    (lambda p: b"", "truncated"),
    (lambda p: b"\x85", "truncated"),
    (lambda p: encode_varint(999) + p[2:], "runs past the layer's end"),
    (lambda p: p[:1] + bytes([p[1] ^ 0xFF]) + p[2:], "corrupt deflated container|does not end|inflates past"),
    (lambda p: encode_varint(p[0] - 3) + p[1:p[0] - 2] + p[p[0] + 1:], "does not end|corrupt"),
])
def test_bad_avif_payloads_are_format_errors(make, msg):
    from tamc_codec.runtime.picture import encode_avif

    payload = pack_avif(encode_avif(_image(), {"speed": 8, "quality": 20}))
    with pytest.raises(TamcFormatError, match=msg):
        unpack_avif(make(payload))


def test_an_inflating_bomb_is_refused():
    comp = zlib.compressobj(9, zlib.DEFLATED, -15, 9, zlib.Z_DEFAULT_STRATEGY, zdict=AVIF_DICTIONARY)
    head = comp.compress(bytes(1 << 20)) + comp.flush()
    with pytest.raises(TamcFormatError, match="inflates past"):
        unpack_avif(encode_varint(len(head)) + head)


# --------------------------------------------------------------------------- the runtime


def test_picture_model_is_the_tiny_model_with_a_picture_layer(picture_model):
    from tamc_codec.runtime import load_model

    rt = load_model(str(picture_model))
    base = load_model(str(TINY))
    assert rt.groups == ["seg+depth+normal", "depth+edge", "edge+keypoint+rgb"]
    assert rt.is_picture("edge+keypoint+rgb") and rt.parents["edge+keypoint+rgb"] is None
    assert {t: rt.serving[t] for t in ("edge", "keypoint", "rgb")} == dict.fromkeys(("edge", "keypoint", "rgb"), "edge+keypoint+rgb")
    assert [s["scale"] for s in rt.pictures["edge+keypoint+rgb"]["qualities"]] == [4, 2, 1]
    assert rt.id != base.id and rt.manifest["format_version"] == 2
    # the kept layers code exactly the bits they coded in the tiny model
    from tamc_codec.runtime import encode_image

    for q in (1, 3):
        a, b = encode_image(SCENE, "seg,depth", q, rt), encode_image(SCENE, "seg,depth", q, base)
        with TamcReader(a.data) as ra, TamcReader(b.data) as rb:
            assert ra.header.version == 3
            assert [ra.read_layer(i) for i in range(len(ra.layers))] == [rb.read_layer(i) for i in range(len(rb.layers))]
    assert (picture_model / "README.md").read_text().count("avif@1/4 -2") == 1
    assert json.loads((picture_model / "reference.json").read_text())["model_id"] == rt.id


@pytest.mark.parametrize("q", [1, 2, 3])
def test_picture_layer_round_trip(picture_model, q):
    """The layer is Pillow's AVIF file of the down-scaled picture, byte for byte; rgb is Pillow's
    decode of it brought back to size; edge and keypoint are the filters of that picture."""
    from PIL import Image

    from tamc_codec.runtime import decode_task, encode_image, load_model, raw_output, task_prediction
    from tamc_codec.runtime.picture import downscale, encode_avif, upscale
    from tamc_codec.tasks import labels

    rt = load_model(str(picture_model))
    img = _image()
    h, w = img.shape[:2]
    setting = rt.pictures["edge+keypoint+rgb"]["qualities"][q - 1]
    enc = encode_image(img, "all", q, rt)
    with TamcReader(enc.data) as r:
        assert r.header.version == 3
        (pic,) = [e.index for e in r.layers if e.coding == CODING_AVIF]
        avif = unpack_avif(r.read_layer(pic))
    assert avif == encode_avif(downscale(img, setting["scale"]), setting["avif"])
    with Image.open(__import__("io").BytesIO(avif)) as im:
        pillow = np.asarray(im.convert("RGB"))
    assert pillow.shape[:2] == (-(-h // setting["scale"]), -(-w // setting["scale"]))
    rgb = decode_task(enc.data, "rgb", rt).output
    np.testing.assert_array_equal(rgb, upscale(pillow, setting["scale"], h, w))
    np.testing.assert_array_equal(enc.latents["edge+keypoint+rgb"], rgb)
    np.testing.assert_array_equal(decode_task(enc.data, "edge", rt).output, labels.edge_label(rgb))
    np.testing.assert_array_equal(decode_task(enc.data, "keypoint", rt).output, labels.keypoint_label(rgb))
    for t in ("edge", "keypoint", "rgb"):  # what the bench scores is what a receiver decodes
        pred = task_prediction(rt, t, enc.latents, h, w)
        np.testing.assert_allclose(raw_output(t, pred, rt), decode_task(enc.data, t, rt).output, rtol=1e-5, atol=1e-7)


def test_a_scene_task_never_reads_the_picture_layer(picture_model, tmp_path):
    from tamc_codec.runtime import decode_task, encode_image, load_model

    rt = load_model(str(picture_model))
    data = encode_image(SCENE, "all", 3, rt).data
    with TamcReader(data) as r:
        pic = [e for e in r.layers if e.coding == CODING_AVIF][0]
        seg_chain = r.layers_for_task("seg")
        assert pic.index not in seg_chain and pic.index not in r.layers_for_task("depth")
    seg = decode_task(data, "seg", rt)
    assert seg.bytes_read == r.header_size + sum(r.layers[i].length for i in seg_chain)
    # every byte of the picture layer corrupted: the scene tasks decode exactly as before
    garbage = bytes(b ^ 0x5A for b in data[pic.offset:pic.offset + pic.length])
    bad = data[:pic.offset] + garbage + data[pic.offset + pic.length:]
    for t in ("seg", "depth", "normal"):
        np.testing.assert_array_equal(decode_task(bad, t, rt).output, decode_task(data, t, rt).output)
    with pytest.raises(TamcFormatError, match="CRC mismatch"):
        decode_task(bad, "rgb", rt)


def test_decode_rgb_reads_the_picture_layer_only(picture_model, tmp_path, capsys):
    src = tmp_path / "scene.tamc"
    code, _, _ = tamc(capsys, "encode", str(SCENE), "-o", str(src), "--model", str(picture_model), "--quality", "2")
    assert code == 0
    code, out, err = tamc(capsys, "decode", str(src), "--task", "rgb", "-v", "--model", str(picture_model))
    assert code == 0, err
    with TamcReader(src) as r:
        pic = [e for e in r.layers if e.coding == CODING_AVIF][0]
        expect = r.header_size + pic.length
    text = out + err
    assert f"read layers {pic.index} of 3 (edge+keypoint+rgb)" in text and f"read {expect} of" in text
    code, out, _ = tamc(capsys, "decode", str(src), "--task", "edge", "--json", "--model", str(picture_model))
    assert json.loads(out)["layers_read"] == [pic.index] and json.loads(out)["bytes_read"] == expect
    code, out, _ = tamc(capsys, "info", str(src), "--json")
    assert [x["coding"] for x in json.loads(out)["layers"]] == ["latent", "latent", "avif"]


def _with_picture_payload(data: bytes, payload: bytes) -> bytes:
    """`data` with its picture layer's bytes replaced (index and CRCs rewritten)."""
    r = TamcReader(data)
    layers = [(LayerSpec(e.group, e.parent, e.tasks, e.coding), payload if e.coding == CODING_AVIF else r.read_layer(e.index))
              for e in r.layers]
    return pack(r.header, layers)


@pytest.mark.parametrize("damage, msg", [
    (lambda p: p[:-40], "cannot be decoded"),
    (lambda p: p[:1] + bytes([p[1] ^ 0x33]) + p[2:], "deflated container|cannot be decoded"),
    (lambda p: b"\x00", "deflated container"),
    (lambda p: pack_avif(b"not an avif file at all"), "cannot be decoded"),
])
def test_bad_picture_layers_are_one_line_errors(picture_model, tmp_path, capsys, damage, msg):
    from tamc_codec.runtime import decode_task, encode_image, load_model

    rt = load_model(str(picture_model))
    data = encode_image(SCENE, "rgb,seg", 3, rt).data
    with TamcReader(data) as r:
        payload = r.read_layer([e.index for e in r.layers if e.coding == CODING_AVIF][0])
    bad = _with_picture_payload(data, damage(payload))
    with pytest.raises(TamcFormatError, match=msg):
        decode_task(bad, "rgb", rt)
    path = tmp_path / "bad.tamc"
    path.write_bytes(bad)
    code, _, err = tamc(capsys, "decode", str(path), "--task", "edge", "--model", str(picture_model))
    assert code == 2 and len(err.strip().splitlines()) == 1 and err.startswith("tamc: error:"), err
    np.testing.assert_array_equal(decode_task(bad, "seg", rt).output, decode_task(data, "seg", rt).output)


def test_a_picture_of_the_wrong_size_or_coding_is_refused(picture_model):
    from tamc_codec.runtime import decode_task, encode_image, load_model
    from tamc_codec.runtime.picture import encode_avif

    rt = load_model(str(picture_model))
    data = encode_image(SCENE, "rgb", 2, rt).data      # q2: scale 1/2, a 40x48 picture
    with pytest.raises(TamcFormatError, match="is 80x96 .*expected 40x48"):
        decode_task(_with_picture_payload(data, pack_avif(encode_avif(_image(), {"quality": 20, "speed": 8}))), "rgb", rt)
    r = TamcReader(data)
    relabelled = pack(r.header, [(LayerSpec(e.group, e.parent, e.tasks, CODING_LATENT), r.read_layer(e.index))
                                 for e in r.layers])
    with pytest.raises(TamcFormatError, match="coded as latent, the model codes it as avif"):
        decode_task(relabelled, "rgb", rt)


def test_manifest_rules_for_picture_groups(picture_model, tmp_path):
    from tamc_codec.runtime.manifest import model_id, read_manifest

    def broken(edit) -> Path:
        folder = tmp_path / f"m{len(list(tmp_path.iterdir()))}"
        shutil.copytree(picture_model, folder)
        m = json.loads((folder / "manifest.json").read_text())
        edit(m)
        m["model_id"] = model_id(m)
        (folder / "manifest.json").write_text(json.dumps(m))
        return folder

    read_manifest(picture_model)
    g = "edge+keypoint+rgb"
    cases = [
        (lambda m: m["dag"]["parents"].__setitem__(g, "seg+depth+normal"), "DAG root"),
        (lambda m: m["pictures"][g].__setitem__("coding", "jpeg"), "unknown coding"),
        (lambda m: m["pictures"][g]["qualities"].pop(), "every quality"),
        (lambda m: m["pictures"][g]["qualities"][0].__setitem__("scale", 3), "scale"),
        (lambda m: m["decoders"].__setitem__("rgb", m["decoders"]["seg"]), "no graphs and no task decoders"),
        (lambda m: m["serving"].__setitem__("seg", "seg+depth+normal") or m["decoders"].pop("seg"), "no decoder"),
    ]
    for edit, msg in cases:
        with pytest.raises(TamcModelError, match=msg):
            read_manifest(broken(edit))


def test_the_build_command_measures_its_settings(tmp_path, capsys):
    """`tamc train picture-layer --from-data`: AVIF measured at every scale, one setting per quality."""
    pics = tmp_path / "pictures"
    pics.mkdir()
    shutil.copy(SCENE, pics / "a.png")
    from PIL import Image

    Image.fromarray(np.ascontiguousarray(_image()[:, ::-1])).save(pics / "b.png")
    out, record = tmp_path / "model", tmp_path / "settings.json"
    from tamc_codec.cli.picture_cmd import picture_layer

    picture_layer.main(["-m", str(TINY), "--from-data", str(pics), "--targets", "0.2,0.8,3", "--out", str(out),
                        "--record", str(record), "--threads", "2"], standalone_mode=False)
    doc = json.loads(record.read_text())
    chosen = doc["groups"]["edge+keypoint+rgb"]
    assert doc["images"] == 2 and [c["q"] for c in chosen["qualities"]] == [1, 2, 3]
    assert chosen["criteria"] == ["psnr", "rgb", "edge", "keypoint"]
    assert {m["scale"] for m in doc["measured"]} == {1, 2, 4} and all(set(m["loss"]) == {"edge", "keypoint", "rgb"}
                                                                      for m in doc["measured"])
    rates = [c["bpp"] for c in chosen["qualities"]]
    assert rates == sorted(rates)
    for c in chosen["qualities"]:  # each the nearest measured setting of its scale to the target
        same = [m for m in doc["measured"] if m["scale"] == c["scale"]]
        assert abs(np.log(c["bpp"] / c["target_bpp"])) <= min(abs(np.log(m["bpp"] / c["target_bpp"])) for m in same) + 1e-12
        assert min(v for v in c["excess"].values() if v is not None) == c["excess"][{1: "1", 2: "1/2", 4: "1/4"}[c["scale"]]]
    m = json.loads((out / "manifest.json").read_text())
    assert [s["setting"] for s in m["pictures"]["edge+keypoint+rgb"]["qualities"]] == [c["label"] for c in chosen["qualities"]]
    assert m["provenance"]["picture_layer"]["images"] == 2
    # the BD-rates of the chosen settings against AVIF at its best scale on the same pictures
    vbd = doc["validation_bd_rate"]
    assert set(vbd) == {"edge", "keypoint", "rgb"} and set(vbd["rgb"]) == {"loss", "psnr"}
    assert m["provenance"]["picture_layer"]["validation_bd_rate"]["edge"]["loss"] == vbd["edge"]["loss"]["value"]
    # --reuse measures nothing again: the same choice from the same measurements
    reused, record2 = tmp_path / "reused", tmp_path / "settings2.json"
    picture_layer.main(["-m", str(TINY), "--from-data", str(pics), "--targets", "0.2,0.8,3", "--out", str(reused),
                        "--record", str(record2), "--reuse", str(record)], standalone_mode=False)
    assert json.loads(record2.read_text())["groups"] == doc["groups"]
    # --settings reproduces the same model from the record
    again = tmp_path / "again"
    picture_layer.main(["-m", str(TINY), "--settings", str(record), "--out", str(again)], standalone_mode=False)
    assert json.loads((again / "manifest.json").read_text())["pictures"] == m["pictures"]


def test_several_picture_groups(tmp_path, capsys):
    """--groups keypoint,edge+rgb: two AVIF layers, each with its own settings; each task reads its own."""
    from tamc_codec.cli.picture_cmd import picture_layer
    from tamc_codec.runtime import decode_task, encode_image, load_model
    from tamc_codec.tasks import labels

    settings = tmp_path / "settings.json"
    settings.write_text(json.dumps({"groups": {"keypoint": {"qualities": SETTINGS},
                                               "edge+rgb": {"qualities": [{**a, "q": b["q"]} for a, b in
                                                                          zip(SETTINGS[::-1], SETTINGS)]}}}))
    out = tmp_path / "model"
    picture_layer.main(["-m", str(TINY), "--settings", str(settings), "--groups", "keypoint,edge+rgb", "--out", str(out)],
                       standalone_mode=False)
    rt = load_model(str(out))
    assert rt.groups == ["seg+depth+normal", "depth+edge", "keypoint", "edge+rgb"] and set(rt.pictures) == {"keypoint", "edge+rgb"}
    enc = encode_image(SCENE, "all", 1, rt)
    with TamcReader(enc.data) as r:
        assert [e.coding_name for e in r.layers] == ["latent", "latent", "avif", "avif"]
        assert r.layers_for_task("keypoint") == [2] and r.layers_for_task("rgb") == r.layers_for_task("edge") == [3]
    kp, rgb = decode_task(enc.data, "keypoint", rt), decode_task(enc.data, "rgb", rt)
    assert kp.layers == [2] and rgb.layers == [3]
    # q1: keypoint's picture at 1/4 scale, edge and rgb's at full size
    assert not np.array_equal(enc.latents["keypoint"], rgb.output)
    np.testing.assert_array_equal(kp.output, labels.keypoint_label(enc.latents["keypoint"]))
    np.testing.assert_array_equal(decode_task(enc.data, "edge", rt).output, labels.edge_label(rgb.output))
    with pytest.raises(TamcInputError, match="each task in one group"):
        picture_layer.main(["-m", str(TINY), "--settings", str(settings), "--groups", "keypoint,edge+keypoint",
                            "--out", str(tmp_path / "bad")], standalone_mode=False)
    # a model's picture layers chosen again: the learned layers keep their bits, the old pictures go
    one = tmp_path / "one.json"
    one.write_text(json.dumps(SETTINGS))
    again = tmp_path / "again"
    picture_layer.main(["-m", str(out), "--settings", str(one), "--out", str(again)], standalone_mode=False)
    rt2 = load_model(str(again))
    assert rt2.groups == ["seg+depth+normal", "depth+edge", "edge+keypoint+rgb"] and list(rt2.pictures) == ["edge+keypoint+rgb"]
    assert json.loads((again / "manifest.json").read_text())["files"] == {
        f: h for f, h in json.loads((out / "manifest.json").read_text())["files"].items() if f != "tables.npz"} | {
        "tables.npz": json.loads((again / "manifest.json").read_text())["files"]["tables.npz"]}
    with pytest.raises(TamcInputError, match="would still serve edge, rgb"):
        picture_layer.main(["-m", str(out), "--settings", str(one), "--groups", "keypoint", "--out", str(tmp_path / "k")],
                           standalone_mode=False)
