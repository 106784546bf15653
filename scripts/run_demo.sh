#!/usr/bin/env bash
# The main job on the demo project: build it once, import it into the default
# database, show the statistics and score the demo pseudo-labels against the demo truth.
set -euo pipefail
BIN="${BIN:-.venv/bin}"
DEMO="$("$BIN/python" -c 'from app.settings import default_demo_dir; print(default_demo_dir())')"
"$BIN/avvp-studio" demo --out "$DEMO"
"$BIN/avvp-studio" import llp "$DEMO"
"$BIN/avvp-studio" stats
EXPORT="$(mktemp -d)"
trap 'rm -rf "$EXPORT"' EXIT
"$BIN/avvp-studio" export labels --source pseudo --split test --out "$EXPORT" >/dev/null
echo
echo "Demo pseudo-labels scored against the demo truth (test split):"
"$BIN/avvp-studio" eval --gt-audio "$DEMO/AVVP_eval_audio.csv" --gt-visual "$DEMO/AVVP_eval_visual.csv" \
  --pred-audio "$EXPORT/audio.csv" --pred-visual "$EXPORT/visual.csv" --videos "$DEMO/AVVP_test_pd.csv"
