"""VALOR's zero-shot segment labels from CLIP/CLAP segment features and class caption embeddings.

The rule (VALOR; ../shared/docs/llp-data-and-metrics.md section 3): per track, per clip,
    logit[t, c] = logit_scale * cos(feature_t, caption_c)
    label[t, c] = 1 iff logit[t, c] > threshold[c]   (strict: a logit equal to the threshold is 0)
and, for pseudo-labels (training targets, quality figures), AND class c is in the clip's weak
label. Priors (`inference.priors`) are the same rule never gated; both share the scoring
(`priors.similarities`), the rule (`priors.segment_rule`) and the val cut (`priors.val_thresholds`).

Logit scales come from DIR/text/captions.json (written with the caption embeddings by
`avvp-studio features`). Without it (the demo) the scale is 1.0, so logits are cosines, and the
report says so.

Thresholds (logit units, `--thresholds`):
- "valor": VALOR's published per-class values. They only mean something in the logit units of
  the real encoders (CLIP ViT-L/14, CLAP) with their learnt scales, so they are refused when
  captions.json is absent or names random/tiny encoders.
- "val": per class the best-F1 cut of the val clips' logits against the val truth (the cut of the
  priors, `priors.val_thresholds`). Val quality of such a set is optimistic (val chose the
  thresholds); test quality is not, and no train or test clip's labels depend on anything of
  theirs but their features and weak label.
  Reading (VALOR tuned its thresholds by hand; how is not published): the cut is, by default,
  that of the GATED labels (`calibration="gated"`: only cells of val clips whose weak label has
  the class can fire, the class's other true cells count as misses), because gated labels are
  what the set holds; the priors' ungated cut is `calibration="ungated"`, which reads the val
  truth only, not the val weak labels. Evidence: on the 600-clip demo (seed 0) the test segment
  Type@AV of the set is 95.0 with the gated cut and 80.3 with the ungated one (the ungated cut
  sets thresholds against false positives of classes the gate removes anyway).
- a JSON file {"audio": [25 numbers], "visual": [25 numbers]} in logit units.
- "auto" (the command's default): "valor" when captions.json names real encoders, else "val".
The logits of a clip depend on its features and the captions only; its weak label enters only
through the gate, its truth never.
"""
from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path

import numpy as np

from annotation.errors import DataFileError
from annotation.files import present
from inference.data import LabelSet
from inference.priors import (
    CAPTION_FILES, CAPTIONS_JSON, FEATURE_DIRS, load_text, load_thresholds, segment_rule, similarities, val_thresholds,
)
from inference.pseudo_sets import GATING, PseudoSet

Progress = Callable[[str, int, int], None]
TRACKS = ("audio", "visual")
# VALOR's thresholds in logit units, canonical class order (visual: CLIP ViT-L/14, audio: CLAP)
VALOR_THRESHOLDS: dict[str, tuple[float, ...]] = {
    "visual": (20, 15, 18, 14, 15, 18, 18, 15, 15, 15, 15, 18, 15, 15, 15, 15, 15, 15, 15, 16, 14, 15, 15, 15, 18),
    "audio": (0, 0, 1, 4, 6, -2, 4, 4, 2, 2, 2, 1, 2, 3, 0, 2, 2, 2, 0, 2, -1, 2, 3, 3, 0),
}
THRESHOLD_CHOICES = ("auto", "valor", "val")
CALIBRATIONS = ("gated", "ungated")  # the val cut: of the gated labels (default) or of the ungated ones
UNTRAINED_MARKS = ("random", "tiny")  # words of an encoder description that make VALOR's thresholds meaningless
RULE = "logit_scale * cos(segment feature, caption embedding) > threshold[c] (strict)"


def read_captions(data_dir: str | Path) -> dict | None:
    """DIR/text/captions.json ({"visual": {"prompts", "logit_scale", "encoder"}, "audio": {...}}), checked;
    None when absent."""
    path = Path(data_dir) / CAPTIONS_JSON
    if not present(path):
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataFileError(path, f"not valid JSON ({exc}); expected {{\"visual\": {{\"logit_scale\": ...}}, "
                                  "\"audio\": {...}}") from None
    for track in TRACKS:
        entry = data.get(track) if isinstance(data, dict) else None
        scale = entry.get("logit_scale") if isinstance(entry, dict) else None
        if not (isinstance(scale, (int, float)) and not isinstance(scale, bool) and math.isfinite(scale) and scale > 0):
            raise DataFileError(path, f"'{track}' must be an object with a finite positive 'logit_scale' (found "
                                      f"{scale!r}); expected what `avvp-studio features` writes")
        if not isinstance(entry.get("encoder", ""), str):
            raise DataFileError(path, f"'{track}'.'encoder' must be a string")
    return data


def logit_scales(captions: dict | None) -> dict[str, float]:
    """Per track the encoder's logit scale; 1.0 without captions.json."""
    return {t: float(captions[t]["logit_scale"]) if captions else 1.0 for t in TRACKS}


def untrained_encoders(captions: dict | None) -> dict[str, str]:
    """track -> encoder description, for the tracks whose encoder had random weights: captions.json's
    `random_weights` flag (written by `avvp-studio features`), else, for files without it, the words
    'random'/'tiny' in the encoder's description."""
    found = {}
    for track in TRACKS:
        meta = (captions or {}).get(track, {})
        encoder = str(meta.get("encoder", ""))
        flag = meta.get("random_weights")
        if flag or (flag is None and any(mark in encoder.lower() for mark in UNTRAINED_MARKS)):
            found[track] = encoder
    return found


def segment_logits(data_dir: str | Path, labels: LabelSet, scales: dict[str, float],
                   feature_dirs: dict[str, str | Path | None] | None = None,
                   progress: Progress | None = None) -> dict[str, np.ndarray]:
    """(N, 10, 25) float32 logits per track, rows of `labels`: features and captions only."""
    note = progress or (lambda stage, done, total: None)
    data_dir, out = Path(data_dir), {}
    for track in TRACKS:
        folder = Path((feature_dirs or {}).get(track) or data_dir / FEATURE_DIRS[track])
        text = load_text(data_dir / CAPTION_FILES[track], track)
        out[track] = (scales[track] * similarities(folder, labels.video_ids, text, track)).astype(np.float32)
        note(f"{track} logits", len(labels), len(labels))
    return out


def zero_shot_labels(logits: np.ndarray, thresholds, weak: np.ndarray | None = None) -> np.ndarray:
    """(..., 10, 25) uint8 labels: `logits` > `thresholds` (25,) strictly; with `weak` ((..., 25) 0/1 video-level
    labels) gated by it (pseudo-labels); without, over all classes (priors)."""
    labels = segment_rule(logits, thresholds).astype(np.uint8)
    if weak is not None:
        labels &= (np.asarray(weak)[..., None, :] > 0).astype(np.uint8)
    return labels


def resolve_thresholds(choice: str, data_dir: str | Path, labels: LabelSet, logits: dict[str, np.ndarray],
                       captions: dict | None, calibration: str = "gated") -> tuple[dict[str, np.ndarray], dict]:
    """(thresholds per track in logit units, report entries saying how they were chosen)."""
    if calibration not in CALIBRATIONS:
        raise ValueError(f"unknown calibration {calibration!r}; expected one of {CALIBRATIONS}")
    data_dir = Path(data_dir)
    if choice == "auto":
        choice = "valor" if captions is not None and not untrained_encoders(captions) else "val"
    if choice == "valor":
        where = data_dir / CAPTIONS_JSON
        if captions is None:
            raise DataFileError(where, "absent, so the logit scales of the encoders are unknown; VALOR's thresholds "
                                       "are in the logit units of real CLIP ViT-L/14 and CLAP (make the features with "
                                       "avvp-studio features), or use --thresholds val (chosen on the val truth)")
        weak_encoders = untrained_encoders(captions)
        if weak_encoders:
            named = ", ".join(f"{t}: {e!r}" for t, e in weak_encoders.items())
            raise DataFileError(where, f"names random or tiny encoders ({named}); VALOR's thresholds only fit the real "
                                       "CLIP ViT-L/14 and CLAP; use --thresholds val (chosen on the val truth)")
        return ({t: np.asarray(VALOR_THRESHOLDS[t], np.float32) for t in TRACKS},
                {"threshold_source": "valor", "thresholds_note": "VALOR's published per-class thresholds"})
    if choice == "val":
        chosen, info = {}, {"threshold_source": "val", "calibration": calibration, "val_f1": {}, "fallback": {},
                            "thresholds_note": f"val-calibrated: per class the best-F1 cut of the {calibration} val "
                                               "labels against the val truth; val quality is optimistic (val chose "
                                               "them), test is not"}
        for track in TRACKS:
            chosen[track], info["val_f1"][track], info["fallback"][track] = val_thresholds(
                logits[track], labels, track, data_dir, gated=calibration == "gated")
        return chosen, info
    return (load_thresholds(choice, units="logit thresholds"),
            {"threshold_source": str(Path(choice).resolve()), "thresholds_note": "from a file, in logit units"})


def zero_shot_set(data_dir: str | Path, labels: LabelSet, name: str, thresholds: str = "auto",
                  feature_dirs: dict[str, str | Path | None] | None = None,
                  progress: Progress | None = None, calibration: str = "gated") -> PseudoSet:
    """VALOR's zero-shot pseudo-labels of every clip of `labels`, gated by each clip's weak label."""
    captions = read_captions(data_dir)
    scales = logit_scales(captions)
    logits = segment_logits(data_dir, labels, scales, feature_dirs, progress)
    chosen, info = resolve_thresholds(thresholds, data_dir, labels, logits, captions, calibration)
    tracks = {t: zero_shot_labels(logits[t], chosen[t], labels.weak) for t in TRACKS}
    report = {
        "rule": f"{RULE}, {GATING}",
        "thresholds": {t: [round(float(v), 6) for v in chosen[t]] for t in TRACKS},
        "threshold_units": "logit",
        **info,
        "logit_scale": scales,
        "logit_scale_source": str(Path(data_dir, CAPTIONS_JSON).resolve()) if captions else
        f"default 1.0: no {CAPTIONS_JSON} (logits are cosine similarities)",
        "encoders": {t: (captions or {}).get(t, {}).get("encoder") for t in TRACKS},
        "ungated_positives": {t: int(segment_rule(logits[t], chosen[t]).sum()) for t in TRACKS},
    }
    return PseudoSet(name=name, method="zero-shot",
                     audio=dict(zip(labels.video_ids, tracks["audio"])),
                     visual=dict(zip(labels.video_ids, tracks["visual"])), report=report)
