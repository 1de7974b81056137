"""Procedurally generated indoor scenes with exact labels for all six tasks.

A vectorised numpy ray caster: one ray per pixel centre, analytic primitives
(boxes, spheres, vertical cylinders and cones) assembled into furniture-like
objects inside a box-shaped room, point lights with hard shadows, and textures
drawn independently of geometry so that no task can be read off another.

Geometry labels (seg, depth, normal) come from the ray hits themselves; edge and
keypoint labels are computed from the rendered image with the same filters any
photo would get (:mod:`tamc_codec.tasks.labels`).

World frame: y up, the floor is y = 0. Camera frame: x right, y up, z towards
the viewer (docs/CONTRACT.md). Rays use an unnormalised direction whose camera-z
component is -1, so the hit parameter t *is* the z-buffer depth.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..tasks.registry import SEG_CLASSES
from . import textures

GENERATOR = "tamc-synth"
GENERATOR_VERSION = 1
HFOV_DEG = 60.0
EPS = 1e-4
CLASS_ID = {name: i for i, name in enumerate(SEG_CLASSES)}


def intrinsics(size: int) -> dict[str, float]:
    f = size / (2.0 * np.tan(np.radians(HFOV_DEG) / 2.0))
    return {"fx": float(f), "fy": float(f), "cx": size / 2.0, "cy": size / 2.0}


# --------------------------------------------------------------------------- primitives
# Each primitive works in its own local frame: a translation and a rotation about
# the vertical axis (yaw). intersect() returns the hit parameter (inf on a miss);
# local_normal() the outward normal at local surface points.


@dataclass
class Primitive:
    pos: np.ndarray  # local origin in world coordinates
    yaw: float
    material: int = 0
    seg: int = 1
    inside: bool = False  # the room: rays start inside and hit its far side

    def __post_init__(self) -> None:
        c, s = np.cos(self.yaw), np.sin(self.yaw)
        # local -> world rotation about y
        self.rot = np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]], np.float32)
        self.pos = np.asarray(self.pos, np.float32)

    def to_local(self, o: np.ndarray, d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return (o - self.pos) @ self.rot, d @ self.rot

    def intersect(self, o: np.ndarray, d: np.ndarray) -> np.ndarray:
        lo, ld = self.to_local(o, d)
        return self._intersect(lo, ld)

    def normal(self, p: np.ndarray) -> np.ndarray:
        lp = (p - self.pos) @ self.rot
        n = self._local_normal(lp)
        n = n / np.maximum(np.linalg.norm(n, axis=-1, keepdims=True), 1e-12)
        return n @ self.rot.T

    def local_point(self, p: np.ndarray) -> np.ndarray:
        return (p - self.pos) @ self.rot

    def bound(self) -> tuple[np.ndarray, float]:
        """A bounding sphere (centre, radius) in world coordinates, for culling."""
        raise NotImplementedError

    def _intersect(self, o: np.ndarray, d: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _local_normal(self, p: np.ndarray) -> np.ndarray:
        raise NotImplementedError


def _first_positive(*ts: np.ndarray) -> np.ndarray:
    best = np.full(ts[0].shape, np.inf, np.float32)
    for t in ts:
        ok = (t > EPS) & (t < best)
        best = np.where(ok, t, best)
    return best


@dataclass
class Box(Primitive):
    half: np.ndarray = field(default_factory=lambda: np.ones(3, np.float32))  # centred at pos

    def _intersect(self, o: np.ndarray, d: np.ndarray) -> np.ndarray:
        # slab test, one axis at a time; a zero direction component becomes a tiny one
        # so that parallel rays get +-inf slabs instead of NaN
        tmin = tmax = None
        for a in range(3):
            da = d[..., a]
            da = np.where(np.abs(da) < 1e-12, 1e-12, da)
            t1 = (-self.half[a] - o[..., a]) / da
            t2 = (self.half[a] - o[..., a]) / da
            lo, hi = np.minimum(t1, t2), np.maximum(t1, t2)
            tmin = lo if tmin is None else np.maximum(tmin, lo)
            tmax = hi if tmax is None else np.minimum(tmax, hi)
        hit = tmax >= np.maximum(tmin, EPS)
        if self.inside:
            return np.where(hit, tmax, np.inf).astype(np.float32)
        return np.where(hit & (tmin > EPS), tmin, np.inf).astype(np.float32)

    def _local_normal(self, p: np.ndarray) -> np.ndarray:
        q = p / self.half
        axis = np.argmax(np.abs(q), axis=-1)
        n = np.zeros_like(p)
        np.put_along_axis(n, axis[:, None], np.sign(np.take_along_axis(q, axis[:, None], -1)), -1)
        return -n if self.inside else n

    def bound(self) -> tuple[np.ndarray, float]:
        return self.pos, float(np.linalg.norm(self.half))


@dataclass
class Sphere(Primitive):
    radius: float = 0.5

    def _intersect(self, o: np.ndarray, d: np.ndarray) -> np.ndarray:
        a = np.sum(d * d, axis=-1)
        b = np.sum(o * d, axis=-1)
        c = np.sum(o * o, axis=-1) - self.radius**2
        disc = b * b - a * c
        sq = np.sqrt(np.maximum(disc, 0.0))
        t0 = np.where(disc >= 0, (-b - sq) / a, np.inf)
        t1 = np.where(disc >= 0, (-b + sq) / a, np.inf)
        return _first_positive(t0, t1)

    def _local_normal(self, p: np.ndarray) -> np.ndarray:
        return p

    def bound(self) -> tuple[np.ndarray, float]:
        return self.pos, self.radius


@dataclass
class Cylinder(Primitive):
    """Vertical capped cylinder; pos is the centre of its base."""

    radius: float = 0.3
    height: float = 1.0

    def _intersect(self, o: np.ndarray, d: np.ndarray) -> np.ndarray:
        ox, oy, oz = o[..., 0], o[..., 1], o[..., 2]
        dx, dy, dz = d[..., 0], d[..., 1], d[..., 2]
        a = dx * dx + dz * dz
        b = ox * dx + oz * dz
        c = ox * ox + oz * oz - self.radius**2
        disc = b * b - a * c
        sq = np.sqrt(np.maximum(disc, 0.0))
        with np.errstate(divide="ignore", invalid="ignore"):
            sides = []
            for sign in (-1.0, 1.0):
                t = (-b + sign * sq) / a
                y = oy + t * dy
                sides.append(np.where((disc >= 0) & (a > 1e-12) & (y >= 0) & (y <= self.height), t, np.inf))
            caps = []
            for yc in (0.0, self.height):
                t = (yc - oy) / dy
                x, z = ox + t * dx, oz + t * dz
                caps.append(np.where(np.abs(dy) > 1e-12, np.where(x * x + z * z <= self.radius**2, t, np.inf), np.inf))
        return _first_positive(*sides, *caps)

    def _local_normal(self, p: np.ndarray) -> np.ndarray:
        n = np.stack([p[:, 0], np.zeros(len(p), p.dtype), p[:, 2]], axis=-1)
        top = p[:, 1] >= self.height - 1e-3
        bottom = p[:, 1] <= 1e-3
        n[top] = (0.0, 1.0, 0.0)
        n[bottom] = (0.0, -1.0, 0.0)
        return n

    def bound(self) -> tuple[np.ndarray, float]:
        c = self.pos + np.array([0, self.height / 2, 0], np.float32)
        return c, float(np.hypot(self.radius, self.height / 2))


@dataclass
class Cone(Primitive):
    """Vertical cone, base of `radius` at the local origin, apex `height` above it."""

    radius: float = 0.3
    height: float = 1.0

    def _intersect(self, o: np.ndarray, d: np.ndarray) -> np.ndarray:
        k2 = (self.radius / self.height) ** 2
        ox, oy, oz = o[..., 0], o[..., 1], o[..., 2]
        dx, dy, dz = d[..., 0], d[..., 1], d[..., 2]
        hy = self.height - oy
        a = dx * dx + dz * dz - k2 * dy * dy
        b = ox * dx + oz * dz + k2 * hy * dy
        c = ox * ox + oz * oz - k2 * hy * hy
        disc = b * b - a * c
        sq = np.sqrt(np.maximum(disc, 0.0))
        with np.errstate(divide="ignore", invalid="ignore"):
            sides = []
            for sign in (-1.0, 1.0):
                t = (-b + sign * sq) / a
                y = oy + t * dy
                sides.append(np.where((disc >= 0) & (np.abs(a) > 1e-12) & (y >= 0) & (y <= self.height), t, np.inf))
            t = -oy / dy
            x, z = ox + t * dx, oz + t * dz
            cap = np.where(np.abs(dy) > 1e-12, np.where(x * x + z * z <= self.radius**2, t, np.inf), np.inf)
        return _first_positive(*sides, cap)

    def _local_normal(self, p: np.ndarray) -> np.ndarray:
        k2 = (self.radius / self.height) ** 2
        n = np.stack([p[:, 0], k2 * (self.height - p[:, 1]), p[:, 2]], axis=-1)
        n[p[:, 1] <= 1e-3] = (0.0, -1.0, 0.0)
        return n

    def bound(self) -> tuple[np.ndarray, float]:
        c = self.pos + np.array([0, self.height / 2, 0], np.float32)
        return c, float(np.hypot(self.radius, self.height / 2))


# --------------------------------------------------------------------------- scene layout


@dataclass
class Scene:
    prims: list[Primitive]
    materials: list[tuple[np.ndarray, float]]
    lights: list[tuple[np.ndarray, np.ndarray]]  # (position, rgb intensity)
    cam_pos: np.ndarray
    cam_rot: np.ndarray  # camera -> world
    ambient: float
    exposure: float


def _furniture(rng: np.random.Generator, cls: str, x: float, z: float, y0: float, mat) -> tuple[list[Primitive], float]:
    """Primitives of one object standing at (x, y0, z), and its footprint radius."""
    yaw = float(rng.uniform(0, 2 * np.pi))
    seg = CLASS_ID[cls]
    c, s = np.cos(yaw), np.sin(yaw)

    def at(dx: float, dy: float, dz: float) -> np.ndarray:
        # offsets in the object's frame -> world
        return np.array([x + c * dx + s * dz, y0 + dy, z - s * dx + c * dz], np.float32)

    def box(dx, dy, dz, hx, hy, hz, m=None):
        return Box(at(dx, dy, dz), yaw, mat() if m is None else m, seg, half=np.array([hx, hy, hz], np.float32))

    u = rng.uniform
    if cls == "box":
        hx, hy, hz = u(0.15, 0.5), u(0.15, 0.45), u(0.15, 0.5)
        return [box(0, hy, 0, hx, hy, hz)], float(np.hypot(hx, hz))
    if cls == "sphere":
        r = u(0.15, 0.5)
        return [Sphere(at(0, r, 0), yaw, mat(), seg, radius=r)], r
    if cls == "cylinder":
        r, h = u(0.12, 0.4), u(0.3, 1.3)
        return [Cylinder(at(0, 0, 0), yaw, mat(), seg, radius=r, height=h)], r
    if cls == "cone":
        r, h = u(0.15, 0.45), u(0.3, 1.3)
        return [Cone(at(0, 0, 0), yaw, mat(), seg, radius=r, height=h)], r
    if cls == "table":
        w, d, h, th, leg = u(0.4, 0.9), u(0.3, 0.55), u(0.6, 0.85), u(0.02, 0.05), u(0.02, 0.05)
        top, legs = mat(), mat()
        parts = [box(0, h - th, 0, w, th, d, top)]
        for sx in (-1, 1):
            for sz in (-1, 1):
                parts.append(box(sx * (w - 2 * leg), (h - 2 * th) / 2, sz * (d - 2 * leg), leg, (h - 2 * th) / 2, leg, legs))
        return parts, float(np.hypot(w, d))
    if cls == "chair":
        w, sh, back = u(0.2, 0.3), u(0.4, 0.5), u(0.35, 0.6)
        m, leg = mat(), 0.025
        parts = [box(0, sh, 0, w, 0.03, w, m), box(0, sh + back / 2, -w + 0.02, w, back / 2, 0.02, m)]
        for sx in (-1, 1):
            for sz in (-1, 1):
                parts.append(box(sx * (w - leg), sh / 2, sz * (w - leg), leg, sh / 2, leg, m))
        return parts, w * 1.45
    if cls == "lamp":
        r, h, shade = u(0.12, 0.2), u(1.0, 1.7), u(0.15, 0.3)
        return [
            Cylinder(at(0, 0, 0), yaw, mat(), seg, radius=r, height=0.04),
            Cylinder(at(0, 0, 0), yaw, mat(), seg, radius=0.02, height=h),
            Cone(at(0, h - shade * 0.6, 0), yaw, mat(), seg, radius=shade, height=shade * 1.2),
        ], max(r, shade)
    if cls == "shelf":
        w, d, h = u(0.3, 0.7), u(0.15, 0.25), u(0.8, 2.0)
        m, t = mat(), 0.02
        parts = [box(0, h / 2, -d + t, w, h / 2, t, m), box(-w + t, h / 2, 0, t, h / 2, d, m), box(w - t, h / 2, 0, t, h / 2, d, m)]
        levels = int(rng.integers(3, 6))
        for k in range(levels):
            parts.append(box(0, t + k * (h - 2 * t) / (levels - 1), 0, w - 2 * t, t, d - t, m))
        return parts, float(np.hypot(w, d))
    if cls == "sofa":
        w, d, sh = u(0.6, 1.1), u(0.35, 0.5), u(0.2, 0.25)
        m = mat()
        return [
            box(0, sh, 0, w, sh, d, m),
            box(0, sh * 2 + 0.2, -d + 0.1, w, 0.2 + sh * 0.3, 0.1, m),
            box(-w + 0.08, sh * 1.5, 0, 0.08, sh * 1.5, d, m),
            box(w - 0.08, sh * 1.5, 0, 0.08, sh * 1.5, d, m),
        ], float(np.hypot(w, d))
    raise ValueError(cls)


OBJECT_CLASSES = SEG_CLASSES[2:]


def build_scene(seed: int, photos: tuple[str, ...], material_set: str = "standard") -> Scene:
    """The scene of one seed: room, objects, lights and camera. Deterministic in `seed` and the material set."""
    rng = np.random.default_rng(seed)
    materials: list[tuple[np.ndarray, float]] = []

    def mat() -> int:
        materials.append(textures.make_material(rng, photos, material_set))
        return len(materials) - 1

    W, D, H = rng.uniform(4.0, 9.0), rng.uniform(4.0, 9.0), rng.uniform(2.6, 3.4)
    # The room is one inside-out box, but floor, ceiling and each wall get their own
    # material: six thin boxes would cost six intersections per ray instead of one.
    room = Box(np.array([W / 2, H / 2, D / 2]), 0.0, -1, CLASS_ID["background"], inside=True,
               half=np.array([W / 2, H / 2, D / 2], np.float32))
    room_mats = [mat() for _ in range(6)]  # -x, +x, -y(floor), +y(ceiling), -z, +z
    prims: list[Primitive] = [room]

    footprints: list[tuple[float, float, float]] = []
    tables: list[tuple[float, float, float]] = []
    n_obj = int(rng.integers(5, 13))
    for _ in range(n_obj * 4):
        if len(footprints) >= n_obj:
            break
        cls = str(rng.choice(OBJECT_CLASSES))
        x, z = rng.uniform(0.4, W - 0.4), rng.uniform(0.4, D - 0.4)
        y0 = 0.0
        # small things sometimes stand on a table top
        if cls in ("box", "sphere", "cone", "cylinder") and tables and rng.random() < 0.35:
            tx, tz, th = tables[int(rng.integers(len(tables)))]
            x, z, y0 = tx + rng.uniform(-0.2, 0.2), tz + rng.uniform(-0.15, 0.15), th
            parts, _ = _furniture(rng, cls, x, z, y0, mat)
            _tag(parts, len(prims))
            if cls in ("box", "cylinder", "cone", "sphere"):
                for p in parts:  # keep it small on a table
                    _shrink(p, 0.5, y0)
            prims.extend(parts)
            continue
        parts, r = _furniture(rng, cls, x, z, y0, mat)
        if x - r < 0.05 or x + r > W - 0.05 or z - r < 0.05 or z + r > D - 0.05:
            continue
        if any(np.hypot(x - fx, z - fz) < r + fr + 0.05 for fx, fz, fr in footprints):
            continue
        footprints.append((x, z, r))
        _tag(parts, len(prims))
        prims.extend(parts)
        if cls == "table":
            top = parts[0]
            tables.append((x, z, float(top.pos[1] + top.half[1])))

    # camera somewhere free, looking roughly horizontally
    for _ in range(50):
        cx, cz = rng.uniform(0.3, W - 0.3), rng.uniform(0.3, D - 0.3)
        if all(np.hypot(cx - fx, cz - fz) > fr + 0.3 for fx, fz, fr in footprints):
            break
    cam_pos = np.array([cx, rng.uniform(0.9, min(2.0, H - 0.3)), cz], np.float32)
    # aim at an object most of the time: rooms are mostly wall, and seg needs objects in view
    if footprints and rng.random() < 0.7:
        fx, fz, _ = footprints[int(rng.integers(len(footprints)))]
        target = np.array([fx, rng.uniform(0.2, 0.9), fz], np.float32)
    else:
        target = np.array([rng.uniform(0, W), rng.uniform(0.2, 1.4), rng.uniform(0, D)], np.float32)
    fwd = target - cam_pos
    if np.linalg.norm(fwd[[0, 2]]) < 0.5:
        fwd = np.array([W / 2 - cx + 1e-3, 0.0, D / 2 - cz], np.float32)
    fwd /= np.linalg.norm(fwd)
    pitch_limit = np.sin(np.radians(35))
    fwd[1] = np.clip(fwd[1], -pitch_limit, pitch_limit * 0.5)
    fwd /= np.linalg.norm(fwd)
    roll = rng.normal(0, np.radians(3))
    right = np.cross(fwd, [0.0, 1.0, 0.0])
    right /= np.linalg.norm(right)
    up = np.cross(right, fwd)
    right, up = right * np.cos(roll) + up * np.sin(roll), up * np.cos(roll) - right * np.sin(roll)
    cam_rot = np.stack([right, up, -fwd], axis=1).astype(np.float32)  # columns: camera axes in world

    lights = []
    for _ in range(int(rng.integers(1, 3))):
        lp = np.array([rng.uniform(0.3, W - 0.3), H - rng.uniform(0.1, 0.5), rng.uniform(0.3, D - 0.3)], np.float32)
        tint = 1.0 + rng.uniform(-0.15, 0.15, 3)
        lights.append((lp, (tint * rng.uniform(0.6, 1.2)).astype(np.float32)))
    for i, m in enumerate(room_mats):
        room_mats[i] = m
    scene = Scene(prims, materials, lights, cam_pos, cam_rot, float(rng.uniform(0.15, 0.35)), float(rng.uniform(0.8, 1.3)))
    scene.room_materials = room_mats  # type: ignore[attr-defined]
    return scene


def _tag(parts: list[Primitive], obj: int) -> None:
    for p in parts:
        p.obj = obj  # type: ignore[attr-defined]


def _shrink(p: Primitive, f: float, y0: float) -> None:
    p.pos = np.array([p.pos[0], y0 + (p.pos[1] - y0) * f, p.pos[2]], np.float32)
    if isinstance(p, Box):
        p.half = p.half * f
    elif isinstance(p, Sphere):
        p.radius *= f
    elif isinstance(p, (Cylinder, Cone)):
        p.radius *= f
        p.height *= f


# --------------------------------------------------------------------------- rendering


def _object_groups(prims: list[Primitive]) -> list[tuple[np.ndarray, float, list[int]]]:
    """Bounding spheres of the objects (runs of primitives with the same `obj`)."""
    groups: dict[int, list[int]] = {}
    for k, p in enumerate(prims):
        groups.setdefault(getattr(p, "obj", -1 - k), []).append(k)
    out = []
    for members in groups.values():
        bounds = [prims[k].bound() for k in members]
        lo = np.min([c - r for c, r in bounds], axis=0)
        hi = np.max([c + r for c, r in bounds], axis=0)
        out.append(((lo + hi) / 2, float(np.linalg.norm(hi - lo) / 2), members))
    return out


def _closest(prims: list[Primitive], o: np.ndarray, d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Nearest hit of rays from the single point `o` along `d` (N, 3)."""
    t_best = np.full(len(d), np.inf, np.float32)
    idx = np.full(len(d), -1, np.int32)
    dd = np.einsum("ij,ij->i", d, d)
    for centre, radius, members in _object_groups(prims):
        if any(prims[k].inside for k in members):
            cand = np.arange(len(d))
        else:
            # rays whose line passes within the object's bounding sphere, in front of o
            oc = (centre - o).astype(np.float32)
            cx = oc[1] * d[:, 2] - oc[2] * d[:, 1]
            cy = oc[2] * d[:, 0] - oc[0] * d[:, 2]
            cz = oc[0] * d[:, 1] - oc[1] * d[:, 0]
            near = (cx * cx + cy * cy + cz * cz) <= (radius * radius) * dd
            cand = np.flatnonzero(near)
            if cand.size == 0:
                continue
        dc = d[cand]
        for k in members:
            t = prims[k].intersect(o, dc)
            closer = t < t_best[cand]
            sel = cand[closer]
            t_best[sel] = t[closer]
            idx[sel] = k
    return t_best, idx


def _occluded(prims: list[Primitive], o: np.ndarray, d: np.ndarray) -> np.ndarray:
    """Whether anything lies between o and o + d (shadow rays, t in (0, 1))."""
    blocked = np.zeros(len(d), bool)
    end = o + d
    lo_all, hi_all = np.minimum(o, end), np.maximum(o, end)
    for centre, radius, members in _object_groups(prims):
        if any(prims[k].inside for k in members):
            continue
        # the segment's bounding box must reach the object's bounding sphere
        cand = ~blocked
        for a in range(3):
            cand &= (lo_all[:, a] - radius <= centre[a]) & (centre[a] <= hi_all[:, a] + radius)
        sub = np.flatnonzero(cand)
        if sub.size == 0:
            continue
        os_, ds_ = o[sub], d[sub]
        for k in members:
            t = prims[k].intersect(os_, ds_)
            blocked[sub[(t > EPS) & (t < 1.0 - EPS)]] = True
    return blocked


def _sample(tile: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Bilinear, wrapping texture lookup; u, v in tiles."""
    h, w = tile.shape[:2]
    x = (u * w) % w
    y = (v * h) % h
    x0 = np.floor(x).astype(np.int64)
    y0 = np.floor(y).astype(np.int64)
    fx = (x - x0)[:, None].astype(np.float32)
    fy = (y - y0)[:, None].astype(np.float32)
    x0 %= w
    y0 %= h
    x1 = (x0 + 1) % w
    y1 = (y0 + 1) % h
    return ((tile[y0, x0] * (1 - fx) + tile[y0, x1] * fx) * (1 - fy)
            + (tile[y1, x0] * (1 - fx) + tile[y1, x1] * fx) * fy)


def render(scene: Scene, size: int) -> dict[str, np.ndarray]:
    """Render RGB and the geometric labels (seg, depth, normal, validity) of a scene."""
    K = intrinsics(size)
    jj, ii = np.meshgrid(np.arange(size, dtype=np.float32), np.arange(size, dtype=np.float32))
    d_cam = np.stack([(jj + 0.5 - K["cx"]) / K["fx"], -(ii + 0.5 - K["cy"]) / K["fy"], -np.ones_like(jj)], -1)
    d_cam = d_cam.reshape(-1, 3)
    d = d_cam @ scene.cam_rot.T
    o = np.broadcast_to(scene.cam_pos, d.shape)
    t, idx = _closest(scene.prims, scene.cam_pos, d)
    valid = np.isfinite(t) & (idx >= 0)
    t = np.where(valid, t, 0.0).astype(np.float32)
    p = o + d * t[:, None]

    normal_w = np.zeros_like(p)
    seg = np.zeros(len(d), np.uint8)
    albedo = np.zeros_like(p)
    room_mats = scene.room_materials  # type: ignore[attr-defined]
    for k, prim in enumerate(scene.prims):
        sel = np.flatnonzero(idx == k)
        if sel.size == 0:
            continue
        pk = p[sel]
        nk = prim.normal(pk)
        normal_w[sel] = nk
        seg[sel] = prim.seg
        lp = prim.local_point(pk)
        ln = nk @ prim.rot  # normal in the primitive's frame, for triplanar mapping
        axis = np.argmax(np.abs(ln), axis=1)
        # triplanar: project onto the plane facing the dominant normal axis
        u = np.where(axis == 0, lp[:, 2], lp[:, 0])
        v = np.where(axis == 1, lp[:, 2], lp[:, 1])
        if prim.inside:
            # which room surface: -x, +x, floor, ceiling, -z, +z
            face = axis * 2 + (np.take_along_axis(ln, axis[:, None], 1)[:, 0] < 0)
            for f in range(6):
                fs = face == f
                if fs.any():
                    tile, sc = scene.materials[room_mats[f]]
                    albedo[sel[fs]] = _sample(tile, u[fs] * sc, v[fs] * sc)
        else:
            tile, sc = scene.materials[prim.material]
            albedo[sel] = _sample(tile, u * sc * 2.0, v * sc * 2.0)

    # normals face the camera
    flip = np.sum(normal_w * d, axis=1) > 0
    normal_w[flip] *= -1

    light = np.full(p.shape, scene.ambient, np.float32)
    origin = p + normal_w * 1e-3
    for lp, intensity in scene.lights:
        to_l = lp - origin
        dist2 = np.sum(to_l * to_l, axis=1)
        lam = np.maximum(np.sum(normal_w * to_l, axis=1) / np.sqrt(dist2 + 1e-12), 0.0)
        lit = lam > 0
        shadow = np.zeros(len(p), bool)
        sub = np.flatnonzero(valid & lit)
        shadow[sub] = _occluded(scene.prims, origin[sub], to_l[sub])
        falloff = 1.0 / (1.0 + dist2 / 9.0)
        light += (lam * falloff * ~shadow)[:, None] * intensity[None, :] * 1.6

    linear = np.clip(albedo * light * scene.exposure, 0.0, 1.0)
    rgb = np.rint(255.0 * linear ** (1 / 2.2)).astype(np.uint8)
    normal_c = normal_w @ scene.cam_rot  # world -> camera frame
    return {
        "rgb": rgb.reshape(size, size, 3),
        "seg": np.where(valid, seg, 0).reshape(size, size),
        "depth": t.reshape(size, size),
        "valid": valid.reshape(size, size),
        "normal": normal_c.reshape(size, size, 3).astype(np.float32),
    }


def generate(seed: int, size: int, photos: tuple[str, ...], material_set: str = "standard") -> dict[str, np.ndarray]:
    """All six labels of scene `seed` (raw units of docs/CONTRACT.md, plus `valid`)."""
    from ..tasks import labels

    out = render(build_scene(seed, photos, material_set), size)
    out["edge"] = labels.edge_label(out["rgb"])
    out["keypoint"] = labels.keypoint_label(out["rgb"])
    return out
