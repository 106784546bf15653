"""EAR's parser: the output contract, ERM's adjacencies and order, each loss term by hand, the soft
pseudo-label confidences, its recipe, training from the CLI, and honest predictions."""
from __future__ import annotations

import io
import json
import math
import shutil
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import numpy as np
import pytest
import torch

from annotation.demo import build_demo
from inference.checkpoint import load_checkpoint
from inference.data import AVVPDataset, collate_items, labels_from_folder
from inference.models import check_outputs, create_model, model_names
from inference.models.ear import EAR, EARConfig, EventRelation, weighted_segment_bce
from inference.predict import model_from_checkpoint, predict
from inference.tasks.avvp import AVVPTask
from inference.train import TrainConfig, train
from tests.synthetic import overfit, segment_f1, synthetic_batch
from tests.test_honesty import HELD_OUT, assert_same, by_name, tamper, tamper_truth

SMALL = {"hidden": 32, "nhead": 2, "dim_feedforward": 32, "event_dim": 8, "dropout": 0.0}
TARGET_KEYS = ("label", "pseudo_audio", "pseudo_visual", "has_pseudo", "pseudo_score_audio", "pseudo_score_visual")


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models: intra-op threads gain nothing and cost a lot on a loaded machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def small(feature_set: str = "vggish", fit: dict | None = None, **extra) -> EAR:
    torch.manual_seed(0)
    model = create_model("ear", feature_set=feature_set, **{**SMALL, **extra})
    if fit is not None:
        model.fit_train_labels(fit["pseudo_audio"], fit["pseudo_visual"])
    return model


def bce(p: float, y: float) -> float:
    return -(y * math.log(p) + (1 - y) * math.log(1 - p))


def sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-x))


# ---------------------------------------------------------------- the contract

@pytest.mark.parametrize("feature_set", ["vggish", "clip_clap"])
def test_outputs_follow_the_contract_train_and_ignore_targets(feature_set):
    batch = synthetic_batch(feature_set, clips=3)
    model = small(feature_set, fit=batch)
    out = model(batch)
    check_outputs(out, 3)
    assert out["logits_audio"].shape == out["logits_visual"].shape == (3, 10, 25)
    assert out["feat_audio"].shape == out["feat_visual"].shape == (3, 10, 25, 8)
    total, parts = model.loss(out, batch)
    assert total.ndim == 0 and math.isfinite(total.item())
    assert set(parts) == {"video", "segment_audio", "segment_visual", "mixup_audio", "mixup_visual"}
    total.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
    model.eval()  # an evaluation batch holds inputs only; targets change nothing
    bare = {k: v for k, v in batch.items() if k not in TARGET_KEYS}
    with torch.no_grad():
        a = model(bare)
        other = {**batch, "label": 1 - batch["label"], "pseudo_audio": 1 - batch["pseudo_audio"],
                 "pseudo_score_audio": torch.rand(3, 10, 25), "has_pseudo": torch.zeros(3, dtype=torch.bool)}
        b = model(other)
    check_outputs(a, 3)
    for key in ("global", "audio", "visual", "segment_audio", "segment_visual"):
        assert torch.equal(a[key], b[key]), key


def test_registry_recipe_and_defaults_are_the_papers_readings():
    assert "ear" in model_names("avvp")
    for feature_set in ("vggish", "clip_clap"):  # EAR IV-A: one recipe for both feature sets
        config = TrainConfig.for_model("ear", model_config={"feature_set": feature_set})
        assert (config.optimizer, config.batch_size, config.epochs, config.scheduler, config.warmup_epochs,
                config.lr, config.lr_min) == ("adamw", 64, 80, "warmup_cosine", 10, 1e-4, 5e-6)
        assert (config.grad_clip, config.weight_decay, config.betas) == (1.0, 1e-4, (0.9, 0.999))  # UWAV's
        mc = config.model_config
        assert (mc["hidden"], mc["nhead"], mc["dim_feedforward"], mc["dropout"]) == (512, 16, 2048, 0.1)
    full = create_model("ear")
    assert abs(sum(p.numel() for p in full.parameters()) - 21.24e6) < 0.01e6  # the count in the module doc
    c = EARConfig()
    assert c.feature_set == "vggish" and c.fusion == "amdf" and c.erm_layers == 3 and c.erm_order == "alternate"
    assert (c.mixup_alpha, c.balance_weight, c.event_dim) == (1.7, 0.5, 128)
    assert EARConfig.from_dict(c.to_dict()) == c
    for bad in ({"fusion": "transformer"}, {"erm_kernel": 2}, {"aggregation": "sum"}, {"erm_order": "x"},
                {"hidden": 30, "nhead": 4}):
        with pytest.raises(ValueError):
            create_model("ear", **bad)


# ---------------------------------------------------------------- AMDF and ERM

@pytest.mark.parametrize("kind", ["amdf", "msa_mca"])
def test_amdf_queries_static_features_and_msa_mca_dynamic_ones(kind):
    model = small(fusion=kind, num_layers=2).eval()
    fusion = model.fusion
    audio, visual = torch.randn(2, 10, 32), torch.randn(2, 10, 32)
    dyn_a, dyn_v = fusion.temporal["audio"][0](audio), fusion.temporal["visual"][0](visual)
    key_a, key_v = (visual, audio) if kind == "amdf" else (dyn_v, dyn_a)
    fa, fv = dyn_a, dyn_v
    for block_a, block_v in zip(fusion.cross["audio"], fusion.cross["visual"]):
        fa, fv = block_a(fa, key_a), block_v(fv, key_v)
    with torch.no_grad():
        got = fusion(audio, visual)
    torch.testing.assert_close(got[0], fa)
    torch.testing.assert_close(got[1], fv)
    assert len(fusion.cross["audio"]) == 2
    none = small(fusion="none").eval().fusion
    assert none(audio, visual)[0] is audio
    assert small(fusion="han").fusion.hybrid.sequential


def test_erm_adjacencies_order_and_ablations():
    erm = small().erm
    assert len(erm.uni) == len(erm.multi) == 3
    assert erm.uni[0]["audio"].adjacency.shape == erm.uni[0]["visual"].adjacency.shape == (25, 25)
    assert erm.multi[0].adjacency.shape == (50, 50)
    assert erm.uni[0]["audio"].adjacency is not erm.uni[0]["visual"].adjacency
    assert torch.equal(erm.multi[0].adjacency, torch.eye(50))  # no cross-event mixing at the start
    kinds = ["u" if isinstance(m, torch.nn.ModuleDict) else "m" for m in erm.steps()]
    assert kinds == list("umumum")  # alternately (Eq. 15)
    assert ["u" if isinstance(m, torch.nn.ModuleDict) else "m" for m in small(erm_order="uni_then_multi").erm.steps()] \
        == list("uuummm")  # Table IX "ERM A/V-AV"
    assert len(small(erm_unimodal=False).erm.steps()) == 3 and len(small(erm_layers=0).erm.steps()) == 0
    # the multi-modal module couples the tracks, the uni-modal one does not
    a, v = torch.randn(2, 10, 25, 8), torch.randn(2, 10, 25, 8)
    v2 = v.clone()
    v2[:, :, 3] += 1.0
    for flags, coupled in (({"erm_multimodal": False}, False), ({"erm_unimodal": False}, True)):
        erm = small(**flags).erm.eval()
        for m in erm.steps():
            for module in (m.values() if isinstance(m, torch.nn.ModuleDict) else [m]):
                module.adjacency.data.fill_(0.1)
        with torch.no_grad():
            assert torch.equal(erm(a, v)[0], erm(a, v2)[0]) is not coupled


def test_relation_module_is_conv_adjacency_batchnorm_leakyrelu():
    torch.manual_seed(1)
    module = EventRelation(4, 3, kernel=1, slope=0.2).eval()
    module.adjacency.data = torch.randn(4, 4)
    module.norm.running_mean.uniform_(-1, 1)
    module.norm.running_var.uniform_(0.5, 2)
    x = torch.randn(2, 5, 4, 3)  # (B, T, nodes, channels)
    w, b = module.conv.weight[:, :, 0], module.conv.bias
    h = x @ w.T + b  # kernel 1: the node-wise channel map
    h = torch.einsum("mn,btne->btme", module.adjacency, h)
    h = (h - module.norm.running_mean) / torch.sqrt(module.norm.running_var + module.norm.eps)
    h = h * module.norm.weight + module.norm.bias
    with torch.no_grad():
        torch.testing.assert_close(module(x), torch.where(h > 0, h, 0.2 * h))
    # a node's output reads another node only through the adjacency
    module.adjacency.data = torch.eye(4)
    x2 = x.clone()
    x2[:, :, 1] += 1
    with torch.no_grad():
        assert torch.equal(module(x)[:, :, 0], module(x2)[:, :, 0])
    # an odd temporal kernel keeps the segments in place
    assert EventRelation(4, 3, kernel=3)(x).shape == x.shape


def test_options_change_the_network():
    batch = synthetic_batch("vggish", clips=2)
    with torch.no_grad():
        outs = {k: small(**v).eval()(batch)["segment_audio"] for k, v in
                {"erm3": {}, "erm0": {"erm_layers": 0}, "self": {"aggregation": "self"}}.items()}
    assert not torch.allclose(outs["erm3"], outs["erm0"]) and not torch.allclose(outs["erm3"], outs["self"])
    count = {k: sum(p.numel() for p in small(**v).parameters()) for k, v in
             {"erm3": {}, "erm0": {"erm_layers": 0}, "self": {"aggregation": "self"}}.items()}
    assert count["erm0"] < count["erm3"] and count["self"] < count["erm3"]
    assert small(aggregation="self").decoder["audio"].fc.in_features == 32


# ---------------------------------------------------------------- losses by hand

def test_class_balance_weights_from_train_pseudo_labels():
    audio, visual = np.zeros((2, 10, 25), np.float32), np.zeros((2, 10, 25), np.float32)
    audio[0, :, 0] = 1  # class 0 in all 20 segments' half: f_0 = 10 / 20
    audio[1, :5, 3] = 1  # f_3 = 5 / 20
    visual[1, :2, 7] = 1  # f_7 = 2 / 20
    model = small()
    with pytest.raises(RuntimeError, match="fit_train_labels"):
        model.balance_weights()
    note = model.fit_train_labels(audio, visual)
    assert "2 train clips" in note
    (ap, an), (vp, vn) = model.balance_weights()
    assert (ap, an) == pytest.approx((0.5 * (25 - 0.75), 0.75)) and (vp, vn) == pytest.approx((0.5 * 24.9, 0.1))
    model.config.balance_divide_by_classes = True  # the equations as printed: / (N T C)
    (ap, an), _ = model.balance_weights()
    assert (ap, an) == pytest.approx((0.5 * (1 - 0.75 / 25), 0.75 / 25))
    assert torch.equal(model.state_dict()["pseudo_freq"][0, [0, 3]], torch.tensor([0.5, 0.25]))
    with pytest.raises(ValueError, match="expected"):
        model.fit_train_labels(np.zeros((0, 10, 25)), visual)


def test_weighted_segment_bce_by_hand():
    logits = torch.tensor([[[0.5, -1.0, 2.0], [1.5, 0.0, -0.5]], [[-2.0, 1.0, 0.3], [0.2, -0.7, 1.1]]])
    target = torch.tensor([[[0.9, 0.0, 0.4], [0.6, 0.0, 0.0]], [[0.0, 1.0, 0.0], [0.0, 0.5, 0.0]]])
    label = torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]])
    w_pos, w_neg = 3.0, 0.25
    terms = [[sum(bce(sigmoid(float(logits[b, t, c])), float(target[b, t, c])) * (w_pos if label[b, c] else w_neg)
                  for t in range(2) for c in range(3)) / 6 for b in range(2)]]
    both = weighted_segment_bce(logits, target, label, torch.tensor([True, True]), w_pos, w_neg)
    first = weighted_segment_bce(logits, target, label, torch.tensor([True, False]), w_pos, w_neg)
    assert both.item() == pytest.approx((terms[0][0] + terms[0][1]) / 2, rel=1e-6)
    assert first.item() == pytest.approx(terms[0][0], rel=1e-6)  # a clip without pseudo-labels is left out


def test_mixup_loss_by_hand():
    model = small()
    features = torch.randn(2, 3, 25, 8)  # 2 clips x 3 segments
    targets = torch.rand(2, 3, 25)
    keep = torch.tensor([True, False])
    torch.manual_seed(7)
    got = model.mixup_loss(features, targets, keep)
    torch.manual_seed(7)  # replay: lambda ~ Beta(1.7, 1.7), then the pairing of the 3 kept segments
    lam = float(torch.distributions.Beta(torch.tensor(1.7), torch.tensor(1.7)).sample())
    perm = torch.randperm(3).tolist()
    w, b = model.head.fc_prob.weight.detach(), model.head.fc_prob.bias.detach()
    total = 0.0
    for i in range(3):
        j = perm[i]
        mixed = lam * features[0, i] + (1 - lam) * features[0, j]
        for c in range(25):
            logit = float((mixed[c] * w[c]).sum() + b[c])
            y = lam * float(targets[0, i, c]) + (1 - lam) * float(targets[0, j, c])
            total += bce(sigmoid(logit), y)
    assert got.item() == pytest.approx(total / 75, rel=1e-5)
    # UWAV's code writes it as lambda-weighted BCEs against the two targets: the same value
    torch.manual_seed(7)
    lam_t = torch.distributions.Beta(torch.tensor(1.7), torch.tensor(1.7)).sample()
    perm_t = torch.randperm(3)
    f, y = features[0], targets[0]
    logits = model.head.fc_prob(lam_t * f + (1 - lam_t) * f[perm_t])
    bce_t = torch.nn.functional.binary_cross_entropy_with_logits
    uwav = lam_t * bce_t(logits, y) + (1 - lam_t) * bce_t(logits, y[perm_t])
    torch.testing.assert_close(got, uwav)
    assert model.mixup_loss(features, targets, torch.tensor([False, False])).item() == 0.0


def test_total_loss_is_video_plus_weighted_segments_plus_mixup():
    batch = synthetic_batch("vggish", clips=3)
    batch["has_pseudo"] = torch.tensor([True, False, True])
    model = small(fit=batch)
    out = model(batch)
    torch.manual_seed(3)
    total, parts = model.loss(out, batch)
    video = sum(bce(float(p), float(y)) for p, y in zip(out["global"].detach().flatten(), batch["label"].flatten())) / 75
    assert parts["video"] == pytest.approx(video, rel=1e-5)
    keep = batch["has_pseudo"]
    torch.manual_seed(3)
    expected = video
    for track, (w_pos, w_neg) in zip(("audio", "visual"), model.balance_weights()):
        seg = weighted_segment_bce(out[f"logits_{track}"], batch[f"pseudo_{track}"], batch["label"], keep, w_pos,
                                   w_neg)
        mix = model.mixup_loss(out[f"feat_{track}"], batch[f"pseudo_{track}"], keep)
        assert parts[f"segment_{track}"] == pytest.approx(seg.item()) and parts[f"mixup_{track}"] == pytest.approx(
            mix.item())
        expected += seg.item() + mix.item()
    assert total.item() == pytest.approx(expected, rel=1e-5)
    # weights 0 switch terms off; without class balance the statistics are not needed
    plain = small(mixup_loss_weight=0.0, segment_loss_weight=0.0, class_balance=False)
    total, parts = plain.loss(plain(batch), batch)
    assert total.item() == pytest.approx(parts["video"], rel=1e-6) and parts["mixup_audio"] == 0.0


def test_confidences_are_used_when_present_gated_by_the_label_else_the_pseudo_labels():
    batch = synthetic_batch("clip_clap", clips=2)
    model = small("clip_clap", fit=batch)
    assert torch.equal(model.soft_targets(batch)["audio"], batch["pseudo_audio"])  # before helper B's keys
    scores = {t: torch.rand(2, 10, 25) for t in ("audio", "visual")}
    scored = {**batch, **{f"pseudo_score_{t}": s for t, s in scores.items()}}
    targets = model.soft_targets(scored)
    for track in ("audio", "visual"):
        torch.testing.assert_close(targets[track], scores[track] * batch["label"].unsqueeze(1))
    assert (targets["audio"][batch["label"].unsqueeze(1).expand(-1, 10, -1) == 0] == 0).all()
    out = model(batch)
    torch.manual_seed(0)
    plain = model.loss(out, batch)[1]
    torch.manual_seed(0)
    soft = model.loss(out, scored)[1]
    assert soft["segment_audio"] != plain["segment_audio"] and soft["mixup_visual"] != plain["mixup_visual"]
    hard = small("clip_clap", fit=batch, soft_labels=False)  # UWAV's "Binary": the confidences are ignored
    assert torch.equal(hard.soft_targets(scored)["visual"], batch["pseudo_visual"])


def test_overfits_a_tiny_synthetic_set():
    batch = synthetic_batch("clip_clap", clips=16, seed=1)
    model = small("clip_clap", fit=batch, dim_feedforward=64)
    losses = overfit(model, batch, steps=60, lr=3e-3)
    assert losses[-1] < 0.3 * losses[0]
    with torch.no_grad():
        f1_audio, f1_visual = segment_f1(model(batch), batch)
    assert f1_audio > 0.9 and f1_visual > 0.9, (f1_audio, f1_visual)


# ---------------------------------------------------------------- training, checkpoint, honesty

@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Path:
    data = tmp_path_factory.mktemp("ear") / "data"
    build_demo(data, clips=20, seed=11, videos=False)
    return data


def cli(argv: list[str]) -> tuple[int, str, str]:
    from app.cli import run_cli

    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = run_cli(argv)
    return code, out.getvalue(), err.getvalue()


def test_two_epochs_from_the_cli_store_the_train_statistics(demo, tmp_path):
    run = tmp_path / "run"
    code, _, err = cli(["train", "--data", str(demo), "--model", "ear", "--epochs", "2", "--batch-size", "4",
                        "--device", "cpu", "--model-config", json.dumps(SMALL), "--out", str(run)])
    assert code == 0, err
    assert "note: ear: class-balance weights from the pseudo-labels of 12 train clips" in err
    checkpoint = load_checkpoint(run / "checkpoint.pt")
    labels = labels_from_folder(demo)
    train_ids = labels.indices("train")
    expected = np.stack([labels.pseudo_audio[train_ids].mean((0, 1)), labels.pseudo_visual[train_ids].mean((0, 1))])
    np.testing.assert_allclose(checkpoint["state_dict"]["pseudo_freq"].numpy(), expected, rtol=1e-6)
    model = model_from_checkpoint(checkpoint)  # rebuilt with its statistics
    assert bool(model.pseudo_fitted) and model.balance_weights()[0][1] == pytest.approx(expected[0].sum(), rel=1e-6)


def test_task_fits_the_statistics_on_train_clips_only(demo):
    labels = labels_from_folder(demo)
    task = AVVPTask(labels, demo, cache=True)
    model = task.build_model(TrainConfig.for_model("ear", model_config=dict(SMALL)))
    labels.pseudo_audio[labels.indices("val")] = 1.0  # never read: val clips are no training targets
    labels.has_pseudo[labels.indices("val")] = True
    task.prepare(model)
    train_ids = labels.indices("train")
    expected = labels.pseudo_audio[train_ids].mean((0, 1))
    np.testing.assert_allclose(model.pseudo_freq[0].numpy(), expected, rtol=1e-6)


def test_confidence_files_of_a_pseudo_set_reach_the_loss(demo, tmp_path):
    """End to end with the data module: segment_pseudo_scores files become the batch's pseudo_score_* keys."""
    data = tmp_path / "data"
    shutil.copytree(demo, data)
    labels = labels_from_folder(data)
    rng = np.random.default_rng(0)
    for sub in ("CLAP/segment_pseudo_scores", "CLIP/segment_pseudo_scores"):
        (data / sub).mkdir(parents=True)
        for i in labels.indices("train"):
            np.save(data / sub / f"{labels.video_ids[i]}.npy", rng.random((10, 25)).astype(np.float32))
    labels = labels_from_folder(data)
    task = AVVPTask(labels, data, cache=True)
    model = task.build_model(TrainConfig.for_model("ear", model_config=dict(SMALL)))
    dataset = AVVPDataset(labels, task.features, labels.indices("train")[:4])
    batch = collate_items([dataset[k] for k in range(4)])
    expected = np.load(data / "CLAP/segment_pseudo_scores" / f"{labels.video_ids[dataset.indices[0]]}.npy")
    torch.testing.assert_close(model.soft_targets(batch)["audio"][0],
                               torch.from_numpy(expected) * batch["label"][0].unsqueeze(0))


def honest_config() -> TrainConfig:
    return TrainConfig.for_model("ear", model_config=dict(SMALL), epochs=2, batch_size=4, warmup_epochs=1,
                                 device="cpu", seed=3)


def test_predictions_and_training_ignore_held_out_labels_truth_and_pseudo_labels(demo, tmp_path):
    labels = labels_from_folder(demo)
    run = tmp_path / "run"
    first = train(honest_config(), AVVPTask(labels, demo, cache=True), run)
    bad = tamper(demo, tmp_path / "tampered")
    tamper_truth(bad, labels)
    bad_labels = labels_from_folder(bad)
    for split in HELD_OUT:
        clean = by_name(labels, split, predict(run, labels, demo, split, device="cpu")[:3])
        assert_same(clean, by_name(bad_labels, split, predict(run, bad_labels, bad, split, device="cpu")[:3]))
    # training (statistics, losses, val selection) with other val/test weak labels and pseudo-labels
    other = tamper(demo, tmp_path / "tampered-labels")
    second = train(honest_config(), AVVPTask(labels_from_folder(other), other, cache=True), tmp_path / "run2")
    assert first.val == second.val and first.best_epoch == second.best_epoch
    a, b = load_checkpoint(run / "checkpoint.pt"), load_checkpoint(tmp_path / "run2" / "checkpoint.pt")
    assert all(torch.equal(a["state_dict"][k], b["state_dict"][k]) for k in a["state_dict"])
