from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

REPO = Path(__file__).resolve().parents[1]
SHARED_LLP = REPO.parent / "shared" / "llp"


@pytest.fixture(scope="session")
def llp_dir() -> Path:
    """The real LLP annotation files; tests that need them skip without ../shared."""
    if not (SHARED_LLP / "AVVP_train.csv").exists():
        pytest.skip(f"real LLP files not found at {SHARED_LLP} (../shared is absent)")
    return SHARED_LLP


@pytest.fixture(scope="session")
def real_clip(llp_dir: Path) -> Path:
    clip = llp_dir / "BjCEufrlXm4.mp4"
    if not clip.exists():
        pytest.skip(f"real clip not found at {clip}")
    return clip
