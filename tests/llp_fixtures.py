"""Small LLP-layout folders built by tests (never copies of ../shared)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

WEAK = {
    "train": [("aaaaaaaaaaa_0_10", "Speech,Dog"), ("b_b-b_b-b_b_5_15", "Car"), ("ccccccccccc_1.5_11.5", "Cat,Singing")],
    "val": [("ddddddddddd_0_10", "Speech"), ("eeeeeeeeeee_30_40", "Banjo,Clapping")],
    "test": [("fffffffffff_0_10", "Dog"), ("ggggggggggg_20_30", "Violin_fiddle,Cello")],
}
DENSE_AUDIO = [
    ("ddddddddddd_0_10", 0, 4, "Speech"), ("ddddddddddd_0_10", 4, 6, "Speech"),  # touching
    ("eeeeeeeeeee_30_40", 9, 0, "Banjo"),  # degenerate: sets nothing
    ("eeeeeeeeeee_30_40", 2, 5, "Clapping"), ("eeeeeeeeeee_30_40", 2, 5, "Clapping"),  # duplicate
    ("fffffffffff_0_10", 0, 10, "Dog"), ("fffffffffff_0_10", 3, 4, "Cat"),  # class outside weak label
    ("orphan00000_1_11", 0, 3, "Dog"),  # orphan
]
DENSE_VISUAL = [("ddddddddddd_0_10", 1, 3, "Speech"), ("ggggggggggg_20_30", 0, 10, "Cello")]

WEAK_FILES = {"train": "AVVP_train.csv", "val": "AVVP_val_pd.csv", "test": "AVVP_test_pd.csv"}


def write_lines(path: Path, header: str, rows) -> None:
    path.write_text(header + "\n" + "".join("\t".join(map(str, r)) + "\n" for r in rows))


def make_llp_dir(root: Path, pseudo: bool = True, seed: int = 0) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for split, rows in WEAK.items():
        write_lines(root / WEAK_FILES[split], "filename\tevent_labels", rows)
    write_lines(root / "AVVP_eval_audio.csv", "filename\tonset\toffset\tevent_labels", DENSE_AUDIO)
    write_lines(root / "AVVP_eval_visual.csv", "filename\tonset\toffset\tevent_labels", DENSE_VISUAL)
    if pseudo:
        rng = np.random.default_rng(seed)
        for sub in ("CLIP/segment_pseudo_labels", "CLAP/segment_pseudo_labels"):
            folder = root / sub
            folder.mkdir(parents=True, exist_ok=True)
            for rows in WEAK.values():
                for filename, _ in rows:
                    arr = (rng.random((10, 25)) < 0.1).astype(np.int64)
                    np.save(folder / f"{filename[:11]}.npy", arr)
        # an empty visual pseudo-label for one train clip
        np.save(root / "CLIP/segment_pseudo_labels/aaaaaaaaaaa.npy", np.zeros((10, 25), dtype=np.int64))
    return root
