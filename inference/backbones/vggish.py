"""VGGish audio embedding network (torchvggish layout), plain PyTorch.

As harritaylor/torchvggish ``torchvggish/vggish.py`` and AVSBench's copy
(``avs_scripts/avs_s4/torchvggish/vggish.py``):

* ``features``: conv3x3(pad 1)+ReLU stack ``64, M, 128, M, 256, 256, M, 512, 512, M``
  (``M`` = 2x2 max-pool), so the convolutions sit at ``features.0, 3, 6, 8, 11, 13``;
* the (N, 512, 6, 4) map is put channels-last, (N, 6, 4, 512), before flattening
  (torchvggish transposes 1<->3 then 1<->2), which is the order of the weights
  converted from TensorFlow; then ``embeddings``: Linear(512*4*6, 4096), ReLU,
  Linear(4096, 4096), ReLU, Linear(4096, 128), ReLU (at ``embeddings.0, 2, 4``);
* optional PCA postprocess: ``pca_eigen_vectors`` (128, 128) and ``pca_means``
  (128, 1); ``round((clip(E (x - mu), -2, 2) + 2) * 255 / 4)``.

Input: log-mel patches (N, 1, 96, 64): 96 frames of 10 ms by 64 mel bands (the
``vggish_input`` examples AVSBench stores). AVSBench builds it with
``PREPROCESS_AUDIO_TO_LOG_MEL = False`` and ``POSTPROCESS_LOG_MEL_WITH_PCA = False``
and loads ``vggish-10086976.pth``, i.e. ``VGGish(postprocess=False)`` here.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["VGGish", "VGGISH_CONFIGS", "QUANTIZE_MIN_VAL", "QUANTIZE_MAX_VAL", "EMBEDDING_SIZE",
           "NUM_FRAMES", "NUM_BANDS"]

NUM_FRAMES = 96
NUM_BANDS = 64
EMBEDDING_SIZE = 128
QUANTIZE_MIN_VAL = -2.0
QUANTIZE_MAX_VAL = 2.0

VGGISH_CONFIGS: dict[str, dict] = {
    "full": {"features": (64, "M", 128, "M", 256, 256, "M", 512, 512, "M"), "hidden": 4096},
    "tiny": {"features": (4, "M", 8, "M", 8, 8, "M", 16, 16, "M"), "hidden": 32},
}


def _make_features(cfg) -> nn.Sequential:
    layers: list[nn.Module] = []
    in_channels = 1
    for v in cfg:
        if v == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
        else:
            layers += [nn.Conv2d(in_channels, v, kernel_size=3, padding=1), nn.ReLU(inplace=True)]
            in_channels = v
    return nn.Sequential(*layers)


class VGGish(nn.Module):
    """VGGish: (N, 1, 96, 64) log-mel -> (N, 128) embeddings (PCA-quantised in [0, 255] if postprocess)."""

    def __init__(self, size: str = "full", postprocess: bool = False):
        super().__init__()
        try:
            cfg = VGGISH_CONFIGS[size]
        except KeyError:
            raise ValueError(f"VGGish: size must be one of {sorted(VGGISH_CONFIGS)}, got {size!r}") from None
        self.size = size
        self.features = _make_features(cfg["features"])
        last = [v for v in cfg["features"] if v != "M"][-1]
        pools = sum(1 for v in cfg["features"] if v == "M")
        self._grid = (NUM_FRAMES >> pools, NUM_BANDS >> pools)  # (6, 4)
        hidden = cfg["hidden"]
        self.embeddings = nn.Sequential(
            nn.Linear(last * self._grid[0] * self._grid[1], hidden), nn.ReLU(True),
            nn.Linear(hidden, hidden), nn.ReLU(True),
            nn.Linear(hidden, EMBEDDING_SIZE), nn.ReLU(True),
        )
        self.postprocess = bool(postprocess)
        self.embedding_dim = EMBEDDING_SIZE
        self._init_weights()
        if self.postprocess:
            # Defined defaults (identity, zero mean) until the published PCA parameters are loaded.
            self.register_buffer("pca_eigen_vectors", torch.eye(EMBEDDING_SIZE))
            self.register_buffer("pca_means", torch.zeros(EMBEDDING_SIZE, 1))

    def _init_weights(self) -> None:
        """He initialisation for a network that starts without the published weights. PyTorch's default
        (uniform, gain 1/sqrt(3)) shrinks the signal at each of the nine ReLU layers: measured on the AVS demo,
        a random tiny VGGish gave the same embedding for every clip (std across clips 6e-4 of a mean 0.05),
        so a model trained from scratch could not hear anything. Loading a checkpoint overwrites all of it."""
        for module in self.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
                nn.init.zeros_(module.bias)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """The network alone (no PCA): (N, 1, 96, 64) -> (N, 128)."""
        if x.dim() != 4 or x.shape[1] != 1 or tuple(x.shape[2:]) != (NUM_FRAMES, NUM_BANDS):
            raise ValueError(
                f"VGGish expects log-mel patches (N, 1, {NUM_FRAMES}, {NUM_BANDS}), got shape {tuple(x.shape)}")
        x = self.features(x)
        # (N, C, H, W) -> (N, H, W, C): torchvggish's transpose(1, 3) then transpose(1, 2)
        x = x.permute(0, 2, 3, 1).contiguous()
        return self.embeddings(x.flatten(1))

    def pca_quantize(self, embeddings: torch.Tensor) -> torch.Tensor:
        """torchvggish's Postprocessor: PCA (with whitening), clip to [-2, 2], 8-bit quantise.

        Unlike torchvggish, the batch dimension is kept (no final squeeze).
        """
        if not self.postprocess:
            raise RuntimeError("VGGish was built with postprocess=False: it has no PCA parameters")
        if embeddings.dim() != 2 or embeddings.shape[1] != EMBEDDING_SIZE:
            raise ValueError(f"expected a (N, {EMBEDDING_SIZE}) batch, got shape {tuple(embeddings.shape)}")
        pca_applied = torch.mm(self.pca_eigen_vectors, embeddings.t() - self.pca_means).t()
        clipped = torch.clamp(pca_applied, QUANTIZE_MIN_VAL, QUANTIZE_MAX_VAL)
        return torch.round((clipped - QUANTIZE_MIN_VAL) * (255.0 / (QUANTIZE_MAX_VAL - QUANTIZE_MIN_VAL)))

    def forward(self, log_mel: torch.Tensor) -> torch.Tensor:
        x = self.embed(log_mel)
        if self.postprocess:
            x = self.pca_quantize(x)
        return x
