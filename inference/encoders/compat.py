"""The torchvision compatibility step that `import open_clip` (and transformers) needs on a CPU-only torch.

Why: open_clip imports torchvision, and transformers imports it when it is installed. PyPI has no
CPU build of torchvision; the CUDA wheel installs, but its compiled operators cannot load next to
the CPU torch, so `import torchvision` stops in `torchvision/_meta_registrations.py` with
"operator torchvision::nms does not exist" (see ../shared/docs/platform-notes.md). Neither CLIP nor
CLAP uses those operators: registering their two schemas is enough for the import to finish.
"""
from __future__ import annotations

import sys

_LIBRARY = None  # the torch.library.Library holding our schemas; kept alive for the process


def ensure_torchvision_ops() -> bool:
    """Make `import torchvision` work; True when the schemas of `torchvision::nms` and `torchvision::qnms`
    had to be registered here, False when torchvision imported on its own (nothing done).

    Check first: torchvision is imported as it is; only when that fails because its own operators
    are missing are the two operator schemas (no kernels: calling them still fails) declared through
    torch.library, the half-imported modules dropped and the import done again. A missing
    torchvision raises ModuleNotFoundError; any other failure is raised unchanged."""
    global _LIBRARY
    import torch

    try:
        import torchvision
        return False
    except RuntimeError as exc:
        if "torchvision::" not in str(exc) or _LIBRARY is not None:
            raise
    for name in [n for n in sys.modules if n == "torchvision" or n.startswith("torchvision.")]:
        del sys.modules[name]
    library = torch.library.Library("torchvision", "DEF")
    library.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    library.define("qnms(Tensor qdets, Tensor qscores, float iou_threshold) -> Tensor")
    _LIBRARY = library
    import torchvision  # noqa: F401
    return True


def import_open_clip():
    """The open_clip module, after the compatibility step; a clear error when the extra is not installed."""
    try:
        ensure_torchvision_ops()
        import open_clip
    except ModuleNotFoundError as exc:
        raise ModuleNotFoundError(f"CLIP extraction needs open_clip_torch, torchvision and timm ({exc}); "
                                  "install them with: pip install '.[clip]'") from None
    return open_clip
