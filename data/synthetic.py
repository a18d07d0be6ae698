"""Procedural faces with exact face-parsing labels.

Every face is drawn analytically (ellipses, bands, arcs) in a head-centred frame that carries the
pose, so parts move together. Drawing happens on a 3x supersampled grid: the image is the block
mean (anti-aliased edges) and the label of a pixel is the part under its exact centre (the middle
sample of each 3x3 block), so labels are exact for the pixel centres at every resolution.
Backgrounds are deliberately cluttered: a VAE without a face mask has to spend capacity on them.
"""

from __future__ import annotations

import colorsys
import math
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from data.labels import CLASS_ID, DEFAULT_FACE_CLASSES, face_mask

SUPERSAMPLE = 3  # odd, so each pixel's centre is one of its samples

# Paint ids: finer than classes (an iris and an eye white share the class "l_eye").
_PAINTS: tuple[tuple[str, str], ...] = (
    ("background", "background"),
    ("skin", "skin"),
    ("nose", "nose"),
    ("nostril", "nose"),
    ("l_brow", "l_brow"),
    ("r_brow", "r_brow"),
    ("l_eye_white", "l_eye"),
    ("r_eye_white", "r_eye"),
    ("l_iris", "l_eye"),
    ("r_iris", "r_eye"),
    ("l_pupil", "l_eye"),
    ("r_pupil", "r_eye"),
    ("l_lid", "l_eye"),
    ("r_lid", "r_eye"),
    ("l_ear", "l_ear"),
    ("r_ear", "r_ear"),
    ("earring", "ear_r"),
    ("mouth", "mouth"),
    ("teeth", "mouth"),
    ("u_lip", "u_lip"),
    ("l_lip", "l_lip"),
    ("neck", "neck"),
    ("necklace", "neck_l"),
    ("cloth", "cloth"),
    ("cloth_pattern", "cloth"),
    ("hair", "hair"),
    ("hat", "hat"),
    ("hat_band", "hat"),
    ("glasses", "eye_g"),
)
_P = {name: i for i, (name, _) in enumerate(_PAINTS)}
_PAINT_TO_CLASS = np.array([CLASS_ID[c] for _, c in _PAINTS], dtype=np.uint8)
_FACE_SHADED = np.zeros(len(_PAINTS), dtype=bool)
_FACE_SHADED[[_P[n] for n in ("skin", "nose", "u_lip", "l_lip", "l_ear", "r_ear")]] = True

_SKIN_TONES = np.array(
    [
        (255, 224, 196), (241, 194, 167), (234, 192, 134), (255, 205, 148), (224, 172, 105),
        (198, 134, 66), (161, 102, 54), (141, 85, 36), (110, 68, 40), (92, 56, 32),
    ],
    dtype=np.float32,
)
_HAIR_COLOURS = np.array(
    [
        (22, 18, 16), (40, 28, 22), (62, 42, 28), (96, 62, 36), (130, 62, 30),
        (200, 160, 96), (226, 200, 140), (150, 150, 150), (215, 212, 205),
    ],
    dtype=np.float32,
)
_IRIS_COLOURS = np.array(
    [(92, 56, 30), (48, 30, 20), (70, 115, 165), (80, 118, 72), (132, 104, 58), (112, 124, 136)],
    dtype=np.float32,
)
_METALS = np.array([(212, 175, 55), (200, 200, 210), (235, 230, 220)], dtype=np.float32)

_GRIDS: dict[int, tuple[np.ndarray, np.ndarray]] = {}


def _grid(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Sample-centre coordinates in [-1, 1] (x right, y down) of an n x n grid."""
    if n not in _GRIDS:
        axis = ((np.arange(n, dtype=np.float32) + 0.5) / n) * 2.0 - 1.0
        _GRIDS[n] = (np.broadcast_to(axis[None, :], (n, n)), np.broadcast_to(axis[:, None], (n, n)))
    return _GRIDS[n]


def _random_colour(rng: np.random.Generator, sat: tuple[float, float], val: tuple[float, float]) -> np.ndarray:
    h, sv, v = rng.uniform(0.0, 1.0), rng.uniform(*sat), rng.uniform(*val)
    return np.array(colorsys.hsv_to_rgb(h, sv, v), dtype=np.float32) * 255.0


class _Canvas:
    """Paint ids on a supersampled grid; parts are drawn in the head frame (u, v)."""

    def __init__(self, n: int, fx: float, fy: float, scale: float, angle: float) -> None:
        self.n = n
        self.x, self.y = _grid(n)
        self.paint = np.zeros((n, n), dtype=np.uint8)
        self.fx, self.fy, self.scale = fx, fy, scale
        self.cos, self.sin = math.cos(angle), math.sin(angle)

    def window(self, cu: float, cv: float, radius: float) -> tuple[slice, slice]:
        """Grid slices covering a disc of ``radius`` (head units) around head point (cu, cv)."""
        x = self.fx + self.scale * (cu * self.cos - cv * self.sin)
        y = self.fy + self.scale * (cu * self.sin + cv * self.cos)
        r = radius * self.scale * self.n / 2.0 + 1.0
        cx, cy = (x + 1.0) * self.n / 2.0, (y + 1.0) * self.n / 2.0
        xs = slice(max(0, int(cx - r)), max(0, min(self.n, int(cx + r) + 1)))
        ys = slice(max(0, int(cy - r)), max(0, min(self.n, int(cy + r) + 1)))
        return ys, xs

    def head(self, w: tuple[slice, slice]) -> tuple[np.ndarray, np.ndarray]:
        dx = self.x[w] - self.fx
        dy = self.y[w] - self.fy
        u = (dx * self.cos + dy * self.sin) / self.scale
        v = (dy * self.cos - dx * self.sin) / self.scale
        return u, v

    def body(self, w: tuple[slice, slice]) -> tuple[np.ndarray, np.ndarray]:
        """Unrotated frame: the torso does not tilt with the head."""
        return (self.x[w] - self.fx) / self.scale, (self.y[w] - self.fy) / self.scale

    def put(self, w: tuple[slice, slice], region: np.ndarray, paint: str) -> None:
        self.paint[w][region] = _P[paint]


def _ellipse(u: np.ndarray, v: np.ndarray, cu: float, cv: float, a: float, b: float) -> np.ndarray:
    return ((u - cu) / a) ** 2 + ((v - cv) / b) ** 2 < 1.0


def _draw_face(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """One face on an n x n grid: (float32 RGB in 0..255, uint8 paint ids)."""
    full = (slice(None), slice(None))
    angle = math.radians(rng.uniform(-14.0, 14.0))
    scale = rng.uniform(0.33, 0.43)
    cv = _Canvas(n, rng.uniform(-0.09, 0.09), rng.uniform(-0.02, 0.1), scale, angle)
    fw, fh = rng.uniform(0.84, 1.0), rng.uniform(1.18, 1.38)
    yaw = rng.uniform(-0.1, 0.1)  # features slide sideways: a cheap turn of the head
    colours = np.zeros((len(_PAINTS), 3), dtype=np.float32)

    skin = _SKIN_TONES[rng.integers(len(_SKIN_TONES))] * rng.uniform(0.9, 1.08)
    skin = skin + rng.uniform(-10.0, 10.0, 3)
    hair_c = _HAIR_COLOURS[rng.integers(len(_HAIR_COLOURS))] * rng.uniform(0.85, 1.15)
    if rng.random() < 0.06:
        hair_c = _random_colour(rng, (0.5, 0.9), (0.4, 0.9))
    colours[_P["skin"]] = skin
    colours[_P["nose"]] = skin * 0.86
    colours[_P["nostril"]] = skin * 0.38
    colours[_P["l_ear"]] = colours[_P["r_ear"]] = skin * 0.92
    colours[_P["neck"]] = skin * 0.8
    lip = skin * (1 - (t := rng.uniform(0.35, 0.7))) + np.array([185, 60, 75], np.float32) * t
    colours[_P["u_lip"]], colours[_P["l_lip"]] = lip * 0.88, lip
    colours[_P["mouth"]] = (80, 22, 28)
    colours[_P["teeth"]] = (236, 230, 218)
    brow = hair_c * rng.uniform(0.55, 0.85) if hair_c.mean() < 150 else skin * 0.5
    colours[_P["l_brow"]] = colours[_P["r_brow"]] = brow
    colours[_P["l_eye_white"]] = colours[_P["r_eye_white"]] = np.float32(236) * rng.uniform(0.9, 1.0)
    colours[_P["l_iris"]] = colours[_P["r_iris"]] = _IRIS_COLOURS[rng.integers(len(_IRIS_COLOURS))]
    colours[_P["l_pupil"]] = colours[_P["r_pupil"]] = (14, 12, 12)
    colours[_P["l_lid"]] = colours[_P["r_lid"]] = (38, 28, 26)
    colours[_P["hair"]] = hair_c
    colours[_P["earring"]] = colours[_P["necklace"]] = _METALS[rng.integers(len(_METALS))]
    colours[_P["cloth"]] = _random_colour(rng, (0.1, 0.9), (0.15, 0.95))
    colours[_P["cloth_pattern"]] = _random_colour(rng, (0.1, 0.9), (0.15, 0.95))
    colours[_P["hat"]] = _random_colour(rng, (0.2, 0.9), (0.2, 0.9))
    colours[_P["hat_band"]] = colours[_P["hat"]] * 0.6
    colours[_P["glasses"]] = (
        (20, 20, 22) if rng.random() < 0.6 else _random_colour(rng, (0.3, 0.9), (0.3, 0.8))
    )

    # Torso: cloth with a neckline; hair falls over it, the neck covers the hair behind it.
    w = full
    bu, bv = cv.body(w)
    neck_w = rng.uniform(0.42, 0.56)
    cloth = _ellipse(bu, bv, 0.0, fh + 1.85, rng.uniform(2.2, 2.9), 1.3)
    cloth |= (bv > fh + 1.0) & (np.abs(bu) < 2.6)
    neckline = _ellipse(bu, bv, 0.0, fh + 0.45, neck_w * rng.uniform(1.05, 1.6), rng.uniform(0.45, 0.85))
    cv.put(w, cloth & ~neckline, "cloth")
    if rng.random() < 0.4:
        period = rng.uniform(0.2, 0.5)
        d = rng.uniform(0.0, math.pi)
        stripes = np.sin((bu * math.cos(d) + bv * math.sin(d)) * (2 * math.pi / period)) > 0.3
        cv.put(w, cloth & ~neckline & stripes, "cloth_pattern")

    # Hair behind the head: a cap plus, for long hair, a rounded fall down to the shoulders.
    style = rng.choice(4, p=(0.07, 0.38, 0.4, 0.15))  # bald-ish, short, long, bob
    hair_len = (0.0, 0.35 * fh, rng.uniform(1.4, 2.2) * fh, 0.9 * fh)[style]
    hair_a = fw * (1.06 if style == 0 else rng.uniform(1.15, 1.32))
    hair_b = fh * (1.04 if style == 0 else rng.uniform(1.12, 1.22))
    w = cv.window(0.0, 0.3 * hair_len, max(hair_a, hair_b + hair_len) + 0.3)
    u, v = cv.head(w)
    top = _ellipse(u, v, 0.0, -0.12, hair_a, hair_b) & (v <= -0.12)
    back = top
    if hair_len > 0:
        back = back | (_ellipse(u, v, 0.0, -0.12, hair_a, hair_len + 0.12) & (v > -0.12))
    if style != 0:
        cv.put(w, back, "hair")

    w = full
    # The neckline shows the chest, which face parsing labels as neck.
    neck = ((np.abs(bu) < neck_w) & (bv > 0.2) & ~cloth) | (cloth & neckline)
    cv.put(w, neck, "neck")
    if rng.random() < 0.15:
        ring_c = fh + rng.uniform(0.1, 0.35)
        outer = _ellipse(bu, bv, 0.0, ring_c, neck_w * 1.02, 0.55)
        inner = _ellipse(bu, bv, 0.0, ring_c, neck_w * 0.95, 0.48)
        cv.put(w, outer & ~inner & (bv > ring_c) & neck, "necklace")

    # Ears (often hidden by long hair), then the face itself.
    ears_visible = style in (0, 1) or rng.random() < 0.35
    earring = ears_visible and rng.random() < 0.2
    ear_v = rng.uniform(-0.05, 0.1)
    for side, name in ((-1.0, "l_ear"), (1.0, "r_ear")):
        cu = side * fw * 0.97
        w = cv.window(cu, ear_v + 0.1, 0.5)
        u, v = cv.head(w)
        if ears_visible:
            cv.put(w, _ellipse(u, v, cu, ear_v, 0.16, 0.29), name)
        if earring:
            cv.put(w, _ellipse(u, v, cu, ear_v + 0.33, 0.06, 0.06), "earring")

    w = cv.window(0.0, 0.0, fh + 0.1)
    u, v = cv.head(w)
    jaw = fw * (1.0 - rng.uniform(0.12, 0.28) * np.clip(v / fh, 0.0, 1.0))
    face = (u / jaw) ** 2 + (v / fh) ** 2 < 1.0
    cv.put(w, face, "skin")

    # Nose: a widening ridge ending in a rounded tip with two nostrils.
    nx = yaw * 1.2
    n_top, n_tip = rng.uniform(-0.2, -0.08), rng.uniform(0.26, 0.4)
    n_wid = rng.uniform(0.13, 0.2)
    w = cv.window(nx, n_tip, 0.8)
    u, v = cv.head(w)
    ridge_t = np.clip((v - n_top) / (n_tip - n_top), 0.0, 1.0)
    ridge = (v > n_top) & (v < n_tip) & (np.abs(u - nx) < 0.045 + n_wid * 0.5 * ridge_t**2)
    cv.put(w, ridge | _ellipse(u, v, nx, n_tip, n_wid, n_wid * 0.62), "nose")
    for side in (-1.0, 1.0):
        cv.put(w, _ellipse(u, v, nx + side * n_wid * 0.42, n_tip + n_wid * 0.35, 0.04, 0.024), "nostril")

    # Eyes with lids, irises and pupils; brows above them.
    ex, ey = rng.uniform(0.33, 0.42), rng.uniform(-0.2, -0.08)
    ea = rng.uniform(0.14, 0.19)
    eb = ea * rng.uniform(0.38, 0.58)
    gaze = rng.uniform(-0.3, 0.3) * ea
    bx_off, by = rng.uniform(-0.03, 0.04), rng.uniform(0.16, 0.25)
    ba, bb = rng.uniform(0.17, 0.25), rng.uniform(0.03, 0.065)
    arch, tilt = rng.uniform(0.0, 0.08), rng.uniform(-0.05, 0.06)
    for side, s in ((-1.0, "l"), (1.0, "r")):
        cu = yaw + side * ex
        w = cv.window(cu, ey - by * 0.5, 0.5)
        u, v = cv.head(w)
        eye = _ellipse(u, v, cu, ey, ea, eb)
        lid = _ellipse(u, v, cu, ey + eb * 0.1, ea * 1.12, eb * 1.35) & ~eye & (v < ey)
        cv.put(w, lid, f"{s}_lid")
        cv.put(w, eye, f"{s}_eye_white")
        iris = _ellipse(u, v, cu + gaze, ey, eb * 0.95, eb * 0.95) & eye
        cv.put(w, iris, f"{s}_iris")
        cv.put(w, _ellipse(u, v, cu + gaze, ey, eb * 0.42, eb * 0.42) & eye, f"{s}_pupil")
        bc = cu + side * bx_off
        t = (u - bc) / ba
        centre = ey - by - arch * (1.0 - t**2) - side * tilt * t
        brow = (np.abs(t) < 1.0) & (np.abs(v - centre) < bb * (1.0 - 0.45 * t**2))
        cv.put(w, brow, f"{s}_brow")

    # Mouth: lips meet on a curved line; an open mouth shows the inside and the teeth.
    mx, my = yaw * 1.1, rng.uniform(0.6, 0.78)
    mw = rng.uniform(0.22, 0.33)
    smile = rng.uniform(-0.03, 0.09)
    ul, ll = rng.uniform(0.045, 0.08), rng.uniform(0.06, 0.1)
    opening = rng.uniform(0.03, 0.1) if rng.random() < 0.3 else 0.0
    w = cv.window(mx, my, mw + 0.2)
    u, v = cv.head(w)
    t = (u - mx) / mw
    inside = np.abs(t) < 1.0
    arc = np.sqrt(np.clip(1.0 - t**2, 0.0, 1.0))
    line = my + smile * (1.0 - t**2)
    cv.put(w, inside & (v > line - ul * arc) & (v <= line), "u_lip")
    if opening > 0:
        cv.put(w, inside & (v > line) & (v <= line + opening * arc), "mouth")
        cv.put(w, inside & (v > line) & (v <= line + opening * arc * 0.4) & (np.abs(t) < 0.7), "teeth")
    cv.put(w, inside & (v > line + opening * arc) & (v <= line + (opening + ll) * arc), "l_lip")

    # Glasses: two rims, a bridge and the arms towards the ears; sunglasses have opaque lenses.
    if rng.random() < 0.25:
        ga, gb = ea * rng.uniform(1.45, 1.8), eb * rng.uniform(2.2, 3.0)
        thick = rng.uniform(0.022, 0.045)
        sun = rng.random() < 0.25
        w = cv.window(yaw, ey, fw + 0.2)
        u, v = cv.head(w)
        frame = np.zeros(u.shape, dtype=bool)
        for side in (-1.0, 1.0):
            cu = yaw + side * ex
            outer = _ellipse(u, v, cu, ey, ga + thick, gb + thick)
            frame |= outer if sun else outer & ~_ellipse(u, v, cu, ey, ga, gb)
        frame |= (np.abs(u - yaw) < ex - ga + thick) & (np.abs(v - ey + gb * 0.3) < thick * 0.7)
        arm = (np.abs(u - yaw) > ex + ga) & (np.abs(u) < fw * 0.98) & (np.abs(v - ey + gb * 0.2) < thick * 0.6)
        # Arms show only in front of the head, never floating over the background.
        cv.put(w, frame | (arm & (cv.paint[w] != _P["background"])), "glasses")

    # Hair in front: fringe and sides framing the forehead, unless bald.
    if style != 0:
        w = cv.window(0.0, -0.3, max(hair_a, hair_b) + 0.3)
        u, v = cv.head(w)
        line = rng.uniform(-0.98, -0.55) * fh + rng.uniform(-0.25, 0.25) * u + rng.uniform(0.15, 0.6) * u**2
        cap = _ellipse(u, v, 0.0, -0.12, hair_a, hair_b)
        fringe = cap & (v < line)
        if style == 3:  # a bob also covers the cheeks' outer edge
            fringe |= cap & (np.abs(u) > fw * 0.82) & (v < 0.45 * fh)
        cv.put(w, fringe, "hair")

    if rng.random() < 0.12:
        w = cv.window(0.0, -0.6, fh + 0.8)
        u, v = cv.head(w)
        brim_v = rng.uniform(-0.82, -0.55) * fh
        crown = _ellipse(u, v, 0.0, brim_v, fw * 1.12, fh * 0.95) & (v < brim_v)
        brim = (np.abs(u) < fw * rng.uniform(1.2, 1.5)) & (np.abs(v - brim_v) < 0.07)
        cv.put(w, crown, "hat")
        cv.put(w, brim, "hat_band")

    return _colour(rng, cv, colours, fw, fh), cv.paint


def _colour(rng: np.random.Generator, cv: _Canvas, colours: np.ndarray, fw: float, fh: float) -> np.ndarray:
    """Turn paint ids into RGB: flat colours, face shading, hair strands, lighting.

    Background samples come out black; the background is added per pixel afterwards.
    """
    paint = cv.paint
    image = colours[paint]
    u, v = cv.head((slice(None), slice(None)))
    shade = 1.0 + rng.uniform(-0.2, 0.2) * cv.x + rng.uniform(-0.2, 0.15) * cv.y
    shaded = _FACE_SHADED[paint]
    r2 = (u / fw) ** 2 + (v / fh) ** 2
    shade[shaded] *= (1.06 - 0.22 * r2)[shaded]
    hair = (paint == _P["hair"]) | (paint == _P["hat"])
    wave = np.sin(rng.uniform(3.0, 8.0) * v + rng.uniform(0.0, 6.3))
    strands = 1.0 + 0.045 * np.sin(rng.uniform(30.0, 50.0) * u + 1.2 * wave) - 0.1 * (u**2 + (v + 0.2) ** 2) / 3.0
    shade[hair] *= strands[hair]
    image *= shade[..., None]
    return image


def _background(rng: np.random.Generator, n: int) -> np.ndarray:
    """A cluttered scene at the output resolution: gradient, random shapes and stripes.

    Drawn without supersampling: it is clutter, and this keeps rendering cheap.
    """
    x, y = _grid(n)
    d = rng.uniform(0.0, 2 * math.pi)
    t = np.clip(0.5 + 0.5 * (x * math.cos(d) + y * math.sin(d)), 0.0, 1.0)[..., None]
    c1 = _random_colour(rng, (0.0, 0.8), (0.1, 1.0))
    c2 = _random_colour(rng, (0.0, 0.8), (0.1, 1.0))
    bg = c1 * (1.0 - t) + c2 * t
    for _ in range(int(rng.integers(3, 9))):
        kind = rng.integers(4)
        cx, cy = rng.uniform(-1.1, 1.1, 2)
        a, b = rng.uniform(0.08, 0.6, 2)
        ang = rng.uniform(0.0, math.pi)
        ca, sa = math.cos(ang), math.sin(ang)
        pu = (x - cx) * ca + (y - cy) * sa
        pv = (y - cy) * ca - (x - cx) * sa
        if kind == 0:
            region = (pu / a) ** 2 + (pv / b) ** 2 < 1.0
        elif kind == 1:
            region = (np.abs(pu) < a) & (np.abs(pv) < b)
        elif kind == 2:
            region = (np.abs(pu) < a * 2) & (np.sin(pv * rng.uniform(10.0, 40.0)) > 0.2)
        else:
            rr = (pu / a) ** 2 + (pv / a) ** 2
            region = (rr < 1.0) & (rr > rng.uniform(0.3, 0.8))
        bg[region] = _random_colour(rng, (0.0, 1.0), (0.05, 1.0))
    return bg


def render_faces(count: int, size: int, seed: int, start: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Render faces ``start .. start+count-1`` of the stream ``seed``.

    Returns (images uint8 (N, size, size, 3), labels uint8 (N, size, size) face-parsing ids).
    Face i depends only on (seed, start + i), so chunks concatenate to the whole.
    """
    for name, value, low in (("count", count, 0), ("size", size, 4), ("seed", seed, 0), ("start", start, 0)):
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < low:
            raise ValueError(f"{name}: expected an integer >= {low}, got {value!r}")
    s = SUPERSAMPLE
    n = size * s
    images = np.empty((count, size, size, 3), dtype=np.uint8)
    labels = np.empty((count, size, size), dtype=np.uint8)
    for i in range(count):
        rng = np.random.default_rng([int(seed), int(start) + i])
        image, paint = _draw_face(rng, n)
        small = image.reshape(size, s, size, s, 3).mean(axis=(1, 3))
        bg_share = (paint == _P["background"]).reshape(size, s, size, s).mean(axis=(1, 3))[..., None]
        small += _background(rng, size) * bg_share
        noise = rng.normal(0.0, rng.uniform(2.0, 14.0), (size, size, 3)).astype(np.float32)
        small += noise * (0.25 + 0.75 * bg_share)
        small *= rng.uniform(0.92, 1.08, 3).astype(np.float32)  # white balance
        images[i] = np.clip(small + 0.5, 0.0, 255.0).astype(np.uint8)
        labels[i] = _PAINT_TO_CLASS[paint[s // 2 :: s, s // 2 :: s]]
    return images, labels


def split_counts(count: int, fractions: Sequence[float]) -> tuple[int, int, int]:
    """Rows per split for ``count`` items and (train, val, test) fractions summing to 1."""
    fr = tuple(float(f) for f in fractions)
    if len(fr) != 3 or any(f < 0 for f in fr) or abs(sum(fr) - 1.0) > 1e-6:
        raise ValueError(f"splits: expected three non-negative fractions summing to 1, got {fractions!r}")
    train = int(round(count * fr[0]))
    val = min(count - train, int(round(count * fr[1])))
    return train, val, count - train - val


def overlay(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Show a face mask on an image: the face as is, the rest dimmed and grey, the edge drawn."""
    out = image.astype(np.float32)
    m = mask.astype(bool)
    grey = out[~m].mean(axis=1, keepdims=True)
    out[~m] = (0.3 * out[~m] + 0.7 * grey) * 0.3
    out[m ^ _erode(m)] = (255, 214, 0)
    return np.clip(out, 0, 255).astype(np.uint8)


def _erode(m: np.ndarray) -> np.ndarray:
    e = m.copy()
    e[1:] &= m[:-1]
    e[:-1] &= m[1:]
    e[:, 1:] &= m[:, :-1]
    e[:, :-1] &= m[:, 1:]
    return e


def save_sample_grid(
    path: str | Path,
    count: int = 24,
    size: int = 144,
    seed: int = 0,
    columns: int = 6,
    face_classes: Iterable[int] = DEFAULT_FACE_CLASSES,
) -> Path:
    """Save a PNG grid of synthetic faces, each beside its face-mask overlay."""
    images, labels = render_faces(count, size, seed)
    masks = face_mask(labels, face_classes)
    rows = -(-count // columns)
    gap = max(2, size // 36)
    cell_w = 2 * size + gap
    canvas = np.full((rows * (size + gap) + gap, columns * (cell_w + gap) + gap, 3), 255, np.uint8)
    for i in range(count):
        r, c = divmod(i, columns)
        y0, x0 = gap + r * (size + gap), gap + c * (cell_w + gap)
        canvas[y0 : y0 + size, x0 : x0 + size] = images[i]
        canvas[y0 : y0 + size, x0 + size + gap // 2 : x0 + 2 * size + gap // 2] = overlay(images[i], masks[i])
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(canvas).save(path, optimize=True)
    return path
