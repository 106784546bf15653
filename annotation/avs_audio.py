"""AVSBench audio: the VGGish log-mel front end, safe reading of AVSBench `.pkl`
log-mel files, and a plain-array cache.

Why this file exists: AVSBench models were trained on log-mel examples made by
torchvggish's `vggish_input.wavfile_to_examples` (a copy of TensorFlow's
research/audioset/vggish code), and S4/MS3 ship those examples as
`pickle.dump(torch_tensor)` files. This module reproduces the arithmetic in
numpy (no soundfile/resampy/scipy here) and reads the pickles without ever
letting a file run code.

Front end (vggish_params.py / mel_features.py / vggish_input.py):
    int16 PCM / 32768 -> mean over channels -> resample to 16 kHz (resampy
    'kaiser_best', only when the rate differs) -> frames of 400 samples
    (0.025 s) every 160 (0.010 s), no padding -> periodic Hann -> |rfft| with
    512 points -> 64 HTK-mel bands 125-7500 Hz (DC bin zeroed) ->
    log(mel + 0.01) -> examples of 96 frames every 96 frames -> float32.
    A full example needs 15600 samples (0.975 s): 1 s -> 1 example,
    4.3 s -> 4, 5 s -> 5, 10 s -> 10.

AVSBench padding (OpenNLPLab/AVSBench):
    S4 / MS3 (preprocess_scripts/preprocess_s4.py, preprocess_ms3.py,
    `extract_one_log_mel`): fewer than 5 examples -> the last example is
    repeated up to 5. More than 5 (or none) -> their code raises (a tensor
    size RuntimeError / IndexError), so no .pkl exists for such a clip.
    AVSS (avs_scripts/avss/torchvggish/vggish.py `VGGish._preprocess`, fed
    `audio.wav` paths by color_dataloader.py): fewer than 10 examples ->
    ZERO examples appended up to 10 (zeros in the log-mel domain, not
    silence). More than 10 -> the same assignment error stops training.
    `avsbench_log_mel` follows both and raises on "more" unless asked to
    truncate.
"""
from __future__ import annotations

import collections
import functools
import hashlib
import io
import os
import pickle
import re
import struct
import tempfile
import warnings
import wave
from pathlib import Path
from typing import Any, Literal

import numpy as np

__all__ = [
    "AVSAudioError",
    "RefusedGlobalError",
    "SAMPLE_RATE",
    "NUM_FRAMES",
    "NUM_BANDS",
    "read_wav",
    "resample",
    "resampy_filter",
    "mel_matrix",
    "log_mel_spectrogram",
    "waveform_to_examples",
    "wav_to_examples",
    "avsbench_log_mel",
    "read_log_mel_pkl",
    "ALLOWED_PICKLE_GLOBALS",
    "cached_log_mel",
]

# vggish_params.py
SAMPLE_RATE = 16000
STFT_WINDOW_LENGTH_SECONDS = 0.025
STFT_HOP_LENGTH_SECONDS = 0.010
NUM_MEL_BINS = NUM_BANDS = 64
NUM_FRAMES = 96
MEL_MIN_HZ = 125.0
MEL_MAX_HZ = 7500.0
LOG_OFFSET = 0.01
EXAMPLE_WINDOW_SECONDS = 0.96
EXAMPLE_HOP_SECONDS = 0.96

_MEL_BREAK_FREQUENCY_HERTZ = 700.0
_MEL_HIGH_FREQUENCY_Q = 1127.0


class AVSAudioError(ValueError):
    """A file or array this module cannot turn into log-mel examples (names the file)."""


class RefusedGlobalError(AVSAudioError, pickle.UnpicklingError):
    """A pickle asked for a global outside the log-mel allow-list; nothing was called."""


# --------------------------------------------------------------------------- WAV


def read_wav(path: str | os.PathLike) -> tuple[np.ndarray, int]:
    """Samples as upstream sees them: `soundfile.read(path, dtype='int16') / 32768`.

    Returns (float64 array, rate); (n,) for mono, (n, channels) otherwise, as
    soundfile does. PCM is brought to int16 the way libsndfile does it
    (8-bit: (u - 128) << 8; 24-bit: top 16 bits; 32-bit: >> 16, i.e. truncation)
    so 24/32-bit files give upstream's numbers. Float WAVs are used as they are
    (upstream's int16 read of a float file is not scaled by libsndfile, so it
    has no faithful equivalent; AVSBench's wavs are 16-bit PCM).
    """
    path = Path(path)
    try:
        with wave.open(str(path), "rb") as w:
            channels, width, rate = w.getnchannels(), w.getsampwidth(), w.getframerate()
            raw = w.readframes(w.getnframes())
        fmt_tag = 1
    except wave.Error as exc:
        # Python's wave reads plain PCM only; float and WAVE_FORMAT_EXTENSIBLE
        # (what ffmpeg writes for 24-bit or > 2 channels) go through our parser.
        if "unknown" not in str(exc):
            raise AVSAudioError(f"{path}: not a readable WAV file ({exc})") from None
        fmt_tag, channels, width, rate, raw = _parse_riff(path)
    except OSError as exc:
        raise AVSAudioError(f"{path}: cannot read ({exc})") from None
    except (EOFError, RuntimeError, struct.error, ValueError) as exc:  # wave on broken chunks
        raise AVSAudioError(f"{path}: malformed or truncated WAV file ({type(exc).__name__} {exc})") from None
    if channels < 1 or rate < 1:
        raise AVSAudioError(f"{path}: bad WAV header ({channels} channels, {rate} Hz)")
    block = channels * width
    raw = raw[: len(raw) // block * block]
    if fmt_tag == 3:
        if width not in (4, 8):
            raise AVSAudioError(f"{path}: {8 * width}-bit float WAV is not supported")
        data = np.frombuffer(raw, dtype="<f4" if width == 4 else "<f8").astype(np.float64)
    elif width == 1:
        data = (np.frombuffer(raw, np.uint8).astype(np.int16) - 128) * 256
    elif width == 2:
        data = np.frombuffer(raw, "<i2")
    elif width == 3:
        b = np.frombuffer(raw, np.uint8).reshape(-1, 3)  # little-endian; keep the top 2 bytes
        data = (b[:, 1].astype(np.uint16) | (b[:, 2].astype(np.uint16) << 8)).view(np.int16)
    elif width == 4:
        data = (np.frombuffer(raw, "<i4") >> 16).astype(np.int16)
    else:
        raise AVSAudioError(f"{path}: {8 * width}-bit PCM WAV is not supported")
    if fmt_tag != 3:
        data = data.astype(np.int16) / 32768.0
    if channels > 1:
        data = data.reshape(-1, channels)
    return data, rate


_KSDATAFORMAT_TAIL = b"\x00\x00\x00\x00\x10\x00\x80\x00\x00\xaa\x00\x38\x9b\x71"


def _parse_riff(path: Path) -> tuple[int, int, int, int, bytes]:
    """The fmt and data chunks of a RIFF/WAVE file, for what `wave` refuses."""
    blob = path.read_bytes()
    if len(blob) < 12 or blob[:4] != b"RIFF" or blob[8:12] != b"WAVE":
        raise AVSAudioError(f"{path}: not a RIFF/WAVE file")
    pos, fmt, data = 12, None, None
    while pos + 8 <= len(blob):
        cid, size = blob[pos : pos + 4], struct.unpack("<I", blob[pos + 4 : pos + 8])[0]
        body = blob[pos + 8 : pos + 8 + size]
        if cid == b"fmt ":
            fmt = body
        elif cid == b"data":
            data = body
            break
        pos += 8 + size + (size & 1)
    if fmt is None or data is None or len(fmt) < 16:
        raise AVSAudioError(f"{path}: WAV file without fmt/data chunks (truncated?)")
    tag, channels, rate, _, _, bits = struct.unpack("<HHIIHH", fmt[:16])
    if tag == 0xFFFE:
        if len(fmt) < 40 or fmt[26:40] != _KSDATAFORMAT_TAIL:
            raise AVSAudioError(f"{path}: unsupported WAVE_FORMAT_EXTENSIBLE subformat")
        tag = struct.unpack("<H", fmt[24:26])[0]
    if tag not in (1, 3):
        raise AVSAudioError(
            f"{path}: WAV format tag {tag:#06x} is not supported (PCM or IEEE float only)"
        )
    if bits % 8:
        raise AVSAudioError(f"{path}: {bits}-bit samples are not supported")
    return tag, channels, bits // 8, rate, data


# --------------------------------------------------------------------------- resampling

# resampy's 'kaiser_best' tables, regenerated from their published parameters
# (the stored tables are not shipped here; these reproduce them to 1e-15).
#   <= 0.2.2 (2016-2022, what AVSBench's preprocessing ran with): 64 zero
#   crossings, 512 table entries per crossing, Kaiser beta 14.769656459379492,
#   rolloff 0.9475937167399596 (resampy/filters.py docstring of that release).
#   >= 0.3.0 (June 2022 on): 50 crossings, 8192 per crossing, rolloff
#   0.9173473712608761 (stored in the table), beta 12.984585247042173
#   (fitted to the stored table; the docstring prints 12.9846).
_RESAMPY_FILTERS = {
    "kaiser_best": (64, 512, 14.769656459379492, 0.9475937167399596),
    "kaiser_best_v0.3": (50, 8192, 12.984585247042173, 0.9173473712608761),
}


@functools.lru_cache(maxsize=4)
def resampy_filter(name: str = "kaiser_best") -> tuple[np.ndarray, int]:
    """Right half of resampy's windowed-sinc table and its entries per zero crossing."""
    num_zeros, precision, beta, rolloff = _RESAMPY_FILTERS[name]
    n = num_zeros * precision
    sinc = rolloff * np.sinc(rolloff * np.linspace(0, num_zeros, num=n + 1, endpoint=True))
    win = np.kaiser(2 * n + 1, beta)[n:] * sinc
    win.setflags(write=False)
    return win, precision


def resample(
    x: np.ndarray,
    sr_orig: int,
    sr_new: int,
    filter: Literal["kaiser_best", "kaiser_best_v0.3"] = "kaiser_best",
) -> np.ndarray:
    """resampy.resample(x, sr_orig, sr_new) along the last axis, in numpy.

    Same table, same linear interpolation inside it, same truncated index step
    (int(ratio * precision)) and the same time register as resampy 0.2.2
    (a running sum of 1/ratio; 'kaiser_best_v0.3' uses arange(n) / ratio as
    0.3+ does), accumulated tap by tap in resampy's order, so results agree
    with resampy to rounding (~1e-16). Differences: equal rates return a copy
    (0.2.2 would still filter; vggish_input never calls it then), and 0.3+'s
    output length int(n * sr_new / sr_orig) is used only for that variant.
    """
    if sr_orig <= 0 or sr_new <= 0:
        raise ValueError(f"invalid sample rates {sr_orig} -> {sr_new}")
    x = np.asarray(x, dtype=np.float64)
    if sr_orig == sr_new:
        return x.copy()
    win, num_table = resampy_filter(filter)
    ratio = float(sr_new) / sr_orig
    n_orig = x.shape[-1]
    if filter == "kaiser_best":
        n_out = int(n_orig * ratio)
    else:
        n_out = int(n_orig * float(sr_new) / float(sr_orig))
    if n_out < 1:
        raise ValueError(f"signal of {n_orig} samples is too short to resample {sr_orig} -> {sr_new}")
    if ratio < 1:
        win = win * ratio
    delta = np.zeros_like(win)
    delta[:-1] = np.diff(win)
    scale = min(1.0, ratio)
    increment = 1.0 / ratio
    step = int(scale * num_table)
    nwin = win.shape[0]
    if filter == "kaiser_best":
        t_reg = np.zeros(n_out)
        t_reg[1:] = np.cumsum(np.full(n_out - 1, increment))  # sequential, like `+=`
    else:
        t_reg = np.arange(n_out) * increment
    n = t_reg.astype(np.int64)
    frac = scale * (t_reg - n)
    x2 = x.reshape(-1, n_orig)
    y = np.zeros((x2.shape[0], n_out))
    for wing, (fr, first, limit) in enumerate(
        ((frac, n, n + 1), (scale - frac, n + 1, n_orig - n - 1))
    ):
        index_frac = fr * num_table
        offset = index_frac.astype(np.int64)
        eta = index_frac - offset
        taps = np.minimum(limit, (nwin - offset) // step)
        for i in range(int(taps.max(initial=0))):
            live = i < taps
            idx = np.where(live, offset + i * step, 0)
            weight = win[idx] + eta * delta[idx]
            src = first - i if wing == 0 else first + i
            src = np.clip(src, 0, n_orig - 1)
            y += np.where(live, weight, 0.0) * x2[:, src]
    return y.reshape(x.shape[:-1] + (n_out,))


# --------------------------------------------------------------------------- log-mel


def _hertz_to_mel(f):
    return _MEL_HIGH_FREQUENCY_Q * np.log(1.0 + (f / _MEL_BREAK_FREQUENCY_HERTZ))


def mel_matrix(
    num_mel_bins: int = NUM_MEL_BINS,
    num_spectrogram_bins: int = 257,
    audio_sample_rate: int = SAMPLE_RATE,
    lower_edge_hertz: float = MEL_MIN_HZ,
    upper_edge_hertz: float = MEL_MAX_HZ,
) -> np.ndarray:
    """mel_features.spectrogram_to_mel_matrix: (bins, bands), triangles linear in mel, DC row 0."""
    nyquist = audio_sample_rate / 2.0
    if not 0.0 <= lower_edge_hertz < upper_edge_hertz <= nyquist:
        raise ValueError(f"bad mel edges {lower_edge_hertz}..{upper_edge_hertz} Hz (Nyquist {nyquist})")
    bins_mel = _hertz_to_mel(np.linspace(0.0, nyquist, num_spectrogram_bins))
    edges = np.linspace(_hertz_to_mel(lower_edge_hertz), _hertz_to_mel(upper_edge_hertz), num_mel_bins + 2)
    out = np.empty((num_spectrogram_bins, num_mel_bins))
    for i in range(num_mel_bins):
        lower, center, upper = edges[i : i + 3]
        lower_slope = (bins_mel - lower) / (center - lower)
        upper_slope = (upper - bins_mel) / (upper - center)
        out[:, i] = np.maximum(0.0, np.minimum(lower_slope, upper_slope))
    out[0, :] = 0.0
    return out


def _frame(data: np.ndarray, window: int, hop: int) -> np.ndarray:
    """mel_features.frame, but 0 frames (not an error) when data is shorter than a window."""
    num = max(0, 1 + (data.shape[0] - window) // hop)
    if num == 0:
        return np.zeros((0, window) + data.shape[1:], dtype=data.dtype)
    data = np.ascontiguousarray(data)
    shape = (num, window) + data.shape[1:]
    strides = (data.strides[0] * hop,) + data.strides
    return np.lib.stride_tricks.as_strided(data, shape=shape, strides=strides, writeable=False)


def log_mel_spectrogram(data: np.ndarray, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """mel_features.log_mel_spectrogram with VGGish's parameters: (frames, 64) float64."""
    window = int(round(sample_rate * STFT_WINDOW_LENGTH_SECONDS))
    hop = int(round(sample_rate * STFT_HOP_LENGTH_SECONDS))
    fft_length = 2 ** int(np.ceil(np.log(window) / np.log(2.0)))
    frames = _frame(np.asarray(data, dtype=np.float64), window, hop)
    hann = 0.5 - (0.5 * np.cos(2 * np.pi / window * np.arange(window)))  # periodic Hann
    spectrogram = np.abs(np.fft.rfft(frames * hann, fft_length))
    mel = np.dot(spectrogram, mel_matrix(num_spectrogram_bins=spectrogram.shape[1], audio_sample_rate=sample_rate))
    return np.log(mel + LOG_OFFSET)


def waveform_to_examples(samples: np.ndarray, sample_rate: int) -> np.ndarray:
    """vggish_input.waveform_to_examples: (n, 96, 64) float32 log-mel examples.

    `samples` is (n,) or (n, channels) as soundfile returns it, floats around
    [-1, 1]; int16 arrays are scaled by 1/32768 like the WAV path. Inputs
    shorter than one example give (0, 96, 64) (upstream raises below 240
    samples and returns 0 examples otherwise).
    """
    samples = np.asarray(samples)
    if samples.dtype == np.int16:
        samples = samples / 32768.0
    elif not np.issubdtype(samples.dtype, np.floating):
        raise TypeError(f"samples must be float or int16, not {samples.dtype}")
    if samples.ndim == 2:
        if samples.shape[1] > samples.shape[0]:
            raise ValueError(
                f"samples of shape {samples.shape}: expected (n_samples, n_channels); transpose it"
            )
        samples = np.mean(samples, axis=1)
    elif samples.ndim != 1:
        raise ValueError(f"samples must be 1-D or (n, channels), got shape {samples.shape}")
    samples = samples.astype(np.float64, copy=False)
    if sample_rate != SAMPLE_RATE:
        if int(samples.shape[0] * float(SAMPLE_RATE) / sample_rate) < 1:
            samples = np.zeros(0)  # resampy refuses; there is no example in it either
        else:
            samples = resample(samples, sample_rate, SAMPLE_RATE)
    log_mel = log_mel_spectrogram(samples, SAMPLE_RATE)
    features_rate = 1.0 / STFT_HOP_LENGTH_SECONDS
    window = int(round(EXAMPLE_WINDOW_SECONDS * features_rate))
    hop = int(round(EXAMPLE_HOP_SECONDS * features_rate))
    return np.array(_frame(log_mel, window, hop), dtype=np.float32)


def wav_to_examples(path: str | os.PathLike) -> np.ndarray:
    """vggish_input.wavfile_to_examples without the tensor: (n, 96, 64) float32."""
    data, rate = read_wav(path)
    try:
        return waveform_to_examples(data, rate)
    except ValueError as exc:
        raise AVSAudioError(f"{path}: {exc}") from None


def avsbench_log_mel(
    path_or_samples: str | os.PathLike | np.ndarray,
    seconds: int,
    *,
    sample_rate: int | None = None,
    pad: Literal["auto", "repeat", "zeros"] = "auto",
    truncate: bool = False,
) -> np.ndarray:
    """Log-mel input of an AVSBench model: (seconds, 1, 96, 64) float32.

    pad='repeat' is S4/MS3's preprocessing (last example repeated),
    pad='zeros' is AVSS's loader (zero examples appended); 'auto' picks
    'zeros' for seconds == 10 (AVSS) and 'repeat' otherwise (S4/MS3 are 5 s).
    More examples than `seconds` is an error upstream; here too unless
    truncate=True keeps the first `seconds`. Arrays need `sample_rate`.
    """
    if isinstance(path_or_samples, np.ndarray):
        if sample_rate is None:
            raise TypeError("avsbench_log_mel: sample_rate is required for an array of samples")
        examples, source = waveform_to_examples(path_or_samples, sample_rate), "samples"
    else:
        examples, source = wav_to_examples(path_or_samples), str(path_or_samples)
    if seconds < 1:
        raise ValueError(f"seconds must be >= 1, got {seconds}")
    if pad == "auto":
        pad = "zeros" if seconds == 10 else "repeat"
    if pad not in ("repeat", "zeros"):
        raise ValueError(f"pad must be 'auto', 'repeat' or 'zeros', not {pad!r}")
    n = examples.shape[0]
    if n > seconds:
        if not truncate:
            raise AVSAudioError(
                f"{source}: {n} log-mel examples for a {seconds} s clip; AVSBench's code "
                f"fails on this too (pass truncate=True to keep the first {seconds})"
            )
        examples = examples[:seconds]
    elif n < seconds:
        if pad == "zeros":
            fill = np.zeros((seconds - n,) + examples.shape[1:], np.float32)
        elif n == 0:
            raise AVSAudioError(
                f"{source}: no complete 0.975 s example to repeat (upstream fails here too)"
            )
        else:
            fill = np.repeat(examples[-1:], seconds - n, axis=0)
        examples = np.concatenate([examples, fill], axis=0)
    return np.ascontiguousarray(examples[:, None])


# --------------------------------------------------------------------------- pickles

_MAX_ELEMENTS = 1 << 28  # refuse views that would expand into > 1 GiB of float32


def _numeric_spec(spec) -> bool:
    return isinstance(spec, str) and re.fullmatch(r"[biufc]\d{1,2}", spec) is not None


class _DtypeStub:
    """Stands in for numpy.dtype while unpickling; only plain numeric dtypes pass.

    Checked again in resolve(), since NEWOBJ/INST can make one without __init__.
    """

    def __init__(self, spec, align=False, copy=True):
        if not _numeric_spec(spec):
            raise RefusedGlobalError(f"numpy.dtype({spec!r}) is not a plain numeric dtype")
        self.spec, self.order = spec, "="

    def _setstate(self, state):
        if (
            not isinstance(state, tuple)
            or len(state) != 8
            or state[0] not in (3, 4)
            or state[1] not in ("<", ">", "|", "=")
            or state[2:] != (None, None, None, -1, -1, 0)
        ):
            raise RefusedGlobalError(f"numpy.dtype state {state!r} is not a plain numeric dtype")
        self.order = state[1]

    def resolve(self) -> np.dtype:
        spec, order = getattr(self, "spec", None), getattr(self, "order", "=")
        if not _numeric_spec(spec) or order not in ("<", ">", "|", "="):
            raise RefusedGlobalError(f"numpy.dtype({spec!r}) is not a plain numeric dtype")
        dt = np.dtype(spec)
        return dt.newbyteorder(order) if order in "<>" else dt


class _NdarrayToken:
    """What 'numpy.ndarray' resolves to: a marker for _reconstruct, not callable."""

    __slots__ = ()


_NDARRAY = _NdarrayToken()


class _ArrayStub:
    """Stands in for an ndarray built by numpy's _reconstruct + __setstate__."""

    array: np.ndarray | None = None

    def _setstate(self, state):
        if not isinstance(state, tuple) or len(state) not in (4, 5):
            raise RefusedGlobalError("ndarray state is not (version, shape, dtype, fortran, data)")
        shape, dtype, fortran, raw = state[-4:]
        self.array = _array_from_bytes(raw, dtype, shape, "F" if fortran else "C")


def _array_from_bytes(raw, dtype, shape, order) -> np.ndarray:
    if isinstance(raw, str):  # protocol 2 without _codecs (python 2 style)
        raw = raw.encode("latin1")
    if not isinstance(raw, (bytes, bytearray)) or not isinstance(dtype, _DtypeStub):
        raise RefusedGlobalError("ndarray data must be raw bytes with a numeric dtype")
    if not isinstance(shape, tuple) or not all(isinstance(s, int) and s >= 0 for s in shape):
        raise RefusedGlobalError(f"bad ndarray shape {shape!r}")
    if order not in ("C", "F"):
        raise RefusedGlobalError(f"bad ndarray order {order!r}")
    dt = dtype.resolve()
    count = int(np.prod(shape, dtype=np.int64))
    if count * dt.itemsize != len(raw):
        raise AVSAudioError(f"ndarray of shape {shape} {dt} does not match its {len(raw)} data bytes")
    return np.frombuffer(bytes(raw), dtype=dt).reshape(shape, order=order).copy()


def _np_reconstruct(cls, shape, typecode):
    if cls is not _NDARRAY:
        raise RefusedGlobalError("numpy _reconstruct of something other than numpy.ndarray")
    return _ArrayStub()


def _np_frombuffer(buf, dtype, shape, order):
    return _array_from_bytes(buf, dtype, shape, order)


def _latin1_encode(text, encoding="latin1", errors="strict"):
    """_codecs.encode as protocol-2 pickles use it: str -> bytes via latin-1, nothing else."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1") or errors != "strict":
        raise RefusedGlobalError(f"_codecs.encode allowed only as (str, 'latin1'), got encoding {encoding!r}")
    return text.encode("latin1")


def _load_storage_from_bytes(blob):
    """torch.storage._load_from_bytes without its torch.load(weights_only=False)."""
    import torch

    if not isinstance(blob, (bytes, bytearray)):
        raise RefusedGlobalError("_load_from_bytes expects bytes")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            storage = torch.load(io.BytesIO(bytes(blob)), weights_only=True, map_location="cpu")
        except Exception as exc:  # weights-only refusal, corrupt inner file, ...
            lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()] or [type(exc).__name__]
            why = next((ln for ln in lines if "Unsupported" in ln or "GLOBAL" in ln), lines[0])
            raise RefusedGlobalError(f"inner storage bytes refused by torch.load(weights_only=True): {why}") from None
    if not isinstance(storage, torch.storage.TypedStorage):
        raise RefusedGlobalError(f"inner bytes hold a {type(storage).__name__}, not a typed storage")
    return storage


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad, backward_hooks, metadata=None):
    """torch._utils._rebuild_tensor_v2 for a plain CPU tensor, with every argument checked."""
    import torch

    if not isinstance(storage, torch.storage.TypedStorage):
        raise RefusedGlobalError("_rebuild_tensor_v2 needs a storage from _load_from_bytes")
    ints = lambda v: isinstance(v, tuple) and all(isinstance(i, int) and i >= 0 for i in v)  # noqa: E731
    if not (isinstance(storage_offset, int) and storage_offset >= 0 and ints(size) and ints(stride)):
        raise RefusedGlobalError(f"bad tensor geometry offset={storage_offset!r} size={size!r} stride={stride!r}")
    if len(size) != len(stride) or not isinstance(requires_grad, bool):
        raise RefusedGlobalError("bad tensor arguments (size/stride lengths or requires_grad)")
    if backward_hooks or metadata:
        raise RefusedGlobalError("tensor with backward hooks or metadata is not a log-mel tensor")
    numel = int(np.prod(size, dtype=np.int64))
    if numel > _MAX_ELEMENTS:
        raise AVSAudioError(f"tensor of size {size} is too large")
    with warnings.catch_warnings():  # TypedStorage is deprecated, but it is what the bytes hold
        warnings.simplefilter("ignore")
        have = storage.size()
        if numel and storage_offset + sum((s - 1) * st for s, st in zip(size, stride)) >= have:
            raise AVSAudioError(f"tensor view {size}/{stride}+{storage_offset} exceeds its storage of {have}")
        t = torch.empty((0,), dtype=storage.dtype)
        t.set_(storage._untyped_storage, storage_offset, size, stride)
    return t


# (module, name) -> what the unpickler gets instead. Only substitutes and one
# harmless class; nothing here can import, call or open anything else.
ALLOWED_PICKLE_GLOBALS: dict[tuple[str, str], Any] = {
    # torch >= 0.4 (incl. 1.x used by AVSBench and 2.x): Tensor.__reduce_ex__
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    # Storage.__reduce__: legacy torch.save bytes of the storage
    ("torch.storage", "_load_from_bytes"): _load_storage_from_bytes,
    # the (empty) backward_hooks argument of _rebuild_tensor_v2
    ("collections", "OrderedDict"): collections.OrderedDict,
    # protocol <= 2 pickles carry bytes as _codecs.encode(str, 'latin1')
    ("_codecs", "encode"): _latin1_encode,
    # numpy arrays: protocols 0-4 (_reconstruct + __setstate__), 5 (_frombuffer)
    ("numpy.core.multiarray", "_reconstruct"): _np_reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _np_reconstruct,
    ("numpy.core.numeric", "_frombuffer"): _np_frombuffer,
    ("numpy._core.numeric", "_frombuffer"): _np_frombuffer,
    ("numpy", "ndarray"): _NDARRAY,
    ("numpy", "dtype"): _DtypeStub,
}


class _LogMelUnpickler(pickle._Unpickler):
    """The pure-Python unpickler (its opcode table can be changed; files are small).

    Besides find_class, BUILD is narrowed to the two numpy stand-ins: pickle's
    BUILD would otherwise set attributes on whatever object it is given
    (our substitute functions, a tensor via Tensor.__setstate__, ...).
    """

    dispatch = dict(pickle._Unpickler.dispatch)

    def __init__(self, file, name: str):
        super().__init__(file)
        self._name = name

    def _load_build(self):
        state = self.stack.pop()
        inst = self.stack[-1]
        if not isinstance(inst, (_DtypeStub, _ArrayStub)) or not isinstance(state, tuple):
            raise RefusedGlobalError(
                f"{self._name}: refused to set the state of a {type(inst).__name__} "
                "(not part of a pickled log-mel tensor)"
            )
        inst._setstate(state)

    dispatch[pickle.BUILD[0]] = _load_build

    def find_class(self, module, name):
        try:
            return ALLOWED_PICKLE_GLOBALS[(module, name)]
        except (KeyError, TypeError):
            raise RefusedGlobalError(
                f"{self._name}: refused global {module}.{name} (not part of a pickled log-mel tensor)"
            ) from None

    def persistent_load(self, pid):
        raise RefusedGlobalError(f"{self._name}: refused persistent id {pid!r}")


def read_log_mel_pkl(
    path: str | os.PathLike, expected_shape: tuple[int, ...] | None = None
) -> np.ndarray:
    """An AVSBench `.pkl` log-mel file (pickle of a torch tensor or ndarray) as an ndarray.

    Unlike pickle.load, only the globals in ALLOWED_PICKLE_GLOBALS resolve, each
    to a checked substitute, and BUILD only fills numpy stand-ins, so a crafted
    file can neither run code nor change this module. bfloat16 comes back as
    float32 (numpy has no bfloat16). `expected_shape` turns a shape mismatch
    into an error naming the file.
    """
    path = Path(path)
    try:
        with open(path, "rb") as f:
            obj = _LogMelUnpickler(f, str(path)).load()
    except RefusedGlobalError as exc:
        msg = str(exc)
        raise RefusedGlobalError(msg if msg.startswith(str(path)) else f"{path}: {msg}") from None
    except AVSAudioError as exc:
        raise AVSAudioError(f"{path}: {exc}") from None
    except OSError as exc:
        raise AVSAudioError(f"{path}: cannot read ({exc})") from None
    except Exception as exc:  # EOFError, UnpicklingError, TypeError from bad opcodes, ...
        raise AVSAudioError(f"{path}: not a readable log-mel pickle ({type(exc).__name__}: {exc})") from None
    if isinstance(obj, _ArrayStub):
        obj = obj.array
    if not isinstance(obj, np.ndarray):
        import torch

        if not isinstance(obj, torch.Tensor):
            raise AVSAudioError(f"{path}: holds a {type(obj).__name__}, not a tensor or array")
        obj = obj.detach()
        if obj.dtype == torch.bfloat16:
            obj = obj.float()
        obj = obj.numpy().copy()
    if obj.dtype.kind not in "biufc":
        raise AVSAudioError(f"{path}: {obj.dtype} data is not a log-mel array")
    if expected_shape is not None and tuple(obj.shape) != tuple(expected_shape):
        raise AVSAudioError(f"{path}: log-mel shape {tuple(obj.shape)}, expected {tuple(expected_shape)}")
    return obj


# --------------------------------------------------------------------------- cache


def cached_log_mel(
    pkl_or_wav_path: str | os.PathLike,
    cache_dir: str | os.PathLike | None,
    *,
    seconds: int | None = None,
    pad: Literal["auto", "repeat", "zeros"] = "auto",
) -> np.ndarray:
    """Log-mel of a .pkl or .wav, kept as a plain .npy so later reads need no pickle.

    .pkl -> read_log_mel_pkl (shape checked as (seconds, 1, 96, 64) when
    `seconds` is given); .wav -> (n, 1, 96, 64) like wavfile_to_examples, or
    avsbench_log_mel(path, seconds, pad=pad) when `seconds` is given.
    cache_dir=None computes without caching.
    The cache file is `<stem>.<hash of path+options>.<hash of size+mtime>.npy`:
    a source whose size or mtime_ns changed gets a new entry and the stale one
    is removed (an edit keeping both is not noticed). Written to a temp file in
    cache_dir and os.replace'd, so readers never see half a file.
    """
    src = Path(pkl_or_wav_path)
    kind = src.suffix.lower()
    if kind not in (".pkl", ".wav"):
        raise AVSAudioError(f"{src}: expected a .pkl or .wav file")

    def compute() -> np.ndarray:
        if kind == ".pkl":
            shape = None if seconds is None else (seconds, 1, NUM_FRAMES, NUM_BANDS)
            return read_log_mel_pkl(src, expected_shape=shape)
        if seconds is None:
            return wav_to_examples(src)[:, None]
        return avsbench_log_mel(src, seconds, pad=pad)

    if cache_dir is None:
        return compute()
    cache_dir = Path(cache_dir)
    try:
        st = src.stat()
    except OSError as exc:
        raise AVSAudioError(f"{src}: cannot read ({exc})") from None
    variant = f"pkl:{seconds}" if kind == ".pkl" else f"wav:{seconds}:{pad}"
    key = hashlib.sha1(f"{src.resolve()}\0{variant}".encode()).hexdigest()[:16]
    state = hashlib.sha1(f"{st.st_size}:{st.st_mtime_ns}".encode()).hexdigest()[:12]
    stem = re.sub(r"[^A-Za-z0-9_.-]", "_", src.stem)[:80] or "_"
    target = cache_dir / f"{stem}.{key}.{state}.npy"
    if target.exists():
        try:
            return np.load(target, allow_pickle=False)
        except (ValueError, OSError):
            pass  # unreadable entry: rebuild it
    arr = compute()
    cache_dir.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{stem}.", suffix=".tmp", dir=cache_dir)
    try:
        with os.fdopen(fd, "wb") as f:
            np.save(f, np.ascontiguousarray(arr), allow_pickle=False)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; cache entries are ordinary files
        os.replace(tmp, target)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    for stale in cache_dir.glob(f"{stem}.{key}.*.npy"):  # stem holds no glob characters
        if stale != target:
            try:
                stale.unlink()
            except OSError:
                pass
    return np.load(target, allow_pickle=False)
