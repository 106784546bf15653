"""AVSBench audio: VGGish log-mel front end, resampler, WAV reading, the restricted
unpickler for AVSBench .pkl log-mels, and the .npy cache."""
from __future__ import annotations

import collections
import math
import os
import pickle
import struct
import subprocess
import wave

import numpy as np
import pytest
import torch

from annotation import avs_audio as A

SR = 16000


def _noise(seconds: float, seed: int = 0, sr: int = SR) -> np.ndarray:
    return np.random.RandomState(seed).uniform(-0.5, 0.5, int(round(seconds * sr)))


def _write_pcm(path, samples_int, width: int, channels: int = 1, rate: int = SR) -> None:
    """A plain PCM WAV with Python's wave module (ints already in the width's range)."""
    s = np.asarray(samples_int, dtype=np.int64).reshape(-1)
    if width == 1:
        raw = (s + 128).astype(np.uint8).tobytes()
    elif width == 2:
        raw = s.astype("<i2").tobytes()
    elif width == 3:
        raw = b"".join(int(v).to_bytes(3, "little", signed=True) for v in s)
    else:
        raw = s.astype("<i4").tobytes()
    with wave.open(str(path), "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(width)
        w.setframerate(rate)
        w.writeframes(raw)


def _write_riff(path, tag: int, bits: int, channels: int, rate: int, data: bytes, sub: int | None = None):
    """A WAV written by hand: IEEE float (3) or WAVE_FORMAT_EXTENSIBLE, which `wave` refuses."""
    block = channels * bits // 8
    fmt = struct.pack("<HHIIHH", tag, channels, rate, rate * block, block, bits)
    if tag == 0xFFFE:
        guid = struct.pack("<H", sub) + b"\x00\x00\x00\x00\x10\x00\x80\x00\x00\xaa\x00\x38\x9b\x71"
        fmt += struct.pack("<HHI", 22, bits, 0) + guid
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", len(data)) + data
    path.write_bytes(b"RIFF" + struct.pack("<I", len(body)) + body)


# ----------------------------------------------------------------- mel matrix / framing


def _mel(f: float) -> float:
    return 1127.0 * math.log(1.0 + f / 700.0)


def _published_mel_weight(k: int, i: int) -> float:
    """spectrogram_to_mel_matrix entry (bin k, band i) straight from the formula, 512-point FFT."""
    if k == 0:
        return 0.0
    lo, hi = _mel(125.0), _mel(7500.0)
    edge = [lo + (hi - lo) * j / 65 for j in range(66)]
    m = _mel(8000.0 * k / 256)
    return max(0.0, min((m - edge[i]) / (edge[i + 1] - edge[i]), (edge[i + 2] - m) / (edge[i + 2] - edge[i + 1])))


def test_mel_matrix_matches_the_published_formula():
    w = A.mel_matrix()
    assert w.shape == (257, 64)
    assert not w[0].any()  # DC bin excluded
    for k, i in [(4, 0), (5, 0), (6, 1), (32, 19), (32, 20), (100, 38), (200, 57), (236, 63), (240, 63), (256, 63)]:
        assert w[k, i] == pytest.approx(_published_mel_weight(k, i), abs=1e-12)
    # by hand: mel(125) = 185.1695, mel(7500) = 2773.3319, so band edges step by
    # 39.8180 mel; bin 32 is 1000 Hz = 999.9907 mel, between the centres of bands
    # 19 (981.53) and 20 (1021.35): weights (1021.35 - 999.99) / 39.818 = 0.5363 and 0.4637.
    assert _mel(125.0) == pytest.approx(185.1695, abs=1e-4)
    assert _mel(1000.0) == pytest.approx(999.9907, abs=1e-4)
    assert w[32, 19] == pytest.approx(0.5363, abs=1e-4) and w[32, 20] == pytest.approx(0.4637, abs=1e-4)
    assert np.count_nonzero(w[32]) == 2
    assert not w[241:].any()  # above 7500 Hz (bin 240 = 7500 Hz) nothing is kept


def test_sine_lands_in_its_mel_band():
    t = np.arange(SR) / SR
    for f in (500.0, 1000.0, 3000.0):
        ex = A.waveform_to_examples(0.5 * np.sin(2 * np.pi * f * t), SR)
        assert ex.shape == (1, 96, 64) and ex.dtype == np.float32
        bands = ex[0].mean(axis=0)
        # the band whose centre (in mel) is nearest the tone
        lo, hi = _mel(125.0), _mel(7500.0)
        centres = [lo + (hi - lo) * (j + 1) / 65 for j in range(64)]
        expected = int(np.argmin([abs(c - _mel(f)) for c in centres]))
        assert int(bands.argmax()) == expected
        assert bands[expected] > bands.mean() + 5  # log domain: far above the rest


@pytest.mark.parametrize(
    "n_samples, n_examples",
    [(16000, 1), (80000, 5), (68800, 4), (160000, 10), (15600, 1), (15599, 0), (200, 0), (0, 0)],
)
def test_example_counts(n_samples, n_examples):
    """1 s, 5 s, 4.3 s, 10 s; an example needs 95 hops + one window = 15600 samples."""
    out = A.waveform_to_examples(_noise(n_samples / SR), SR)
    assert out.shape == (n_examples, 96, 64)
    if n_samples <= 200:  # too short to resample at all
        assert A.waveform_to_examples(_noise(n_samples / 44100, sr=44100), 44100).shape == (0, 96, 64)


def _slow_reference_examples(x: np.ndarray) -> np.ndarray:
    """VGGish log-mel written from the description, without np.fft, strides or the module."""
    window, hop, nfft = 400, 160, 512
    hann = np.array([0.5 - 0.5 * math.cos(2 * math.pi * n / window) for n in range(window)])
    frames = [x[s : s + window] * hann for s in range(0, len(x) - window + 1, hop)]
    n = np.arange(window)
    k = np.arange(nfft // 2 + 1)
    angle = 2 * np.pi * np.outer(n, k) / nfft  # explicit DFT, zero padding implied
    re, im = np.array(frames) @ np.cos(angle), np.array(frames) @ np.sin(angle)
    mag = np.sqrt(re**2 + im**2)
    weights = np.array([[_published_mel_weight(b, i) for i in range(64)] for b in range(257)])
    logmel = np.log(mag @ weights + 0.01)
    count = (len(logmel) - 96) // 96 + 1
    return np.stack([logmel[96 * e : 96 * e + 96] for e in range(count)]).astype(np.float32)


def test_front_end_matches_a_slow_reference():
    x = _noise(1.3, seed=3)
    got = A.waveform_to_examples(x, SR)
    want = _slow_reference_examples(x)
    assert got.shape == want.shape == (1, 96, 64)
    np.testing.assert_allclose(got, want, atol=1e-5, rtol=0)


def test_stereo_is_averaged_and_int16_scaled():
    left, right = _noise(1.0, 1), _noise(1.0, 2)
    stereo = np.stack([left, right], axis=1)
    np.testing.assert_array_equal(A.waveform_to_examples(stereo, SR), A.waveform_to_examples((left + right) / 2, SR))
    ints = (left * 32767).astype(np.int16)
    np.testing.assert_array_equal(A.waveform_to_examples(ints, SR), A.waveform_to_examples(ints / 32768.0, SR))
    with pytest.raises(ValueError, match="transpose"):
        A.waveform_to_examples(stereo.T, SR)


# ----------------------------------------------------------------- resampler

# Entries of the half_window array in resampy's data/kaiser_best.npz (release <= 0.2.2)
# and the one of 0.3+, read from the published files.
_KAISER_BEST_022 = {
    0: 0.9475937167399596, 1: 0.947588371269956, 2: 0.9475723349686721, 256: 0.6341878970614925,
    511: 0.05400662990660487, 512: 0.05207910617885589, 1000: -0.07315044040130263,
    4097: -0.0343773395274592, 16384: 0.0012568036285549463, 32768: 1.6401183069347287e-08,
}
_KAISER_BEST_03 = {0: 0.9173473712608761, 1: 0.9173473523046404, 8192: 0.08152330317945146,
                   12345: -0.19586227550392074, 409600: -5.2887095330227954e-08}


def test_resampy_tables_match_the_published_ones():
    win, prec = A.resampy_filter("kaiser_best")
    assert win.shape == (32769,) and prec == 512
    for i, v in _KAISER_BEST_022.items():
        assert win[i] == pytest.approx(v, rel=1e-13, abs=1e-17)
    win, prec = A.resampy_filter("kaiser_best_v0.3")
    assert win.shape == (409601,) and prec == 8192
    for i, v in _KAISER_BEST_03.items():
        assert win[i] == pytest.approx(v, rel=1e-12, abs=1e-17)


def _resampy_022_loop(x, sr_orig, sr_new):
    """resampy 0.2.2 resample_f, transcribed loop for loop (numba code run as Python)."""
    win, num_table = A.resampy_filter("kaiser_best")
    ratio = float(sr_new) / sr_orig
    win = win * ratio if ratio < 1 else np.array(win)
    delta = np.zeros_like(win)
    delta[:-1] = np.diff(win)
    y = np.zeros(int(len(x) * ratio))
    scale = min(1.0, ratio)
    inc = 1.0 / ratio
    step = int(scale * num_table)
    reg = 0.0
    for t in range(len(y)):
        n = int(reg)
        frac = scale * (reg - n)
        off = int(frac * num_table)
        eta = frac * num_table - off
        for i in range(min(n + 1, (len(win) - off) // step)):
            y[t] += (win[off + i * step] + eta * delta[off + i * step]) * x[n - i]
        frac = scale - frac
        off = int(frac * num_table)
        eta = frac * num_table - off
        for k in range(min(len(x) - n - 1, (len(win) - off) // step)):
            y[t] += (win[off + k * step] + eta * delta[off + k * step]) * x[n + k + 1]
        reg += inc
    return y


@pytest.mark.parametrize("sr_orig", [44100, 22050, 48000, 8000])
def test_resampler_is_resampys_loop(sr_orig):
    x = np.random.RandomState(sr_orig).randn(sr_orig // 200)
    got = A.resample(x, sr_orig, SR)
    want = _resampy_022_loop(x, sr_orig, SR)
    assert got.shape == want.shape == (int(len(x) * SR / sr_orig),)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-13)


def test_resampler_passes_the_band_and_stops_aliases():
    sr = 44100
    t = np.arange(sr) / sr
    tt = np.arange(SR) / SR
    mid = slice(2000, 14000)  # away from the unpadded ends
    y = A.resample(np.sin(2 * np.pi * 1000 * t), sr, SR)
    assert np.abs(y[mid] - np.sin(2 * np.pi * 1000 * tt[mid])).max() < 5e-3  # 0.2.2's step truncation: ~0.3 % gain
    y3 = A.resample(np.sin(2 * np.pi * 1000 * t), sr, SR, filter="kaiser_best_v0.3")
    assert np.abs(y3[mid] - np.sin(2 * np.pi * 1000 * tt[mid])).max() < 1e-4
    alias = A.resample(np.sin(2 * np.pi * 10000 * t), sr, SR)  # 10 kHz would fold to 6 kHz
    assert np.sqrt(np.mean(alias[mid] ** 2)) < 1e-3
    np.testing.assert_array_equal(A.resample(t, SR, SR), t)


def test_other_rates_are_resampled_before_the_front_end():
    x = _noise(1.2, seed=5, sr=44100)
    np.testing.assert_array_equal(
        A.waveform_to_examples(x, 44100), A.waveform_to_examples(A.resample(x, 44100, SR), SR)
    )


# ----------------------------------------------------------------- WAV files


def test_wav_16bit_is_upstreams_int16_over_32768(tmp_path):
    ints = (_noise(2.0, 7) * 60000).astype(np.int16)
    p = tmp_path / "a.wav"
    _write_pcm(p, ints, 2)
    data, rate = A.read_wav(p)
    assert rate == SR and data.dtype == np.float64
    np.testing.assert_array_equal(data, ints / 32768.0)
    np.testing.assert_array_equal(A.wav_to_examples(p), A.waveform_to_examples(ints / 32768.0, SR))


def test_wav_widths_and_formats_follow_libsndfile(tmp_path):
    rng = np.random.RandomState(1)
    s24 = rng.randint(-(2**23), 2**23, 1000)
    _write_pcm(tmp_path / "p24.wav", s24, 3)
    np.testing.assert_array_equal(A.read_wav(tmp_path / "p24.wav")[0], np.floor(s24 / 256) / 32768.0)
    s32 = rng.randint(-(2**31), 2**31 - 1, 1000, dtype=np.int64)
    _write_pcm(tmp_path / "p32.wav", s32, 4)
    np.testing.assert_array_equal(A.read_wav(tmp_path / "p32.wav")[0], np.floor(s32 / 65536) / 32768.0)
    s8 = rng.randint(-128, 128, 1000)
    _write_pcm(tmp_path / "p8.wav", s8, 1)
    np.testing.assert_array_equal(A.read_wav(tmp_path / "p8.wav")[0], s8 * 256 / 32768.0)
    st = rng.randint(-32768, 32768, (500, 2))
    _write_pcm(tmp_path / "st.wav", st, 2, channels=2)
    data, _ = A.read_wav(tmp_path / "st.wav")
    assert data.shape == (500, 2)
    np.testing.assert_array_equal(data, st / 32768.0)
    # IEEE float and WAVE_FORMAT_EXTENSIBLE (ffmpeg's 24-bit output) go through the RIFF parser
    f = rng.uniform(-1, 1, 800).astype(np.float32)
    _write_riff(tmp_path / "f.wav", 3, 32, 1, 22050, f.astype("<f4").tobytes())
    data, rate = A.read_wav(tmp_path / "f.wav")
    assert rate == 22050
    np.testing.assert_array_equal(data, f.astype(np.float64))
    raw24 = b"".join(int(v).to_bytes(3, "little", signed=True) for v in s24[:600])
    _write_riff(tmp_path / "x24.wav", 0xFFFE, 24, 2, SR, raw24, sub=1)
    data, _ = A.read_wav(tmp_path / "x24.wav")
    np.testing.assert_array_equal(data, (np.floor(s24[:600] / 256) / 32768.0).reshape(300, 2))


def test_bad_wavs_name_the_file(tmp_path):
    cases = {
        "garbage.wav": b"this is not audio at all" * 10,
        "empty.wav": b"",
        "cut.wav": b"RIFF\x24\x00\x00\x00WAVEfmt ",
    }
    for name, blob in cases.items():
        (tmp_path / name).write_bytes(blob)
    _write_riff(tmp_path / "alaw.wav", 6, 8, 1, 8000, b"\x00" * 100)
    for name in [*cases, "alaw.wav"]:
        with pytest.raises(A.AVSAudioError, match=name):
            A.wav_to_examples(tmp_path / name)
    with pytest.raises(A.AVSAudioError, match="missing.wav"):
        A.read_wav(tmp_path / "missing.wav")


# ----------------------------------------------------------------- AVSBench padding


def test_avsbench_s4_repeats_the_last_example(tmp_path):
    x = _noise(4.3, 11)
    p = tmp_path / "clip.wav"
    _write_pcm(p, (x * 32767).astype(np.int16), 2)
    out = A.avsbench_log_mel(p, 5)
    ex = A.wav_to_examples(p)
    assert ex.shape[0] == 4 and out.shape == (5, 1, 96, 64) and out.dtype == np.float32
    np.testing.assert_array_equal(out[:4, 0], ex)
    np.testing.assert_array_equal(out[4, 0], ex[3])


def test_avsbench_avss_pads_zeros_to_ten():
    x = _noise(5.0, 12)
    out = A.avsbench_log_mel(x, 10, sample_rate=SR)  # 'auto' -> zeros for the 10 s AVSS input
    assert out.shape == (10, 1, 96, 64)
    np.testing.assert_array_equal(out[:5, 0], A.waveform_to_examples(x, SR))
    assert not out[5:].any()
    rep = A.avsbench_log_mel(x, 10, sample_rate=SR, pad="repeat")
    np.testing.assert_array_equal(rep[9], rep[4])
    assert not A.avsbench_log_mel(_noise(0.5), 10, sample_rate=SR).any()  # AVSS: no example -> all zeros


def test_avsbench_more_examples_than_seconds_and_none():
    x = _noise(6.0, 13)  # 6 examples for a 5 s slot: AVSBench's own code fails here
    with pytest.raises(A.AVSAudioError, match="6 log-mel examples"):
        A.avsbench_log_mel(x, 5, sample_rate=SR)
    out = A.avsbench_log_mel(x, 5, sample_rate=SR, truncate=True)
    np.testing.assert_array_equal(out[:, 0], A.waveform_to_examples(x, SR)[:5])
    with pytest.raises(A.AVSAudioError, match="no complete"):
        A.avsbench_log_mel(_noise(0.5), 5, sample_rate=SR)
    with pytest.raises(TypeError, match="sample_rate"):
        A.avsbench_log_mel(x, 5)


# ----------------------------------------------------------------- restricted unpickler


def _dump(path, obj, protocol=None):
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=protocol)
    return path


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_pickled_tensors_round_trip(tmp_path, protocol):
    base = torch.tensor(np.random.RandomState(0).randn(4, 96, 64), requires_grad=True)
    tensors = [
        torch.randn(5, 1, 96, 64),
        base[:, None].float(),  # what vggish_input returned: requires_grad, not a leaf
        torch.randn(3, 2, requires_grad=True),
        torch.randn(2, 3, dtype=torch.float64),
        torch.arange(12).reshape(3, 4),
        torch.randn(4, 6)[:, ::2],  # a strided view of a larger storage
        torch.randn(3).half(),
    ]
    for t in tensors:
        got = A.read_log_mel_pkl(_dump(tmp_path / "t.pkl", t, protocol))
        want = t.detach().numpy()
        assert got.dtype == want.dtype and got.shape == want.shape
        np.testing.assert_array_equal(got, want)
    got = A.read_log_mel_pkl(_dump(tmp_path / "b.pkl", torch.ones(2).bfloat16(), protocol))
    assert got.dtype == np.float32 and (got == 1).all()


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_pickled_ndarrays_round_trip(tmp_path, protocol):
    for arr in [
        np.random.RandomState(1).randn(5, 1, 96, 64).astype(np.float32),
        np.arange(6, dtype=">i4").reshape(2, 3),
        np.asfortranarray(np.random.RandomState(2).randn(3, 4)),
    ]:
        got = A.read_log_mel_pkl(_dump(tmp_path / "a.pkl", arr, protocol))
        assert got.dtype == arr.dtype
        np.testing.assert_array_equal(got, arr)
    with pytest.raises(A.RefusedGlobalError, match="numeric"):
        A.read_log_mel_pkl(_dump(tmp_path / "o.pkl", np.array([1, "x"], dtype=object), protocol))


class _Evil:
    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


def test_crafted_pickles_are_refused_and_do_not_run(tmp_path):
    marker = tmp_path / "ran"
    payloads = {
        "system": _Evil(os.system, f"touch {marker}"),
        "eval": _Evil(eval, f"open({str(marker)!r}, 'w')"),
        "Popen": _Evil(subprocess.Popen, ["touch", str(marker)]),
        "load": _Evil(torch.load, str(marker)),
        "open": [torch.ones(2), _Evil(open, str(marker), "w")],  # a tensor first, then the attack
    }
    for name, obj in payloads.items():
        path = _dump(tmp_path / f"{name}.pkl", obj)
        with pytest.raises(A.RefusedGlobalError) as info:
            A.read_log_mel_pkl(path)
        assert str(path) in str(info.value) and f".{name}" in str(info.value)
        assert not marker.exists()


def test_state_setting_and_init_bypass_are_refused(tmp_path):
    """BUILD may only fill the numpy stand-ins; a dtype made without __init__ is still checked."""
    build_on_class = b"\x80\x02ccollections\nOrderedDict\n}X\x03\x00\x00\x00fooK\x01sb."
    set_defaults = (  # (None, {'__defaults__': (1,)}) on the _rebuild_tensor_v2 substitute
        b"\x80\x02ctorch._utils\n_rebuild_tensor_v2\nN}X\x0c\x00\x00\x00__defaults__K\x01\x85s\x86b."
    )
    newobj_dtype = (
        b"\x80\x02cnumpy._core.numeric\n_frombuffer\n(C\x08" + b"\x00" * 8
        + b"cnumpy\ndtype\n)\x81K\x02\x85X\x01\x00\x00\x00CtR."
    )
    for name, blob, msg in [
        ("cls.pkl", build_on_class, "set the state of a type"),
        ("defaults.pkl", set_defaults, "set the state of a function"),
        ("newobj.pkl", newobj_dtype, "not a plain numeric dtype"),
    ]:
        (tmp_path / name).write_bytes(blob)
        with pytest.raises(A.RefusedGlobalError, match=msg):
            A.read_log_mel_pkl(tmp_path / name)
    # and nothing was changed for the next file
    np.testing.assert_array_equal(A.read_log_mel_pkl(_dump(tmp_path / "ok.pkl", torch.ones(2))), np.ones(2, np.float32))


def test_load_from_bytes_with_a_malicious_inner_pickle_is_refused(tmp_path):
    import torch.storage

    marker = tmp_path / "ran"
    inner = pickle.dumps(_Evil(os.system, f"touch {marker}"))
    outer = _Evil(torch.storage._load_from_bytes, inner)  # the same global a real tensor pickle uses
    path = _dump(tmp_path / "inner.pkl", outer, 2)
    with pytest.raises(A.RefusedGlobalError, match="weights_only") as info:
        A.read_log_mel_pkl(path)
    assert str(path) in str(info.value)
    assert not marker.exists()


def test_bad_tensor_geometry_is_refused(tmp_path):
    import torch._utils
    import torch.storage

    storage = torch.arange(6.0).storage()
    blob = storage.__reduce__()[1][0]  # legacy torch.save bytes of a 6-element storage
    storage_obj = _Evil(torch.storage._load_from_bytes, blob)
    for size, stride, msg in [((4, 4), (4, 1), "exceeds"), ((2, -3), (1, 1), "geometry")]:
        evil = _Evil(torch._utils._rebuild_tensor_v2, storage_obj, 0, size, stride, False, collections.OrderedDict())
        with pytest.raises(A.AVSAudioError, match=msg):
            A.read_log_mel_pkl(_dump(tmp_path / "geo.pkl", evil))


def test_truncated_garbage_and_wrong_shape_name_the_file(tmp_path):
    good = _dump(tmp_path / "good.pkl", torch.randn(5, 1, 96, 64))
    blob = good.read_bytes()
    (tmp_path / "cut.pkl").write_bytes(blob[: len(blob) // 2])
    (tmp_path / "junk.pkl").write_bytes(os.urandom(64) + b"\x00junk")
    (tmp_path / "empty.pkl").write_bytes(b"")
    _dump(tmp_path / "dict.pkl", {"a": 1})
    for name in ["cut.pkl", "junk.pkl", "empty.pkl", "dict.pkl", "missing.pkl"]:
        with pytest.raises(A.AVSAudioError, match=name):
            A.read_log_mel_pkl(tmp_path / name)
    assert A.read_log_mel_pkl(good, expected_shape=(5, 1, 96, 64)).shape == (5, 1, 96, 64)
    short = _dump(tmp_path / "short.pkl", torch.randn(4, 1, 96, 64))
    with pytest.raises(A.AVSAudioError, match=r"short\.pkl.*\(4, 1, 96, 64\), expected \(5, 1, 96, 64\)"):
        A.read_log_mel_pkl(short, expected_shape=(5, 1, 96, 64))


# ----------------------------------------------------------------- cache


def test_cache_reads_once_and_invalidates_on_change(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    src = _dump(tmp_path / "clip.pkl", torch.randn(5, 1, 96, 64))
    first = A.cached_log_mel(src, cache)
    np.testing.assert_array_equal(first, A.read_log_mel_pkl(src))
    entries = list(cache.glob("*.npy"))
    assert len(entries) == 1 and entries[0].name.startswith("clip.")
    assert not list(cache.glob("*.tmp"))
    np.load(entries[0], allow_pickle=False)  # a plain array file

    def boom(*a, **k):
        raise AssertionError("source read again")

    monkeypatch.setattr(A, "read_log_mel_pkl", boom)
    np.testing.assert_array_equal(A.cached_log_mel(src, cache), first)
    monkeypatch.undo()

    _dump(src, torch.randn(6, 1, 96, 64))  # new size
    second = A.cached_log_mel(src, cache)
    assert second.shape == (6, 1, 96, 64)
    _dump(src, torch.zeros(6, 1, 96, 64))  # same size, new mtime
    st = os.stat(src)
    os.utime(src, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    assert not A.cached_log_mel(src, cache).any()
    assert len(list(cache.glob("*.npy"))) == 1  # stale entries removed


def test_cache_of_a_wav_and_a_failed_write(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    p = tmp_path / "clip.wav"
    _write_pcm(p, (_noise(4.3, 21) * 32767).astype(np.int16), 2)
    np.testing.assert_array_equal(A.cached_log_mel(p, cache, seconds=5), A.avsbench_log_mel(p, 5))
    plain = A.cached_log_mel(p, cache)
    assert plain.shape == (4, 1, 96, 64)
    assert len(list(cache.glob("*.npy"))) == 2  # options are part of the key

    np.testing.assert_array_equal(A.cached_log_mel(p, None, seconds=10), A.avsbench_log_mel(p, 10))  # no cache
    pkl = _dump(tmp_path / "four.pkl", torch.randn(4, 1, 96, 64))
    with pytest.raises(A.AVSAudioError, match=r"four\.pkl.*expected \(5, 1, 96, 64\)"):
        A.cached_log_mel(pkl, cache, seconds=5)
    assert len(list(cache.glob("*.npy"))) == 2

    def failing_save(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(A.np, "save", failing_save)
    other = _dump(tmp_path / "other.pkl", torch.randn(5, 1, 96, 64))
    with pytest.raises(OSError, match="disk full"):
        A.cached_log_mel(other, cache)
    assert len(list(cache.glob("*.npy"))) == 2 and not [f for f in cache.iterdir() if f.suffix == ".tmp"]
