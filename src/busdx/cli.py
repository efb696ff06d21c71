"""The ``busdx`` command: ``busdx predict`` (scans → CSV, masks, overlays) and ``busdx app``.

Research use only: busdx is not a medical device.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

EXIT_OK = 0
EXIT_INPUTS = 1  # some inputs could not be read (reported); the others were predicted
EXIT_USAGE = 2  # bad arguments, no inputs, missing/unusable model or params

EXIT_CODES = f"""exit codes:
  {EXIT_OK}  every input was predicted
  {EXIT_INPUTS}  some inputs could not be read (each reported with its reason, listed in
     OUT/errors.csv); every readable input was still predicted
  {EXIT_USAGE}  usage error: bad arguments, no image found, a model or params.yaml that cannot
     be loaded (nothing is written)"""

PREDICT_HELP = f"""Predict the class (normal / benign / malignant) and the lesion mask of
breast-ultrasound scans, with the checkpoints trained by `dvc repro` (data/models/effnet.pt
classifies, data/models/unet.pt segments). Preprocessing is the training pipeline's: grey,
field-of-view crop (params.yaml `crop`), resize.

outputs in OUT:
  predictions.csv   image,p_normal,p_benign,p_malignant,label (label = most probable class)
  masks/<stem>.png  binary lesion mask, 0/255, same width and height as the input
  overlays/<stem>.png  the scan with the lesion outline (green) and the class-activation map
                    of the predicted class (unless --no-overlays)
  errors.csv        image,error for the inputs that could not be read (only when some failed)
Inputs sharing a file stem get distinct output names (<stem>__<folder> or <stem>__<hash>).
Folders are searched recursively for .png/.jpg/.jpeg/.bmp/.tif/.tiff; BUSI mask files
(<stem>_mask.png, <stem>_mask_1.png) are skipped.

Research use only: not a medical device, not for diagnosis.

{EXIT_CODES}"""

APP_HELP = """Start the Streamlit app (upload scans, see class, probabilities, lesion outline, CAM,
lesion area and shape; download the mask). Bound to localhost unless --host says otherwise.
Research use only: not a medical device.

exit codes: those of `streamlit run`; 2 when a model cannot be found (nothing started)."""


def _parser() -> argparse.ArgumentParser:
    from busdx.predict import DEFAULT_MODEL, DEFAULT_MODELS_DIR

    p = argparse.ArgumentParser(
        prog="busdx", description="busdx: breast-ultrasound models (BUSI). Research use only.",
        epilog=EXIT_CODES, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", metavar="{predict,app}")
    sub.required = True

    pr = sub.add_parser("predict", help="predict scans into a folder (CSV, masks, overlays)",
                        description=PREDICT_HELP,
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    pr.add_argument("paths", nargs="+", metavar="PATH", help="image files and/or folders")
    pr.add_argument("--out", "-o", required=True, metavar="DIR", help="output folder")
    pr.add_argument("--model", default=DEFAULT_MODEL, metavar="NAME|PATH",
                    help="classifier: a checkpoint name in --models-dir (effnet, multitask, ...) "
                         "or a .pt path (default: %(default)s)")
    pr.add_argument("--seg-model", default=None, metavar="NAME|PATH",
                    help="segmenter for the masks (default: the --model itself when it is a "
                         "multitask network, else unet)")
    pr.add_argument("--models-dir", default=str(DEFAULT_MODELS_DIR), metavar="DIR",
                    help="where checkpoint names are looked up (default: %(default)s)")
    pr.add_argument("--params", default="params.yaml", metavar="FILE",
                    help="crop parameters (its `crop` section); the defaults when the file is "
                         "absent (default: %(default)s)")
    pr.add_argument("--device", default="auto", metavar="auto|cpu|cuda",
                    help="default: auto (CUDA when available)")
    pr.add_argument("--cam-method", default="gradcam", metavar="METHOD",
                    help="class-activation map for the overlays: gradcam, gradcam++, "
                         "hirescam, xgradcam, layercam, eigencam, ... (busdx.explain.cam."
                         "METHODS; default: %(default)s)")
    pr.add_argument("--no-overlays", action="store_true",
                    help="write no overlays (and compute no CAM): faster")
    pr.add_argument("--batch-size", type=int, default=8, metavar="N",
                    help="images per batch (default: %(default)s)")
    pr.add_argument("--quiet", "-q", action="store_true", help="no progress bar")

    ap = sub.add_parser("app", help="start the Streamlit app", description=APP_HELP,
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--host", default="127.0.0.1", help="address to bind (default: %(default)s)")
    ap.add_argument("--port", type=int, default=8501, help="default: %(default)s")
    ap.add_argument("--models-dir", default=str(DEFAULT_MODELS_DIR), metavar="DIR",
                    help="default: %(default)s")
    ap.add_argument("--model", default=DEFAULT_MODEL, metavar="NAME|PATH",
                    help="classifier (default: %(default)s)")
    ap.add_argument("--seg-model", default=None, metavar="NAME|PATH",
                    help="segmenter (default: as for predict)")
    ap.add_argument("--params", default="params.yaml", metavar="FILE",
                    help="crop parameters (default: %(default)s)")
    ap.add_argument("--device", default="auto", metavar="auto|cpu|cuda")
    ap.add_argument("--cam-method", default="gradcam", metavar="METHOD")
    ap.add_argument("--max-upload-mb", type=int, default=None, metavar="MB",
                    help="largest accepted upload (default: 25)")
    return p


def _err(msg: str) -> None:
    print(f"busdx: error: {msg}", file=sys.stderr)


def cmd_predict(args) -> int:
    from busdx.config import ConfigError
    from busdx.predict import ModelError, Predictor, collect_inputs, predict_files

    if args.batch_size < 1:
        _err("--batch-size must be >= 1")
        return EXIT_USAGE
    inputs = collect_inputs(args.paths)
    if not inputs:
        _err(f"no image found in {', '.join(args.paths)} (folders are searched for "
             ".png/.jpg/.jpeg/.bmp/.tif/.tiff, mask files skipped)")
        return EXIT_USAGE
    try:
        predictor = Predictor.load(args.model, args.seg_model, args.models_dir, args.device,
                                   args.params, args.cam_method)
    except (ModelError, ConfigError, ValueError) as e:
        _err(str(e))
        return EXIT_USAGE
    if not args.quiet:
        print(f"busdx predict: {len(inputs)} input(s); {predictor.describe()}", file=sys.stderr)
    res = predict_files(inputs, args.out, predictor, overlays=not args.no_overlays,
                        batch_size=args.batch_size, progress=not args.quiet)
    n_ok, n_bad = len(res.table), len(res.failures)
    print(f"busdx predict: {n_ok} predicted, {n_bad} failed, {res.seconds:.1f} s → "
          f"{Path(args.out) / 'predictions.csv'}", file=sys.stderr)
    if n_bad:
        print(f"busdx predict: {n_bad} input(s) could not be read (see "
              f"{Path(args.out) / 'errors.csv'}):", file=sys.stderr)
        for _, msg in res.failures:
            print(f"  {msg}", file=sys.stderr)
        return EXIT_INPUTS
    return EXIT_OK


def cmd_app(args) -> int:
    from busdx.app import APP_SCRIPT, DEFAULT_MAX_UPLOAD_MB, ENV
    from busdx.predict import DEFAULT_SEG_MODEL, model_path

    mb = DEFAULT_MAX_UPLOAD_MB if args.max_upload_mb is None else args.max_upload_mb
    if mb < 1:
        _err("--max-upload-mb must be >= 1")
        return EXIT_USAGE
    if not 0 < args.port < 65536:
        _err(f"--port {args.port}: must be in 1-65535")
        return EXIT_USAGE
    wanted = [args.model] + ([args.seg_model] if args.seg_model else [])
    missing = [str(model_path(m, args.models_dir)) for m in wanted
               if not model_path(m, args.models_dir).is_file()]
    if missing:
        _err(f"model checkpoint(s) not found: {', '.join(missing)}. Run `dvc repro` to train "
             "the default models, or pass --models-dir / --model.")
        return EXIT_USAGE
    if not args.seg_model and not model_path(DEFAULT_SEG_MODEL, args.models_dir).is_file():
        print(f"busdx app: note: no {model_path(DEFAULT_SEG_MODEL, args.models_dir)}; masks "
              "need a multitask --model or --seg-model", file=sys.stderr)
    env = dict(os.environ)
    env.update({
        ENV["models_dir"]: str(Path(args.models_dir).resolve()),
        ENV["model"]: str(args.model),
        ENV["params"]: str(Path(args.params).resolve()),
        ENV["device"]: args.device,
        ENV["cam_method"]: args.cam_method,
        ENV["max_upload_mb"]: str(mb),
    })
    if args.seg_model:
        env[ENV["seg_model"]] = str(args.seg_model)
    else:
        env.pop(ENV["seg_model"], None)
    cmd = [sys.executable, "-m", "streamlit", "run", str(APP_SCRIPT),
           "--server.address", args.host, "--server.port", str(args.port),
           "--server.headless", "true", "--server.maxUploadSize", str(mb),
           "--server.fileWatcherType", "none", "--browser.gatherUsageStats", "false",
           "--client.showErrorDetails", "none", "--client.toolbarMode", "minimal"]
    print(f"busdx app: http://{args.host}:{args.port} (research use only; Ctrl-C stops)",
          file=sys.stderr)
    sys.stderr.flush()
    sys.stdout.flush()
    os.execve(sys.executable, cmd, env)  # replaces this process: signals reach streamlit
    return EXIT_OK  # not reached


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "predict":
            return cmd_predict(args)
        return cmd_app(args)
    except KeyboardInterrupt:
        _err("interrupted")
        return 130


if __name__ == "__main__":
    sys.exit(main())
