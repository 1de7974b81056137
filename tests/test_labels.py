"""Label conventions on cases with known answers (docs/CONTRACT.md)."""
import numpy as np
import pytest

from tamc_codec.data import synth
from tamc_codec.tasks import labels


def _scene(prims, cam_pos, cam_rot=np.eye(3, dtype=np.float32)):
    mats = [(np.full((8, 8, 3), 0.5, np.float32), 1.0)]
    s = synth.Scene(prims, mats, [(np.array([0, 5, 5], np.float32), np.ones(3, np.float32))],
                    np.asarray(cam_pos, np.float32), cam_rot, 0.3, 1.0)
    s.room_materials = [0] * 6
    return s


def test_fronto_parallel_plane_depth_is_z_buffer_everywhere():
    # a large wall 3 m in front of a camera looking down -z: every pixel, including
    # the corners, has depth 3 (z-buffer), although the rays there are longer
    wall = synth.Box(np.array([0, 0, -3.05]), 0.0, 0, 1, half=np.array([50, 50, 0.05], np.float32))
    out = synth.render(_scene([wall], [0, 0, 0]), 32)
    assert out["valid"].all()
    np.testing.assert_allclose(out["depth"], 3.0, atol=1e-4)
    # and the stored value is round(512 z)
    png = labels.depth_to_png(out["depth"], out["valid"])
    assert (png == 1536).all()
    np.testing.assert_allclose(out["normal"], np.broadcast_to([0, 0, 1], out["normal"].shape), atol=1e-5)
    assert (out["seg"] == 1).all()


def test_off_centre_pixel_ray_and_intrinsics():
    # a thin pillar seen off-centre: the pixel whose centre ray passes through it sees it
    size = 64
    K = synth.intrinsics(size)
    j, i = 48, 20  # column, row
    x = (j + 0.5 - K["cx"]) / K["fx"] * 4.0
    y = -(i + 0.5 - K["cy"]) / K["fy"] * 4.0
    pillar = synth.Box(np.array([x, y, -4.0]), 0.0, 0, 2, half=np.array([0.01, 0.01, 0.01], np.float32))
    out = synth.render(_scene([pillar], [0, 0, 0]), size)
    assert out["seg"][i, j] == 2 and out["seg"].sum() == 2 * out["valid"].sum()
    assert abs(out["depth"][i, j] - (4.0 - 0.01)) < 1e-4


def test_rotated_camera_normals_are_in_camera_frame():
    # camera turned 90 degrees left (looking down -x in the world): the wall at x=-3 is
    # in front of it and its normal in the camera frame is still (0, 0, 1)
    c, s = np.cos(np.pi / 2), np.sin(np.pi / 2)
    rot = np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]], np.float32)  # camera -> world
    wall = synth.Box(np.array([-3.05, 0, 0]), 0.0, 0, 1, half=np.array([0.05, 50, 50], np.float32))
    out = synth.render(_scene([wall], [0, 0, 0], rot), 16)
    np.testing.assert_allclose(out["depth"], 3.0, atol=1e-4)
    np.testing.assert_allclose(out["normal"][..., 2], 1.0, atol=1e-5)


def test_sphere_normals_point_from_centre():
    centre = np.array([0.3, -0.2, -5.0])
    ball = synth.Sphere(centre, 0.0, 0, 3, radius=1.2)
    size = 48
    out = synth.render(_scene([ball], [0, 0, 0]), size)
    K = synth.intrinsics(size)
    ii, jj = np.nonzero(out["valid"])
    z = out["depth"][ii, jj]
    pts = np.stack([(jj + 0.5 - K["cx"]) / K["fx"] * z, -(ii + 0.5 - K["cy"]) / K["fy"] * z, -z], -1)
    np.testing.assert_allclose(np.linalg.norm(pts - centre, axis=1), 1.2, atol=1e-3)
    expected = (pts - centre) / 1.2
    np.testing.assert_allclose(out["normal"][ii, jj], expected, atol=2e-3)
    assert np.all(out["normal"][ii, jj, 2] > 0)  # facing the camera
    assert (out["seg"][out["valid"]] == 3).all() and (out["seg"][~out["valid"]] == 0).all()


def test_cone_and_cylinder_hit_where_expected():
    cyl = synth.Cylinder(np.array([-1.0, -1.0, -6.0]), 0.0, 0, 4, radius=0.5, height=2.0)
    cone = synth.Cone(np.array([1.0, -1.0, -6.0]), 0.0, 0, 5, radius=0.5, height=2.0)
    out = synth.render(_scene([cyl, cone], [0, 0, 0]), 96)
    assert (out["seg"] == 4).sum() > (out["seg"] == 5).sum() > 50  # a cone covers half a cylinder's outline
    n = out["normal"][out["seg"] == 4]
    assert np.abs(n[:, 1]).max() < 0.5 or np.isclose(np.abs(n[:, 1]), 1, atol=1e-3).any()


def test_normal_png_encoding():
    n = np.array([[[0.0, 0.0, 1.0], [-1.0, 1.0, 0.0]]])
    png = labels.normal_to_png(n)
    assert png.tolist() == [[[128, 128, 255], [0, 255, 128]]]
    back = labels.normal_from_png(png)
    np.testing.assert_allclose(np.linalg.norm(back, axis=-1), 1.0, atol=1e-6)


def test_edge_of_a_step_matches_blurred_sobel_peak():
    img = np.zeros((64, 64, 3), np.uint8)
    img[:, 32:] = 255
    e = labels.edge_label(img)
    # d/dx of a unit step blurred with sigma 3 peaks at 1/(3 sqrt(2 pi)); the
    # unnormalised Sobel pair measures 8x the derivative
    assert e[:, 31:33].max() == pytest.approx(8 / (3 * np.sqrt(2 * np.pi)), rel=0.05)
    assert e[:, :10].max() < 1e-6 and e[:, -10:].max() < 1e-6
    flat = labels.edge_label(np.full((32, 32, 3), 77, np.uint8))
    assert np.abs(flat).max() < 1e-9


def test_keypoint_responds_to_blobs_not_to_flat_or_straight_edges():
    yy, xx = np.mgrid[:96, :96]
    blob = (255 * np.exp(-((yy - 48) ** 2 + (xx - 48) ** 2) / (2 * 6.0**2))).astype(np.uint8)
    k = labels.keypoint_label(np.repeat(blob[..., None], 3, 2))
    peak = np.unravel_index(np.argmax(k), k.shape)
    assert abs(peak[0] - 48) <= 2 and abs(peak[1] - 48) <= 2
    assert k.min() >= 0
    flat = labels.keypoint_label(np.full((64, 64, 3), 100, np.uint8))
    # SURF's box filters leave a tiny constant response on flat images; what matters
    # is that it is uniform (no border blobs) and far below a real blob's
    assert flat.max() - flat.min() < 1e-6
    assert flat.max() < 0.05 * k.max()
    step = np.zeros((64, 64, 3), np.uint8)
    step[:, 32:] = 255
    assert labels.keypoint_label(step)[16:48, 16:48].max() < 0.1 * k.max()


def test_u16_storage_round_trip_and_clipping():
    e = np.array([0.0, 0.5, 1.9999, 5.0], np.float32)
    back = labels.edge_from_png(labels.edge_to_png(e))
    np.testing.assert_allclose(back[:3], e[:3], atol=1 / 32768)
    assert back[3] == pytest.approx(65535 / 32768)
    z = np.array([0.5, 3.25, 200.0])
    png = labels.depth_to_png(z, np.array([True, True, False]))
    assert png.tolist() == [256, 1664, 65535]
