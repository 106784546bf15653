"""The four parsers on the 600-clip SYNTHETIC demo, each beside itself fed all-zero priors at test time.

Run `python benchmarks/bench_demo_parsers.py [--clips 600] [--models han,valor,mug,link]`.
Builds the demo (no videos), makes its zero-shot priors with `avvp-studio prior` (thresholds
chosen on val), trains each model with its paper recipe (feature sets: VGGish + ResNet +
R(2+1)D for han, valor and mug; CLIP + CLAP + R(2+1)D for link; mug and link read the demo's
caption embeddings and the priors), and scores the best-on-val checkpoint on test twice: as
trained, and with every prior replaced by zeros (`predict --zero-priors`). A model that does
not read priors scores the same both ways; the gap of one that does shows how much it leans
on them. The numbers are of synthetic data and must never share a table with LLP numbers.
Figures: bench-results/demo_parsers.json and a markdown table on stdout.
"""
from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

from common import save

from annotation.demo import build_demo
from inference.data import labels_from_folder
from inference.metrics import KEYS, LEVELS
from inference.predict import predict
from inference.priors import compute_priors
from inference.tasks.avvp import AVVPTask, score
from inference.train import TrainConfig, train

MODELS = {"han": "vggish", "valor": "vggish", "mug": "vggish", "link": "clip_clap_r21d"}


def run_model(model: str, data: Path, work: Path) -> dict:
    feature_set = MODELS[model]
    text = {"text_audio": str(data / "text/clap_captions.npy"), "text_visual": str(data / "text/clip_captions.npy")}
    config = TrainConfig.for_model(model, model_config={"feature_set": feature_set,
                                                        **(text if model in ("mug", "link") else {})}, seed=1)
    labels = labels_from_folder(data, pseudo=model != "han")
    began = time.perf_counter()
    result = train(config, AVVPTask(labels, data, cache=True), work / model)
    seconds = time.perf_counter() - began
    test = labels.indices("test")
    reads_priors = model in ("mug", "link")  # han and valor read none (--zero-priors is refused for them)
    zero = (score(labels, test, predict(work / model, labels, data, "test", device="cpu", zero_priors=True)[:3])
            if reads_priors else None)
    return {"feature_set": feature_set, "epochs": config.epochs, "batch": config.batch_size, "best_epoch": result.best_epoch,
            "train_s": round(seconds, 1), "val": result.val, "test": result.test, "test_zero_priors": zero}


def table(results: dict) -> str:
    head = "| model | test fed | " + " | ".join(f"seg {k}" for k in KEYS) + " | " + " | ".join(f"ev {k}" for k in KEYS) + " |"
    lines = [head, "|" + "---|" * (2 + 2 * len(KEYS))]
    for model, r in results.items():
        for fed, scores in (("as trained" if r["test_zero_priors"] is None else "its priors", r["test"]), ("all-zero priors", r["test_zero_priors"])):
            if scores is None:
                continue
            cells = [f"{scores[level][k]:.2f}" for level in LEVELS for k in KEYS]
            lines.append(f"| {model} ({r['feature_set']}) | {fed} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=600)
    parser.add_argument("--models", default=",".join(MODELS))
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="avvp-bench-demo-"))
    try:
        data = build_demo(work / "demo", clips=args.clips, seed=0, videos=False).out_dir
        priors = compute_priors(data, labels_from_folder(data, pseudo=False), data / "text/clap_captions.npy",
                                data / "text/clip_captions.npy")
        results = {model: run_model(model, data, work) for model in args.models.split(",")}
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"SYNTHETIC demo ({args.clips} clips, seed 0), test split; priors: thresholds chosen on val "
          f"(mean per-class val F1 audio {100 * _mean(priors.val_f1['audio']):.1f}, "
          f"visual {100 * _mean(priors.val_f1['visual']):.1f})")
    print(table(results))
    for model, r in results.items():
        print(f"{model}: recipe {r['epochs']} epochs, batch {r['batch']}, best epoch {r['best_epoch']} on val, "
              f"{r['train_s']} s on CPU")
    save("demo_parsers", {"clips": args.clips, "synthetic": True, "prior_val_f1": priors.val_f1, "models": results})
    return 0


def _mean(values) -> float:
    kept = [v for v in values if v is not None]
    return sum(kept) / len(kept)


if __name__ == "__main__":
    sys.exit(main())
