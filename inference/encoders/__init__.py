"""Frozen image and audio encoders for feature extraction (CLIP through open_clip, CLAP through transformers).

Both libraries are optional extras (`pip install .[clip,clap]`) and are imported only inside the
loaders of `inference.encoders.clip` / `inference.encoders.clap`, so importing this package (or
`inference.extract`) needs neither. Every encoder has the same shape of API:
`encode_images` / `encode_audio` and `encode_text(list[str])` return float32 L2-normalised (n, d)
numpy rows, and `logit_scale` is the multiplier of the cosine in the model's zero-shot logits.

This module holds the class prompts, the one thing both encoders are asked about the classes:
- LLP (25 classes): VALOR's own captions, copied verbatim (typos included, since thresholds were
  tuned on exactly these strings) from Franklin905/VALOR `utils/clip_preprocess.py` lines 230-234
  ("A photo of <thing>.") and `utils/clap_preprocess.py` lines 254-260 ("This is a sound of " +
  the class name lower-cased, its names spelled as there: 'Chicken, rooster', 'Violin fiddle').
- any other class list (dense-event folders, e.g. UnAV-100's 100 classes): EAR's templates
  "A photo of <event>" / "This is the sound of <event>" (EAR paper, Sec. III-B); '_' in a class
  name is read as a space.
"""
from __future__ import annotations

from collections.abc import Sequence

from annotation.taxonomy import CLASSES

VALOR_CLIP_PROMPTS: tuple[str, ...] = (
    "A photo of people talking.", "A photo of a car.", "A photo of people cheering.", "A photo of a dog.",
    "A photo of a cat.", "A photo of frying food.", "A photo of people playing basketball.",
    "A photo of a fire alarm.", "A photo of a chainsaw.", "A photo of a cello.", "A photo of a banjo.",
    "A photo of people singing.", "A photo of a chicken or a rooster.", "A photo of a violin.",
    "A photo of a vaccum cleaner.", "A photo of a laughing baby.", "A photo of an accordion.",
    "A photo of a lawnmower.", "A photo of a motorcycle.", "A photo of a helicopter.",
    "A photo of a acoustic guiter.", "A photo of a ringing telephone.", "A photo of a crying baby.",
    "A photo of a blender.", "A photo of hands clapping.",
)
_VALOR_CLAP_NAMES: tuple[str, ...] = (
    "Speech", "Car", "Cheering", "Dog", "Cat", "Frying (food)", "Basketball bounce", "Fire alarm", "Chainsaw",
    "Cello", "Banjo", "Singing", "Chicken, rooster", "Violin fiddle", "Vacuum cleaner", "Baby laughter",
    "Accordion", "Lawn mower", "Motorcycle", "Helicopter", "Acoustic guitar", "Telephone bell ringing",
    "Baby cry, infant cry", "Blender", "Clapping",
)
VALOR_CLAP_PROMPTS: tuple[str, ...] = tuple("This is a sound of " + name.lower() for name in _VALOR_CLAP_NAMES)


def class_prompts(classes: Sequence[str]) -> tuple[list[str], list[str], str]:
    """(CLIP prompts, CLAP prompts, which template) for a class list: VALOR's captions for the 25 LLP
    classes in canonical order, EAR's templates for any other list."""
    if tuple(classes) == CLASSES:
        return list(VALOR_CLIP_PROMPTS), list(VALOR_CLAP_PROMPTS), "VALOR (LLP captions)"
    names = [name.replace("_", " ").strip() for name in classes]
    return ([f"A photo of {n}" for n in names], [f"This is the sound of {n}" for n in names],
            "EAR templates ('A photo of <event>', 'This is the sound of <event>')")
