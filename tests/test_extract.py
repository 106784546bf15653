"""`avvp-studio features`: VALOR's frame/audio arithmetic, tiny random CLIP/CLAP end to end, resume, atomicity, errors."""
from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys
from contextlib import redirect_stderr, redirect_stdout
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from annotation.demo import build_demo
from annotation.errors import DataFileError
from inference.extract import (
    audio_bounds,
    extract_features,
    folder_clips,
    plan_frames,
    rate_frames,
    read_clip,
    valor_frame_indices,
)

REPO = Path(__file__).resolve().parents[1]


def run_cli(argv: list[str]) -> tuple[int, str, str]:
    from app.cli import run_cli as cli

    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = cli(argv)
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def encoders():
    from inference.encoders.clap import tiny_clap
    from inference.encoders.clip import tiny_clip

    return tiny_clip(0), tiny_clap(0)


@pytest.fixture(scope="module")
def demo_videos(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("extract") / "demo"
    build_demo(out, clips=3, seed=5, videos=True)
    return out


@pytest.fixture
def demo(demo_videos, tmp_path) -> Path:
    """A fresh copy of the 3-clip demo (with videos) per test, without the demo's synthetic features."""
    data = Path(shutil.copytree(demo_videos, tmp_path / "demo"))
    shutil.rmtree(data / "CLIP/features")
    shutil.rmtree(data / "CLAP/features")
    return data


def ids_of(data: Path) -> list[str]:
    return [job.video_id for job in folder_clips(data).jobs]


# --------------------------------------------------------------------------- VALOR's arithmetic


def test_frame_indices_and_audio_bounds_follow_valors_formulas():
    np.testing.assert_array_equal(valor_frame_indices(82), [0, 9, 18, 27, 36, 45, 54, 63, 72, 81])
    np.testing.assert_array_equal(valor_frame_indices(80), [0, 9, 18, 26, 35, 44, 53, 61, 70, 79])  # 8.777.. steps
    np.testing.assert_array_equal(valor_frame_indices(5, 3), [0, 2, 4])
    # N = 480,000: starts round(linspace(0, N, 11)) = 0, 48000, ...; step N // 10 = 48,000
    assert audio_bounds(480_000) == [(48_000 * i, 48_000 * (i + 1)) for i in range(10)]
    # N = 105, T = 4: linspace 0, 26.25, 52.5, 78.75 -> 0, 26, 52 (half to even), 79; step 26
    assert audio_bounds(105, 4) == [(0, 26), (26, 52), (52, 78), (79, 105)]
    with pytest.raises(ValueError):
        audio_bounds(9, 10)
    with pytest.raises(ValueError):
        valor_frame_indices(0)


def test_rate_frames_is_ffmpegs_constant_rate_sync():
    tb = Fraction(1, 1000)
    # an 8 fps input is passed through one to one
    assert rate_frames([125 * k for k in range(16)], tb, guessed_rate=Fraction(8)) == list(range(16))
    # a 4 fps input: the packet duration (2 output frames) makes each frame written twice, none at the end
    four = rate_frames([250 * k for k in range(6)], tb, guessed_rate=Fraction(4), durations=[250] * 6)
    assert four == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5]
    # 30 fps: frames are dropped; ffmpeg's output frame j shows an input frame up to ~0.17 s before j / 8
    thirty = rate_frames([100 * k for k in range(60)], Fraction(1, 3000), guessed_rate=Fraction(30))
    assert thirty[:6] == [0, 1, 3, 7, 10, 14] and len(thirty) == 18
    assert all(k / 30 <= (j + 0.01) / 8 for j, k in enumerate(thirty))


def test_real_clip_frame_times_and_audio_bounds(real_clip, tmp_path):
    """BjCEufrlXm4: H.264 at 359/12 = 29.917 fps, 300 frames (pts 384 k in 1/11488 s, i.e. t_k = 12 k / 359 s),
    AAC 44.1 kHz stereo, 441,344 samples after the priming samples, container start 0.

    Frames: ffmpeg's CFR sync (output tb 1/8; a frame lasts 8 / 29.917 = 0.267 output ticks) writes output j when
    t_k * 8 + 0.267 > j - 1.1, so `ffmpeg -r 8` writes N = 82 JPEGs (checked against ffmpeg 5.1.9: the
    `fps=8` filter would give 80). VALOR picks round(linspace(0, 81, 10)) = 0, 9, ..., 81 (steps of exactly 9),
    which show decoded frames 0, 29, 63, 96, 130, 164, 197, 231, 265, 298.
    Audio: N = ceil(441,344 * 48,000 / 44,100) = ceil(480,374.42) = 480,375 samples; step = N // 10 = 48,037;
    starts = round(48,037.5 i) with halves to even: 0, 48,038, 96,075, 144,112, 192,150, 240,188, 288,225,
    336,262, 384,300, 432,338; each segment [start, start + 48,037)."""
    clip = Path(shutil.copy(real_clip, tmp_path / "BjCEufrlXm4.mp4"))
    plan = plan_frames(clip, 10)
    assert (plan.source_frames, plan.frames_8fps) == (300, 82)
    assert plan.picks_8fps == [0, 9, 18, 27, 36, 45, 54, 63, 72, 81]
    assert plan.source_indices == [0, 29, 63, 96, 130, 164, 197, 231, 265, 298]
    np.testing.assert_allclose(plan.times, [12 * k / 359 for k in plan.source_indices], atol=1e-9)
    np.testing.assert_allclose(plan.times, [0.0, 0.969359, 2.105850, 3.208914, 4.345404, 5.481894, 6.584958,
                                            7.721448, 8.857939, 9.961003], atol=1e-6)
    media = read_clip(clip, 10)
    assert media.frames.shape == (10, 240, 320, 3) and media.num_samples == 480_375
    starts = [0, 48_038, 96_075, 144_112, 192_150, 240_188, 288_225, 336_262, 384_300, 432_338]
    assert media.bounds == [(s, s + 48_037) for s in starts]
    assert all(len(seg) == 48_037 for seg in media.audio)


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="the ffmpeg command is not installed (apt-get install ffmpeg)")
@pytest.mark.parametrize("source", ["real", "demo"])
def test_frame_choice_matches_the_ffmpeg_command(source, request, demo_videos, tmp_path):
    """VALOR's own command writes JPEGs showing exactly the frames `rate_frames` names (up to JPEG noise)."""
    from PIL import Image

    from annotation.media import FrameReader

    video = request.getfixturevalue("real_clip") if source == "real" else \
        next((demo_videos / "raw_videos").glob("*.mp4"))
    subprocess.run(["ffmpeg", "-loglevel", "error", "-i", str(video), "-y", "-r", "8", str(tmp_path / "%06d.jpg")],
                   check=True)
    jpegs = sorted(tmp_path.glob("*.jpg"))
    plan = plan_frames(video, len(jpegs))  # T = N: every 8 fps frame is a pick
    assert plan.frames_8fps == len(jpegs)
    with FrameReader(video) as reader:  # every 4th pixel is plenty to tell frames apart
        frames = np.stack([reader.read(i)[::4, ::4] for i in range(reader.frame_count)]).astype(np.float32)
    for jpeg, index in zip(jpegs, plan.source_indices):
        image = np.asarray(Image.open(jpeg).convert("RGB"), np.float32)[::4, ::4]
        error = ((frames - image) ** 2).mean(axis=(1, 2, 3))
        assert error[index] <= 1.5 * error.min() + 1.0, (jpeg.name, index, int(error.argmin()))


@pytest.mark.parametrize("source", ["real", "demo"])
@pytest.mark.parametrize("segments", [10, 37])
def test_skipping_unpicked_non_reference_pictures_changes_no_frame(source, segments, request, demo_videos):
    """H.264 pictures with nal_ref_idc 0 that no pick shows are not decoded; the picks come out the same as from
    decoding every packet, and the skipped ones are exactly the unpicked non-reference pictures."""
    import av

    from inference import extract

    video = request.getfixturevalue("real_clip") if source == "real" else \
        next((demo_videos / "raw_videos").glob("*.mp4"))
    frames, plan = extract.read_frames(video, segments)
    with av.open(str(video)) as container:
        stream = extract._demux(container, video)
        skip = extract._skippable(stream, set(plan.pts))
        full, decoded = extract._decode_picks(stream, set(plan.pts), set())
        stream.decoder.flush_buffers()
        _, kept = extract._decode_picks(stream, set(plan.pts), skip)
        stream.decoder.flush_buffers()
        stream.decoder.skip_frame = "NONREF"
        references = {frame.pts for packet in [*stream.packets, None] for frame in stream.decoder.decode(packet)}
    assert skip and not skip & set(plan.pts)
    assert skip == {p for p, _ in decoded} - references - set(plan.pts)  # the decoder's own notion of non-reference
    assert [p for p, _ in kept] == sorted({p for p, _ in decoded} - skip)
    np.testing.assert_array_equal(frames, np.stack([full[p] for p in plan.pts]))


# --------------------------------------------------------------------------- encoders


def test_clap_front_end_equals_transformers_extractor(encoders, real_clip):
    _, clap = encoders
    media = read_clip(real_clip, 10)
    ours = clap.features(media.audio[:3])
    reference = clap.reference_features(media.audio[:3])
    assert ours.shape == reference.shape == (3, 1, 1001, 64)
    np.testing.assert_allclose(ours, reference, atol=0.05)  # dB: float32 (laion's torchaudio) vs float64 numpy
    one = clap.embed_features(ours)
    np.testing.assert_allclose(clap.embed_features(reference), one, atol=1e-5)
    np.testing.assert_allclose(clap.embed_features(ours, copies=4), one, atol=1e-6)  # fusion reads copy 0 only
    np.testing.assert_allclose(np.linalg.norm(one, axis=1), 1.0, atol=1e-5)


def test_clip_preprocessing_is_valors_resize_without_crop(encoders):
    clip, _ = encoders
    frames = np.random.default_rng(0).integers(0, 256, (2, 24, 40, 3), dtype=np.uint8)
    pixels = clip.preprocess(frames)
    assert pixels.shape == (2, 3, 224, 224)
    flat = np.full((1, 24, 40, 3), 255, np.uint8)  # a white frame: (1 - mean) / std everywhere, no crop border
    white = clip.preprocess(flat)[0]
    from inference.encoders.clip import OPENAI_MEAN, OPENAI_STD

    np.testing.assert_allclose(white[:, 0, 0], (1 - np.array(OPENAI_MEAN)) / np.array(OPENAI_STD), rtol=1e-6)
    assert np.ptp(white, axis=(1, 2)).max() < 1e-6  # the same value everywhere


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")
def test_checkpoints_round_trip_and_load_errors_say_what_to_pass(encoders, tmp_path):
    import torch

    from inference.encoders.clap import load_clap
    from inference.encoders.clip import load_clip

    clip, clap = encoders
    torch.save(clip.model.state_dict(), tmp_path / "tiny-openai-layout.pt")
    loaded = load_clip(tmp_path / "tiny-openai-layout.pt", known_checksums=set())
    frames = np.random.default_rng(1).integers(0, 256, (3, 30, 40, 3), dtype=np.uint8)
    np.testing.assert_allclose(loaded.encode_images(frames), clip.encode_images(frames), atol=1e-5)

    folder = tmp_path / "tiny-clap"
    clap.model.save_pretrained(folder)
    clap.extractor.save_pretrained(folder)
    clap.tokenizer.save_pretrained(folder)
    reloaded = load_clap(folder)
    np.testing.assert_allclose(reloaded.encode_text(["This is a sound of dog"]), clap.encode_text(["This is a sound of dog"]),
                               atol=1e-5)

    with pytest.raises(DataFileError, match="ViT-L-14.pt"):
        load_clip(tmp_path / "missing.pt", known_checksums=set())
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(DataFileError, match="weights-only"):
        load_clip(tmp_path / "junk.pt", known_checksums=set())
    scripted = torch.jit.script(torch.nn.Linear(2, 2))
    scripted.save(str(tmp_path / "script.pt"))
    with pytest.raises(DataFileError, match="SHA-256"):
        load_clip(tmp_path / "script.pt", known_checksums=set())
    with pytest.raises(DataFileError, match="config.json"):
        load_clap(tmp_path)
    code, _, err = run_cli(["features", "--data", str(tmp_path), "--set", "clip_clap"])
    assert code == 2 and "--clip-model" in err


def test_compat_step_does_nothing_when_torchvision_imports(monkeypatch):
    import types

    import torch

    from inference.encoders import compat

    compat.ensure_torchvision_ops()  # whatever this machine needs
    assert compat.ensure_torchvision_ops() is False  # torchvision is importable now: nothing more to do
    assert hasattr(torch.ops.torchvision, "nms")
    before = compat._LIBRARY
    monkeypatch.setitem(sys.modules, "torchvision", types.ModuleType("torchvision"))  # a working torchvision
    assert compat.ensure_torchvision_ops() is False and compat._LIBRARY is before


def test_extract_module_imports_no_model_library():
    code = ("import sys, inference.extract, inference.encoders, inference.encoders.clip, inference.encoders.clap; "
            "print(sorted(m for m in ('open_clip', 'transformers', 'torchvision', 'timm') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True)
    assert out.stdout.strip() == "[]"


# --------------------------------------------------------------------------- whole path


def test_demo_folder_end_to_end_resume_and_force(encoders, demo):
    clip, clap = encoders
    report = extract_features(demo, clip, clap, batch_clips=2)
    ids = ids_of(demo)
    assert (report.written, report.already_done, report.failed) == (len(ids), 0, {})
    for vid in ids:
        visual, audio = np.load(demo / f"CLIP/features/{vid}.npy"), np.load(demo / f"CLAP/features/{vid}.npy")
        assert visual.shape == (10, clip.dim) and audio.shape == (10, clap.dim) and visual.dtype == np.float32
        np.testing.assert_allclose(np.linalg.norm(visual, axis=1), 1, atol=1e-5)
        np.testing.assert_allclose(np.linalg.norm(audio, axis=1), 1, atol=1e-5)
    media = read_clip(demo / "raw_videos" / f"{ids[0]}.mp4", 10)  # batched == one clip alone
    np.testing.assert_allclose(np.load(demo / f"CLIP/features/{ids[0]}.npy"), clip.encode_images(media.frames), atol=1e-5)
    np.testing.assert_allclose(np.load(demo / f"CLAP/features/{ids[0]}.npy"), clap.encode_audio(media.audio), atol=1e-5)
    captions = json.loads((demo / "text/captions.json").read_text())
    assert captions["visual"]["prompts"][14] == "A photo of a vaccum cleaner."
    assert captions["audio"]["prompts"][12] == "This is a sound of chicken, rooster"
    assert captions["visual"]["random_weights"] is True and captions["audio"]["logit_scale"] == pytest.approx(clap.logit_scale)
    text = np.load(demo / "text/clip_captions.npy")
    assert text.shape == (25, clip.dim) and np.allclose(np.linalg.norm(text, axis=1), 1, atol=1e-5)
    assert np.load(demo / "text/clap_captions.npy").shape == (25, clap.dim)

    stamp = (demo / f"CLIP/features/{ids[0]}.npy").stat().st_mtime_ns
    again = extract_features(demo, clip, clap)
    assert (again.written, again.already_done) == (0, len(ids))
    assert (demo / f"CLIP/features/{ids[0]}.npy").stat().st_mtime_ns == stamp
    np.save(demo / f"CLAP/features/{ids[1]}.npy", np.zeros((9, clap.dim), np.float32))  # wrong rows: redone
    assert extract_features(demo, clip, clap).written == 1
    assert extract_features(demo, clip, clap, force=True).written == len(ids)


def test_a_stop_leaves_finished_clips_and_no_partial_file(encoders, demo, monkeypatch):
    clip, clap = encoders
    real = clap.embed_features
    calls = []

    def dying(features, copies=1):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(features, copies)

    monkeypatch.setattr(clap, "embed_features", dying)
    with pytest.raises(KeyboardInterrupt):
        extract_features(demo, clip, clap, batch_clips=1)
    monkeypatch.setattr(clap, "embed_features", real)
    done = sorted(p.name for p in (demo / "CLAP/features").iterdir())
    assert len(done) == 1 and all(not p.name.startswith(".") for p in (demo / "CLIP/features").iterdir())
    # a crash inside the write itself (before the rename) leaves no file under the final name
    import annotation.files

    def no_rename(src, dst):
        raise OSError("killed")

    monkeypatch.setattr(annotation.files.os, "replace", no_rename)
    with pytest.raises(OSError):
        extract_features(demo, clip, clap, batch_clips=1)
    monkeypatch.undo()
    assert sorted(p.name for p in (demo / "CLAP/features").iterdir()) == done
    resumed = extract_features(demo, clip, clap)
    assert (resumed.written, resumed.already_done) == (len(ids_of(demo)) - 1, 1)


def test_missing_and_broken_videos_are_skipped_and_named(demo):
    ids = ids_of(demo)
    (demo / "raw_videos" / f"{ids[0]}.mp4").unlink()
    (demo / "raw_videos" / f"{ids[1]}.mp4").write_bytes(b"\x00" * 100)
    code, out, err = run_cli(["features", "--data", str(demo), "--set", "clip_clap", "--tiny-random"])
    assert code == 0 and "1 clips written" in out
    assert ids[0] in err and ids[1] in err and "RANDOM" in err
    (demo / "raw_videos" / f"{ids[2]}.mp4").unlink()
    shutil.rmtree(demo / "CLIP/features")
    code, out, _ = run_cli(["features", "--data", str(demo), "--set", "clip_clap", "--tiny-random", "--events",
                            "--out", str(demo / "elsewhere")])
    events = [json.loads(line) for line in out.splitlines()]
    assert code == 2 and events[0]["event"] == "start" and events[-1]["event"] == "done"
    assert set(events[-1]["failed"]) == set(ids) and events[-1]["written"] == 0


def test_dense_event_folder_with_variable_segments(encoders, demo_videos, tmp_path):
    clip, clap = encoders
    videos = sorted((demo_videos / "raw_videos").glob("*.mp4"))
    root = tmp_path / "unav"
    root.mkdir()
    index = {"format": 1, "source": "UnAV-100", "classes": ["dog_barking", "playing_cello", "car"], "tracks": "av",
             "clips": [{"video_id": "vidA", "split": "train", "segments": 7, "video": str(videos[0])},
                       {"video_id": "vidB", "split": "val", "segments": 13, "video": str(videos[1])},
                       {"video_id": "vidC", "split": "test", "segments": 4, "video": None}],
             "excluded": {}}
    (root / "dense_events.json").write_text(json.dumps(index))
    report = extract_features(root, clip, clap)
    assert report.kind == "dense" and report.written == 2 and list(report.failed) == ["vidC"]
    assert np.load(root / "CLIP/features/vidA.npy").shape == (7, clip.dim)
    assert np.load(root / "CLAP/features/vidB.npy").shape == (13, clap.dim)
    plan = plan_frames(videos[1], 13)  # round(linspace(0, N - 1, 13)) of the same 8 fps frames
    np.testing.assert_array_equal(plan.picks_8fps, valor_frame_indices(plan.frames_8fps, 13))
    captions = json.loads((root / "text/captions.json").read_text())
    assert captions["visual"]["prompts"] == ["A photo of dog barking", "A photo of playing cello", "A photo of car"]
    assert captions["audio"]["prompts"][0] == "This is the sound of dog barking"
    assert np.load(root / "text/clap_captions.npy").shape == (3, clap.dim)


def test_real_clip_end_to_end(encoders, real_clip, tmp_path):
    clip, clap = encoders
    data = tmp_path / "llp"
    (data / "raw_videos").mkdir(parents=True)
    shutil.copy(real_clip, data / "raw_videos" / "BjCEufrlXm4.mp4")
    (data / "AVVP_train.csv").write_text("filename\tevent_labels\nBjCEufrlXm4_20_30\tSpeech,Dog\n")
    report = extract_features(data, clip, clap, out=tmp_path / "out")
    assert report.written == 1 and not (data / "CLIP").exists()
    media = read_clip(data / "raw_videos" / "BjCEufrlXm4.mp4", 10)
    np.testing.assert_allclose(np.load(tmp_path / "out/CLIP/features/BjCEufrlXm4.npy"),
                               clip.encode_images(media.frames), atol=1e-5)


def test_features_of_other_encoders_are_not_skipped_as_done(encoders, demo):
    from inference.encoders.clap import tiny_clap
    from inference.encoders.clip import tiny_clip

    clip, clap = encoders
    extract_features(demo, clip, clap)
    other_clip, other_clap = tiny_clip(seed=7), tiny_clap(seed=7)  # same widths, other weights
    with pytest.raises(DataFileError, match="--force"):
        extract_features(demo, other_clip, other_clap)
    assert extract_features(demo, other_clip, other_clap, force=True).written == len(ids_of(demo))
    assert json.loads((demo / "text/captions.json").read_text())["visual"]["encoder"] == other_clip.name
    (demo / "text/captions.json").unlink()  # features with no record of their encoders (e.g. the demo's own)
    with pytest.raises(DataFileError, match="no record"):
        extract_features(demo, other_clip, other_clap)
