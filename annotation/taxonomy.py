"""The 25 LLP event classes in canonical index order, with display names and colours.

The index order is the one of the published AVVP code: every grid, pseudo-label
file and prediction in the project uses it.
"""
from __future__ import annotations

from typing import Iterable

CLASSES: tuple[str, ...] = (
    "Speech", "Car", "Cheering", "Dog", "Cat", "Frying_(food)", "Basketball_bounce",
    "Fire_alarm", "Chainsaw", "Cello", "Banjo", "Singing", "Chicken_rooster",
    "Violin_fiddle", "Vacuum_cleaner", "Baby_laughter", "Accordion", "Lawn_mower",
    "Motorcycle", "Helicopter", "Acoustic_guitar", "Telephone_bell_ringing",
    "Baby_cry_infant_cry", "Blender", "Clapping",
)
NUM_CLASSES = len(CLASSES)
NUM_SEGMENTS = 10
CLASS_INDEX: dict[str, int] = {name: i for i, name in enumerate(CLASSES)}

DISPLAY_NAMES: tuple[str, ...] = (
    "Speech", "Car", "Cheering", "Dog", "Cat", "Frying (food)", "Basketball bounce",
    "Fire alarm", "Chainsaw", "Cello", "Banjo", "Singing", "Chicken, rooster",
    "Violin, fiddle", "Vacuum cleaner", "Baby laughter", "Accordion", "Lawn mower",
    "Motorcycle", "Helicopter", "Acoustic guitar", "Telephone bell ringing",
    "Baby cry, infant cry", "Blender", "Clapping",
)

# 25 colours chosen to stay distinguishable on dark and light backgrounds.
COLOURS: tuple[str, ...] = (
    "#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1",
    "#ff9da7", "#9c755f", "#bab0ac", "#1f77b4", "#d62728", "#2ca02c", "#9467bd",
    "#8c564b", "#e377c2", "#17becf", "#bcbd22", "#7f7f7f", "#aec7e8", "#ffbb78",
    "#98df8a", "#c5b0d5", "#c49c94", "#f7b6d2",
)


class UnknownClassError(ValueError):
    """A class name that is not one of the 25 LLP classes."""


def class_index(name: str) -> int:
    try:
        return CLASS_INDEX[name]
    except KeyError:
        raise UnknownClassError(
            f"unknown class {name!r}; expected one of the 25 LLP classes "
            f"({', '.join(CLASSES[:3])}, ..., {CLASSES[-1]})"
        ) from None


def parse_label_list(text: str) -> list[int]:
    """Weak-label text ('Speech,Dog') -> sorted unique class indices.

    Repeated classes ('Clapping,Clapping' occurs in LLP) collapse to one.
    """
    names = text.split(",")
    if "" in names and text != "":
        raise UnknownClassError(f"empty class name in {text!r}; expected comma-separated class names")
    return sorted({class_index(n) for n in names if n != ""})


def format_label_list(indices: Iterable[int]) -> str:
    """Class indices -> canonical weak-label text (canonical class order)."""
    return ",".join(CLASSES[i] for i in sorted(set(indices)))


def hex_to_rgb(colour: str) -> tuple[int, int, int]:
    colour = colour.lstrip("#")
    return int(colour[0:2], 16), int(colour[2:4], 16), int(colour[4:6], 16)
