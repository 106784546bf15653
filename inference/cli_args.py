"""Arguments of the train and predict commands; argparse only, so the CLI starts without importing torch.

Used by `app.cmd_train`, `app.cmd_predict` and `inference.train_ddp`; the work
itself is in `inference.commands`.
"""
from __future__ import annotations

import argparse
import json

from inference.devices import DEVICE_NAMES, check_device_name

FEATURE_SET_NAMES = ("clip_clap", "clip_clap_r21d", "vggish")  # = sorted(inference.data.FEATURE_SETS), tested
MODEL_NAMES = ("ear", "han", "link", "mug", "valor")  # = inference.models.model_names("avvp"), tested
SPLITS = ("train", "val", "test", "all")  # = inference.predict.SPLITS

EXAMPLE = """\
example (the synthetic demo; 600 clips make a demo big enough to learn from, 20 train clips do not):
  avvp-studio demo --out demo600 --clips 600 --no-videos
  avvp-studio train --data demo600 --model valor --out runs/valor
  avvp-studio prior --data demo600 --text-audio demo600/text/clap_captions.npy --text-visual demo600/text/clip_captions.npy
  avvp-studio train --data demo600 --model mug --text-audio demo600/text/clap_captions.npy \\
      --text-visual demo600/text/clip_captions.npy --out runs/mug
  avvp-studio predict --run runs/mug --data demo600 --split test --out runs/mug/test
  avvp-studio eval --gt-audio demo600/AVVP_eval_audio.csv --gt-visual demo600/AVVP_eval_visual.csv \\
      --pred-audio runs/mug/test/audio.csv --pred-visual runs/mug/test/visual.csv --videos demo600/AVVP_test_pd.csv
multi-GPU / multi-node: torchrun --nproc_per_node=N -m inference.train_ddp --data DIR --model han --out RUN_DIR
"""


def device_name(text: str) -> str:
    try:
        return check_device_name(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_data_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", required=True, metavar="DIR",
                        help="LLP-layout data folder (features; also the labels unless --db is given)")
    parser.add_argument("--db", metavar="URL",
                        help="take the labels from this label store (best labels: manual where edited, else pseudo; "
                             "out-of-taxonomy reviews respected) instead of the folder's files")


def json_object(text: str) -> dict:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"not valid JSON ({exc.msg}): {text!r}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"expected a JSON object such as '{{\"hidden\": 256}}', got {text!r}")
    return value


def add_text_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--text-audio", metavar="NPY", help="(25, d) CLAP text embeddings of the captions "
                        "'this is a sound of <class>' (PLSIM of mug and link)")
    parser.add_argument("--text-visual", metavar="NPY", help="(25, d) CLIP text embeddings of 'A photo of <class>.'")


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    add_data_arguments(parser)
    parser.add_argument("--model", metavar="{" + ",".join(MODEL_NAMES) + "}",
                        help="model family (required unless --resume): han (HAN, video-level labels only), valor "
                             "(HAN on segment pseudo-labels, VALOR's recipe), mug, link")
    parser.add_argument("--out", required=True, metavar="RUN_DIR", help="run folder (config, log, checkpoints, metrics)")
    parser.add_argument("--pseudo", metavar="NAME", help="train on the pseudo-label set NAME (avvp-studio "
                        "pseudo-label): DIR/pseudo/NAME, or with --db the label source pseudo:NAME (manual labels "
                        "still win); default: the folder's own segment_pseudo_labels, or the store's imported 'pseudo'")
    parser.add_argument("--feature-set", choices=FEATURE_SET_NAMES,
                        help="default: the model's (han, valor, mug: vggish; link: clip_clap_r21d)")
    parser.add_argument("--model-config", type=json_object, metavar="JSON",
                        help="model options over the recipe's, e.g. '{\"hidden\": 256, \"use_plsim\": false}'")
    add_text_arguments(parser)
    parser.add_argument("--random-text", action="store_true",
                        help="mug/link without caption embeddings: a seeded random stand-in (no language prior)")
    parser.add_argument("--cmrc", type=int, metavar="N", help="add N cross-modal random combination clips (0 = off)")
    parser.add_argument("--cmrc-min-label-count", type=int, metavar="K",
                        help="CMRC follows the label sets seen more than K times in train (default 50 as MUG; "
                             "use 0 on tiny data such as the demo)")
    parser.add_argument("--task-options", type=json_object, metavar="JSON", help="task options as JSON (AVVP: cmrc, "
                        "cmrc_min_label_count)")
    parser.add_argument("--epochs", type=int, metavar="E", help="default: the model's recipe (han: 40, valor: 60)")
    parser.add_argument("--batch-size", type=int, metavar="B", help="per process; default: the recipe's (han: 16)")
    parser.add_argument("--eval-batch-size", type=int, metavar="B", help="validation/test batch (default 64)")
    parser.add_argument("--lr", type=float, metavar="LR", help="default: the recipe's (han: 3e-4)")
    parser.add_argument("--lr-min", type=float, metavar="LR", help="floor of the cosine schedules")
    parser.add_argument("--weight-decay", type=float, metavar="WD")
    parser.add_argument("--optimizer", choices=("adam", "adamw"))
    parser.add_argument("--betas", type=float, nargs=2, metavar=("B1", "B2"), help="Adam betas (VALOR: 0.5 0.999)")
    parser.add_argument("--scheduler", choices=("step", "cosine", "warmup_cosine", "none"),
                        help="learning-rate schedule, stepped per epoch (han: step, /10 every 10 epochs)")
    parser.add_argument("--step-size", type=int, metavar="EPOCHS", help="epochs between decays of the step schedule")
    parser.add_argument("--gamma", type=float, metavar="G", help="decay factor of the step schedule")
    parser.add_argument("--warmup-epochs", type=int, metavar="E", help="linear warm-up of warmup_cosine")
    parser.add_argument("--grad-clip", type=float, metavar="NORM", help="clip the gradient norm (0 = off)")
    parser.add_argument("--device", default=None, type=device_name, help=f"{DEVICE_NAMES} (default auto)")
    parser.add_argument("--seed", type=int, metavar="S", help="random seed (default 1)")
    parser.add_argument("--num-workers", type=int, metavar="N", help="data loading processes (default 0)")
    parser.add_argument("--resume", action="store_true", help="continue the run in RUN_DIR from its last.pt")
    parser.add_argument("--like", metavar="OTHER_RUN_DIR", help="a new run with another run's training config "
                        "(model, recipe, options; the options given here override it), e.g. to retrain on "
                        "corrected labels")
    parser.add_argument("--name", metavar="RUN", help="with --db: the run's name in the database's runs table and "
                        "of its predictions, prediction:RUN (default: the run folder's name)")
    parser.add_argument("--predict", metavar="SPLITS", help="with --db: after training, predict these splits "
                        "(comma list of train,val,test) with the selected checkpoint and store them, with their "
                        "probabilities, as prediction:RUN")
    parser.add_argument("--annotator", metavar="NAME", help="with --db: who started the run (default: the login name)")
    parser.add_argument("--events", action="store_true", help="JSON lines on stdout, one per event (start, step, "
                        "epoch, end, predicted, error, done), for programs (step lines come in bursts, at most every 0.25 s); "
                        "the score tables go to stderr")


def add_predict_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--run", required=True, metavar="RUN_DIR", help="a finished training run")
    add_data_arguments(parser)
    parser.add_argument("--split", default="test", choices=SPLITS, help="clips to predict (default: test)")
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder (npy probabilities, CSVs)")
    parser.add_argument("--name", metavar="RUN", help="with --db: store the predictions as label source "
                        "'prediction:RUN' (default: the run folder's name) so the window overlays them")
    parser.add_argument("--device", default="auto", type=device_name, help=f"{DEVICE_NAMES} (default auto)")
    add_text_arguments(parser)
    parser.add_argument("--zero-priors", action="store_true",
                        help="ablation: feed all-zero priors (shows how much the model leans on them)")
