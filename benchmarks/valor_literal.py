"""A literal port of VALOR's feature extraction scripts (github.com/Franklin905/VALOR at 2677da9), for comparison.

What each step copies (file:line of VALOR):
- frames: `ffmpeg -i VIDEO -y -r 8 DIR/%06d.jpg` run as a command (utils/extract_frames.py:5-12); without
  the ffmpeg command, the same frames (the `-r 8` frame choice, `inference.extract.rate_frames`) are written
  as JPEG files by PyAV's mjpeg encoder at its default settings;
- then, one clip at a time: sorted glob of the JPEGs, `np.round(np.linspace(0, len - 1, 10))`, PIL open +
  convert('RGB'), per frame ToTensor -> Resize((224, 224)) -> Normalize(CLIP mean/std) (clip_preprocess.py:52-70;
  torchvision's tensor ops written out, since torchvision's compiled part does not load here: ToTensor is
  /255, Resize on a tensor is bilinear interpolation without antialias in torchvision 0.13), the clip's 10
  frames through the model, divided by their norm, np.save (l.186-193);
- audio: the 48 kHz mono waveform (VALOR: librosa.load; here the project's PyAV decoder, so that both
  paths see the same samples), `samples = round(linspace(0, N, 11))`, `step = N // 10`, the 10 slices
  (clap_preprocess.py:85-96), then laion_clap's get_audio_embedding_from_data for the clip: per segment int16
  quantisation and get_audio_features (repeatpad, 'fusion' mel, 4 copies), the clip's 10 segments through the
  model with is_longer False (eval mode), normalised (clap_utils.py:12-17, 188-202). The mel, two ways:
  'transformers' = transformers' ClapFeatureExtractor (the port of laion's front end a transformers user
  has: numpy, one STFT frame at a time), 'torchaudio' = laion_clap's own get_mel (torchaudio's
  MelSpectrogram, float32 torch, one segment at a time) written as the torch operations it runs.
The model objects are the same as the extractor's (`ClipEncoder.model`, `ClapEncoder.model`).
"""
from __future__ import annotations

import glob
import os
import shutil
import subprocess
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import torch
import torch.nn.functional as F
from common import REPO  # noqa: F401  (puts the repository on sys.path)
from PIL import Image

from annotation.media import decode_audio
from inference.encoders.clip import OPENAI_MEAN, OPENAI_STD
from inference.extract import rate_frames


def ffmpeg_command() -> str | None:
    return shutil.which("ffmpeg")


def extract_frames(video: Path, dst: Path) -> str:
    """VALOR's extract_frames: 8 fps JPEGs in `dst`; returns how they were made."""
    dst.mkdir(parents=True, exist_ok=True)
    command = ffmpeg_command()
    if command:
        subprocess.run([command, "-loglevel", "error", "-i", str(video), "-y", "-r", "8", f"{dst}/%06d.jpg"],
                       check=True)
        return "ffmpeg -r 8 (command)"
    with av.open(str(video)) as container:  # stream facts are read while the file is open
        stream = container.streams.video[0]
        frames = list(container.decode(stream))
        shown = rate_frames([f.pts for f in frames], Fraction(stream.time_base),
                            start_time_us=container.start_time or 0,
                            guessed_rate=Fraction(stream.guessed_rate) if stream.guessed_rate else None,
                            durations=[f.duration for f in frames], video_only=len(container.streams) == 1)
    codec = av.CodecContext.create("mjpeg", "w")
    codec.width, codec.height, codec.pix_fmt = frames[0].width, frames[0].height, "yuvj420p"
    codec.time_base = Fraction(1, 8)
    codec.open()
    for number, index in enumerate(shown, 1):
        picture = frames[index].reformat(format="yuvj420p")
        picture.pts, picture.time_base = number, codec.time_base  # the output frame's time, as ffmpeg numbers it
        for packet in codec.encode(picture):
            (dst / f"{number:06d}.jpg").write_bytes(bytes(packet))
    return "PyAV mjpeg encoder with the -r 8 frame choice (no ffmpeg command)"


def valor_transform(image: np.ndarray, size: int = 224) -> torch.Tensor:
    """ToTensor, Resize((size, size)), Normalize for ONE (H, W, 3) uint8 image, as VALOR's dataset does."""
    x = torch.from_numpy(np.array(image)).permute(2, 0, 1).contiguous().float().div(255)
    x = F.interpolate(x[None], size=(size, size), mode="bilinear", align_corners=False, antialias=False)[0]
    mean, std = torch.tensor(OPENAI_MEAN).view(3, 1, 1), torch.tensor(OPENAI_STD).view(3, 1, 1)
    return (x - mean) / std


@torch.no_grad()
def image_embedding(model, frames: list[np.ndarray], device) -> np.ndarray:
    """get_image_embedding for one clip: the frames through the model, divided by their L2 norm."""
    video_frames = torch.stack([valor_transform(f) for f in frames]).to(device)
    features = model.encode_image(video_frames)
    return (features / features.norm(p=2, dim=-1, keepdim=True)).cpu().numpy()


def clip_features_from_jpegs(model, frame_dir: Path, device) -> np.ndarray:
    image_list = sorted(glob.glob(os.path.join(frame_dir, "*.jpg")))
    samples = np.round(np.linspace(0, len(image_list) - 1, 10))
    image_list = [image_list[int(sample)] for sample in samples]
    return image_embedding(model, [np.asarray(Image.open(p).convert("RGB")) for p in image_list], device)


def valor_segments(audio_waveform: np.ndarray) -> list[np.ndarray]:
    samples = np.round(np.linspace(0, audio_waveform.shape[0], 11)).astype(np.int32)
    step = audio_waveform.shape[0] // 10
    seg_boundaries = [[samples[i], samples[i] + step] for i in range(len(samples) - 1)]
    return [audio_waveform[b[0]: b[1]] for b in seg_boundaries]


def int16_to_float32(x):
    return (x / 32767.0).astype(np.float32)


def float32_to_int16(x):
    x = np.clip(x, a_min=-1., a_max=1.)
    return (x * 32767.).astype(np.int16)


def laion_features(wave: np.ndarray, filters: torch.Tensor, max_len: int = 480_000) -> torch.Tensor:
    """laion_clap 1.1.4 get_audio_features for a short segment, 'fusion' + 'repeatpad' (training/data.py), with
    get_mel's torchaudio MelSpectrogram + AmplitudeToDB written as the torch operations they run."""
    audio_data = torch.from_numpy(wave).float()
    n_repeat = int(max_len / len(audio_data))
    audio_data = audio_data.repeat(n_repeat)
    audio_data = F.pad(audio_data, (0, max_len - len(audio_data)), mode="constant", value=0)
    spec = torch.stft(audio_data, n_fft=1024, hop_length=480, win_length=1024, window=torch.hann_window(1024),
                      center=True, pad_mode="reflect", return_complex=True).abs().pow(2.0)  # (bins, T)
    mel = torch.matmul(spec.transpose(-1, -2), filters).transpose(-1, -2)  # MelScale: (mels, T)
    mel = 10.0 * torch.log10(torch.clamp(mel, min=1e-10))  # AmplitudeToDB(top_db=None), ref 1
    mel = mel.T  # (T, n_mels)
    return torch.stack([mel, mel, mel, mel], dim=0)


@torch.no_grad()
def audio_embedding(model, extractor, segments: list[np.ndarray], device, front_end: str = "transformers") -> np.ndarray:
    """laion_clap get_audio_embedding_from_data for one clip's segments. `front_end`: 'transformers' (its
    ClapFeatureExtractor, numpy, one frame at a time) or 'torchaudio' (laion's own get_mel, in torch)."""
    waves = [int16_to_float32(float32_to_int16(s)) for s in segments]
    mels = []
    filters = torch.from_numpy(np.asarray(extractor.mel_filters, np.float32))
    for wave in waves:  # get_audio_features, one segment at a time
        if front_end == "torchaudio":
            mels.append(laion_features(wave, filters).numpy())
            continue
        out = extractor([wave], sampling_rate=48_000, truncation="fusion", padding="repeatpad", return_tensors="np")
        mels.append(np.asarray(out["input_features"][0], np.float32))
    x = torch.from_numpy(np.stack(mels)).to(device)
    longer = torch.zeros(len(mels), 1, dtype=torch.bool, device=device)  # eval mode: nothing marked longer
    result = model.get_audio_features(input_features=x, is_longer=longer)
    emb = getattr(result, "pooler_output", result)
    return (emb / emb.norm(p=2, dim=-1, keepdim=True)).cpu().numpy()


def extract_clip(video: Path, work: Path, out: Path, clip_model, clap_model, extractor, device,
                 times: dict[str, float] | None = None, front_end: str = "transformers") -> str:
    """One clip the way VALOR's scripts go: frames to JPEG files, read back; audio; np.save of both.
    `times` accumulates the seconds of the visual and the audio part."""
    started = time.perf_counter()
    frame_dir = work / video.stem
    how = extract_frames(video, frame_dir)
    visual = clip_features_from_jpegs(clip_model, frame_dir, device)
    middle = time.perf_counter()
    wave, _ = decode_audio(video, rate=48_000)
    audio = audio_embedding(clap_model, extractor, valor_segments(wave), device, front_end)
    if times is not None:
        times["visual"] = times.get("visual", 0.0) + middle - started
        times["audio"] = times.get("audio", 0.0) + time.perf_counter() - middle
    (out / "CLIP").mkdir(parents=True, exist_ok=True)
    (out / "CLAP").mkdir(parents=True, exist_ok=True)
    np.save(out / "CLIP" / f"{video.stem}.npy", visual)
    np.save(out / "CLAP" / f"{video.stem}.npy", audio)
    return how
