"""Zero-shot segment priors: CLAP/CLIP segment features against the 25 class caption embeddings.

A prior is a segment label a model may read as input in every split (PLSIM does):
`prior[t, c] = 1` iff cos(feature_t, text_c) > threshold_c (strict, as VALOR's
pseudo-labels), over ALL 25 classes. Unlike a pseudo-label it is never gated by
the clip's video-level label, so it carries nothing of a val/test clip's truth.

Thresholds (cosine units, one per class and track):
- from a JSON file `{"audio": [25 numbers], "visual": [25 numbers]}` (VALOR's logit
  thresholds divided by the encoder's logit scale, e.g. CLIP's 100, are such numbers);
- or chosen on the val split's truth ("val"): per class the cut of the sorted val
  segment scores with the best F1 against the dense val truth. A class with no
  positive val segment takes the mean threshold of the classes that have one
  (reported as a fallback). Only val truth is read: test clips' priors do not
  depend on anything of theirs but their features. Val numbers of a model reading
  these priors are then slightly optimistic (val chose the thresholds); test is not.

Output: `CLAP/segment_prior_labels/<id>.npy` and `CLIP/segment_prior_labels/<id>.npy`,
(10, 25) int64 0/1 like the pseudo-label files, for every clip of the weak CSVs,
and `segment_prior_labels.json` (thresholds, how they were chosen, val F1) beside them.

The val cut (`val_thresholds`) and the rule (`segment_rule`) are shared with the zero-shot
pseudo-labels of `inference.zero_shot`, which score in logit units and gate by the weak label.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from annotation.errors import DataFileError
from annotation.files import child_path, replace_file
from annotation.npyfile import npy_bytes, npy_shape, read_npy
from annotation.taxonomy import CLASSES, NUM_CLASSES, NUM_SEGMENTS
from inference.data import PRIOR_DIRS, LabelSet

# the CLIP/CLAP part of the LLP layout: segment embeddings, the class caption embeddings and their record
# (encoders, prompts, logit scales) as `avvp-studio features` writes them
FEATURE_DIRS = {"audio": "CLAP/features", "visual": "CLIP/features"}
CAPTION_FILES = {"audio": "text/clap_captions.npy", "visual": "text/clip_captions.npy"}
CAPTIONS_JSON = "text/captions.json"
REPORT = "segment_prior_labels.json"
TRACKS = ("audio", "visual")
Progress = Callable[[str, int, int], None]


@dataclass
class PriorReport:
    clips: int
    source: str  # "val" or the thresholds file
    thresholds: dict[str, list[float]]
    val_f1: dict[str, list[float | None]] = field(default_factory=dict)  # per class, on the val truth
    fallback: dict[str, list[str]] = field(default_factory=dict)  # classes without val positives
    written: dict[str, int] = field(default_factory=dict)


def load_text(path: str | Path, track: str) -> np.ndarray:
    """(25, d) caption embeddings, L2-normalised rows."""
    table = read_npy(path, shape=lambda s: len(s) == 2 and s[0] == NUM_CLASSES and 0 < s[1] <= 65536, kinds="f",
                     finite=True, expected=f"{track} caption embeddings, a finite float ({NUM_CLASSES}, d) array")
    norms = np.linalg.norm(table, axis=1, keepdims=True)
    if (norms == 0).any():
        raise DataFileError(path, f"class {CLASSES[int(np.flatnonzero(norms[:, 0] == 0)[0])]} has an all-zero "
                                  "caption embedding; expected one embedding per class")
    return (table / norms).astype(np.float32)


def load_thresholds(path: str | Path, units: str = "cosine thresholds") -> dict[str, np.ndarray]:
    """{"audio": (25,), "visual": (25,)} from a JSON file; `units` names what the numbers are (errors say it)."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise DataFileError(path, f"cannot open: {exc.strerror}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataFileError(path, f"not valid JSON ({exc}); expected {{\"audio\": [25 numbers], \"visual\": [...]}}")
    out = {}
    for track in TRACKS:
        values = data.get(track) if isinstance(data, dict) else None
        found = _threshold_problem(values)
        if found:
            raise DataFileError(path, f"'{track}' must be a list of {NUM_CLASSES} finite numbers ({units} in "
                                      f"canonical class order); found {found}")
        out[track] = np.asarray(values, np.float32)
    return out


def _threshold_problem(values) -> str | None:
    """What is wrong with a thresholds list (None: nothing)."""
    if values is None:
        return "no such key"
    if not isinstance(values, list):
        return f"a {type(values).__name__}"
    if len(values) != NUM_CLASSES:
        return f"{len(values)} values"
    for i, v in enumerate(values):
        if not isinstance(v, (int, float)) or isinstance(v, bool) or not np.isfinite(v):
            return f"{v!r} at index {i} ({CLASSES[i]})"
    return None


def similarities(folder: Path, video_ids: list[str], text: np.ndarray, track: str) -> np.ndarray:
    """(N, 10, 25) cosine similarity of each clip's segment features (`folder/<id>.npy`) with each class caption."""
    first = next((p for p in sorted(folder.glob("*.npy"))), None) if folder.is_dir() else None
    if first is None:
        raise DataFileError(folder, f"no {track} feature files; priors are computed from ({NUM_SEGMENTS}, d) "
                                    f"segment embeddings (default folder {FEATURE_DIRS[track]}; another with "
                                    f"--{track}-features)")
    shape, width = npy_shape(first, f"{track} features"), text.shape[1]
    if shape != (NUM_SEGMENTS, width):
        raise DataFileError(first, f"{track} features of shape {shape}; priors need ({NUM_SEGMENTS}, {width}) segment "
                                   f"embeddings in the space of the {width}-d caption embeddings (VALOR's (64, 768) "
                                   f"CLAP maps are not: point --{track}-features at per-segment embeddings)")
    out = np.empty((len(video_ids), NUM_SEGMENTS, NUM_CLASSES), np.float32)
    for i, vid in enumerate(video_ids):
        feat = read_npy(child_path(folder, f"{vid}.npy"), shape=(NUM_SEGMENTS, width), kinds="f", finite=True,
                        expected=f"finite float ({NUM_SEGMENTS}, {width}) {track} features of clip id {vid}")
        norms = np.linalg.norm(feat, axis=1, keepdims=True)
        out[i] = (feat / np.where(norms == 0, 1, norms)) @ text.T
    return out


def best_threshold(scores: np.ndarray, truth: np.ndarray, missed: int = 0) -> tuple[float, float] | None:
    """(threshold, F1) of the cut of `scores` with the best F1 against 0/1 `truth` (strict `>`);
    `missed`: true positives outside `scores` that no cut can find (gated-out cells), counted as
    misses. None when `truth` has no positive."""
    if int(truth.sum()) == 0:
        return None
    positives = int(truth.sum()) + missed
    order = np.argsort(-scores, kind="stable")
    s, y = scores[order], truth[order].astype(np.int64)
    tp = np.cumsum(y)
    k = np.arange(1, len(s) + 1)
    distinct = np.append(s[:-1] > s[1:], True)  # a cut may only fall between different scores
    f1 = np.where(distinct, 2 * tp / (k + positives), -1.0)
    best = int(np.argmax(f1))
    if best + 1 < len(s):
        threshold = np.float32((s[best] + s[best + 1]) / 2)  # thresholds are kept as float32
        if not s[best] > threshold:  # adjacent float32 scores: the midpoint rounded onto the kept score
            threshold = np.float32(s[best + 1])
    else:
        threshold = s[best] - 1.0
    return float(threshold), float(f1[best])


def choose_thresholds(sim: np.ndarray, truth: np.ndarray,
                      weak: np.ndarray | None = None) -> tuple[np.ndarray, list[float | None], list[str]]:
    """Per-class thresholds from val similarities (V, 10, 25) and val truth (V, 25, 10); with `weak`
    (V, 25), the cut of the labels gated by it: only cells of clips whose weak label has the class
    can fire, the class's other true cells are misses whatever the threshold."""
    thresholds, f1s, fallback = np.zeros(NUM_CLASSES, np.float32), [], []
    flat_truth = truth.transpose(0, 2, 1).reshape(-1, NUM_CLASSES)
    flat_sim = sim.reshape(-1, NUM_CLASSES)
    flat_gate = None if weak is None else np.repeat(np.asarray(weak) > 0, sim.shape[1], axis=0)
    for c in range(NUM_CLASSES):
        if flat_gate is None:
            found = best_threshold(flat_sim[:, c], flat_truth[:, c])
        else:
            keep = flat_gate[:, c]
            found = best_threshold(flat_sim[keep, c], flat_truth[keep, c], int(flat_truth[~keep, c].sum()))
        if found is None:
            fallback.append(CLASSES[c])
            f1s.append(None)
        else:
            thresholds[c], f1 = found
            f1s.append(round(f1, 4))
    fitted = [c for c in range(NUM_CLASSES) if CLASSES[c] not in fallback]
    if not fitted:
        raise DataFileError("the val split's truth", "no class has a positive val segment; thresholds cannot be chosen on val "
                                   "(give a thresholds file)")
    thresholds[[c for c in range(NUM_CLASSES) if CLASSES[c] in fallback]] = thresholds[fitted].mean()
    return thresholds, f1s, fallback


def val_thresholds(scores: np.ndarray, labels: LabelSet, track: str, data_dir: str | Path,
                   gated: bool = False) -> tuple[np.ndarray, list[float | None], list[str]]:
    """Per-class best-F1 cut of `scores` (N, 10, 25), one row per clip of `labels`, against the `track`
    truth of the val clips (`choose_thresholds`); `gated`: the cut of the labels gated by the val
    clips' weak labels (zero-shot pseudo-labels), else of the ungated ones (priors). Reads the val
    clips' truth (and, gated, their weak labels) and nothing of any other clip: whatever the
    thresholds produce for train and test clips depends on val only."""
    val = labels.indices("val")
    val_names = [labels.filenames[i] for i in val]
    if not any(n in labels.truth_audio or n in labels.truth_visual for n in val_names):
        raise DataFileError(data_dir, "no val truth (AVVP_eval_audio.csv / AVVP_eval_visual.csv rows for val clips) "
                                      "to choose thresholds on; give --thresholds FILE")
    truth_map = labels.truth_audio if track == "audio" else labels.truth_visual
    zeros = np.zeros((NUM_CLASSES, NUM_SEGMENTS), np.uint8)
    truth = np.stack([truth_map.get(n, zeros) for n in val_names])
    return choose_thresholds(scores[val], truth, labels.weak[val] if gated else None)


def segment_rule(scores: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """The zero-shot segment rule over all classes: 1 iff score > threshold of its class (strict, as
    VALOR's); (..., 10, 25) scores, (25,) thresholds, int64 0/1. Priors use it as it is; zero-shot
    pseudo-labels (`inference.zero_shot`) gate it by the weak label."""
    return (np.asarray(scores) > np.asarray(thresholds, np.float32)).astype(np.int64)


def compute_priors(data_dir: str | Path, labels: LabelSet, text_audio: str | Path, text_visual: str | Path,
                   thresholds: str = "val", out_dir: str | Path | None = None,
                   progress: Progress | None = None,
                   feature_dirs: dict[str, str | Path | None] | None = None) -> PriorReport:
    """Priors of every clip of `labels` (see the module docstring); written under `out_dir` (default DIR).
    `feature_dirs` may name other folders of (10, d) segment embeddings per track (default
    DIR/CLAP/features, DIR/CLIP/features), e.g. when DIR/CLAP/features holds VALOR's CLAP maps."""
    data_dir, note = Path(data_dir), progress or (lambda stage, done, total: None)
    out = Path(out_dir) if out_dir is not None else data_dir
    folders = {t: Path((feature_dirs or {}).get(t) or data_dir / FEATURE_DIRS[t]) for t in TRACKS}
    texts = {"audio": load_text(text_audio, "audio"), "visual": load_text(text_visual, "visual")}
    fixed = load_thresholds(thresholds) if thresholds != "val" else None
    report = PriorReport(clips=len(labels), source="val" if fixed is None else str(thresholds), thresholds={})
    for track in TRACKS:
        sim = similarities(folders[track], labels.video_ids, texts[track], track)
        note(f"{track} similarities", len(labels), len(labels))
        if fixed is None:
            chosen, report.val_f1[track], report.fallback[track] = val_thresholds(sim, labels, track, data_dir)
        else:
            chosen = fixed[track]
        report.thresholds[track] = [round(float(t), 6) for t in chosen]
        prior = segment_rule(sim, chosen)
        folder = out / PRIOR_DIRS[track]
        folder.mkdir(parents=True, exist_ok=True)
        for i, vid in enumerate(labels.video_ids):
            replace_file(child_path(folder, f"{vid}.npy"), npy_bytes(prior[i]))
            if (i + 1) % 2000 == 0 or i + 1 == len(labels):
                note(f"{track} priors", i + 1, len(labels))
        report.written[track] = len(labels)
    meta = {"source": report.source, "thresholds": report.thresholds, "val_f1": report.val_f1,
            "fallback": report.fallback, "clips": report.clips, "text_audio": str(Path(text_audio).resolve()),
            "text_visual": str(Path(text_visual).resolve()),
            "features": {t: str(folders[t].resolve()) for t in TRACKS}, "rule": "cos(feature, caption) > threshold, all classes"}
    replace_file(out / REPORT, (json.dumps(meta, indent=1) + "\n").encode("utf-8"))
    return report
