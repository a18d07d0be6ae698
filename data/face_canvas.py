"""The synthetic renderer's drawing surface: paint ids finer than face-parsing classes, palettes,
and a supersampled canvas whose parts are placed in a head frame that carries the pose."""

from __future__ import annotations

import colorsys
import math

import numpy as np

from data.labels import CLASS_ID

SUPERSAMPLE = 3  # odd, so each pixel's centre is one of its samples

# Paint ids: finer than classes (an iris and an eye white share the class "l_eye").
PAINTS: tuple[tuple[str, str], ...] = (
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
PAINT_ID = {name: i for i, (name, _) in enumerate(PAINTS)}
PAINT_TO_CLASS = np.array([CLASS_ID[c] for _, c in PAINTS], dtype=np.uint8)
FACE_SHADED = np.zeros(len(PAINTS), dtype=bool)
FACE_SHADED[[PAINT_ID[n] for n in ("skin", "nose", "u_lip", "l_lip", "l_ear", "r_ear")]] = True

SKIN_TONES = np.array(
    [
        (255, 224, 196), (241, 194, 167), (234, 192, 134), (255, 205, 148), (224, 172, 105),
        (198, 134, 66), (161, 102, 54), (141, 85, 36), (110, 68, 40), (92, 56, 32),
    ],
    dtype=np.float32,
)
HAIR_COLOURS = np.array(
    [
        (22, 18, 16), (40, 28, 22), (62, 42, 28), (96, 62, 36), (130, 62, 30),
        (200, 160, 96), (226, 200, 140), (150, 150, 150), (215, 212, 205),
    ],
    dtype=np.float32,
)
IRIS_COLOURS = np.array(
    [(92, 56, 30), (48, 30, 20), (70, 115, 165), (80, 118, 72), (132, 104, 58), (112, 124, 136)],
    dtype=np.float32,
)
METALS = np.array([(212, 175, 55), (200, 200, 210), (235, 230, 220)], dtype=np.float32)

_GRIDS: dict[int, tuple[np.ndarray, np.ndarray]] = {}


def grid(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Sample-centre coordinates in [-1, 1] (x right, y down) of an n x n grid."""
    if n not in _GRIDS:
        axis = ((np.arange(n, dtype=np.float32) + 0.5) / n) * 2.0 - 1.0
        _GRIDS[n] = (np.broadcast_to(axis[None, :], (n, n)), np.broadcast_to(axis[:, None], (n, n)))
    return _GRIDS[n]


def random_colour(rng: np.random.Generator, sat: tuple[float, float], val: tuple[float, float]) -> np.ndarray:
    h, sv, v = rng.uniform(0.0, 1.0), rng.uniform(*sat), rng.uniform(*val)
    return np.array(colorsys.hsv_to_rgb(h, sv, v), dtype=np.float32) * 255.0


class Canvas:
    """Paint ids on a supersampled grid; parts are drawn in the head frame (u, v)."""

    def __init__(self, n: int, fx: float, fy: float, scale: float, angle: float) -> None:
        self.n = n
        self.x, self.y = grid(n)
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
        self.paint[w][region] = PAINT_ID[paint]


def ellipse(u: np.ndarray, v: np.ndarray, cu: float, cv: float, a: float, b: float) -> np.ndarray:
    return ((u - cu) / a) ** 2 + ((v - cv) / b) ** 2 < 1.0
