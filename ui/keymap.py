"""Keyboard-first editing: default shortcuts and the per-class keys, user-overridable in settings."""
from __future__ import annotations

from annotation.taxonomy import NUM_CLASSES

# action id -> (menu text, default shortcut, tooltip)
ACTIONS: dict[str, tuple[str, str, str]] = {
    "play": ("Play / pause", "Space", "Play or pause the clip with sound"),
    "frame_prev": ("Previous frame", ",", "Step one frame back"),
    "frame_next": ("Next frame", ".", "Step one frame forward"),
    "speed_down": ("Slower", "[", "Play slower (down to 0.25x)"),
    "speed_up": ("Faster", "]", "Play faster (up to 2x)"),
    "loop": ("Loop selection", "L", "Loop the selected segments, or the current one; again to stop"),
    "play_once": ("Play selection once", "Shift+Space", "Play the selected segments, or the current one, once"),
    "zoom_in": ("Zoom in", "Ctrl+=", "Zoom the waveform and spectrogram in on time (also: wheel)"),
    "zoom_out": ("Zoom out", "Ctrl+-", "Zoom the waveform and spectrogram out (also: wheel)"),
    "zoom_reset": ("Whole clip", "Ctrl+0", "Show the whole clip in the waveform and spectrogram"),
    "segment_prev": ("Previous segment", "Left", "Move the cursor and the playhead one second back"),
    "segment_next": ("Next segment", "Right", "Move the cursor and the playhead one second forward"),
    "select_prev": ("Extend selection left", "Shift+Left", "Grow the segment selection to the left"),
    "select_next": ("Extend selection right", "Shift+Right", "Grow the segment selection to the right"),
    "row_up": ("Cursor up", "Up", "Move the cursor to the class above"),
    "row_down": ("Cursor down", "Down", "Move the cursor to the class below"),
    "toggle_cell": ("Toggle cell", "Return", "Toggle the cursor class over the current segment or selection"),
    "switch_track": ("Switch track", "Tab", "Edit the other track (audio / visual)"),
    "copy_row": ("Copy row to other track", "Ctrl+D", "Copy the cursor class row to the other track"),
    "copy_audio_to_visual": ("Copy audio labels to visual", "Ctrl+Alt+V", "Replace the visual grid by the audio grid"),
    "copy_visual_to_audio": ("Copy visual labels to audio", "Ctrl+Alt+A", "Replace the audio grid by the visual grid"),
    "clear_track": ("Clear track", "Ctrl+Backspace", "Clear every label of the active track"),
    "accept": ("Accept (annotated)", "Ctrl+Return", "Mark the clip annotated and go to the next one"),
    "out_of_taxonomy": ("Out of taxonomy", "Ctrl+T", "What is seen belongs to none of the 25 classes: excluded from CMRC"),
    "skip": ("Skip", "Ctrl+K", "Mark skipped and go to the next clip"),
    "note": ("Note…", "Ctrl+N", "Write a note on this clip"),
    "next_clip": ("Next clip", "PgDown", "Next clip in the queue"),
    "prev_clip": ("Previous clip", "PgUp", "Previous clip in the queue"),
    "next_unreviewed": ("Next unreviewed clip", "Ctrl+PgDown", "The next clip of the list still pending"),
    "history": ("Edit history…", "Ctrl+Shift+H", "Who changed this clip's labels when; restore a version"),
    "overlay": ("Model over the video", "M", "Show the prediction run's events of the segment over the video: heard "
                "or seen, confidence, and agree / model only / label only against the labels now"),
    "toggle_view": ("Diff view", "Ctrl+E", "Switch between side-by-side layers and the diff view"),
    "toggle_others": ("Show other classes", "Ctrl+H", "Show or hide the classes outside the weak label"),
}

# One key per class for the current segment: digits, then the top and bottom letter rows.
DEFAULT_CLASS_KEYS: tuple[str, ...] = tuple("1234567890QWERTYUIOPZXCVB")
assert len(DEFAULT_CLASS_KEYS) == NUM_CLASSES


def class_keys(overrides: dict[str, str] | None = None) -> list[str]:
    """Key text per class index; overrides map 'class:<index>' -> key."""
    keys = list(DEFAULT_CLASS_KEYS)
    for name, key in (overrides or {}).items():
        if name.startswith("class:"):
            keys[int(name.split(":", 1)[1])] = key
    return keys


def action_shortcuts(overrides: dict[str, str] | None = None) -> dict[str, str]:
    shortcuts = {name: default for name, (_, default, _) in ACTIONS.items()}
    shortcuts.update({k: v for k, v in (overrides or {}).items() if k in ACTIONS})
    return shortcuts


def conflicts(shortcuts: dict[str, str], keys: list[str]) -> list[str]:
    """Human-readable list of duplicated bindings (shown in the settings dialog)."""
    seen: dict[str, str] = {}
    problems = []
    for name, key in list(shortcuts.items()) + [(f"class:{i}", k) for i, k in enumerate(keys)]:
        if not key:
            continue
        norm = key.upper()
        if norm in seen:
            problems.append(f"{key} is bound to both {seen[norm]} and {name}")
        seen[norm] = name
    return problems
