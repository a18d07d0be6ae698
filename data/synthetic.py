"""Procedural faces with exact face-parsing labels.

Every face is drawn analytically (ellipses, bands, arcs) in a head-centred frame that carries the
pose, so parts move together. Drawing happens on a 3x supersampled grid: the image is the block
mean (anti-aliased edges) and the label of a pixel is the part under its exact centre (the middle
sample of each 3x3 block), so labels are exact for the pixel centres at every resolution.
Backgrounds are deliberately cluttered: a VAE without a face mask has to spend capacity on them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from data.face_canvas import (FACE_SHADED, HAIR_COLOURS, IRIS_COLOURS, METALS, PAINT_ID, PAINT_TO_CLASS, PAINTS,
                              SKIN_TONES, SUPERSAMPLE, Canvas, ellipse, grid, random_colour)

def _draw_face(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """One face on an n x n grid: (float32 RGB in 0..255, uint8 paint ids). The parts are painted
    back to front, each by its own function, drawing from `rng` in this fixed order."""
    angle = math.radians(rng.uniform(-14.0, 14.0))
    scale = rng.uniform(0.33, 0.43)
    cv = Canvas(n, rng.uniform(-0.09, 0.09), rng.uniform(-0.02, 0.1), scale, angle)
    fw, fh = rng.uniform(0.84, 1.0), rng.uniform(1.18, 1.38)
    yaw = rng.uniform(-0.1, 0.1)  # features slide sideways: a cheap turn of the head
    colours = _palette(rng)
    bu, bv, cloth, neckline, neck_w = _draw_torso(rng, cv, fh)
    style, hair_a, hair_b = _draw_back_hair(rng, cv, fw, fh)
    _draw_neck(rng, cv, fh, bu, bv, cloth, neckline, neck_w)
    _draw_ears_and_face(rng, cv, fw, fh, style)
    _draw_nose(rng, cv, yaw)
    ex, ey, ea, eb = _draw_eyes(rng, cv, yaw)
    _draw_mouth(rng, cv, yaw)
    _draw_glasses(rng, cv, yaw, fw, ex, ey, ea, eb)
    _draw_front_hair(rng, cv, fw, fh, style, hair_a, hair_b)
    _draw_hat(rng, cv, fw, fh)
    return _colour(rng, cv, colours, fw, fh), cv.paint


def _palette(rng: np.random.Generator) -> np.ndarray:
    """The colour of every paint: skin, hair, eyes, lips, metals, cloth, a hat, glasses."""
    colours = np.zeros((len(PAINTS), 3), dtype=np.float32)
    skin = SKIN_TONES[rng.integers(len(SKIN_TONES))] * rng.uniform(0.9, 1.08)
    skin = skin + rng.uniform(-10.0, 10.0, 3)
    hair_c = HAIR_COLOURS[rng.integers(len(HAIR_COLOURS))] * rng.uniform(0.85, 1.15)
    if rng.random() < 0.06:
        hair_c = random_colour(rng, (0.5, 0.9), (0.4, 0.9))
    colours[PAINT_ID["skin"]] = skin
    colours[PAINT_ID["nose"]] = skin * 0.86
    colours[PAINT_ID["nostril"]] = skin * 0.38
    colours[PAINT_ID["l_ear"]] = colours[PAINT_ID["r_ear"]] = skin * 0.92
    colours[PAINT_ID["neck"]] = skin * 0.8
    lip = skin * (1 - (t := rng.uniform(0.35, 0.7))) + np.array([185, 60, 75], np.float32) * t
    colours[PAINT_ID["u_lip"]], colours[PAINT_ID["l_lip"]] = lip * 0.88, lip
    colours[PAINT_ID["mouth"]] = (80, 22, 28)
    colours[PAINT_ID["teeth"]] = (236, 230, 218)
    brow = hair_c * rng.uniform(0.55, 0.85) if hair_c.mean() < 150 else skin * 0.5
    colours[PAINT_ID["l_brow"]] = colours[PAINT_ID["r_brow"]] = brow
    colours[PAINT_ID["l_eye_white"]] = colours[PAINT_ID["r_eye_white"]] = np.float32(236) * rng.uniform(0.9, 1.0)
    colours[PAINT_ID["l_iris"]] = colours[PAINT_ID["r_iris"]] = IRIS_COLOURS[rng.integers(len(IRIS_COLOURS))]
    colours[PAINT_ID["l_pupil"]] = colours[PAINT_ID["r_pupil"]] = (14, 12, 12)
    colours[PAINT_ID["l_lid"]] = colours[PAINT_ID["r_lid"]] = (38, 28, 26)
    colours[PAINT_ID["hair"]] = hair_c
    colours[PAINT_ID["earring"]] = colours[PAINT_ID["necklace"]] = METALS[rng.integers(len(METALS))]
    colours[PAINT_ID["cloth"]] = random_colour(rng, (0.1, 0.9), (0.15, 0.95))
    colours[PAINT_ID["cloth_pattern"]] = random_colour(rng, (0.1, 0.9), (0.15, 0.95))
    colours[PAINT_ID["hat"]] = random_colour(rng, (0.2, 0.9), (0.2, 0.9))
    colours[PAINT_ID["hat_band"]] = colours[PAINT_ID["hat"]] * 0.6
    colours[PAINT_ID["glasses"]] = (
        (20, 20, 22) if rng.random() < 0.6 else random_colour(rng, (0.3, 0.9), (0.3, 0.8))
    )
    return colours


def _draw_torso(rng: np.random.Generator, cv: Canvas,
                fh: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, float]:
    """Torso: cloth with a neckline; hair falls over it, the neck covers the hair behind it."""
    w = (slice(None), slice(None))
    bu, bv = cv.body(w)
    neck_w = rng.uniform(0.42, 0.56)
    cloth = ellipse(bu, bv, 0.0, fh + 1.85, rng.uniform(2.2, 2.9), 1.3)
    cloth |= (bv > fh + 1.0) & (np.abs(bu) < 2.6)
    neckline = ellipse(bu, bv, 0.0, fh + 0.45, neck_w * rng.uniform(1.05, 1.6), rng.uniform(0.45, 0.85))
    cv.put(w, cloth & ~neckline, "cloth")
    if rng.random() < 0.4:
        period = rng.uniform(0.2, 0.5)
        d = rng.uniform(0.0, math.pi)
        stripes = np.sin((bu * math.cos(d) + bv * math.sin(d)) * (2 * math.pi / period)) > 0.3
        cv.put(w, cloth & ~neckline & stripes, "cloth_pattern")
    return bu, bv, cloth, neckline, neck_w


def _draw_back_hair(rng: np.random.Generator, cv: Canvas, fw: float, fh: float) -> tuple[int, float, float]:
    """Hair behind the head: a cap plus, for long hair, a rounded fall down to the shoulders."""
    style = rng.choice(4, p=(0.07, 0.38, 0.4, 0.15))  # bald-ish, short, long, bob
    hair_len = (0.0, 0.35 * fh, rng.uniform(1.4, 2.2) * fh, 0.9 * fh)[style]
    hair_a = fw * (1.06 if style == 0 else rng.uniform(1.15, 1.32))
    hair_b = fh * (1.04 if style == 0 else rng.uniform(1.12, 1.22))
    w = cv.window(0.0, 0.3 * hair_len, max(hair_a, hair_b + hair_len) + 0.3)
    u, v = cv.head(w)
    top = ellipse(u, v, 0.0, -0.12, hair_a, hair_b) & (v <= -0.12)
    back = top
    if hair_len > 0:
        back = back | (ellipse(u, v, 0.0, -0.12, hair_a, hair_len + 0.12) & (v > -0.12))
    if style != 0:
        cv.put(w, back, "hair")
    return style, hair_a, hair_b


def _draw_neck(rng: np.random.Generator, cv: Canvas, fh: float, bu: np.ndarray, bv: np.ndarray, cloth: np.ndarray,
               neckline: np.ndarray, neck_w: float) -> None:
    """The neck and the chest the neckline shows; sometimes a necklace."""
    w = (slice(None), slice(None))
    # The neckline shows the chest, which face parsing labels as neck.
    neck = ((np.abs(bu) < neck_w) & (bv > 0.2) & ~cloth) | (cloth & neckline)
    cv.put(w, neck, "neck")
    if rng.random() < 0.15:
        ring_c = fh + rng.uniform(0.1, 0.35)
        outer = ellipse(bu, bv, 0.0, ring_c, neck_w * 1.02, 0.55)
        inner = ellipse(bu, bv, 0.0, ring_c, neck_w * 0.95, 0.48)
        cv.put(w, outer & ~inner & (bv > ring_c) & neck, "necklace")


def _draw_ears_and_face(rng: np.random.Generator, cv: Canvas, fw: float, fh: float, style: int) -> None:
    """Ears (often hidden by long hair), then the face itself."""
    ears_visible = style in (0, 1) or rng.random() < 0.35
    earring = ears_visible and rng.random() < 0.2
    ear_v = rng.uniform(-0.05, 0.1)
    for side, name in ((-1.0, "l_ear"), (1.0, "r_ear")):
        cu = side * fw * 0.97
        w = cv.window(cu, ear_v + 0.1, 0.5)
        u, v = cv.head(w)
        if ears_visible:
            cv.put(w, ellipse(u, v, cu, ear_v, 0.16, 0.29), name)
        if earring:
            cv.put(w, ellipse(u, v, cu, ear_v + 0.33, 0.06, 0.06), "earring")

    w = cv.window(0.0, 0.0, fh + 0.1)
    u, v = cv.head(w)
    jaw = fw * (1.0 - rng.uniform(0.12, 0.28) * np.clip(v / fh, 0.0, 1.0))
    face = (u / jaw) ** 2 + (v / fh) ** 2 < 1.0
    cv.put(w, face, "skin")


def _draw_nose(rng: np.random.Generator, cv: Canvas, yaw: float) -> None:
    """Nose: a widening ridge ending in a rounded tip with two nostrils."""
    nx = yaw * 1.2
    n_top, n_tip = rng.uniform(-0.2, -0.08), rng.uniform(0.26, 0.4)
    n_wid = rng.uniform(0.13, 0.2)
    w = cv.window(nx, n_tip, 0.8)
    u, v = cv.head(w)
    ridge_t = np.clip((v - n_top) / (n_tip - n_top), 0.0, 1.0)
    ridge = (v > n_top) & (v < n_tip) & (np.abs(u - nx) < 0.045 + n_wid * 0.5 * ridge_t**2)
    cv.put(w, ridge | ellipse(u, v, nx, n_tip, n_wid, n_wid * 0.62), "nose")
    for side in (-1.0, 1.0):
        cv.put(w, ellipse(u, v, nx + side * n_wid * 0.42, n_tip + n_wid * 0.35, 0.04, 0.024), "nostril")


def _draw_eyes(rng: np.random.Generator, cv: Canvas, yaw: float) -> tuple[float, float, float, float]:
    """Eyes with lids, irises and pupils; brows above them."""
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
        eye = ellipse(u, v, cu, ey, ea, eb)
        lid = ellipse(u, v, cu, ey + eb * 0.1, ea * 1.12, eb * 1.35) & ~eye & (v < ey)
        cv.put(w, lid, f"{s}_lid")
        cv.put(w, eye, f"{s}_eye_white")
        iris = ellipse(u, v, cu + gaze, ey, eb * 0.95, eb * 0.95) & eye
        cv.put(w, iris, f"{s}_iris")
        cv.put(w, ellipse(u, v, cu + gaze, ey, eb * 0.42, eb * 0.42) & eye, f"{s}_pupil")
        bc = cu + side * bx_off
        t = (u - bc) / ba
        centre = ey - by - arch * (1.0 - t**2) - side * tilt * t
        brow = (np.abs(t) < 1.0) & (np.abs(v - centre) < bb * (1.0 - 0.45 * t**2))
        cv.put(w, brow, f"{s}_brow")
    return ex, ey, ea, eb


def _draw_mouth(rng: np.random.Generator, cv: Canvas, yaw: float) -> None:
    """Mouth: lips meet on a curved line; an open mouth shows the inside and the teeth."""
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


def _draw_glasses(rng: np.random.Generator, cv: Canvas, yaw: float, fw: float, ex: float, ey: float, ea: float,
                  eb: float) -> None:
    """Glasses: two rims, a bridge and the arms towards the ears; sunglasses have opaque lenses."""
    if rng.random() < 0.25:
        ga, gb = ea * rng.uniform(1.45, 1.8), eb * rng.uniform(2.2, 3.0)
        thick = rng.uniform(0.022, 0.045)
        sun = rng.random() < 0.25
        w = cv.window(yaw, ey, fw + 0.2)
        u, v = cv.head(w)
        frame = np.zeros(u.shape, dtype=bool)
        for side in (-1.0, 1.0):
            cu = yaw + side * ex
            outer = ellipse(u, v, cu, ey, ga + thick, gb + thick)
            frame |= outer if sun else outer & ~ellipse(u, v, cu, ey, ga, gb)
        frame |= (np.abs(u - yaw) < ex - ga + thick) & (np.abs(v - ey + gb * 0.3) < thick * 0.7)
        arm = (np.abs(u - yaw) > ex + ga) & (np.abs(u) < fw * 0.98) & (np.abs(v - ey + gb * 0.2) < thick * 0.6)
        # Arms show only in front of the head, never floating over the background.
        cv.put(w, frame | (arm & (cv.paint[w] != PAINT_ID["background"])), "glasses")


def _draw_front_hair(rng: np.random.Generator, cv: Canvas, fw: float, fh: float, style: int, hair_a: float,
                     hair_b: float) -> None:
    """Hair in front: fringe and sides framing the forehead, unless bald."""
    if style != 0:
        w = cv.window(0.0, -0.3, max(hair_a, hair_b) + 0.3)
        u, v = cv.head(w)
        line = rng.uniform(-0.98, -0.55) * fh + rng.uniform(-0.25, 0.25) * u + rng.uniform(0.15, 0.6) * u**2
        cap = ellipse(u, v, 0.0, -0.12, hair_a, hair_b)
        fringe = cap & (v < line)
        if style == 3:  # a bob also covers the cheeks' outer edge
            fringe |= cap & (np.abs(u) > fw * 0.82) & (v < 0.45 * fh)
        cv.put(w, fringe, "hair")


def _draw_hat(rng: np.random.Generator, cv: Canvas, fw: float, fh: float) -> None:
    """Sometimes a hat: a crown and a band at the brim."""
    if rng.random() < 0.12:
        w = cv.window(0.0, -0.6, fh + 0.8)
        u, v = cv.head(w)
        brim_v = rng.uniform(-0.82, -0.55) * fh
        crown = ellipse(u, v, 0.0, brim_v, fw * 1.12, fh * 0.95) & (v < brim_v)
        brim = (np.abs(u) < fw * rng.uniform(1.2, 1.5)) & (np.abs(v - brim_v) < 0.07)
        cv.put(w, crown, "hat")
        cv.put(w, brim, "hat_band")


def _colour(rng: np.random.Generator, cv: Canvas, colours: np.ndarray, fw: float, fh: float) -> np.ndarray:
    """Turn paint ids into RGB: flat colours, face shading, hair strands, lighting.

    Background samples come out black; the background is added per pixel afterwards.
    """
    paint = cv.paint
    image = colours[paint]
    u, v = cv.head((slice(None), slice(None)))
    shade = 1.0 + rng.uniform(-0.2, 0.2) * cv.x + rng.uniform(-0.2, 0.15) * cv.y
    shaded = FACE_SHADED[paint]
    r2 = (u / fw) ** 2 + (v / fh) ** 2
    shade[shaded] *= (1.06 - 0.22 * r2)[shaded]
    hair = (paint == PAINT_ID["hair"]) | (paint == PAINT_ID["hat"])
    wave = np.sin(rng.uniform(3.0, 8.0) * v + rng.uniform(0.0, 6.3))
    strands = 1.0 + 0.045 * np.sin(rng.uniform(30.0, 50.0) * u + 1.2 * wave) - 0.1 * (u**2 + (v + 0.2) ** 2) / 3.0
    shade[hair] *= strands[hair]
    image *= shade[..., None]
    return image


def _background(rng: np.random.Generator, n: int) -> np.ndarray:
    """A cluttered scene at the output resolution: gradient, random shapes and stripes.

    Drawn without supersampling: it is clutter, and this keeps rendering cheap.
    """
    x, y = grid(n)
    d = rng.uniform(0.0, 2 * math.pi)
    t = np.clip(0.5 + 0.5 * (x * math.cos(d) + y * math.sin(d)), 0.0, 1.0)[..., None]
    c1 = random_colour(rng, (0.0, 0.8), (0.1, 1.0))
    c2 = random_colour(rng, (0.0, 0.8), (0.1, 1.0))
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
        bg[region] = random_colour(rng, (0.0, 1.0), (0.05, 1.0))
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
        bg_share = (paint == PAINT_ID["background"]).reshape(size, s, size, s).mean(axis=(1, 3))[..., None]
        small += _background(rng, size) * bg_share
        noise = rng.normal(0.0, rng.uniform(2.0, 14.0), (size, size, 3)).astype(np.float32)
        small += noise * (0.25 + 0.75 * bg_share)
        small *= rng.uniform(0.92, 1.08, 3).astype(np.float32)  # white balance
        images[i] = np.clip(small + 0.5, 0.0, 255.0).astype(np.uint8)
        labels[i] = PAINT_TO_CLASS[paint[s // 2 :: s, s // 2 :: s]]
    return images, labels


def split_counts(count: int, fractions: Sequence[float]) -> tuple[int, int, int]:
    """Rows per split for ``count`` items and (train, val, test) fractions summing to 1."""
    fr = tuple(float(f) for f in fractions)
    if len(fr) != 3 or any(f < 0 for f in fr) or abs(sum(fr) - 1.0) > 1e-6:
        raise ValueError(f"splits: expected three non-negative fractions summing to 1, got {fractions!r}")
    train = int(round(count * fr[0]))
    val = min(count - train, int(round(count * fr[1])))
    return train, val, count - train - val
