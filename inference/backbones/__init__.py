"""Visual and audio backbones for audio-visual segmentation (AVSBench / AVS-Mamba), plain PyTorch.

* ``build_visual_backbone(name, size="full", **options)``: ``"resnet50"`` or
  ``"pvt_v2_b5"``; ``size="tiny"`` is the same code with tiny widths and depths for
  CPU tests. The module has ``channels`` (four ints) and maps (N, 3, H, W) to a list
  of four feature maps at strides 4, 8, 16, 32.
* ``VGGish(size="full", postprocess=False)``: (N, 1, 96, 64) log-mel -> (N, 128).
* ``load_backbone_weights(module, path, fmt="auto")``: published checkpoints
  (torchvision ResNet-50, whai362 PVT-v2, timm PVT-v2, torchvggish) from local files,
  read with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

from torch import nn

from .pvt_v2 import PVT_V2_B5_CONFIGS, PVTv2Config, PyramidVisionTransformerV2, pvt_v2_b5
from .resnet import RESNET50_CONFIGS, ResNet, ResNetConfig, resnet50
from .vggish import VGGISH_CONFIGS, VGGish
from .weights import (
    FORMATS,
    LoadReport,
    UnsafeWeightsError,
    WeightsFileError,
    detect_format,
    load_backbone_weights,
    read_state_dict,
)

__all__ = [
    "VISUAL_BACKBONES", "SIZES", "build_visual_backbone",
    "ResNet", "ResNetConfig", "RESNET50_CONFIGS", "resnet50",
    "PyramidVisionTransformerV2", "PVTv2Config", "PVT_V2_B5_CONFIGS", "pvt_v2_b5",
    "VGGish", "VGGISH_CONFIGS",
    "FORMATS", "LoadReport", "WeightsFileError", "UnsafeWeightsError", "detect_format", "read_state_dict",
    "load_backbone_weights",
]

VISUAL_BACKBONES = {"resnet50": resnet50, "pvt_v2_b5": pvt_v2_b5}
SIZES = ("full", "tiny")


def build_visual_backbone(name: str, size: str = "full", **options) -> nn.Module:
    """Build ``"resnet50"`` or ``"pvt_v2_b5"`` at ``size`` ``"full"`` or ``"tiny"``.

    Options: resnet50 takes ``in_chans``, ``zero_init_residual``; pvt_v2_b5 takes
    ``in_chans``, ``drop_rate``, ``attn_drop_rate``, ``drop_path_rate`` (default 0.1).
    """
    try:
        factory = VISUAL_BACKBONES[name]
    except KeyError:
        raise ValueError(f"unknown visual backbone {name!r}; choose one of {sorted(VISUAL_BACKBONES)}") from None
    if size not in SIZES:
        raise ValueError(f"unknown backbone size {size!r}; choose one of {list(SIZES)}")
    return factory(size, **options)
