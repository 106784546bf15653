"""EAR stage 2: the frozen pre-trained generator's segment pseudo-labels for every clip of an LLP folder.

For each clip the generator reads its CLIP/CLAP features and the folder's LLP caption embeddings
(DIR/text/clip_captions.npy, clap_captions.npy: 25 classes, whatever the generator was pre-trained on) and
gives dynamic audio and visual probabilities P (10, 25) (Eq. 4). The pseudo-label is Eq. 9:

    Y^ = 1[P > theta] AND y_weak        (strict >, gated by the clip's video-level label)

and its confidence (UWAV's soft pseudo-label) is P gated the same way. Captions: the LLP folder's caption
files as `avvp-studio features` writes them, i.e. VALOR's prompts, while a generator pre-trained on UnAV saw
EAR's templates ("A photo of <event>", "This is the sound of <event>"); the paper does not say which prompts
its stage 2 used. Another set of LLP captions can be put in DIR/text/ to change that. theta defaults to the generator
config's `pseudo_threshold` (EAR's value was lost from the text; 0.5, see
`inference.models.ear_generator`) and can be given. Honesty: the probabilities read features and captions
only; the weak label enters through the gate alone, so the labels are TRAINING TARGETS and quality
figures, reported as gated (`clip_probabilities` is the ungated part).
"""
from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

from annotation.errors import DataFileError
from annotation.files import present
from annotation.taxonomy import NUM_CLASSES, NUM_SEGMENTS
from inference.checkpoint import RunError, load_checkpoint, model_from_checkpoint, read_json
from inference.data import FeatureStore, InputPart, LabelSet
from inference.tasks.dense_events import CAPTION_FILES, FEATURE_DIRS, features_command, read_captions
from inference.train import resolve_device

Progress = Callable[[str, int, int], None]
METHOD = "ear"
GENERATOR = "ear_generator"
BATCH = 256  # clips per forward pass


def load_generator(run_dir: str | Path) -> tuple[torch.nn.Module, dict]:
    """The best generator of an `avvp-studio ear pretrain` run (weights_only load) and its metadata."""
    path = Path(run_dir) / "checkpoint.pt"
    if not present(path):
        raise RunError(f"{path} not found: not a finished EAR generator run (avvp-studio ear pretrain --out {run_dir})")
    checkpoint = load_checkpoint(path)
    if checkpoint["model"] != GENERATOR:
        raise RunError(f"{path} holds a {checkpoint['model']} model, not EAR's pseudo-label generator "
                       "(avvp-studio ear pretrain)")
    model = model_from_checkpoint(checkpoint, path)
    return model.eval(), {k: v for k, v in checkpoint.items() if k != "state_dict"}


def _feature_store(data_dir: Path, video_ids: Sequence[str], dims: dict[str, int]) -> FeatureStore:
    """The clips' (10, d) features, refusing a missing folder or file with the command that makes them."""
    for track, rel in FEATURE_DIRS.items():
        folder = data_dir / rel
        missing = [v for v in video_ids if not present(folder / f"{v}.npy")] if present(folder, "folder") else video_ids
        if missing:
            raise DataFileError(folder / f"{missing[0]}.npy", f"missing {track} features ({len(missing)} of "
                                f"{len(video_ids)} clips lack them); extract them with: {features_command(data_dir)}")
    parts = {track: InputPart(rel, (NUM_SEGMENTS, dims[track]), "f", f"{track} features (the generator's width)")
             for track, rel in FEATURE_DIRS.items()}
    return FeatureStore(data_dir, parts)


@torch.no_grad()
def clip_probabilities(model: torch.nn.Module, data_dir: str | Path, video_ids: Sequence[str], device: torch.device,
                       progress: Progress | None = None) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """video id -> (audio, visual) dynamic probabilities (10, 25) float32, from features and captions only."""
    data_dir = Path(data_dir)
    dims = {"audio": model.config.audio_dim, "visual": model.config.visual_dim}
    captions = read_captions(data_dir, NUM_CLASSES)
    for track, table in captions.items():
        if table.shape[1] != dims[track]:
            raise DataFileError(data_dir / CAPTION_FILES[track], f"{table.shape[1]}-d captions; the generator was "
                                f"pre-trained on {dims[track]}-d {track} features (use the encoders of its pre-training data)")
    store = _feature_store(data_dir, video_ids, dims)
    text = {f"text_{t}": torch.from_numpy(c).to(device) for t, c in captions.items()}
    model.to(device).eval()
    out: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    ids = list(dict.fromkeys(video_ids))
    if progress is not None:
        progress("EAR generator", 0, len(ids))
    for start in range(0, len(ids), BATCH):
        chunk = ids[start: start + BATCH]
        batch = {track: torch.from_numpy(np.stack([store.load(track, v) for v in chunk])).to(device)
                 for track in FEATURE_DIRS}
        probs = model({**batch, **text})
        audio, visual = probs["audio"].float().cpu().numpy(), probs["visual"].float().cpu().numpy()
        out.update((v, (audio[k], visual[k])) for k, v in enumerate(chunk))
        if progress is not None:
            progress("EAR generator", min(start + BATCH, len(ids)), len(ids))
    return out


def gate(prob: np.ndarray, weak: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """Eq. 9: (labels (10, 25) uint8 = prob > threshold AND weak, scores float32 = prob where weak else 0)."""
    allowed = np.asarray(weak, bool)[None, :]
    return ((prob > threshold) & allowed).astype(np.uint8), np.where(allowed, prob, 0.0).astype(np.float32)


def _task_options(run_dir: Path) -> dict:
    try:
        train = read_json(run_dir / "config.json", "a run's config.json").get("train", {})
    except RunError:
        return {}
    options = train.get("task_options") if isinstance(train, dict) else None
    return options if isinstance(options, dict) else {}


def ear_pseudo_set(run_dir: str | Path, data_dir: str | Path, labels: LabelSet, name: str, device: str = "auto",
                   threshold: float | None = None, progress: Progress | None = None):
    """The EAR pseudo-label set of every clip of `labels` (train, val, test), as an
    `inference.pseudo_sets.PseudoSet` (0/1 labels and gated scores, (10, 25) per video id) with its report."""
    from inference.pseudo_sets import GATING, PseudoSet, summarize

    if threshold is not None and not 0.0 <= threshold <= 1.0:
        raise RunError(f"threshold {threshold}; expected a probability in [0, 1]")
    model, meta = load_generator(run_dir)
    if threshold is None:
        theta, how = float(model.config.pseudo_threshold), (
            "the generator config's pseudo_threshold (EAR's value was lost from the paper; 0.5 reconstructed, see "
            "inference.models.ear_generator)")
    else:
        theta, how = float(threshold), "given (--threshold)"
    probs = clip_probabilities(model, data_dir, labels.video_ids, resolve_device(device), progress)
    options = _task_options(Path(run_dir))
    overlap = int(options.get("llp_overlap_kept") or 0)
    if overlap:
        print(f"warning: the generator was pre-trained on a dense-event folder that keeps {overlap} videos sharing a "
              "YouTube id with LLP val/test clips (import unav --keep-llp-overlap): this set's val/test quality is "
              "not a clean figure", file=sys.stderr)
    audio, visual, scores_a, scores_v = {}, {}, {}, {}
    for vid, weak in zip(labels.video_ids, labels.weak):
        p_a, p_v = probs[vid]
        audio[vid], scores_a[vid] = gate(p_a, weak, theta)
        visual[vid], scores_v[vid] = gate(p_v, weak, theta)
    report = {
        "method": METHOD, "name": name, "generator": str(Path(run_dir).resolve()),
        "generator_epoch": meta.get("epoch"), "generator_val": meta.get("val"),
        "generator_data": options.get("source"), "llp_overlap_kept": overlap, "threshold": theta, "threshold_how": how,
        "thresholds": {"audio": theta, "visual": theta},
        "rule": "segment probability > threshold (strict) AND the clip's weak label (EAR Eq. 9); scores = the "
                "generator's dynamic probability where the weak label allows the class, else 0",
        "gating": GATING,
    }
    pset = PseudoSet(name=name, method=METHOD, audio=audio, visual=visual, scores_audio=scores_a,
                     scores_visual=scores_v, report=report)
    report["counts"] = summarize(pset, labels)  # per split: clips, positive cells, empty tracks
    return pset
