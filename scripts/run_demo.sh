#!/usr/bin/env bash
# `make run`: build the demo project once, import it into the default database
# (idempotent), show its statistics, then open AVVP Studio on it. Without a display
# the main job is headless: the demo pseudo-labels are scored against the demo truth.
set -euo pipefail
BIN="${BIN:-.venv/bin}"
DEMO="$("$BIN/python" -c 'from app.settings import default_demo_dir; print(default_demo_dir())')"
"$BIN/avvp-studio" demo --out "$DEMO"
"$BIN/avvp-studio" import llp "$DEMO"
# a zero-shot pseudo-label set (VALOR's rule on the demo's features and captions) for the timelines' Pseudo layer
DB="$("$BIN/python" -c 'from app.settings import resolve_database; print(resolve_database(None))')"
"$BIN/avvp-studio" pseudo-label --data "$DEMO" --method zero-shot --thresholds val --name zero-shot --db "$DB" >/dev/null
# a small synthetic AVSBench S4 project for the segmentation window (Model > Segmentation masks...)
if [ ! -f "$DEMO-avs/Single-source/s4_meta_data.csv" ]; then
  "$BIN/avvp-studio" avs demo --out "$DEMO-avs" --subset s4 --clips 24 >/dev/null
fi
"$BIN/avvp-studio" avs import "$DEMO-avs" --subset s4
"$BIN/avvp-studio" stats
if [ -n "${DISPLAY:-}${WAYLAND_DISPLAY:-}" ] || [ "$(uname)" = Darwin ]; then
  exec "$BIN/avvp-studio" gui
fi
echo
echo "No display: not opening the window (run 'make run' on a desktop, or see scripts/screenshots.py)."
EXPORT="$(mktemp -d)"
trap 'rm -rf "$EXPORT"' EXIT
"$BIN/avvp-studio" export labels --source pseudo --split test --out "$EXPORT" >/dev/null
echo "Demo pseudo-labels scored against the demo truth (test split):"
"$BIN/avvp-studio" eval --gt-audio "$DEMO/AVVP_eval_audio.csv" --gt-visual "$DEMO/AVVP_eval_visual.csv" \
  --pred-audio "$EXPORT/audio.csv" --pred-visual "$EXPORT/visual.csv" --videos "$DEMO/AVVP_test_pd.csv"
