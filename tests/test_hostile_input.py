"""Hostile or unlucky input: bad names, foreign databases, broken files, faults and concurrency.

Each test here failed before the fix it guards (issue 8): a file written outside its
folder, a foreign database changed by a read-only command, two runs mixed in one
folder, an export destroyed by a failed export, NaN features, crafted .npy headers,
checkpoint tracebacks, a half-saved epoch, concurrent first imports, truncated CSVs,
symlink loops taken as absent files, a PostgreSQL server that never answers, and a
read-only folder.
"""
from __future__ import annotations

import errno
import io
import json
import os
import pickle
import shutil
import socket
import sqlite3
import subprocess
import sys
import threading
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import numpy as np
import pytest
import torch

from annotation.db import open_database
from annotation.demo import build_demo
from annotation.errors import DataFileError
from annotation.files import child_path, folder_lock, recover_update
from annotation.importer import import_llp, load_pseudo
from annotation.llp_csv import iter_dense_csv, read_weak_csv
from inference.checkpoint import RunError, load_checkpoint
from inference.data import FEATURE_SETS, FeatureStore, feature_parts, labels_from_folder
from inference.tasks.avvp import AVVPTask
from inference.train import RunDirError, TrainConfig, train
from tests.llp_fixtures import make_llp_dir

REPO = Path(__file__).resolve().parents[1]
SMALL = {"hidden": 32, "dim_feedforward": 32}


def run_cli(argv: list[str]) -> tuple[int, str, str]:
    from app.cli import run_cli as cli

    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = cli(argv)
    return code, out.getvalue(), err.getvalue()


def cli_process(*args: str, prefix: tuple[str, ...] = (), **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([*prefix, sys.executable, "-m", "app.main", *args], capture_output=True, text=True,
                          cwd=REPO, **kwargs)


def assert_one_line_error(code: int, err: str, *fragments: str) -> str:
    """Exit 2 and the last stderr line is one 'error:' line holding every fragment (progress lines may precede)."""
    assert code == 2, err
    assert "Traceback" not in err and "weights_only=False" not in err, err
    line = err.strip().splitlines()[-1]
    assert line.startswith("error: "), err
    for fragment in fragments:
        assert fragment in line, (fragment, line)
    return line


def dump(url: str) -> dict:
    """Every row of every table, for 'the database is exactly as before'."""
    from sqlalchemy import MetaData, create_engine, select

    engine = create_engine(url)
    meta = MetaData()
    meta.reflect(engine)
    with engine.connect() as conn:
        state = {name: sorted(map(tuple, conn.execute(select(table)).all()), key=repr)
                 for name, table in meta.tables.items()}
    engine.dispose()
    return state


@pytest.fixture
def llp(tmp_path) -> Path:
    return make_llp_dir(tmp_path / "data")


@pytest.fixture
def db(tmp_path, llp) -> str:
    path = str(tmp_path / "store.sqlite")
    assert run_cli(["import", "llp", str(llp), "--db", path])[0] == 0
    return path


# ---------------------------------------------------------------- 1. names that would leave their folder

@pytest.mark.parametrize("name", [
    "../../../xx_0_10",          # 11 characters that climb out of the export folder
    "/tmp/evil01_0_10",          # an absolute path
    "abc/defghij_0_10",
    "abcdefghij\u00e9_0_10",     # non-ASCII
    "abcdefghijk_0_10\u0663",    # an Arabic-Indic digit
    "abcdefghijk_0_10 ",
])
def test_clip_names_outside_the_llp_grammar_are_refused_at_import(tmp_path, llp, name):
    (llp / "AVVP_train.csv").write_text(f"filename\tevent_labels\n{name}\tDog\n")
    db = f"sqlite:///{tmp_path / 's.sqlite'}"
    code, _, err = run_cli(["import", "llp", str(llp), "--db", db])
    assert_one_line_error(code, err, "AVVP_train.csv", "line 2", "bad clip filename")


@pytest.mark.parametrize("quoted", ['"abcde\tfghij_0_10"', '"abcdefghijk_0_10\n"'])
def test_csv_quoting_cannot_smuggle_a_tab_or_newline_into_a_name(tmp_path, llp, quoted):
    (llp / "AVVP_train.csv").write_text(f"filename\tevent_labels\n{quoted}\tDog\n")
    with pytest.raises(DataFileError, match="AVVP_train.csv, line 2"):
        import_llp(open_database(str(tmp_path / "s.sqlite")), llp)


def test_export_never_writes_outside_its_folder_even_for_bad_stored_ids(tmp_path, db):
    # a database written by an older version that checked less
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE clips SET video_id = '../../evil' WHERE filename = 'aaaaaaaaaaa_0_10'")
    out = tmp_path / "deep" / "out"
    code, _, err = run_cli(["export", "labels", "--out", str(out), "--db", db])
    assert_one_line_error(code, err, "aaaaaaaaaaa_0_10", "bad video id")
    assert not list(tmp_path.rglob("evil*"))
    assert not out.exists() or not any(out.iterdir())


@pytest.mark.parametrize("name", ["..", ".", "", "a/b", "../x.npy", "x\0.npy", "x\n.npy"])
def test_child_path_takes_plain_names_only(tmp_path, name):
    with pytest.raises(DataFileError, match="not a plain file name"):
        child_path(tmp_path, name)
    assert child_path(tmp_path, "abc-_DEF12.npy") == tmp_path / "abc-_DEF12.npy"


# ---------------------------------------------------------------- 2. foreign and newer databases

def test_read_only_commands_never_touch_a_foreign_database(tmp_path):
    foreign = tmp_path / "other_app.db"
    with sqlite3.connect(foreign) as conn:
        conn.execute("CREATE TABLE invoices (id INTEGER PRIMARY KEY, total REAL)")
    before = foreign.read_bytes()
    for argv in (["stats"], ["export", "labels", "--out", str(tmp_path / "o")],
                 ["import", "llp", str(make_llp_dir(tmp_path / "d"))]):
        code, _, err = run_cli([*argv, "--db", str(foreign)])
        assert_one_line_error(code, err, str(foreign), "not an AVVP Studio database", "invoices")
    assert foreign.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("other_app")) == ["other_app.db"]


def test_an_empty_file_is_not_given_a_schema_by_a_read_only_command(tmp_path):
    empty = tmp_path / "empty.db"
    empty.touch()
    code, _, err = run_cli(["stats", "--db", str(empty)])
    assert_one_line_error(code, err, "empty")
    assert empty.stat().st_size == 0 and len(list(tmp_path.iterdir())) == 1


def test_a_schema_newer_than_this_program_is_refused_in_one_line(tmp_path, db):
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE alembic_version SET version_num = '9999_from_the_future'")
    before = Path(db).read_bytes()
    result = cli_process("stats", "--db", db)
    assert_one_line_error(result.returncode, result.stderr, "9999_from_the_future", "newer AVVP Studio")
    assert len(result.stderr.strip().splitlines()) == 1
    code, _, err = run_cli(["import", "llp", str(tmp_path / "data"), "--db", db])
    assert_one_line_error(code, err, "9999_from_the_future")
    assert Path(db).read_bytes() == before


def test_read_only_commands_do_not_switch_the_journal_mode(tmp_path, llp):
    db = str(tmp_path / "journal.sqlite")
    assert cli_process("import", "llp", str(llp), "--db", db).returncode == 0  # no connection left open here
    with sqlite3.connect(db) as conn:
        conn.execute("PRAGMA journal_mode=DELETE")
    assert run_cli(["stats", "--db", db])[0] == 0
    assert run_cli(["export", "labels", "--out", str(tmp_path / "o"), "--db", db])[0] == 0
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "delete"


# ---------------------------------------------------------------- 3. one run per folder

@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("demo") / "data"
    build_demo(out, clips=14, seed=5, videos=False)
    return out


@pytest.fixture(scope="module")
def data(demo):
    labels = labels_from_folder(demo)
    return labels, AVVPTask(labels, demo, cache=True)


def small_config(**overrides) -> TrainConfig:
    return TrainConfig.for_model("han", model_config=dict(SMALL), batch_size=4, device="cpu",
                                 **{"epochs": 2, **overrides})


def test_a_run_folder_held_by_another_process_is_refused(data, tmp_path):
    labels, task = data
    run = tmp_path / "run"
    run.mkdir()
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from pathlib import Path; from annotation.files import folder_lock\n"
         f"with folder_lock(Path({str(run)!r}), 'training run'):\n    print('held', flush=True); time.sleep(60)"],
        cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(RunDirError, match="in use by another training run"):
            train(small_config(), task, run)
        assert list(run.iterdir()) == []  # nothing written beside the other run
    finally:
        holder.kill()
        holder.wait()
    assert not train(small_config(epochs=1), task, run).stopped  # the lock died with its holder


def test_two_cli_runs_into_one_folder_do_not_both_succeed(demo, tmp_path):
    out = tmp_path / "run"
    args = ["train", "--data", str(demo), "--model", "han", "--epochs", "2", "--device", "cpu", "--out", str(out)]
    runs = [subprocess.Popen([sys.executable, "-m", "app.main", *args, "--seed", str(seed)], cwd=REPO,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for seed in (1, 2)]
    results = [(p.wait(timeout=300), p.stderr.read()) for p in runs]
    assert sorted(code for code, _ in results) == [0, 2], results
    loser = next(err for code, err in results if code == 2)
    assert "in use by another training run" in loser or "already holds a training run" in loser
    winner_seed = 1 + [code for code, _ in results].index(0)
    config = json.loads((out / "config.json").read_text())["train"]
    assert config["seed"] == winner_seed
    assert load_checkpoint(out / "checkpoint.pt")["model"] == "han"
    assert json.loads((out / "metrics.json").read_text())["best_epoch"] >= 1


# ---------------------------------------------------------------- 4. a failed export keeps the previous one

def snapshot_tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_a_failed_export_leaves_the_previous_export_as_it_was(tmp_path, db, monkeypatch):
    from annotation import exporter

    out = tmp_path / "export"
    assert run_cli(["export", "labels", "--out", str(out), "--db", db])[0] == 0
    before = snapshot_tree(out)
    real, calls = exporter.write_pseudo_npy, []

    def disk_full_after_three(path, grid):
        calls.append(path)
        if len(calls) > 3:
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        real(path, grid)

    monkeypatch.setattr(exporter, "write_pseudo_npy", disk_full_after_three)
    code, _, err = run_cli(["export", "labels", "--out", str(out), "--source", "truth", "--db", db])
    assert_one_line_error(code, err, "No space left on device", "the previous export there is intact")
    assert snapshot_tree(out) == before and sorted(p.name for p in out.iterdir()) == sorted(
        ["AVVP_train.csv", "AVVP_val_pd.csv", "AVVP_test_pd.csv", "audio.csv", "visual.csv", "status.csv",
         "export.json", "CLAP", "CLIP"])


def test_an_export_killed_midway_leaves_the_previous_one_and_the_next_cleans_up(tmp_path, db):
    out = tmp_path / "export"
    assert run_cli(["export", "labels", "--out", str(out), "--db", db])[0] == 0
    before = snapshot_tree(out)
    slow = ("import sys, time\nfrom annotation import exporter\nreal = exporter.write_pseudo_npy\n"
            "def slow(path, grid):\n    print('writing', flush=True); real(path, grid); time.sleep(30)\n"
            "exporter.write_pseudo_npy = slow\nfrom app.main import main\n"
            f"sys.exit(main(['export', 'labels', '--out', {str(out)!r}, '--source', 'truth', '--db', {db!r}]))")
    proc = subprocess.Popen([sys.executable, "-c", slow], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            text=True)
    assert proc.stdout.readline().strip() == "writing"
    proc.kill()
    proc.wait()
    assert {k: v for k, v in snapshot_tree(out).items() if not k.startswith(".avvp-work")} == before
    assert (out / ".avvp-work").is_dir()  # the unfinished build is still there ...
    assert run_cli(["export", "labels", "--out", str(out), "--source", "truth", "--db", db])[0] == 0
    assert not (out / ".avvp-work").exists()  # ... until the next export removes it
    assert json.loads((out / "export.json").read_text())["source"] == "truth"


def test_an_update_killed_after_its_commit_is_finished_by_the_next_one(tmp_path):
    folder = tmp_path / "export"
    (folder / "CLIP" / "segment_pseudo_labels").mkdir(parents=True)
    (folder / "CLIP" / "segment_pseudo_labels" / "old.npy").write_text("old")
    (folder / "a.csv").write_text("old a")
    (folder / "b.csv").write_text("old b")  # owned, not written by the new version: removed
    (folder / "CLIP" / "features").mkdir()  # not owned: kept
    (folder / "notes.txt").write_text("mine")
    owned = ("a.csv", "b.csv", "CLIP/segment_pseudo_labels")
    work = folder / ".avvp-work"
    (work / "build" / "CLIP" / "segment_pseudo_labels").mkdir(parents=True)
    (work / "build" / "CLIP" / "segment_pseudo_labels" / "new.npy").write_text("new")
    (work / "build" / "a.csv").write_text("new a")
    (work / "commit.json").write_text(json.dumps({"owned": list(owned), "written": ["CLIP/segment_pseudo_labels",
                                                                                    "a.csv"]}))
    (work / "trash").mkdir()
    os.rename(folder / "a.csv", work / "trash" / "a.csv")  # killed in the middle of the swap
    recover_update(folder)
    assert (folder / "a.csv").read_text() == "new a" and not (folder / "b.csv").exists()
    assert [p.name for p in (folder / "CLIP" / "segment_pseudo_labels").iterdir()] == ["new.npy"]
    assert (folder / "notes.txt").read_text() == "mine" and (folder / "CLIP" / "features").is_dir()
    assert not work.exists()


def test_an_export_keeps_what_is_not_its_own_and_follows_a_link(tmp_path, db):
    real = tmp_path / "real"
    assert run_cli(["export", "labels", "--out", str(real), "--db", db])[0] == 0
    (real / "feats" / "vggish").mkdir(parents=True)
    (real / "feats" / "vggish" / "x.npy").write_bytes(b"features")
    (real / "CLIP" / "features").mkdir()
    (real / "notes.txt").write_text("mine")
    link = tmp_path / "link"
    link.symlink_to(real)
    assert run_cli(["export", "labels", "--out", str(link), "--source", "truth", "--db", db])[0] == 0
    assert link.is_symlink() and json.loads((real / "export.json").read_text())["source"] == "truth"
    assert (real / "feats" / "vggish" / "x.npy").read_bytes() == b"features"
    assert (real / "CLIP" / "features").is_dir() and (real / "notes.txt").read_text() == "mine"


# ---------------------------------------------------------------- 5. NaN features; 6. crafted headers

def copy_demo(demo: Path, dest: Path) -> Path:
    shutil.copytree(demo, dest)
    return dest


def test_non_finite_features_stop_training_before_the_first_epoch(demo, tmp_path):
    data = copy_demo(demo, tmp_path / "data")
    labels = labels_from_folder(data)
    victim = labels.video_ids[int(labels.indices("test")[-1])]  # reached only at the very end before the fix
    path = data / "feats" / "vggish" / f"{victim}.npy"
    array = np.load(path)
    array[3, 7] = np.nan
    np.save(path, array)
    run = tmp_path / "run"
    with pytest.raises(DataFileError, match=rf"{victim}\.npy.*1 non-finite value"):
        train(small_config(), AVVPTask(labels, data), run)
    assert not (run / "last.pt").exists() and not (run / "checkpoint.pt").exists()
    code, _, err = run_cli(["train", "--data", str(data), "--model", "han", "--epochs", "1", "--out",
                            str(tmp_path / "cli")])
    assert_one_line_error(code, err, f"{victim}.npy", "non-finite")


def test_prediction_refuses_infinite_features_instead_of_predicting_nothing(demo, data, tmp_path):
    labels, task = data
    run = tmp_path / "run"
    train(small_config(epochs=1), task, run)
    bad = copy_demo(demo, tmp_path / "data")
    victim = labels.video_ids[int(labels.indices("test")[0])]
    path = bad / "feats" / "res152" / f"{victim}.npy"
    array = np.load(path)
    array[0, 0] = np.inf
    np.save(path, array)
    code, _, err = run_cli(["predict", "--run", str(run), "--data", str(bad), "--out", str(tmp_path / "p")])
    assert_one_line_error(code, err, f"res152/{victim}.npy", "non-finite")


def write_header(path: Path, descr: str, shape: tuple, data: bytes = b"") -> None:
    header = repr({"descr": descr, "fortran_order": False, "shape": shape}).encode()
    header += b" " * (63 - (len(header) + 10) % 64) + b"\n"
    path.write_bytes(b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header + data)


def test_a_crafted_npy_header_is_refused_before_any_data_is_read(tmp_path):
    huge = tmp_path / "huge.npy"
    write_header(huge, "<i8", (10**12, 25))
    with pytest.raises(DataFileError, match=r"huge.npy, clip c: shape \(1000000000000, 25\); expected \(10, 25\)"):
        load_pseudo(huge, "c")
    objects = tmp_path / "objects.npy"
    write_header(objects, "|O", (10, 25), pickle.dumps([1]))
    with pytest.raises(DataFileError, match="Python objects"):
        load_pseudo(objects, "c")
    short = tmp_path / "short.npy"
    write_header(short, "<i8", (10, 25), b"\0" * 80)
    with pytest.raises(DataFileError, match="truncated"):
        load_pseudo(short, "c")


def test_a_crafted_feature_header_is_refused(demo, tmp_path):
    data = copy_demo(demo, tmp_path / "data")
    labels = labels_from_folder(data)
    write_header(data / "feats" / "vggish" / f"{labels.video_ids[0]}.npy", "<f4", (10**12, 128))
    with pytest.raises(DataFileError, match=r"shape \(1000000000000, 128\); expected finite float \(10, 128\)"):
        FeatureStore(data, feature_parts("vggish", FEATURE_SETS["vggish"].shapes)).load("audio", labels.video_ids[0])


# ---------------------------------------------------------------- 7. checkpoints and config.json

@pytest.fixture(scope="module")
def finished_run(data, tmp_path_factory) -> Path:
    labels, task = data
    run = tmp_path_factory.mktemp("run") / "han"
    train(small_config(epochs=1), task, run)
    return run


class Boom:
    def __reduce__(self):
        return (os.system, ("touch pwned",))


def predict_err(demo: Path, run: Path, tmp_path: Path) -> tuple[int, str]:
    code, _, err = run_cli(["predict", "--run", str(run), "--data", str(demo), "--out", str(tmp_path / "p")])
    return code, err


@pytest.mark.parametrize("damage,expected", [
    ("pickle", "holds a Python object (posix.system"),
    ("truncated", "truncated or corrupt"),
    ("empty", "empty file"),
    ("text", "refused"),
    ("missing_keys", "missing key(s) ['state_dict']"),
    ("wrong_type", "epoch is of type str; expected int"),
    ("negative_width", "option hidden is -4; expected 1..16384"),
    ("huge_width", "option hidden is 10000000; expected 1..16384"),
    ("heads_do_not_divide", "hidden 32 is not a multiple of nhead 3"),
    ("missing_weight", "missing key(s) head.fc_prob.bias"),
    ("text_not_2d", "plsim.text_audio has shape (512,)"),
    ("other_architecture", "do not fit the han model"),
    ("unknown_model", "unknown model 'nope'"),
    ("bad_model_config", "option hidden is 'abc'; expected int"),
    ("unknown_option", "has no option(s) ['hiden']"),
])
def test_checkpoint_refusals_are_one_line_naming_the_file(finished_run, demo, tmp_path, damage, expected):
    run = copy_demo(finished_run, tmp_path / "run")
    path = run / "checkpoint.pt"
    good = torch.load(path, weights_only=True)
    if damage == "pickle":
        torch.save({"x": Boom()}, path)
    elif damage == "truncated":
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    elif damage == "empty":
        path.write_bytes(b"")
    elif damage == "text":
        path.write_text("not a checkpoint\n")
    elif damage == "missing_keys":
        torch.save({k: v for k, v in good.items() if k != "state_dict"}, path)
    elif damage == "wrong_type":
        torch.save({**good, "epoch": "1"}, path)
    elif damage == "other_architecture":
        torch.save({**good, "model_config": {**good["model_config"], "hidden": 48}}, path)
    elif damage == "unknown_model":
        torch.save({**good, "model": "nope"}, path)
    elif damage == "bad_model_config":
        torch.save({**good, "model_config": {**good["model_config"], "hidden": "abc"}}, path)
    elif damage == "unknown_option":
        torch.save({**good, "model_config": {**good["model_config"], "hiden": 3}}, path)
    elif damage in ("negative_width", "huge_width", "heads_do_not_divide"):
        change = {"negative_width": {"hidden": -4}, "huge_width": {"hidden": 10**7}, "heads_do_not_divide": {"nhead": 3}}
        torch.save({**good, "model_config": {**good["model_config"], **change[damage]}}, path)
    elif damage == "missing_weight":
        torch.save({**good, "state_dict": {k: v for k, v in good["state_dict"].items() if k != "head.fc_prob.bias"}},
                   path)
    elif damage == "text_not_2d":
        state = {**good["state_dict"], "plsim.text_audio": torch.zeros(512)}
        torch.save({**good, "model": "link", "model_config": {"text_audio": "x.npy"}, "state_dict": state}, path)
    code, err = predict_err(demo, run, tmp_path)
    assert_one_line_error(code, err, str(path), expected)
    assert not Path("pwned").exists() and not (tmp_path / "pwned").exists()


@pytest.mark.parametrize("edit,expected", [
    (lambda c: c["train"].update(eval_batch_size="abc"), "option eval_batch_size is 'abc'; expected int"),
    (lambda c: c["train"].update(eval_batch_size=10**30), "eval_batch_size is 1000000000000000000000000000000"),
    (lambda c: c["train"].update(step_size=0), "step_size is 0; expected 1..100000"),
    (lambda c: c["train"].update(weight_decay=-1), "weight_decay is -1.0; expected 0.0..1000.0"),
    (lambda c: c["train"].update(seed=1e23), "option seed is 1e+23; expected int"),
    (lambda c: c["train"].update(betas=[0.9]), "option betas is [0.9]"),
    (lambda c: c["train"].update(device="tpu"), "device 'tpu'"),
    (lambda c: c.pop("train"), "no 'train' object"),
])
def test_config_json_types_are_checked(finished_run, demo, tmp_path, edit, expected):
    run = copy_demo(finished_run, tmp_path / "run")
    config = json.loads((run / "config.json").read_text())
    edit(config)
    (run / "config.json").write_text(json.dumps(config))
    code, err = predict_err(demo, run, tmp_path)
    assert_one_line_error(code, err, str(run / "config.json"), expected)


def test_config_json_that_is_not_json_names_its_line(finished_run, demo, tmp_path):
    run = copy_demo(finished_run, tmp_path / "run")
    (run / "config.json").write_text('{\n "train": {\n  "eval_batch_size": 64,\n }\n}\n')
    code, err = predict_err(demo, run, tmp_path)
    assert_one_line_error(code, err, "config.json, line 4", "not valid JSON")


def test_resuming_a_config_json_with_an_unknown_feature_set_is_one_line(finished_run, demo, tmp_path):
    run = copy_demo(finished_run, tmp_path / "run")
    config = json.loads((run / "config.json").read_text())
    config["train"]["model_config"]["feature_set"] = "nope"
    (run / "config.json").write_text(json.dumps(config))
    code, _, err = run_cli(["train", "--data", str(demo), "--out", str(run), "--resume", "--epochs", "2"])
    assert_one_line_error(code, err, "unknown feature set 'nope'")


def test_a_damaged_last_pt_refuses_resume_in_one_line(finished_run, demo, tmp_path):
    run = copy_demo(finished_run, tmp_path / "run")
    (run / "last.pt").write_bytes((run / "last.pt").read_bytes()[:100])
    code, _, err = run_cli(["train", "--data", str(demo), "--out", str(run), "--resume", "--epochs", "2"])
    assert_one_line_error(code, err, str(run / "last.pt"), "truncated or corrupt")


# ---------------------------------------------------------------- 8. a full disk while saving an epoch

def test_a_full_disk_while_saving_an_epoch_keeps_the_previous_set(data, tmp_path, monkeypatch):
    from inference import checkpoint

    labels, task = data
    real, writes = checkpoint._write, []

    def full_at_second_epoch(path, payload):
        writes.append(path.name)
        if path.name == "last.pt.part" and writes.count("last.pt.part") == 3:  # start, epoch 1, epoch 2
            path.write_bytes(payload[: len(payload) // 3])
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        real(path, payload)

    monkeypatch.setattr(checkpoint, "_write", full_at_second_epoch)
    run = tmp_path / "run"
    with pytest.raises(RunError, match="cannot save the checkpoints of epoch 2.*the disk is full") as info:
        train(small_config(epochs=3), task, run)
    assert "previous save are intact" in str(info.value)
    assert not list(run.glob("*.part"))
    last, best = load_checkpoint(run / "last.pt"), load_checkpoint(run / "checkpoint.pt")
    assert last["epoch"] == 1 and best["epoch"] == 1 == last["best_epoch"]
    assert not (run / "metrics.json").exists()
    monkeypatch.setattr(checkpoint, "_write", real)
    resumed = train(small_config(epochs=3), task, run, resume=True)
    assert not resumed.stopped and resumed.epochs_done == 3


# ---------------------------------------------------------------- 9. concurrent first imports

def test_concurrent_first_imports_into_a_new_database_all_succeed(any_db_url, llp):
    """SQLite file and PostgreSQL database alike: eight processes create and migrate it at once."""
    procs = [subprocess.Popen([sys.executable, "-m", "app.main", "import", "llp", str(llp), "--db", any_db_url],
                              cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(8)]
    results = [(p.wait(timeout=120), p.stderr.read()) for p in procs]
    assert all(code == 0 for code, _ in results), results
    code, out, _ = run_cli(["stats", "--db", any_db_url, "--json"])
    assert code == 0 and json.loads(out)["clips"] == {"train": 3, "val": 2, "test": 2}


# ---------------------------------------------------------------- 10. truncated CSVs; 11. broken entries

@pytest.mark.parametrize("content", [
    "filename\tevent_labels\naaaaaaaaaaa_0_10\tCheering",  # cut between two class names: still parses
    "filename\tevent_labels\naaaaaaaaaaa_0_10\tCheering,Acoustic_guitar\nbbbbbbbbbbb_0_1",
])
def test_a_csv_cut_short_is_refused(tmp_path, content):
    path = tmp_path / "AVVP_train.csv"
    path.write_text(content)
    with pytest.raises(DataFileError, match=r"AVVP_train.csv, line \d: the last line does not end with a newline"):
        read_weak_csv(path)


def test_dense_rows_stream_so_memory_does_not_grow_with_the_file(tmp_path):
    path = tmp_path / "dense.csv"
    path.write_text("filename\tonset\toffset\tevent_labels\nabcdefghijk_0_10\t0\t1\tDog\n" + "bad row\n" * 3)
    rows = iter_dense_csv(path)
    assert next(rows).filename == "abcdefghijk_0_10"  # the first row arrives before the rest is read
    with pytest.raises(DataFileError, match="line 3"):
        next(rows)


def test_a_self_looping_symlink_is_an_error_not_an_absent_file(tmp_path, llp):
    (llp / "AVVP_val_pd.csv").unlink()
    os.symlink("AVVP_val_pd.csv", llp / "AVVP_val_pd.csv")
    db = str(tmp_path / "s.sqlite")
    code, _, err = run_cli(["import", "llp", str(llp), "--db", db])
    assert_one_line_error(code, err, "AVVP_val_pd.csv", "cannot be read")
    with pytest.raises(DataFileError, match="cannot be read"):
        labels_from_folder(llp)


def test_a_dangling_pseudo_label_symlink_is_an_error(tmp_path, llp):
    link = llp / "CLIP/segment_pseudo_labels/ddddddddddd.npy"
    link.unlink()
    os.symlink(tmp_path / "gone.npy", link)
    with pytest.raises(DataFileError, match="ddddddddddd.npy: a symbolic link whose target does not exist"):
        import_llp(open_database(str(tmp_path / "s.sqlite")), llp)


# ---------------------------------------------------------------- 12. a server that never answers

def test_a_postgresql_server_that_never_answers_times_out(tmp_path):
    """Without a timeout in the URL the program's own applies (shortened here to 2 s)."""
    pytest.importorskip("psycopg")
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(4)
    accepted = []
    stop = threading.Event()

    def accept_and_stay_silent():
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                accepted.append(server.accept()[0])
            except OSError:
                pass

    thread = threading.Thread(target=accept_and_stay_silent, daemon=True)
    thread.start()
    port = server.getsockname()[1]
    code = ("import sys\nfrom annotation import db\ndb.CONNECT_TIMEOUT = 2\n"
            f"try:\n    db.open_database('postgresql+psycopg://nobody@127.0.0.1:{port}/x')\n"
            "except db.DatabaseError as exc:\n    print(exc)\n")
    try:
        result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
        assert "cannot open database" in result.stdout and "timeout" in result.stdout, result
        assert accepted
    finally:
        stop.set()
        thread.join()
        for conn in accepted:
            conn.close()
        server.close()


# ---------------------------------------------------------------- 13. a read-only folder

def test_read_only_commands_work_on_a_database_in_a_read_only_folder(tmp_path, llp):
    # root writes anywhere: as root the commands run without the capability that lets it
    prefix: tuple[str, ...] = ()
    if os.geteuid() == 0:
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            pytest.skip("running as root without setpriv (util-linux): a read-only folder cannot be made")
        drop = "-dac_override,-dac_read_search"
        prefix = (setpriv, f"--inh-caps={drop}", f"--bounding-set={drop}")
    folder = tmp_path / "ro"
    folder.mkdir()
    db = folder / "store.sqlite"
    assert cli_process("import", "llp", str(llp), "--db", str(db)).returncode == 0
    assert not (folder / "store.sqlite-wal").exists()  # a clean close checkpoints the WAL
    folder.chmod(0o555)
    try:
        probe = subprocess.run([*prefix, sys.executable, "-c", f"open({str(folder / 'x')!r}, 'w')"],
                               capture_output=True)
        assert probe.returncode != 0  # the folder is really read-only for these commands
        stats = cli_process("stats", "--db", str(db), "--json", prefix=prefix)
        assert stats.returncode == 0, stats.stderr
        assert json.loads(stats.stdout)["clips"] == {"train": 3, "val": 2, "test": 2}
        export = cli_process("export", "labels", "--out", str(tmp_path / "e"), "--db", str(db), prefix=prefix)
        assert export.returncode == 0, export.stderr
        assert sorted(os.listdir(folder)) == ["store.sqlite"]
    finally:
        folder.chmod(0o755)


# ---------------------------------------------------------------- 14. smaller ones

@pytest.mark.parametrize("onset", ["1_0", " 2", "\u0663", "+1", "0x1", "1.0"])
def test_eval_refuses_onsets_int_would_take(tmp_path, llp, onset):
    pred = tmp_path / "p.csv"
    pred.write_text(f"filename\tonset\toffset\tevent_labels\nfffffffffff_0_10\t{onset}\t5\tDog\n")
    code, _, err = run_cli(["eval", "--gt-audio", str(llp / "AVVP_eval_audio.csv"), "--gt-visual",
                            str(llp / "AVVP_eval_visual.csv"), "--pred-audio", str(pred), "--pred-visual",
                            str(pred), "--videos", str(llp / "AVVP_test_pd.csv")])
    assert_one_line_error(code, err, "p.csv, line 2", "onset", "not an integer second")


def test_eval_says_how_many_predicted_clips_it_did_not_score(tmp_path, llp):
    pred = tmp_path / "p.csv"
    pred.write_text("filename\tonset\toffset\tevent_labels\nfffffffffff_0_10\t0\t5\tDog\n"
                    "zzzzzzzzzzz_0_10\t0\t1\tDog\nzzzzzzzzzzz_0_10\t2\t3\tCat\nyyyyyyyyyyy_0_10\t0\t1\tDog\n")
    code, _, err = run_cli(["eval", "--gt-audio", str(llp / "AVVP_eval_audio.csv"), "--gt-visual",
                            str(llp / "AVVP_eval_visual.csv"), "--pred-audio", str(pred), "--pred-visual",
                            str(pred), "--videos", str(llp / "AVVP_test_pd.csv")])
    assert code == 0
    assert "6 prediction row(s) of 2 clip(s) outside" in err and "e.g. yyyyyyyyyyy_0_10" in err
    assert "1 of 2 videos have no prediction row" in err


def test_demo_help_names_the_folder_under_avvp_studio_home(tmp_path):
    env = {**os.environ, "AVVP_STUDIO_HOME": str(tmp_path / "home"), "COLUMNS": "1000"}  # no wrapped lines
    result = cli_process("demo", "--help", env=env)
    assert f"(default: {tmp_path / 'home' / 'demo'})" in result.stdout


@pytest.mark.parametrize("command", ["train", "predict"])
def test_an_unknown_device_is_a_usage_error_not_a_traceback(tmp_path, command):
    extra = ["--run", str(tmp_path)] if command == "predict" else ["--model", "han"]
    result = cli_process(command, "--data", str(tmp_path), "--out", str(tmp_path / "o"), "--device", "tpu", *extra)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].endswith("argument --device: device 'tpu'; expected auto, cpu, "
                                                           "cuda or cuda:N")


def test_training_options_from_json_are_type_checked():
    with pytest.raises(RunError, match="option eval_batch_size is 'abc'; expected int"):
        TrainConfig.from_dict({**TrainConfig().to_dict(), "eval_batch_size": "abc"})
    with pytest.raises(RunError, match="option lr is True"):
        TrainConfig.from_dict({**TrainConfig().to_dict(), "lr": True})
    assert TrainConfig.from_dict({**TrainConfig().to_dict(), "lr": 1}).lr == 1.0


def test_an_export_into_a_folder_another_export_writes_is_refused(tmp_path, db):
    out = tmp_path / "export"
    out.mkdir()
    with folder_lock(out, "export"):
        code, _, err = run_cli(["export", "labels", "--out", str(out), "--db", db])
    assert_one_line_error(code, err, "in use by another export")
    assert run_cli(["export", "labels", "--out", str(out), "--db", db])[0] == 0


def test_a_crafted_caption_embedding_header_is_refused(tmp_path):
    from inference.models.plsim import caption_embeddings

    path = tmp_path / "text.npy"
    write_header(path, "<f4", (25, 10**11))
    with pytest.raises(DataFileError, match=r"shape \(25, 100000000000\); expected caption embeddings"):
        caption_embeddings(path, 512, 0)


def test_crafted_header_bytes_never_escape_as_a_traceback(tmp_path):
    path = tmp_path / "x.npy"
    header = b"{'descr': '<i8', 'fortran_order': False, 'shape': (10, 25), }" + b" " * 10 + b"\n"
    path.write_bytes(b"\x93NUMPY\x01\x00" + (20).to_bytes(2, "little") + header)  # the length cuts the dict
    with pytest.raises(DataFileError, match="not a readable .npy array"):
        load_pseudo(path, "c")


@pytest.mark.parametrize("name", ["config.json", "checkpoint.pt"])
def test_a_looping_run_file_is_an_error_not_a_missing_run(finished_run, demo, tmp_path, name):
    run = copy_demo(finished_run, tmp_path / "run")
    (run / name).unlink()
    os.symlink(name, run / name)
    code, err = predict_err(demo, run, tmp_path)
    assert_one_line_error(code, err, name, "cannot be read")


def test_an_empty_schema_revision_is_refused(tmp_path, llp):
    db = str(tmp_path / "s.sqlite")
    assert cli_process("import", "llp", str(llp), "--db", db).returncode == 0
    with sqlite3.connect(db) as conn:
        conn.execute("DELETE FROM alembic_version")
    code, _, err = run_cli(["stats", "--db", db])
    assert_one_line_error(code, err, "no schema revision")


def test_eval_keeps_a_bounded_number_of_unscored_clip_names():
    from annotation.llp_csv import DenseRow, DenseTally, dense_grids

    tally = DenseTally(other_names=set(), name_limit=5)
    rows = (DenseRow(f"zzzzzzzz{i:03d}_0_10", 0, 0, 1, i) for i in range(50))
    dense_grids(rows, ["aaaaaaaaaaa_0_10"], tally)
    assert tally.other_rows == 50 and len(tally.other_names) == 5 and tally.names_capped
