"""LPIPS (AlexNet) built strictly offline, with per-pixel maps for region averaging.

The lpips package would fetch torchvision's ImageNet AlexNet on first use; here the network is
built untrained and both weight files (the AlexNet trunk from the torch hub cache, the linear
calibration layers shipped inside the lpips package) are loaded with `weights_only=True`.
"""
from __future__ import annotations

import warnings
from pathlib import Path

import lpips
import torch
from torch import Tensor

from .filters import bilinear_matrix

ALEXNET_FILE = "alexnet-owt-7be5be79.pth"


class LPIPSUnavailableError(RuntimeError):
    """LPIPS was required but the pretrained AlexNet weights are not on this machine."""


def lpips_weights_path() -> Path:
    """Where torchvision keeps (and LPIPS needs) the pretrained AlexNet weights."""
    return Path(torch.hub.get_dir()) / "checkpoints" / ALEXNET_FILE


def lpips_available() -> bool:
    return lpips_weights_path().is_file()


def unavailable_message() -> str:
    """What to do, in one line: the file, where it goes, and how a connected machine gets it."""
    return (
        f"LPIPS needs torchvision's AlexNet weights at {lpips_weights_path()} (not downloaded at run time): on a "
        f"connected machine run `python -c \"import torchvision; torchvision.models.alexnet(weights='IMAGENET1K_V1')\"` "
        f"and copy {ALEXNET_FILE} from its torch.hub.get_dir()/checkpoints"
    )


def _lpips_linear_weights() -> Path:
    return Path(lpips.__file__).resolve().parent / "weights" / "v0.1" / "alex.pth"


def calibrated_lpips() -> lpips.LPIPS:
    """LPIPS-AlexNet v0.1 with its calibration (linear) layers loaded and the AlexNet trunk untrained."""
    # Random initialisation below must not shift the caller's RNG stream (training reproducibility).
    with torch.random.fork_rng(devices=[]), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torchvision's deprecation notice for lpips's `pretrained=` call
        model = lpips.LPIPS(net="alex", pretrained=False, pnet_rand=True, verbose=False)
    linear = torch.load(_lpips_linear_weights(), map_location="cpu", weights_only=True)
    # The file holds the linear layers only (lin0..lin4; `lins.*` are aliases of the same modules).
    expected = {key for key in model.state_dict() if key.startswith("lin") and not key.startswith("lins.")}
    if set(linear) != expected:
        raise RuntimeError(f"{_lpips_linear_weights()}: expected LPIPS linear layers {sorted(expected)}, "
                           f"found {sorted(linear)}")
    model.load_state_dict(linear, strict=False)
    return model


def ready_lpips(model: lpips.LPIPS, device: str | torch.device = "cpu") -> lpips.LPIPS:
    """Frozen, in eval mode and channels-last on `device`: how the metrics run any LPIPS network."""
    model.requires_grad_(False)
    # Channels-last convolutions: 1.2x faster on CPU here and the layout CUDA's kernels want.
    return model.eval().to(device=device, memory_format=torch.channels_last)


def build_lpips(device: str | torch.device = "cpu") -> lpips.LPIPS:
    """LPIPS-AlexNet v0.1 with torchvision's pretrained trunk.

    Raises LPIPSUnavailableError when that weights file is absent or unusable.
    """
    if not lpips_available():
        raise LPIPSUnavailableError(unavailable_message())
    model = calibrated_lpips()
    path = lpips_weights_path()
    try:
        trunk = torch.load(path, map_location="cpu", weights_only=True)
        # lpips slices keep torchvision's layer indices: net.sliceK.<i>.weight <- features.<i>.weight
        state = {name: trunk["features." + name.split(".", 1)[1]] for name in model.net.state_dict()}
        model.net.load_state_dict(state)
    except Exception as error:  # unreadable, truncated or not AlexNet: same remedy
        raise LPIPSUnavailableError(f"{path} is not a usable AlexNet weights file ({error}). "
                                    + unavailable_message()) from None
    return ready_lpips(model, device)


def lpips_layer_maps(model: lpips.LPIPS, x: Tensor, y: Tensor) -> list[Tensor]:
    """Per-layer LPIPS distance maps (B, 1, h_l, w_l) for images in [0, 1]; their spatial means sum to LPIPS."""
    feats_x = model.net(model.scaling_layer(2 * x - 1).contiguous(memory_format=torch.channels_last))
    feats_y = model.net(model.scaling_layer(2 * y - 1).contiguous(memory_format=torch.channels_last))
    maps = []
    for layer, (fx, fy) in enumerate(zip(feats_x, feats_y)):
        diff = (lpips.normalize_tensor(fx) - lpips.normalize_tensor(fy)) ** 2
        maps.append(model.lins[layer](diff))
    return maps


def lpips_region_scores(maps: list[Tensor], size: tuple[int, int], region: Tensor | None) -> Tensor:
    """Per-image LPIPS (B,) from `lpips_layer_maps`. With `region`, each layer map is upsampled to the
    image `size` (as lpips's spatial mode does) and averaged over the region's pixels. Upsampling is
    linear, ``U(m) = M_h m M_w^T``, so that average is taken against the region brought down to the
    map instead, ``M_h^T r M_w``: the same number, without image-sized copies of every map. The maps
    do not depend on the region, so several regions share one pass through the network."""
    if region is None:
        return torch.stack([m.mean(dim=(1, 2, 3)) for m in maps]).sum(0)
    total = torch.zeros(region.shape[0], device=region.device, dtype=region.dtype)
    for layer_map in maps:
        rows = bilinear_matrix(layer_map.shape[-2], size[0], region.device, region.dtype)
        columns = bilinear_matrix(layer_map.shape[-1], size[1], region.device, region.dtype)
        weight = rows.T @ region @ columns
        total = total + (layer_map * weight).sum(dim=(1, 2, 3))
    return total / region.sum(dim=(1, 2, 3))
