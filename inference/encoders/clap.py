"""CLAP audio/text encoder through transformers' ClapModel, with laion_clap's front end as VALOR ran it.

VALOR (`utils/clap_preprocess.py` l.241-242) loads `laion_clap.CLAP_Module(enable_fusion=True)` with
`load_ckpt(model_id=2)`, the LAION-630k FUSION checkpoint (630k-fusion-best.pt; laion_clap hook.py l.84-87),
and embeds each 1-s segment with `get_audio_embedding_from_data` (l.98). What that does to a segment, read in
laion_clap 1.1.4 (the version of VALOR's environment.yaml; LAION-AI/CLAP commit 740d350) and in VALOR's
copy of it (`utils/clap_utils.py` l.12-156):
1. int16 quantisation: `int16_to_float32(float32_to_int16(x))` (clip to [-1, 1], x * 32767 truncated to int16,
   / 32767) (hook.py l.171-176, with `self.model.eval()`);
2. 'repeatpad' to 480,000 samples (10 s): tiled int(480000 / n) times, then zero-padded (training/data.py
   `get_audio_features`; clap_utils.py l.122-132);
3. 'fusion' mel of the padded wave (data.py l.363-392 `get_mel`): torchaudio MelSpectrogram(48 kHz, n_fft = win
   = 1024, hop 480, center, reflect, power 2, 64 HTK mels, no norm, fmin 50, fmax 14,000 from
   model_configs/HTSAT-tiny.json), AmplitudeToDB (10 log10, floor 1e-10), stacked 4 times; `longer` = False;
4. HTS-AT in eval mode: when no input is longer than 10 s, `forward` takes its eval branch (htsat.py l.868-878:
   the first mel copy only, `longer_idx=[]`; the random "one input is longer" marking is for training), then
   the audio projection and L2 normalisation: (n, 512).
Here: steps 1-2 as written; step 3 as torchaudio computes it in laion_clap (torch.stft in float32, power,
matmul with the filter bank, 10 log10 of the clamped power) for a whole batch at once, with the filters of
the checkpoint's own ClapFeatureExtractor (its frequency range; `mel_filters`, HTK = torchaudio's, for a
fusion model, `mel_filters_slaney` for an unfused one: chosen by the model's `enable_fusion`, as in
laion_clap). transformers' extractor computes the same mel in float64 numpy one frame at a time
(`reference_features` runs it): on the real LLP clip the two differ by at most 0.03 dB, the embeddings of the
tiny and of a real-size random model by < 1e-6; step 4 by
ClapModel.get_audio_features with is_longer False for every segment and ONE mel copy, which is what the
fusion model reads when nothing is longer. Two traps avoided: transformers' ClapFeatureExtractor marks one
random input of every call `is_longer=True` when none is (laion_clap does that in training mode only), and
it computes four identical mel copies the model never reads.
Text (clap_preprocess.py l.61-72, l.254-260): RoBERTa tokens padded to 77 ('max_length', as laion_clap's
`tokenize`), `get_text_features`, L2-normalised. Logit scale: exp(logit_scale_a) (l.112-116).

Checkpoints (nothing is downloaded): a local folder saved by transformers (`save_pretrained`) of a CLAP model:
config.json, model.safetensors (preferred) or pytorch_model.bin (read weights-only by transformers),
preprocessor_config.json and the tokenizer files. laion/clap-htsat-fused and laion/clap-htsat-unfused are
transformers conversions of laion_clap fusion and non-fusion checkpoints; VALOR's is 630k-fusion-best.pt
(which of laion's checkpoints a converted folder holds is the converter's choice: not checked here).
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import torch

from annotation.errors import DataFileError

WANTED = ("pass --clap-model DIR: a local folder of a transformers CLAP checkpoint (e.g. laion/clap-htsat-fused "
          "saved with save_pretrained: config.json, model.safetensors or pytorch_model.bin, "
          "preprocessor_config.json, tokenizer files)")


def _transformers():
    """transformers, after the torchvision compatibility step when torchvision is installed (transformers
    imports it then)."""
    if importlib.util.find_spec("torchvision") is not None:
        from inference.encoders.compat import ensure_torchvision_ops

        ensure_torchvision_ops()
    try:
        import transformers
    except ModuleNotFoundError as exc:
        raise ModuleNotFoundError(f"CLAP extraction needs transformers ({exc}); install it with: "
                                  "pip install '.[clap]'") from None
    return transformers


def quantize_int16(x: np.ndarray) -> np.ndarray:
    """laion_clap's int16_to_float32(float32_to_int16(x))."""
    return ((np.clip(x, -1.0, 1.0) * 32767.0).astype(np.int16) / 32767.0).astype(np.float32)


def repeatpad(x: np.ndarray, length: int) -> np.ndarray:
    """laion_clap's 'repeatpad': tile int(length / n) times, then zero-pad to `length`."""
    if len(x) == 0 or len(x) > length:
        raise ValueError(f"a CLAP segment must hold 1 to {length} samples, got {len(x)}")
    tiled = np.tile(x, int(length / len(x)))
    return np.pad(tiled, (0, length - len(tiled)))


class ClapEncoder:
    """A frozen transformers ClapModel: `features` (the front end above), `embed_features`, `encode_audio`,
    `encode_text`."""

    def __init__(self, model, extractor, tokenizer, name: str, device: str | torch.device = "cpu",
                 random_weights: bool = False, max_batch: int = 64):
        self.device = torch.device(device)
        self.model = model.float().eval().to(self.device)
        for param in self.model.parameters():
            param.requires_grad_(False)
        self.extractor = extractor
        self.tokenizer = tokenizer
        self.name = name
        self.random_weights = random_weights
        self.max_batch = max_batch
        # laion_clap's front end follows the model: fusion checkpoints take torchaudio's HTK mel, unfused ones
        # HTS-AT's own librosa (Slaney) mel, whatever truncation a preprocessor_config.json names
        self.fusion = bool(getattr(model.config.audio_config, "enable_fusion", False))
        filters = extractor.mel_filters if self.fusion else extractor.mel_filters_slaney
        filters = torch.from_numpy(np.asarray(filters, dtype=np.float32))  # (frequency bins, mels)
        used = torch.nonzero(filters.abs().sum(1)).flatten()  # the bins some filter weighs: a slice
        self._bins = slice(int(used[0]), int(used[-1]) + 1) if len(used) else slice(0, 1)
        self._filters = filters[self._bins]  # (used bins, mels)
        self._window = torch.hann_window(extractor.fft_window_size, periodic=True, dtype=torch.float32)
        self.max_samples = int(extractor.nb_max_samples)
        self.sampling_rate = int(extractor.sampling_rate)
        self.dim = int(model.config.projection_dim)
        self.logit_scale = float(model.logit_scale_a.detach().exp())

    def features(self, segments: list[np.ndarray]) -> np.ndarray:
        """Mono segments at the model's rate -> (n, 1, frames, mels) float32 log-mel inputs."""
        if not segments:
            return np.zeros((0, 1, self.max_samples // self.extractor.hop_length + 1, self.extractor.feature_size),
                            np.float32)
        n_fft, hop = self.extractor.fft_window_size, self.extractor.hop_length
        waves, ends = np.zeros((len(segments), self.max_samples), np.float32), []
        for row, segment in zip(waves, segments):  # repeatpad, written in place (no tiled copy, no padded copy)
            x = quantize_int16(np.asarray(segment, np.float32))
            if len(x) == 0 or len(x) > self.max_samples:
                raise ValueError(f"a CLAP segment must hold 1 to {self.max_samples} samples, got {len(x)}")
            ends.append(int(self.max_samples / len(x)) * len(x))
            row[:ends[-1]].reshape(-1, len(x))[:] = x
        # torchaudio's MelSpectrogram + AmplitudeToDB, as laion_clap's get_mel runs them (float32): torch.stft's
        # centring (reflect padding by n_fft // 2) done first, so that the frames lying wholly in every wave's
        # zero tail are left out (their power is exactly 0, hence 0 mel, as torch.stft would give); the power
        # is re^2 + im^2 (torchaudio: |z|^2 through a square root, the same to 3e-7 relative and half the
        # time), and only for the frequency bins some mel filter weighs (the others are multiplied by 0)
        half, frames = n_fft // 2, self.max_samples // hop + 1
        padded = torch.nn.functional.pad(torch.from_numpy(waves).unsqueeze(1), (half, half), mode="reflect")[:, 0]
        tail = max(ends)  # every wave is 0 from here on; reflect padding mirrors zeros when tail <= L - half - 1
        needed = min(frames, -(-(tail + half) // hop)) if tail <= self.max_samples - half - 1 else frames
        spec = torch.stft(padded[:, :(needed - 1) * hop + n_fft], n_fft=n_fft, hop_length=hop, win_length=n_fft,
                          window=self._window, center=False, return_complex=True)[:, self._bins]
        mel = torch.zeros(len(segments), frames, self._filters.shape[1])
        mel[:, :needed] = torch.matmul((spec.real.square() + spec.imag.square()).transpose(-1, -2), self._filters)
        return (10.0 * torch.log10(torch.clamp(mel, min=1e-10))).unsqueeze(1).numpy()

    def reference_features(self, segments: list[np.ndarray]) -> np.ndarray:
        """The same inputs through transformers' ClapFeatureExtractor itself (slow; for checks), first mel copy."""
        waves = [repeatpad(quantize_int16(np.asarray(s, np.float32)), self.max_samples) for s in segments]
        out = self.extractor(waves, sampling_rate=self.sampling_rate, return_tensors="np",
                             truncation="fusion" if self.fusion else "rand_trunc")
        return np.asarray(out["input_features"], np.float32)[:, :1]

    @torch.no_grad()
    def embed_features(self, features: np.ndarray, copies: int = 1) -> np.ndarray:
        """(n, 1, frames, mels) -> (n, d) float32 L2-normalised audio embeddings (is_longer False for all).
        `copies=4` feeds the four mel copies laion_clap builds (same result; for checks)."""
        out = []
        for start in range(0, len(features), self.max_batch):
            chunk = torch.from_numpy(features[start:start + self.max_batch]).to(self.device)
            if self.fusion and copies > 1:
                chunk = chunk.expand(-1, copies, -1, -1)
            longer = torch.zeros(len(chunk), 1, dtype=torch.bool, device=self.device)
            result = self.model.get_audio_features(input_features=chunk, is_longer=longer)
            emb = getattr(result, "pooler_output", result)
            out.append((emb / emb.norm(p=2, dim=-1, keepdim=True)).float().cpu())
        return torch.cat(out).numpy() if out else np.zeros((0, self.dim), np.float32)

    def encode_audio(self, segments: list[np.ndarray]) -> np.ndarray:
        return self.embed_features(self.features(segments))

    @torch.no_grad()
    def encode_text(self, texts: list[str]) -> np.ndarray:
        tokens = self.tokenizer(list(texts), padding="max_length", truncation=True, max_length=77, return_tensors="pt")
        result = self.model.get_text_features(input_ids=tokens["input_ids"].to(self.device),
                                              attention_mask=tokens["attention_mask"].to(self.device))
        emb = getattr(result, "pooler_output", result)
        return (emb / emb.norm(p=2, dim=-1, keepdim=True)).float().cpu().numpy()


def load_clap(path: str | Path, device: str | torch.device = "cpu") -> ClapEncoder:
    """A CLAP encoder from a local transformers checkpoint folder (local files only)."""
    path = Path(path)
    if not path.is_dir() or not (path / "config.json").is_file():
        raise DataFileError(path, f"{'no config.json in this folder' if path.is_dir() else 'not a folder'}; {WANTED}")
    weights = [name for name in ("model.safetensors", "pytorch_model.bin") if (path / name).is_file()]
    if not weights and not list(path.glob("model-*.safetensors")):
        raise DataFileError(path, f"no model.safetensors or pytorch_model.bin; {WANTED}")
    transformers = _transformers()
    try:
        model = transformers.ClapModel.from_pretrained(path, local_files_only=True,
                                                       use_safetensors=not weights or weights[0] != "pytorch_model.bin")
        extractor = transformers.ClapFeatureExtractor.from_pretrained(path, local_files_only=True)
        tokenizer = transformers.AutoTokenizer.from_pretrained(path, local_files_only=True)
    except (OSError, ValueError, KeyError) as exc:
        raise DataFileError(path, f"cannot load a CLAP checkpoint from it ({str(exc).splitlines()[0][:200]}); "
                                  f"{WANTED}") from None
    return ClapEncoder(model, extractor, tokenizer, f"transformers ClapModel from {path.name}", device)


def _tiny_tokenizer(transformers):
    """A RoBERTa-style byte-level BPE tokenizer with no merges (one token per byte), built in memory."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors

    specials = ["<s>", "<pad>", "</s>", "<unk>"]
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    vocab = {token: i for i, token in enumerate(specials + sorted(alphabet))}
    core = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    core.post_processor = processors.RobertaProcessing(("</s>", 2), ("<s>", 0))
    return transformers.PreTrainedTokenizerFast(tokenizer_object=core, bos_token="<s>", eos_token="</s>",
                                                pad_token="<pad>", unk_token="<unk>", model_max_length=77)


def tiny_clap(seed: int = 0, device: str | torch.device = "cpu") -> ClapEncoder:
    """A tiny CLAP with RANDOM weights (HTS-AT: fusion, 2 stages of 1 block, patch 16, width 32-64; text: 1 layer
    of width 32, byte-level tokens; projection 16), for demos and tests. The real front end: a
    ClapFeatureExtractor with laion_clap's audio settings (48 kHz, 10 s, 64 HTK mels from 50 to 14,000 Hz,
    'fusion', 'repeatpad')."""
    transformers = _transformers()
    tokenizer = _tiny_tokenizer(transformers)
    audio = {"depths": [1, 1], "num_attention_heads": [1, 1], "hidden_size": 64, "patch_embeds_hidden_size": 32,
             "spec_size": 256, "num_mel_bins": 64, "window_size": 4, "patch_size": 16, "patch_stride": [16, 16],
             "projection_dim": 16, "enable_fusion": True, "fusion_type": "aff_2d"}
    text = {"hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 1, "intermediate_size": 37,
            "projection_dim": 16, "vocab_size": len(tokenizer), "max_position_embeddings": 80,
            "pad_token_id": tokenizer.pad_token_id}
    config = transformers.ClapConfig(text_config=text, audio_config=audio, projection_dim=16)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = transformers.ClapModel(config)
    extractor = transformers.ClapFeatureExtractor(frequency_min=50, frequency_max=14_000)  # laion's 630k audio_cfg
    return ClapEncoder(model, extractor, tokenizer,
                       f"tiny random CLAP (seed {seed}, NOT trained)", device, random_weights=True)
