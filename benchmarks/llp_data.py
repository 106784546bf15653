"""An LLP-sized data folder for the epoch benchmark: LLP's clips and truth, random inputs of the real shapes.

The weak and dense CSVs are the real LLP files when ../shared is present (10,000 train,
649 val, 1,200 test clips; `scale` < 1 keeps the first rows of each split), otherwise
synthetic names in LLP's split sizes. Every stream a model reads gets a random file of
its real shape and dtype (ResNet-152 alone is 7.7 GB at full size); pseudo-labels are
random within each clip's weak label, priors random, caption embeddings random. The
numbers such data scores mean nothing; what the benchmark measures is the time of a
real epoch: reading the files, batching, the model, the optimiser, and validation.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from common import SHARED_LLP

from annotation.importer import DENSE_FILES, PSEUDO_DIRS, WEAK_FILES
from annotation.llp_csv import read_weak_csv, write_weak_csv
from annotation.npyfile import npy_bytes
from inference.data import FEATURE_SETS, PRIOR_DIRS

LLP_SPLITS = {"train": 10_000, "val": 649, "test": 1_200}


def _weak_rows(scale: float) -> dict[str, dict[str, tuple[int, ...]]]:
    if (SHARED_LLP / "AVVP_train.csv").exists():
        out = {}
        for split, name in WEAK_FILES.items():
            found = read_weak_csv(SHARED_LLP / name)
            out[split] = {r.filename: r.labels for r in found[:max(1, round(len(found) * scale))]}
        return out
    rng = np.random.default_rng(1)
    alphabet = np.array(list("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_"))
    out = {}
    for split, count in LLP_SPLITS.items():
        names = ("".join(rng.choice(alphabet, 11)) + f"_{10 * i}_{10 * i + 10}" for i in range(max(1, round(count * scale))))
        out[split] = {name: tuple(sorted(rng.choice(25, rng.integers(1, 3), replace=False).tolist())) for name in names}
    return out


def build_llp_sized(root: Path, feature_sets: tuple[str, ...], scale: float = 1.0, seed: int = 0) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    rows = _weak_rows(scale)
    for split, name in WEAK_FILES.items():
        write_weak_csv(root / name, rows[split])
    for name in DENSE_FILES.values():
        if (SHARED_LLP / name).exists():
            shutil.copyfile(SHARED_LLP / name, root / name)
        else:  # synthetic truth: the weak label on a random stretch
            with open(root / name, "w", encoding="utf-8") as handle:
                handle.write("filename\tonset\toffset\tevent_labels\n")
                for split in ("val", "test"):
                    for filename, labels in rows[split].items():
                        handle.write(f"{filename}\t2\t7\t{['Speech', 'Car'][labels[0] % 2]}\n")
    rng = np.random.default_rng(seed)
    clips = {name: labels for split in rows.values() for name, labels in split.items()}
    folders = {sub: shape for fs in feature_sets for part, sub in FEATURE_SETS[fs].folders.items()
               for shape in [FEATURE_SETS[fs].shapes[part]]}
    for sub, shape in folders.items():
        (root / sub).mkdir(parents=True, exist_ok=True)
        for name in clips:
            (root / sub / f"{name[:11]}.npy").write_bytes(npy_bytes(rng.standard_normal(shape, dtype=np.float32)))
    for sub in (*PSEUDO_DIRS.values(), *PRIOR_DIRS.values()):
        (root / sub).mkdir(parents=True, exist_ok=True)
        for name, labels in clips.items():
            grid = (rng.random((10, 25)) < 0.1).astype(np.int64)
            if sub in PSEUDO_DIRS.values():  # pseudo-labels stay within the weak label
                mask = np.zeros(25, np.int64)
                mask[list(labels)] = 1
                grid = (rng.random((10, 25)) < 0.5).astype(np.int64) * mask
            (root / sub / f"{name[:11]}.npy").write_bytes(npy_bytes(grid))
    (root / "text").mkdir(exist_ok=True)
    np.save(root / "text/clap_captions.npy", rng.standard_normal((25, 512), dtype=np.float32))
    np.save(root / "text/clip_captions.npy", rng.standard_normal((25, 768), dtype=np.float32))
    return root
