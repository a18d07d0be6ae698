"""Band-matrix filters against the torch operations they replace."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from models.filters import band_matrix, bilinear_matrix, gaussian_taps, separable_filter


def _depthwise(x: torch.Tensor, taps: tuple[float, ...], stride: int = 1) -> torch.Tensor:
    window = torch.tensor(taps, dtype=x.dtype)
    kernel = torch.outer(window, window).expand(x.shape[1], 1, len(taps), len(taps))
    return F.conv2d(x, kernel, groups=x.shape[1], stride=stride)


@pytest.mark.parametrize("shape", [(2, 3, 32, 32), (1, 1, 19, 27)])
@pytest.mark.parametrize("size", [3, 11])
def test_separable_filter_is_the_valid_depthwise_convolution(shape, size):
    x = torch.rand(shape, dtype=torch.float64)
    taps = gaussian_taps(size, 1.5)
    assert sum(taps) == pytest.approx(1.0)
    torch.testing.assert_close(separable_filter(x, taps), _depthwise(x, taps), rtol=1e-12, atol=1e-12)
    # Blur then keep every second pixel: piq's VIF pyramid step.
    torch.testing.assert_close(separable_filter(x, taps, stride=2), _depthwise(x, taps)[..., ::2, ::2],
                               rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("height,width", [(32, 32), (33, 31), (9, 10), (3, 3)])
def test_padded_pair_average_is_pytorch_msssims_pooling(height, width):
    x = torch.rand(2, 3, height, width, dtype=torch.float64)
    padding = (height % 2, width % 2)
    expected = F.avg_pool2d(x, kernel_size=2, padding=list(padding))
    torch.testing.assert_close(separable_filter(x, (0.5, 0.5), stride=2, padding=padding), expected)


def test_bilinear_matrix_resizes_like_interpolate():
    m = torch.rand(2, 1, 7, 5, dtype=torch.float64)
    rows = bilinear_matrix(7, 32, torch.device("cpu"), torch.float64)
    columns = bilinear_matrix(5, 24, torch.device("cpu"), torch.float64)
    expected = F.interpolate(m, size=(32, 24), mode="bilinear", align_corners=False)
    torch.testing.assert_close(rows @ m @ columns.T, expected)
    assert bilinear_matrix(1, 9, torch.device("cpu"), torch.float32).eq(1).all()  # a 1x1 map is constant


def test_band_matrix_rejects_a_window_that_does_not_fit():
    with pytest.raises(ValueError, match="does not fit"):
        band_matrix(4, gaussian_taps(5, 1.0), 1, torch.device("cpu"), torch.float32)
    assert band_matrix(4, gaussian_taps(5, 1.0), 1, torch.device("cpu"), torch.float32, 1).shape == (2, 4)
