"""The training panel trains audio-visual segmentation too: the task choice (only where the database holds
AVS clips), the segmentation form as one `avvp-studio avs train ... --db --events` command, its curves
(val mIoU and F-score), a real tiny run in a subprocess that stores its masks and records itself, and
"Retrain with my corrections" reading the accepted masks."""
from __future__ import annotations

from pathlib import Path

import pytest

from annotation.avs_demo import build_avs_demo
from annotation.avs_store import avs_clips, decide, import_avsbench, load_masks, mask_sources
from annotation.db import open_database
from annotation.importer import import_llp
from annotation.runs import finish_run, get_run, list_runs, start_run
from tests.llp_fixtures import make_llp_dir
from ui.training_panel import AVS_BACKBONES, AVS_MODEL_NAMES, AVS_SUBSETS, TrainingPanel
from ui.training_runner import AVSTrainRequest, TrainRequest


@pytest.fixture(scope="module")
def avs_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("avs") / "demo"
    build_avs_demo(root, "s4", clips=8, size=32)
    return root


@pytest.fixture
def avs_db(tmp_path, avs_root) -> str:
    url = str(tmp_path / "avs.sqlite")
    import_avsbench(open_database(url), avs_root, "s4")
    return url


@pytest.fixture
def panel(qtbot, tmp_path, avs_db) -> TrainingPanel:
    widget = TrainingPanel(tmp_path / "runs")
    qtbot.addWidget(widget)
    widget.set_database(open_database(avs_db), avs_db, "ann", "")
    return widget


def tiny(panel: TrainingPanel, name: str, predict=("val", "test")) -> None:
    panel.task.setCurrentIndex(panel.task.findData("avs"))
    panel.avs_size.setCurrentIndex(panel.avs_size.findData("tiny"))
    panel.image_size.setValue(32)
    panel.epochs.setValue(1)
    panel.device.setCurrentIndex(panel.device.findData("cpu"))
    for split, box in panel.predict.items():
        box.setChecked(split in predict)
    panel.name.setText(name)


def test_the_names_the_panel_offers_are_the_registry_s():
    from annotation.avsbench import SUBSETS
    from inference.models import model_names
    from inference.models.avs_mamba import BACKBONES

    assert list(AVS_MODEL_NAMES) == model_names("avs")
    assert sorted(AVS_BACKBONES) == sorted(BACKBONES) and AVS_BACKBONES[0] == "pvt_v2_b5"  # the recipe's first
    assert tuple(AVS_SUBSETS) == tuple(SUBSETS)


def test_the_task_choice_is_shown_only_where_the_database_holds_avs_clips(qtbot, tmp_path, avs_root):
    llp = str(tmp_path / "llp.sqlite")
    folder = make_llp_dir(tmp_path / "llp")
    import_llp(open_database(llp), folder)
    widget = TrainingPanel(tmp_path / "runs")
    qtbot.addWidget(widget)
    widget.set_database(open_database(llp), llp, "ann", str(folder))
    assert widget.task_choice() == "avvp" and not widget.form.isRowVisible(0)
    assert widget.form.isRowVisible(widget.feature_set) and not widget.form.isRowVisible(widget.subset)
    assert type(widget.request()) is TrainRequest and widget.request().argv("PY")[3] == "train"
    import_avsbench(open_database(llp), avs_root, "s4")  # the same database gets AVS clips: the choice appears
    widget.refresh_tasks()
    assert widget.form.isRowVisible(0) and widget.task_choice() == "avvp"  # a parsing project stays parsing
    assert widget.subset.currentData() == "s4" and "8 clips" in widget.subset.currentText()
    widget.task.setCurrentIndex(widget.task.findData("avs"))
    assert widget.form.isRowVisible(widget.avs_model) and not widget.form.isRowVisible(widget.feature_set)
    assert not widget.form.isRowVisible(widget.cmrc) and widget.form.isRowVisible(widget.epochs)
    widget.task.setCurrentIndex(widget.task.findData("avvp"))
    assert widget.form.isRowVisible(widget.model) and not widget.form.isRowVisible(widget.subset)


def test_the_segmentation_form_becomes_one_avs_train_command(panel, avs_db, avs_root, tmp_path):
    assert panel.task_choice() == "avs"  # AVS clips and no parsing project: segmentation is chosen
    subset_folder = str((avs_root / "Single-source").resolve())
    assert panel.avs_folder.text() == subset_folder  # the subset's folder, from the database
    backbone, vggish = tmp_path / "pvt.pth", tmp_path / "vggish.pth"
    backbone.write_bytes(b"x")
    vggish.write_bytes(b"x")
    tiny(panel, "seg", predict=("test", "val"))
    panel.backbone.setCurrentIndex(panel.backbone.findData("resnet50"))
    panel.backbone_weights.setText(str(backbone))
    panel.vggish_weights.setText(str(vggish))
    panel.seed.setValue(5)
    request = panel.request()
    assert isinstance(request, AVSTrainRequest) and request.task == "avs"
    argv = request.argv(python="PY")
    assert argv[:5] == ["PY", "-m", "app.main", "avs", "train"] and argv[-2:] == ["--device", "cpu"]
    text = " ".join(argv)
    for part in (f"--data {subset_folder}", "--subset s4", f"--db {avs_db}", "--name seg",
                 f"--out {panel.runs_root / 'seg'}", "--events", "--model avs_mamba", "--config tiny",
                 "--backbone resnet50", f"--backbone-weights {backbone.resolve()}",
                 f"--vggish-weights {vggish.resolve()}", "--image-size 32", "--epochs 1", "--seed 5",
                 "--annotator ann", "--predict val,test"):
        assert part in text, part
    for llp_only in ("--feature-set", "--cmrc", "--text-audio", "--random-text"):
        assert llp_only not in text
    assert "--lr" not in text  # pretrained backbone weights given: the recipe's learning rate
    panel.backbone_weights.setText("")
    assert "--lr 0.001" in " ".join(panel.request().argv("PY"))  # tiny from random weights
    panel.backbone_weights.setText(str(backbone))
    # the audio-blind baseline has no VGGish: its file is not passed (the field is off)
    panel.avs_model.setCurrentIndex(panel.avs_model.findData("avs_visual_only"))
    assert not panel.vggish_weights.isEnabled() and "--vggish-weights" not in panel.request().argv("PY")
    panel.avs_model.setCurrentIndex(panel.avs_model.findData("avs_mamba"))
    panel.image_size.setValue(0)
    assert "--image-size" not in panel.request().argv("PY")  # the model's own
    # a server URL's password never reaches the command line (the runner hands it over as PGPASSWORD)
    server = AVSTrainRequest(data="D", db="postgresql+psycopg://ann:s3cret@host/studio", out="O", name="n",
                             model="avs_mamba", subset="ms3")
    bare, password = server.without_password()
    assert password == "s3cret" and isinstance(bare, AVSTrainRequest)
    assert "s3cret" not in " ".join(bare.argv("PY")) and "--subset ms3" in " ".join(bare.argv("PY"))
    assert "postgresql+psycopg://ann@host/studio" in bare.argv("PY")


def test_bad_segmentation_input_is_refused_with_a_clear_message(panel, tmp_path):
    tiny(panel, "bad")
    panel.backbone_weights.setText(str(tmp_path / "missing.pth"))
    with pytest.raises(ValueError, match="backbone weights file .*missing.pth: no such file"):
        panel.request()
    panel.backbone_weights.setText("")
    good = panel.avs_folder.text()
    panel.avs_folder.setText(str(tmp_path))
    with pytest.raises(ValueError, match="not an AVSBench S4 folder"):
        panel.request()
    panel.avs_folder.setText(str(tmp_path / "nowhere"))
    with pytest.raises(ValueError, match="no such folder"):
        panel.request()
    panel.avs_folder.setText("")
    with pytest.raises(ValueError, match="data folder"):
        panel.request()
    panel.avs_folder.setText(good)
    panel.image_size.setValue(8)
    with pytest.raises(ValueError, match="at least 16"):
        panel.request()
    panel.image_size.setValue(32)
    panel.device.addItem("all 2 GPUs (torchrun DDP)", "all:2")
    panel.device.setCurrentIndex(panel.device.findData("all:2"))
    with pytest.raises(ValueError, match="one device"):
        panel.request()
    assert panel.start_training() is False and "one device" in panel.status.text()  # shown, nothing started
    assert not panel.runner.running() and panel.runner.process is None
    panel.device.setCurrentIndex(panel.device.findData("cpu"))
    panel.avs_size.setCurrentIndex(panel.avs_size.findData("full"))
    with pytest.raises(ValueError, match="full model on the CPU needs more than 16 GB"):
        panel.request()
    panel.avs_size.setCurrentIndex(panel.avs_size.findData("tiny"))
    panel.name.setText("bad name!")
    with pytest.raises(ValueError, match="run name"):
        panel.request()


def test_segmentation_events_draw_miou_and_fscore_and_never_read_parsing_keys(panel):
    """Events as the command writes them (no 'segment' anywhere): the val plot has the two AVS curves, the
    status says mIoU; a parsing run afterwards gets its ten curves back."""
    tiny(panel, "fed")
    panel.current = panel.request()
    panel._show_curves("avs")
    panel._on_event({"event": "start", "steps_per_epoch": 3, "epochs": 2, "device": "cpu", "model": "avs_mamba",
                     "clips": {"train": 5}})
    for epoch, (miou, fscore) in enumerate(((10.0, 20.0), (41.23, 52.5)), start=1):
        panel._on_event({"event": "step", "epoch": epoch, "step": 1, "steps": 3, "loss": 1.0, "eta": 1, "t": epoch})
        panel._on_event({"event": "epoch", "epoch": epoch, "train_loss": 1.0, "val": {
            "miou": miou, "fscore": fscore, "group_videos": 1, "videos": 2, "frames": 10, "batches": 2}, "best": True})
    panel._redraw()
    assert list(panel.avs_curves["miou"].getData()[1]) == [10.0, 41.23]
    assert list(panel.avs_curves["fscore"].getData()[0]) == [1, 2]
    assert not any(c.isVisible() for c in panel.val_curves.values())
    assert [label.text for _, label in panel.val_legend.items] == ["mIoU", "F-score"]
    assert "val mIoU 41.23" in panel.status.text()
    panel._on_event({"event": "end", "best_epoch": 2, "stopped": False, "val": {"miou": 41.23, "fscore": 52.5},
                     "test": {"miou": 41.23, "fscore": 50.0, "group_videos": 1, "videos": 1, "frames": 5}})
    assert "best epoch 2, test mIoU 41.2, F-score 50.0" in panel.status.text()
    panel._show_curves("avvp")
    assert len(panel.val_legend.items) == 5 and not any(c.isVisible() for c in panel.avs_curves.values())


def test_a_segmentation_run_trains_in_a_subprocess_stores_masks_and_retrains_with_corrections(qtbot, panel, avs_db):
    engine = open_database(avs_db)
    events: list[dict] = []
    panel.runner.events.connect(events.extend)
    finished, stored = [], []
    panel.run_finished.connect(lambda status, source: finished.append((status, source)))
    panel.masks_stored.connect(lambda subset, source: stored.append((subset, source)))
    tiny(panel, "seg1", predict=("val", "test", "train"))
    with qtbot.waitSignal(panel.runner.finished, timeout=180_000) as blocker:
        assert panel.start_training()
    status, code, tail = blocker.args
    assert (status, code) == ("finished", 0), tail
    kinds = [e["event"] for e in events]
    assert kinds[0] == "start" and kinds[-1] == "done" and kinds.count("epoch") == 1 and "end" in kinds
    assert kinds.count("predicted") == 3
    panel._redraw()
    assert len(panel.avs_curves["miou"].getData()[0]) == 1 and len(panel.avs_curves["fscore"].getData()[0]) == 1
    steps, losses = panel.loss_curve.getOriginalDataset()
    assert len(steps) == kinds.count("step") > 0 and all(loss == loss for loss in losses)
    assert "seg1 finished" in panel.status.text() and "masks of val, test, train" in panel.status.text()
    assert stored == [("s4", "prediction:seg1")] and finished == [("finished", "prediction:seg1")]
    run = get_run(engine, "seg1")
    assert (run.task, run.model, run.status, run.started_by) == ("avs", "avs_mamba", "finished", "ann")
    assert set(run.metrics["test"]) >= {"miou", "fscore"}
    assert "prediction:seg1" in mask_sources(engine, "s4")
    val = avs_clips(engine, "s4", "val")[0]
    assert sorted(load_masks(engine, val.id)["prediction:seg1"]) == list(range(val.frames))

    # a correction: a predicted mask accepted on a train frame without ground truth
    train = next(r for r in avs_clips(engine, "s4", "train") if r.mask_paths[1] is None)
    decide(engine, train.id, 1, "accepted", "prediction:seg1", 0, "ann")
    assert panel.retrain_button.isEnabled() and not panel.resume_button.isEnabled()
    again = panel.retrain_request()
    assert isinstance(again, AVSTrainRequest) and again.subset == "s4" and again.name == "seg1-r2"
    assert again.extra == ["--like", run.run_dir] and again.data == run.data_dir
    events.clear()
    with qtbot.waitSignal(panel.runner.finished, timeout=180_000) as blocker:
        assert panel.retrain_last()
        qtbot.waitUntil(lambda: any(e["event"] == "start" for e in events), timeout=60_000)
        panel.cancel()  # what it reads shows at the start; the epoch is not waited for
    assert blocker.args[0] == "stopped", blocker.args[2]
    start = next(e for e in events if e["event"] == "start")
    assert any("1 accepted predicted masks of 1 train clips" in note for note in start["notes"]), start["notes"]
    assert [r.name for r in list_runs(engine)][:2] == ["seg1-r2", "seg1"]
    retrained = get_run(engine, "seg1-r2")
    assert (retrained.task, retrained.status) == ("avs", "stopped")
    assert panel.resume_button.isEnabled() and not panel.retrain_button.isEnabled()
    resume = panel.resume_request()
    assert isinstance(resume, AVSTrainRequest) and resume.resume and resume.out == retrained.run_dir


def test_resume_continues_the_last_stopped_segmentation_run_not_a_parsing_one(panel, avs_db, avs_root):
    engine = open_database(avs_db)
    folder = str((avs_root / "Single-source").resolve())
    start_run(engine, "seg-stopped", "avs_mamba", "avs", {"task_options": {"subset": "s4"}}, folder, "/runs/seg-stopped",
              "cpu", "ann")
    finish_run(engine, "seg-stopped", "stopped", "cancelled")
    start_run(engine, "llp-later", "valor", "avvp", {}, "/llp", "/runs/llp-later", "cpu", "ann")
    finish_run(engine, "llp-later", "finished")
    panel._set_running(False)
    assert panel.task_choice() == "avs"
    assert panel.resume_button.isEnabled() and not panel.retrain_button.isEnabled()
    argv = panel.resume_request().argv("PY")
    text = " ".join(argv)
    assert argv[3:5] == ["avs", "train"] and "--resume" in argv and "--out /runs/seg-stopped" in text
    assert "--subset s4" in text and "--name seg-stopped" in text and f"--data {folder}" in text
    panel.task.setCurrentIndex(panel.task.findData("avvp"))  # parsing: its own last run (finished: retrain)
    assert not panel.resume_button.isEnabled() and panel.retrain_button.isEnabled()
    assert panel.retrain_request().argv("PY")[3] == "train"
