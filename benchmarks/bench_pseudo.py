"""Pseudo-labels and parsers on the 600-clip SYNTHETIC demo: VALOR's zero-shot labels vs EAR's generator.

Run `python benchmarks/bench_pseudo.py [--clips 600] [--corrected 0.25] [--epochs N]`.

1. Builds the demo (no videos; its CLIP/CLAP features and caption embeddings are synthetic) and
   imports it into a fresh SQLite store.
2. A reviewer's work is simulated: a seeded fraction of the TRAIN clips get their true audio and
   visual timelines saved as 'manual' tracks (the demo knows every clip's truth).
3. Pseudo-label sets, each written with `avvp-studio pseudo-label` and scored against the val/test
   truth with the exact AVVP metrics (gated by the weak label, as VALOR and EAR report theirs):
   - `valor-zs`: VALOR's zero-shot rule on the demo's CLAP/CLIP features, thresholds calibrated per
     class on val (the demo's encoders have no published thresholds);
   - `ear-gen`: EAR's generator pre-trained (`avvp-studio ear pretrain --db`) on the corrected train
     clips, then applied to every clip (stage 2).
   The demo's own imported pseudo-labels (truth degraded by a noise model) are scored beside them.
4. The `valor` and `ear` parsers (CLIP + CLAP features), each trained on each set with the same seed;
   the checkpoint is chosen on val, the table gives test.

Not a like-for-like comparison of the two labelling methods: EAR's generator learns from the
corrected clips, the zero-shot rule learns nothing. All numbers are of SYNTHETIC data and must never
share a table with LLP numbers. Figures: bench-results/pseudo.json and markdown tables on stdout.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from common import save

from annotation.db import open_database
from annotation.demo import build_demo, read_demo_truth
from annotation.store import LabelStore
from app.cli import run_cli
from inference.metrics import KEYS, LEVELS

SETS = ("valor-zs", "ear-gen")
PARSERS = ("valor", "ear")


def cli(*argv: str) -> str:
    """Run one CLI command in this process; its stdout, or SystemExit with its stderr on failure."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = run_cli([str(a) for a in argv])
    if code != 0:
        raise SystemExit(f"`avvp-studio {' '.join(map(str, argv))}` failed ({code}): {err.getvalue()[-2000:]}")
    return out.getvalue()


def correct_train_clips(db: str, data: Path, fraction: float, seed: int) -> int:
    """Save the truth of a seeded `fraction` of the train clips as a reviewer's 'manual' tracks."""
    store = LabelStore(open_database(db))
    audio, visual = read_demo_truth(data)
    train = store.clips("train")
    rng = np.random.default_rng(seed)
    chosen = rng.choice(len(train), size=max(1, round(fraction * len(train))), replace=False)
    for k in sorted(chosen):
        clip = train[k]
        for track, grids in (("audio", audio), ("visual", visual)):
            current = store.track(clip.id, track, "manual").version
            store.save_track(clip.id, track, "manual", grids[clip.filename], current, "bench")
    return len(chosen)


def quality(data: Path, name: str) -> dict:
    return json.loads((data / "pseudo" / name / "pseudo_labels.json").read_text())["quality"]


def imported_quality(data: Path, work: Path) -> dict:
    """The demo's own pseudo-label files scored like the sets (export to CSV, exact evaluation)."""
    scores = {}
    for split, weak in (("val", "AVVP_val_pd.csv"), ("test", "AVVP_test_pd.csv")):
        out = work / f"imported-{split}"
        cli("export", "labels", "--db", work / "studio.sqlite", "--source", "pseudo", "--split", split, "--out", out)
        text = cli("eval", "--gt-audio", data / "AVVP_eval_audio.csv", "--gt-visual", data / "AVVP_eval_visual.csv",
                   "--pred-audio", out / "audio.csv", "--pred-visual", out / "visual.csv", "--videos", data / weak,
                   "--json")
        scores[split] = json.loads(text)
    return scores


def train_parser(model: str, pseudo: str, data: Path, work: Path, epochs: int | None) -> dict:
    run = work / f"{model}-{pseudo}"
    extra = ["--epochs", str(epochs)] if epochs else []
    began = time.perf_counter()
    cli("train", "--data", data, "--model", model, "--feature-set", "clip_clap", "--pseudo", pseudo, "--out", run,
        "--seed", "1", *extra)
    metrics = json.loads((run / "metrics.json").read_text())
    return {"best_epoch": metrics["best_epoch"], "train_s": round(time.perf_counter() - began, 1),
            "val": metrics["val"], "test": metrics["test"]}


def row(label: str, scores: dict) -> str:
    return f"| {label} | " + " | ".join(f"{scores[level][k]:.2f}" for level in LEVELS for k in KEYS) + " |"


def header(first: str) -> str:
    head = f"| {first} | " + " | ".join(f"seg {k}" for k in KEYS) + " | " + " | ".join(f"ev {k}" for k in KEYS) + " |"
    return head + "\n|" + "---|" * (1 + 2 * len(KEYS))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=600)
    parser.add_argument("--corrected", type=float, default=0.25, help="fraction of train clips a reviewer corrected")
    parser.add_argument("--epochs", type=int, help="parser epochs (default: each model's recipe)")
    parser.add_argument("--generator-epochs", type=int, help="EAR generator epochs (default: its recipe)")
    parser.add_argument("--models", default=",".join(PARSERS), help="parsers to train (default: valor,ear)")
    parser.add_argument("--tag", help="write bench-results/pseudo-TAG.json (runs with other options side by side)")
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="avvp-bench-pseudo-"))
    figures: dict = {"data": f"SYNTHETIC demo, {args.clips} clips, seed 0", "corrected_fraction": args.corrected,
                     "parser_epochs": args.epochs or "recipe", "generator_epochs": args.generator_epochs or "recipe"}
    try:
        data = build_demo(work / "demo", clips=args.clips, seed=0, videos=False).out_dir
        db = str(work / "studio.sqlite")
        cli("import", "llp", data, "--db", db)
        figures["corrected_clips"] = correct_train_clips(db, data, args.corrected, seed=1)
        began = time.perf_counter()
        cli("pseudo-label", "--data", data, "--method", "zero-shot", "--thresholds", "val", "--name", "valor-zs")
        figures["zero_shot_s"] = round(time.perf_counter() - began, 1)
        began = time.perf_counter()
        epochs = ["--epochs", str(args.generator_epochs)] if args.generator_epochs else []
        cli("ear", "pretrain", "--db", db, "--data", data, "--out", work / "generator", "--seed", "1", *epochs)
        cli("pseudo-label", "--data", data, "--method", "ear", "--generator", work / "generator", "--name", "ear-gen")
        figures["ear_generator_s"] = round(time.perf_counter() - began, 1)
        figures["pseudo_quality"] = {name: quality(data, name) for name in SETS}
        figures["pseudo_quality"]["demo-imported"] = imported_quality(data, work)
        figures["parsers"] = {f"{model}/{name}": train_parser(model, name, data, work, args.epochs)
                              for name in SETS for model in args.models.split(",")}
    finally:
        shutil.rmtree(work, ignore_errors=True)
    save(f"pseudo-{args.tag}" if args.tag else "pseudo", figures)
    print(f"{figures['data']}; {figures['corrected_clips']} train clips corrected by a (simulated) reviewer")
    for split in ("val", "test"):
        print(f"\nPseudo-label quality, {split} split (gated by the weak label; valor-zs thresholds chosen on val):")
        print(header("labels"))
        for name, scores in figures["pseudo_quality"].items():
            print(row(name, scores[split]))
    print(f"\nParsers (clip_clap features, seed 1, {figures['parser_epochs']} epochs, checkpoint chosen on val), test:")
    print(header("parser / trained on"))
    for key, result in figures["parsers"].items():
        print(row(f"{key} (best epoch {result['best_epoch']}, {result['train_s']} s)", result["test"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
