"""Masks over a frame, as numpy (no Qt here, so what the view shows can be computed and checked exactly).

The frame is enlarged by a whole factor `k` (masks by nearest neighbour, so mask pixel (x, y) covers
exactly the block [y k, (y + 1) k) x [x k, (x + 1) k)), then each layer is blended over it in order:
- 'fill': the mask's pixels in the layer colour (AVSS classes: the class palette) at the opacity, and a
  band EDGE_PX wide along each region's edge as an outline;
- 'contour': only the outline: a band CONTOUR_PX wide inside each region's edge (and along edges between
  classes), at `contour_alpha(opacity)` (stronger than a fill, so it stays visible);
- 'heat': the probability map, colour and opacity growing with p (p = 0 leaves the frame as it is).
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from annotation.avsbench import palette
from ui.avs_scores import fit, foreground

TRUTH_COLOUR = (47, 191, 113)  # green
PREDICTION_COLOURS = ((255, 128, 0), (61, 139, 253), (255, 64, 160), (170, 110, 255), (0, 200, 220))
PALETTE = palette()
TARGET_PX = 640  # the enlarged frame's long side is at least this (crisp contours on small frames)
MAX_FACTOR = 16
CONTOUR_PX = 3
EDGE_PX = 2  # a filled region's edge, drawn like an outline so neighbouring regions stay apart
MODES = {"filled": "Filled", "contours": "Contours", "mixed": "Truth filled, predictions outlined"}
_HEAT = cv2.cvtColor(cv2.applyColorMap(np.arange(256, dtype=np.uint8)[:, None], cv2.COLORMAP_INFERNO),
                     cv2.COLOR_BGR2RGB)[:, 0, :]


def prediction_colour(index: int) -> tuple[int, int, int]:
    return PREDICTION_COLOURS[index % len(PREDICTION_COLOURS)]


def heat_colour(value: int) -> tuple[int, int, int]:
    """The probability map's colour of stored value `value` (round(255 p))."""
    return tuple(int(c) for c in _HEAT[value])


@dataclass(frozen=True)
class Layer:
    name: str
    array: np.ndarray  # (H, W) uint8 as stored: 0/1, round(255 p) or class indices
    kind: str  # binary | probability | classes
    colour: tuple[int, int, int] | None  # None: the AVSS class palette
    style: str  # fill | contour | heat


def factor(height: int, width: int) -> int:
    return int(min(MAX_FACTOR, max(1, -(-TARGET_PX // max(height, width, 1)))))


def enlarge_frame(rgb: np.ndarray, k: int) -> np.ndarray:
    if k == 1:
        return np.ascontiguousarray(rgb)
    h, w = rgb.shape[:2]
    return cv2.resize(rgb, (w * k, h * k), interpolation=cv2.INTER_CUBIC)


def enlarge_mask(array: np.ndarray, k: int) -> np.ndarray:
    return array if k == 1 else np.repeat(np.repeat(array, k, axis=0), k, axis=1)


def contour_band(labels: np.ndarray, width: int = CONTOUR_PX) -> np.ndarray:
    """bool: pixels of a non-zero region within `width` pixels of a pixel of another value."""
    kernel = np.ones((2 * width + 1, 2 * width + 1), np.uint8)
    padded = cv2.copyMakeBorder(labels, width, width, width, width, cv2.BORDER_CONSTANT, value=0)
    high = cv2.dilate(padded, kernel)[width:-width, width:-width]
    low = cv2.erode(padded, kernel)[width:-width, width:-width]
    return (labels > 0) & ((high != labels) | (low != labels))


def layer_colours(layer: Layer, array: np.ndarray) -> np.ndarray:
    """(H, W, 3) float colours of the layer's pixels (only the masked ones are used)."""
    if layer.style == "heat":
        return _HEAT[array].astype(np.float32)
    if layer.kind == "classes":
        return PALETTE[array].astype(np.float32)
    return np.broadcast_to(np.asarray(layer.colour, np.float32), array.shape + (3,))


def contour_alpha(opacity: float) -> float:
    """Outlines stay visible at low opacity and follow the slider."""
    return float(min(1.0, np.sqrt(max(0.0, opacity))))


def render(frame: np.ndarray, k: int, layers: list[Layer], opacity: float) -> np.ndarray:
    """`frame` enlarged by `k` (enlarge_frame) with the layers blended over it; (H k, W k, 3) uint8."""
    out = frame.astype(np.float32)
    shape = (frame.shape[0] // k, frame.shape[1] // k)
    for layer in layers:
        small = fit(layer.array, shape)
        if layer.style == "heat":
            big = enlarge_mask(small, k)
            alpha = (opacity * big.astype(np.float32) / 255.0)[..., None]
            out = out * (1 - alpha) + layer_colours(layer, big) * alpha
            continue
        labels = small if layer.kind == "classes" else foreground(small, layer.kind).astype(np.uint8)
        big = enlarge_mask(labels, k)
        if not big.any():
            continue
        colours = layer_colours(layer, enlarge_mask(small, k) if layer.kind == "classes" else big)
        edge = contour_band(big, CONTOUR_PX if layer.style == "contour" else EDGE_PX)
        if layer.style == "fill":
            inside, alpha = (big > 0) & ~edge, float(opacity)
            out[inside] = out[inside] * (1 - alpha) + colours[inside] * alpha
        alpha = contour_alpha(opacity)
        out[edge] = out[edge] * (1 - alpha) + colours[edge] * alpha
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def blend(base: np.ndarray, colour, alpha: float) -> np.ndarray:
    """What `render` makes of one pixel `base` under one layer colour (for checks and legends)."""
    return np.rint(np.asarray(base, np.float32) * (1 - alpha) + np.asarray(colour, np.float32) * alpha)
