"""The CLI as a user meets it: one clear line per error, exit 2, nothing half-done."""
from __future__ import annotations

import subprocess
import sys

import pytest

from app.cli import run_cli
from tests.llp_fixtures import make_llp_dir


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "app.main", *args], capture_output=True, text=True)


@pytest.mark.parametrize("args,expected", [
    (["stats", "--db", "foo://bar"], "cannot open database foo://bar"),
    (["stats", "--db", "/nonexistent/typo.db"], "no database at /nonexistent/typo.db"),
    (["import", "llp", "/nonexistent-folder", "--db", "sqlite://"], "not a directory"),
])
def test_errors_are_one_line(args, expected):
    result = cli(*args)
    assert result.returncode == 2, result.stderr
    assert expected in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_export_to_an_unwritable_place_and_absent_source(tmp_path, capsys):
    db = str(tmp_path / "d.sqlite")
    assert run_cli(["import", "llp", str(make_llp_dir(tmp_path / "data")), "--db", db]) == 0
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert run_cli(["export", "labels", "--out", str(blocker / "sub"), "--db", db]) == 2
    assert run_cli(["export", "labels", "--out", str(tmp_path / "o"), "--source", "prediction:x", "--db", db]) == 2
    err = capsys.readouterr().err
    assert "Not a directory" in err and "available: best, pseudo, truth" in err


def test_stats_json_and_version(tmp_path, capsys):
    import json

    db = str(tmp_path / "d.sqlite")
    run_cli(["import", "llp", str(make_llp_dir(tmp_path / "data")), "--db", db])
    capsys.readouterr()
    assert run_cli(["stats", "--db", db, "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["clips"] == {"train": 3, "val": 2, "test": 2}
    assert stats["empty_visual_pseudo"] == {"train": 1, "val": 0, "test": 0}
    assert stats["review"]["pending"] == 7
    assert cli("--version").stdout.startswith("avvp-studio ")
    for lead in (["--db", db], [f"--db={db}"]):  # the database option before the command reads as global
        assert run_cli([*lead, "stats", "--json"]) == 0
        assert json.loads(capsys.readouterr().out) == stats
    assert run_cli(["--db", db, "import", "llp", str(tmp_path / "data")]) == 0  # reaches the nested command


def test_routing_of_the_command_line():
    from app.cli import _route

    commands = {"stats", "gui", "import"}
    assert _route([], commands) == ["gui"]
    assert _route(["--db", "x.sqlite"], commands) == ["gui", "--db", "x.sqlite"]  # the window on that database
    assert _route(["--db", "x.sqlite", "stats", "--json"], commands) == ["stats", "--json", "--db", "x.sqlite"]
    assert _route(["--db=x.sqlite", "import", "llp", "D"], commands) == ["import", "llp", "D", "--db=x.sqlite"]
    assert _route(["--version"], commands) == ["--version"]
    assert _route(["stats", "--db", "y"], commands) == ["stats", "--db", "y"]


def test_eval_warns_when_predictions_name_no_video(tmp_path, capsys):
    data = make_llp_dir(tmp_path / "data")
    pred = tmp_path / "p.csv"
    pred.write_text("filename\tonset\toffset\tevent_labels\nzzzzzzzzzzz_0_10\t0\t1\tDog\n")
    code = run_cli(["eval", "--gt-audio", str(data / "AVVP_eval_audio.csv"), "--gt-visual",
                    str(data / "AVVP_eval_visual.csv"), "--pred-audio", str(pred), "--pred-visual", str(pred),
                    "--videos", str(data / "AVVP_test_pd.csv")])
    assert code == 0 and "no prediction row names any of the 2 videos" in capsys.readouterr().err
