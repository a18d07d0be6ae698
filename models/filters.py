"""Separable valid-padded filters as two matrix products.

A 1-D window slid along an axis without padding is a banded matrix: ``blur(x) = A_h @ x @ A_w^T``.
On CPU this runs 3-8x faster than the depthwise convolutions pytorch_msssim and piq use (oneDNN
has no fast path for one-channel kernels), and the products of a window's zeros are exact, so the
numbers match the convolution's. A stride keeps every `stride`-th output row, which folds a
"blur then subsample" pyramid step (or a 2x2 average pool) into the same two products. Windows
are given as Python floats, so building (and caching) a matrix never reads a value back from an
accelerator.
"""
from __future__ import annotations

import functools

import torch
from torch import Tensor

Taps = tuple[float, ...]


@functools.lru_cache(maxsize=128)
def band_matrix(length: int, taps: Taps, stride: int, device: torch.device, dtype: torch.dtype,
                padding: int = 0) -> Tensor:
    """(outputs, length): row i holds `taps` from column i * stride - padding, over the input
    zero-padded by `padding` on both sides (the padding's columns dropped: they multiply zeros)."""
    size = len(taps)
    padded = length + 2 * padding
    if not 0 < size <= padded:
        raise ValueError(f"a window of {size} taps does not fit a length of {length} (padding {padding})")
    starts = range(-padding, padded - padding - size + 1, stride)
    matrix = torch.zeros(len(starts), length, dtype=torch.float64)
    window = torch.tensor(taps, dtype=torch.float64)
    for row, start in enumerate(starts):
        lo, hi = max(start, 0), min(start + size, length)
        matrix[row, lo:hi] = window[lo - start:hi - start]
    return matrix.to(device=device, dtype=dtype)


def separable_filter(x: Tensor, taps: Taps, stride: int = 1, padding: tuple[int, int] = (0, 0)) -> Tensor:
    """`taps` along both spatial axes of (..., H, W), every `stride`-th output kept, over the input
    zero-padded by `padding` (rows, columns); no padding is the valid filter."""
    rows = band_matrix(x.shape[-2], taps, stride, x.device, x.dtype, padding[0])
    columns = band_matrix(x.shape[-1], taps, stride, x.device, x.dtype, padding[1])
    return rows @ (x @ columns.T)


@functools.lru_cache(maxsize=64)
def gaussian_taps(size: int, sigma: float) -> Taps:
    """A normalised 1-D gaussian of `size` taps centred on the middle tap."""
    coords = torch.arange(size, dtype=torch.float64) - (size - 1) / 2.0
    g = torch.exp(-(coords**2) / (2 * sigma**2))
    return tuple((g / g.sum()).tolist())


@functools.lru_cache(maxsize=64)
def bilinear_matrix(source: int, target: int, device: torch.device, dtype: torch.dtype) -> Tensor:
    """(target, source): 1-D bilinear resampling (align_corners=False, F.interpolate's) as a matrix,
    so that resizing a map is ``M_h @ m @ M_w.T`` and its adjoint is available too."""
    identity = torch.eye(source, dtype=torch.float64)[None, None]
    matrix = torch.nn.functional.interpolate(identity, size=(target, source), mode="bilinear", align_corners=False)
    return matrix[0, 0].to(device=device, dtype=dtype)
