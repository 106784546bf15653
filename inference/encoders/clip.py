"""CLIP image/text encoder through open_clip, with VALOR's image preprocessing.

Preprocessing (VALOR `utils/clip_preprocess.py` l.52-54 with torchvision 0.13.1): ToTensor (uint8 -> [0, 1]),
Resize((224, 224)) of the tensor (bilinear, align_corners=False, no antialias: torchvision 0.13's default for
tensors; no centre crop, so the aspect ratio is not kept), Normalize with CLIP's mean/std. VALOR ran
transformers' CLIPModel("openai/clip-vit-large-patch14"); the same OpenAI ViT-L/14 weights run here in
open_clip's CLIP (QuickGELU, as OpenAI trained it): `get_image_features` is `encode_image`, and features are
divided by their L2 norm exactly as VALOR does (l.191). The logit scale is exp(logit_scale): 100 for OpenAI's
weights (VALOR's CLIP thresholds, 14-20, are on that scale, `logits_per_image`).

Checkpoints (nothing is downloaded):
- OpenAI's `ViT-L-14.pt` (github.com/openai/CLIP) is a TorchScript archive, which `torch.load(weights_only=True)`
  refuses. It is opened with `torch.jit.load` (what open_clip's `load_openai_model` does), but only when its
  SHA-256 is one of OpenAI's published checksums (the hash in the download URLs of open_clip's pretrained
  registry), because TorchScript loading compiles code carried by the archive. Only its parameters are used:
  the model is rebuilt by open_clip's `build_model_from_openai_state_dict`.
- a state-dict checkpoint (`.pt`/`.pth`/`.bin` read with `torch.load(weights_only=True)`, or `.safetensors`)
  with OpenAI's key names (e.g. saved from open_clip's ViT-L-14 'openai' model, or OpenAI's archive converted
  once) is rebuilt the same way; with `arch` (an open_clip model name, e.g. 'ViT-L-14') it is loaded into
  `open_clip.create_model(arch)` instead.
"""
from __future__ import annotations

import hashlib
import zipfile
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from annotation.errors import DataFileError

OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)
_OPENAI_EXTRAS = ("input_resolution", "context_length", "vocab_size")  # in OpenAI's archives, not model weights
WANTED = ("pass --clip-model FILE: OpenAI's ViT-L-14.pt (the TorchScript file of github.com/openai/CLIP), or a "
          "state-dict checkpoint of open_clip's ViT-L-14 with OpenAI weights (.pt/.bin/.safetensors)")


class ClipEncoder:
    """A frozen open_clip CLIP model: `preprocess` (VALOR's), `embed_pixels`, `encode_images`, `encode_text`."""

    def __init__(self, model: torch.nn.Module, tokenize, name: str, device: str | torch.device = "cpu",
                 random_weights: bool = False, max_batch: int = 256):
        self.device = torch.device(device)
        self.model = model.float().eval().to(self.device)
        for param in self.model.parameters():
            param.requires_grad_(False)
        self.tokenize = tokenize
        self.name = name
        self.random_weights = random_weights
        self.max_batch = max_batch
        size = getattr(model.visual, "image_size", 224)
        self.image_size = int(size[0] if isinstance(size, (tuple, list)) else size)
        self.dim = int(model.text_projection.shape[1]) if hasattr(model, "text_projection") else \
            int(self.model.encode_text(self.tokenize(["a"]).to(self.device)).shape[1])
        self.logit_scale = float(model.logit_scale.detach().exp())
        self._mean = torch.tensor(OPENAI_MEAN).view(1, 3, 1, 1)
        self._std = torch.tensor(OPENAI_STD).view(1, 3, 1, 1)

    def preprocess(self, frames: np.ndarray) -> np.ndarray:
        """(n, H, W, 3) uint8 RGB frames of one size -> (n, 3, S, S) float32 model inputs, VALOR's transform."""
        x = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float().div(255)
        x = F.interpolate(x, size=(self.image_size, self.image_size), mode="bilinear", align_corners=False,
                          antialias=False)
        return ((x - self._mean) / self._std).numpy()

    @torch.no_grad()
    def embed_pixels(self, pixels: np.ndarray) -> np.ndarray:
        """(n, 3, S, S) preprocessed images -> (n, d) float32, rows divided by their L2 norm."""
        out = []
        for start in range(0, len(pixels), self.max_batch):
            chunk = torch.from_numpy(pixels[start:start + self.max_batch]).to(self.device)
            features = self.model.encode_image(chunk)
            out.append((features / features.norm(p=2, dim=-1, keepdim=True)).float().cpu())
        return torch.cat(out).numpy() if out else np.zeros((0, self.dim), np.float32)

    def encode_images(self, frames: np.ndarray) -> np.ndarray:
        return self.embed_pixels(self.preprocess(frames))

    @torch.no_grad()
    def encode_text(self, texts: list[str]) -> np.ndarray:
        tokens = self.tokenize(list(texts)).to(self.device)
        features = self.model.encode_text(tokens)
        return (features / features.norm(p=2, dim=-1, keepdim=True)).float().cpu().numpy()


def openai_checksums() -> set[str]:
    """SHA-256 of OpenAI's CLIP files, from the download URLs in open_clip's registry (.../<sha256>/<name>.pt)."""
    from inference.encoders.compat import import_open_clip

    open_clip = import_open_clip()
    sums = set()
    for name, tag in open_clip.list_pretrained():
        if tag == "openai":
            url = open_clip.get_pretrained_cfg(name, tag).get("url", "")
            parts = url.split("/")
            if "openaipublic" in url and len(parts) > 2 and len(parts[-2]) == 64:
                sums.add(parts[-2])
    return sums


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _is_torchscript(path: Path) -> bool:
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any(name.endswith("/constants.pkl") or name == "constants.pkl" for name in archive.namelist())


def read_clip_weights(path: str | Path, known_checksums: set[str] | None = None) -> dict[str, torch.Tensor]:
    """The tensors of a CLIP checkpoint file (see the module docstring for what is accepted and how)."""
    path = Path(path)
    if not path.is_file():
        raise DataFileError(path, f"no such file; {WANTED}")
    if _is_torchscript(path):
        checksums = openai_checksums() if known_checksums is None else known_checksums
        digest = _sha256(path)
        if digest not in checksums:
            raise DataFileError(path, f"a TorchScript archive whose SHA-256 ({digest[:16]}...) is not one of OpenAI's "
                                      "published CLIP files; TorchScript runs code when loaded, so only those are "
                                      "opened. Save its state dict (torch.save(torch.jit.load(f).state_dict(), ...)) "
                                      "if you trust it, and pass that file")
        try:
            state = torch.jit.load(str(path), map_location="cpu").state_dict()
        except RuntimeError as exc:
            raise DataFileError(path, f"cannot be read as a TorchScript archive ({exc}); {WANTED}") from None
    elif path.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(path))
    else:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001 - UnpicklingError, RuntimeError, EOFError ... all mean "not a checkpoint"
            raise DataFileError(path, f"not a readable weights-only PyTorch checkpoint ({str(exc).splitlines()[0]}); "
                                      f"{WANTED}") from None
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise DataFileError(path, f"holds no dict of tensors; {WANTED}")
    return {k.removeprefix("module."): v for k, v in state.items()}


def load_clip(path: str | Path, device: str | torch.device = "cpu", arch: str | None = None,
              known_checksums: set[str] | None = None) -> ClipEncoder:
    """A CLIP encoder from a local checkpoint file (OpenAI layout unless `arch` names an open_clip model)."""
    from inference.encoders.compat import import_open_clip

    open_clip = import_open_clip()
    path = Path(path)
    state = read_clip_weights(path, known_checksums)
    try:
        if arch is None:
            from open_clip.model import build_model_from_openai_state_dict

            model = build_model_from_openai_state_dict(dict(state), quick_gelu=True).float()
            # it rounds the weights through float16 (OpenAI's storage type); reload them as stored
            model.load_state_dict({k: v for k, v in state.items() if k not in _OPENAI_EXTRAS})
            context = model.context_length
        else:
            model = open_clip.create_model(arch, pretrained=None)
            model.load_state_dict(state)
            context = model.context_length
    except (KeyError, RuntimeError, ValueError) as exc:
        what = "OpenAI's CLIP layout" if arch is None else f"open_clip's {arch!r}"
        raise DataFileError(path, f"not a CLIP checkpoint in {what} ({str(exc).splitlines()[0][:200]}); "
                                  f"{WANTED}") from None
    tokenizer = open_clip.tokenizer.SimpleTokenizer(context_length=context)
    label = f"open_clip {arch or 'CLIP (OpenAI layout)'} from {path.name}"
    return ClipEncoder(model, tokenizer, label, device)


def tiny_clip(seed: int = 0, device: str | torch.device = "cpu") -> ClipEncoder:
    """A tiny CLIP with RANDOM weights (ViT: 224 px, patch 32, width 64, 1 layer; text: 1 layer, width 64,
    OpenAI's tokenizer; embedding 32), for demos and tests. Same preprocessing and code path as the real one;
    its state dict has OpenAI's key names, so it round-trips through `load_clip`."""
    from inference.encoders.compat import import_open_clip

    open_clip = import_open_clip()
    from open_clip.model import CLIP, CLIPTextCfg, CLIPVisionCfg

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = CLIP(32, vision_cfg=CLIPVisionCfg(layers=1, width=64, patch_size=32, image_size=224),
                     text_cfg=CLIPTextCfg(context_length=77, vocab_size=49408, width=64, heads=1, layers=1),
                     quick_gelu=True)
    return ClipEncoder(model, open_clip.tokenizer.SimpleTokenizer(context_length=77),
                       f"tiny random CLIP (seed {seed}, NOT trained)", device, random_weights=True)
