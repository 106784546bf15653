"""The oracle for frame-accuracy tests: every frame by plain sequential OpenCV reads."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np


def sequential_rgb_frames(path: Path) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, bgr = cap.read()
        if not ok:
            break
        frames.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    cap.release()
    return frames
