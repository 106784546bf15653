"""`avvp-studio features`: per-segment CLIP/CLAP embeddings from raw videos (VALOR's procedure), resumable."""
from __future__ import annotations

import argparse
import json
import sys

from app.errors import UsageError
from app.progress import StderrProgress, int_at_least
from inference.cli_args import device_name
from inference.devices import DEVICE_NAMES

EXAMPLE = """\
examples:
  avvp-studio features --data DIR --set clip_clap --clip-model ViT-L-14.pt --clap-model clap-htsat-fused/
  avvp-studio features --data demo --set clip_clap --tiny-random      (random tiny models: demos and tests only)
checkpoints (local files only, nothing is downloaded):
  --clip-model  OpenAI's ViT-L-14.pt (TorchScript file of github.com/openai/CLIP; opened only if its SHA-256 is
                OpenAI's), or a state-dict checkpoint (.pt/.bin/.safetensors) of open_clip's ViT-L-14
  --clap-model  a folder saved by transformers' save_pretrained of a CLAP model, e.g. laion/clap-htsat-fused
                (VALOR used laion_clap's 630k fusion checkpoint): config.json, model.safetensors or
                pytorch_model.bin, preprocessor_config.json, tokenizer files
"""


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "features", help="extract per-segment CLIP/CLAP embeddings from the raw videos of a data folder",
        description="For every clip with a raw video: CLIP/features/<id>.npy (T, d_v) image embeddings of VALOR's "
        "frames (ffmpeg -r 8 frame choice, round(linspace(0, N-1, T)), 224x224 resize without crop) and "
        "CLAP/features/<id>.npy (T, d_a) embeddings of T equal 48 kHz audio segments (int16 quantised, "
        "repeat-padded to 10 s), L2-normalised; then text/clip_captions.npy, text/clap_captions.npy and "
        "text/captions.json for the folder's classes. LLP folders: the weak CSVs' clips, T = 10, "
        "DIR/raw_videos/<id>.mp4. Dense-event folders: dense_events.json's clips, videos and T. Clips already "
        "done are skipped (--force redoes them); files are replaced whole, so a stopped run resumes.",
        epilog=EXAMPLE, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--data", required=True, metavar="DIR", help="LLP data folder or dense-event folder")
    parser.add_argument("--set", required=True, choices=["clip_clap"], help="feature set to extract (clip_clap)")
    parser.add_argument("--clip-model", metavar="FILE", help="CLIP checkpoint file (see below)")
    parser.add_argument("--clip-arch", metavar="NAME",
                        help="open_clip model name of a --clip-model state dict that is not in OpenAI's layout "
                             "(default: OpenAI's layout, dimensions read from the weights)")
    parser.add_argument("--clap-model", metavar="DIR", help="CLAP checkpoint folder (see below)")
    parser.add_argument("--tiny-random", action="store_true",
                        help="tiny models with RANDOM weights instead of checkpoints (demos and tests; the features "
                             "mean nothing)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the --tiny-random weights (default 0)")
    parser.add_argument("--device", default="auto", type=device_name, help=f"{DEVICE_NAMES} (default auto)")
    parser.add_argument("--batch-clips", type=int_at_least(1), default=8, metavar="N",
                        help="clips whose frames / audio segments go through each model at once (default 8)")
    parser.add_argument("--workers", type=int_at_least(1), default=None, metavar="N",
                        help="threads decoding videos ahead of the models (default: CPU cores - 1, 2 to 4)")
    parser.add_argument("--out", metavar="DIR", help="write CLIP/, CLAP/ and text/ here instead of into --data")
    parser.add_argument("--force", action="store_true", help="redo clips whose feature files already exist")
    parser.add_argument("--events", action="store_true",
                        help="JSON lines on stdout (start, progress, done, error) instead of the text report")
    parser.set_defaults(func=run)


def _emit(event: dict) -> None:
    print(json.dumps(event), flush=True)


def _device(name: str) -> str:
    """The trainer's device rule (auto: a GPU when torch sees one), its refusal as a usage error."""
    from inference.checkpoint import RunError
    from inference.train import resolve_device

    try:
        return str(resolve_device(name))
    except RunError as exc:
        raise UsageError(f"--device {name}: {exc}; use --device cpu or auto") from None


def _check_models(args: argparse.Namespace) -> None:
    """Refuse a wrong choice of models before any data or library is read."""
    from inference.encoders.clap import WANTED as CLAP_WANTED
    from inference.encoders.clip import WANTED as CLIP_WANTED

    if args.tiny_random:
        if args.clip_model or args.clap_model:
            raise UsageError("--tiny-random builds random models; leave out --clip-model and --clap-model")
        return
    if not args.clip_model:
        raise UsageError(f"no CLIP checkpoint: {CLIP_WANTED} (or --tiny-random for a demo)")
    if not args.clap_model:
        raise UsageError(f"no CLAP checkpoint: {CLAP_WANTED} (or --tiny-random for a demo)")


def _encoders(args: argparse.Namespace, device: str):
    from inference.encoders.clap import load_clap, tiny_clap
    from inference.encoders.clip import load_clip, tiny_clip

    if args.tiny_random:
        return tiny_clip(args.seed, device), tiny_clap(args.seed, device)
    return load_clip(args.clip_model, device, arch=args.clip_arch), load_clap(args.clap_model, device)


def run(args: argparse.Namespace) -> int:
    from annotation.errors import DataFileError
    from inference.extract import extract_features, folder_clips

    try:
        _check_models(args)
        device = _device(args.device)
        clips = folder_clips(args.data)
        if args.events:
            _emit({"event": "start", "set": args.set, "kind": clips.kind, "clips": len(clips.jobs),
                   "out": args.out or args.data, "tiny_random": bool(args.tiny_random)})
        clip_encoder, clap_encoder = _encoders(args, device)
        progress = (lambda stage, done, total: _emit({"event": "progress", "stage": stage, "done": done,
                                                      "total": total})) if args.events else StderrProgress(unit="clips")
        report = extract_features(args.data, clip_encoder, clap_encoder, out=args.out, batch_clips=args.batch_clips,
                                  force=args.force, workers=args.workers, progress=progress)
    except (DataFileError, UsageError, ModuleNotFoundError) as exc:
        if not args.events:
            if isinstance(exc, ModuleNotFoundError):
                raise UsageError(str(exc)) from None
            raise
        _emit({"event": "error", "message": str(exc)})
        return 2
    nothing = report.written + report.already_done == 0 and bool(report.failed)
    if args.events:
        _emit({"event": "done", **report.as_dict()})
        return 2 if nothing else 0
    _print_report(report)
    return 2 if nothing else 0


def _print_report(report) -> None:
    print(f"features: {report.written} clips written, {report.already_done} already done, {len(report.failed)} "
          f"skipped ({report.kind} folder of {report.clips} clips) in {report.seconds:.1f} s "
          f"({report.clips_per_second:.2f} clips/s)")
    print(f"  visual: {report.visual_encoder}")
    print(f"  audio:  {report.audio_encoder}")
    print(f"  captions: {report.out}/text/ ({report.captions.get('template', '')})")
    if report.random_weights:
        print("warning: RANDOM model weights (--tiny-random): these features and captions are for demos and tests, "
              "not for training or pseudo-labels that mean anything", file=sys.stderr)
    if report.failed:
        shown = "; ".join(f"{vid}: {why}" for vid, why in list(report.failed.items())[:10])
        more = f" (and {len(report.failed) - 10} more)" if len(report.failed) > 10 else ""
        print(f"warning: {len(report.failed)} clip(s) without features: {shown}{more}", file=sys.stderr)
