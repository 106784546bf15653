"""Fuzzing import and eval with random mutations of real LLP CSV rows and demo .npy files.

Every mutated input must end in success or one clean `error:` line (exit 2), never a
traceback; a refused import leaves the database exactly as it was. The rows come
from ../shared/llp at test time (a sample, written to a temporary folder); the .npy
files from the synthetic demo. Seeds are fixed, so a failure names a reproducible case.
"""
from __future__ import annotations

import io
import re
import shutil
import sqlite3
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import numpy as np
import pytest

from annotation.demo import build_demo
from tests.test_hostile_input import dump

LLP_NAME = re.compile(r"[A-Za-z0-9_-]{11}_[0-9]+(\.[0-9]+)?_[0-9]+(\.[0-9]+)?")  # the grammar, restated
TOKENS = [b"\t", b"\n", b"\r\n", b"\r", b",", b'"', b"..", b"/", b"\x00", b"\xff\xfe", b"\xc3", b"1_0", b" 2",
          "\u0663".encode(), b"-1", b"99", b"10", b"Dog", b"Dog,", b",,", b"Speech,Speech", b"nan", b"1e309",
          b"_", b"aaaaaaaaaaa_0_10", b"../../x", b"x" * 300, b"\x93NUMPY", b"'shape': (1000000000000,",
          b"'descr': '|O'", b"<f8", b"True"]


def mutate(data: bytes, rng: np.random.Generator, header_bias: bool = False) -> bytes:
    """One to three random edits: byte flips, token insertions, deletions, truncation, line shuffles."""
    for _ in range(int(rng.integers(1, 4))):
        limit = min(len(data), 128) if header_bias and rng.random() < 0.7 else len(data)
        pos = int(rng.integers(0, limit + 1))
        op = int(rng.integers(0, 7))
        if op == 0 and data:
            pos = min(pos, len(data) - 1)
            data = data[:pos] + bytes([int(rng.integers(0, 256))]) + data[pos + 1:]
        elif op == 1:
            data = data[:pos] + TOKENS[int(rng.integers(len(TOKENS)))] + data[pos:]
        elif op == 2:
            data = data[:pos] + data[pos + int(rng.integers(1, 40)):]
        elif op == 3:
            data = data[:pos]
        elif op in (4, 5):
            lines = data.split(b"\n")
            i, j = (int(x) for x in rng.integers(0, len(lines), 2))
            if op == 4:
                lines.insert(j, lines[i])
            else:
                lines[i], lines[j] = lines[j], lines[i]
            data = b"\n".join(lines)
        else:
            fields = data.split(b"\t")
            k = int(rng.integers(len(fields)))
            fields[k] = TOKENS[int(rng.integers(len(TOKENS)))]
            data = b"\t".join(fields)
    return data


def run_cli(argv: list[str]) -> tuple[int, str]:
    from app.cli import run_cli as cli

    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = cli(argv)
    return code, err.getvalue()


def check_outcome(code: int, err: str, case: str) -> None:
    assert code in (0, 2), (case, code, err)
    if code == 2:
        lines = err.strip().splitlines()
        assert lines and lines[-1].startswith("error: ") and "Traceback" not in err, (case, err)


def sample_llp(llp_dir: Path, dest: Path, demo: Path) -> Path:
    """A small LLP-layout folder: the first rows of the real CSVs, their dense rows, demo pseudo-labels."""
    dest.mkdir(parents=True)
    kept = set()
    for name, count in (("AVVP_train.csv", 30), ("AVVP_val_pd.csv", 15), ("AVVP_test_pd.csv", 15)):
        lines = (llp_dir / name).read_bytes().split(b"\n")[: count + 1]
        (dest / name).write_bytes(b"\n".join(lines) + b"\n")
        kept.update(line.split(b"\t")[0] for line in lines[1:])
    for name in ("AVVP_eval_audio.csv", "AVVP_eval_visual.csv"):
        lines = (llp_dir / name).read_bytes().split(b"\n")
        rows = [line for line in lines[1:] if line.split(b"\t")[0] in kept]
        (dest / name).write_bytes(b"\n".join([lines[0], *rows]) + b"\n")
    demo_npy = sorted((demo / "CLIP/segment_pseudo_labels").glob("*.npy"))
    for sub in ("CLIP/segment_pseudo_labels", "CLAP/segment_pseudo_labels"):
        folder = dest / sub
        folder.mkdir(parents=True)
        for i, name in enumerate(sorted(kept)):
            shutil.copy(demo_npy[i % len(demo_npy)], folder / f"{name[:11].decode()}.npy")
    return dest


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("fuzzdemo") / "data"
    build_demo(out, clips=14, seed=3, videos=False)
    return out


def test_import_survives_random_mutations(llp_dir, demo, tmp_path):
    base = sample_llp(llp_dir, tmp_path / "base", demo)
    base_db = tmp_path / "base.sqlite"
    assert run_cli(["import", "llp", str(base), "--db", str(base_db)])[0] == 0
    before = dump(f"sqlite:///{base_db}")
    targets = [p for p in sorted(base.rglob("*")) if p.is_file()]
    csvs = [p for p in targets if p.suffix == ".csv"]
    npys = [p for p in targets if p.suffix == ".npy"]
    rng = np.random.default_rng(20261202)
    refused = 0
    for case in range(160):
        work = tmp_path / f"case{case}"
        shutil.copytree(base, work)
        victim = (csvs if case % 3 else npys)[int(rng.integers(len(csvs if case % 3 else npys)))]
        target = work / victim.relative_to(base)
        target.write_bytes(mutate(target.read_bytes(), rng, header_bias=victim.suffix == ".npy"))
        db = tmp_path / f"case{case}.sqlite"
        with sqlite3.connect(base_db) as src, sqlite3.connect(db) as dst:  # WAL content included
            src.backup(dst)
        code, err = run_cli(["import", "llp", str(work), "--db", str(db)])
        label = f"case {case}: {target.relative_to(work)}"
        check_outcome(code, err, label)
        if code == 2:
            refused += 1
            assert dump(f"sqlite:///{db}") == before, label
        else:  # whatever got in is a name that can safely become a path
            with sqlite3.connect(db) as conn:
                for filename, video_id in conn.execute("SELECT filename, video_id FROM clips"):
                    assert LLP_NAME.fullmatch(filename) and filename[:11] == video_id, (label, filename)
        shutil.rmtree(work)
        db.unlink()
    assert 40 < refused < 160  # the mutations exercise both outcomes


def test_eval_survives_random_mutations(llp_dir, demo, tmp_path):
    base = sample_llp(llp_dir, tmp_path / "base", demo)
    names = ("AVVP_eval_audio.csv", "AVVP_eval_visual.csv", "AVVP_test_pd.csv")
    rng = np.random.default_rng(7)
    refused = 0
    for case in range(160):
        work = tmp_path / f"case{case}"
        work.mkdir()
        files = {role: work / f"{role}.csv" for role in ("gt_a", "gt_v", "pred_a", "pred_v", "videos")}
        sources = dict(zip(files, (names[0], names[1], names[0], names[1], names[2])))
        for role, path in files.items():
            shutil.copy(base / sources[role], path)
        victim = list(files)[int(rng.integers(len(files)))]
        files[victim].write_bytes(mutate(files[victim].read_bytes(), rng))
        code, err = run_cli(["eval", "--gt-audio", str(files["gt_a"]), "--gt-visual", str(files["gt_v"]),
                             "--pred-audio", str(files["pred_a"]), "--pred-visual", str(files["pred_v"]),
                             "--videos", str(files["videos"]), "--json"])
        check_outcome(code, err, f"case {case}: {victim}")
        refused += code == 2
        shutil.rmtree(work)
    assert 40 < refused < 160
