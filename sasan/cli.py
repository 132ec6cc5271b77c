"""The ``sasan`` command: demo, translate, train, export, train-segmenter, evaluate, phantom, web.

User errors (bad file, bad config, refused overwrite, ...) print one line and exit with status 2; the
traceback is shown only with ``--debug``. Interrupted runs exit 130, as does a training run stopped on
request (``sasan.training.stop``: it writes a checkpoint first, so ``--resume`` continues it).
``sasan translate`` prints one line ``warning: ...`` (on stderr, status still 0) when the input does not look
like the scans the model was trained on (``sasan.domain``).
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Optional

from .progress import PROGRESS_PREFIX, Progress

log = logging.getLogger("sasan")

USAGE_ERROR = 2
WARNING_PREFIX = "warning:"  # the line `sasan translate` prints when the input does not look like the model's kind
COMMAND_PLUGINS = "sasan.commands"
INTERRUPTED = 130


def _train(args: argparse.Namespace) -> int:
    """Train; with --export, write the model file once the last step is done.  A stop request (a STOP file
    in the run folder, SIGTERM, Ctrl-C) ends the run after its current step with a checkpoint."""
    from .config import load_config
    from .data.io import check_writable
    from .progress import progress_line_printer
    from .runtime import training_device
    from .training.distributed import DistributedContext
    from .training.run_folder import default_run_folder
    from .training.stop import StopRequest, TrainingStopped
    from .training.trainer import Trainer

    config = load_config(args.config)
    if args.steps is not None:
        config.training.steps = args.steps
    if args.device:
        config.training.device = args.device
    run_dir = Path(args.output) if args.output else default_run_folder(config)
    if args.export:
        check_writable(args.export)  # refuse before hours of training, not after
    stop = StopRequest(run_dir)
    if stop():
        log.warning("%s asks the run to stop: it stops after its first step (delete the file to train on)", stop.file)
    dist = DistributedContext.from_environment(training_device(config.training.device))
    try:
        with stop.on_signals():
            Trainer(config, run_dir, resume=args.resume, dist=dist, stop=stop,
                    progress=progress_line_printer() if args.progress_lines else None).fit()
    except TrainingStopped as stopped:
        stop.clear()
        log.warning("stopped at step %d with a checkpoint; continue with: sasan train %s --output %s --resume",
                    stopped.step, args.config, run_dir)
        return INTERRUPTED
    finally:
        dist.close()
    stop.clear()  # a request that came during the last step
    if not dist.is_main:
        return 0
    if args.export:
        from .training.export import export_run

        log.info("run finished: %s; model file %s", run_dir, export_run(run_dir, Path(args.export), overwrite=True))
    else:
        log.info("run finished: %s (export it with: sasan export %s -o model.safetensors)", run_dir, run_dir)
    return 0


def _train_segmenter(args: argparse.Namespace) -> int:
    """The detached U-Net alone: a run whose only phase is the segmenter (adversarial steps = 0)."""
    from .config import load_config
    from .training.run_folder import default_run_folder
    from .training.segmenter import train_segmenter

    config = load_config(args.config)
    if args.steps is not None:
        config.training.segmenter_steps = args.steps
    run_dir = Path(args.output) if args.output else default_run_folder(config, segmenter=True)
    train_segmenter(config, run_dir, resume=args.resume, translator=args.translator)
    return 0


def _export(args: argparse.Namespace) -> int:
    from .training.export import export_run

    path = export_run(Path(args.run_dir), Path(args.output), segmenter_run=args.segmenter_run,
                      half=args.half, overwrite=args.overwrite)
    print(path)
    return 0


def _translate(args: argparse.Namespace) -> int:
    from .data.io import WRITABLE_SUFFIXES, check_finite, check_writable, read_volume, volume_suffix, write_volumes
    from .inference import translate_volume
    from .progress import progress_line_printer

    outputs = [Path(args.output)] + ([Path(args.segmentation)] if args.segmentation else [])
    for path in outputs:  # refuse before hours of work, not after
        if volume_suffix(path, WRITABLE_SUFFIXES) is None:
            raise ValueError(f"{path}: cannot write this format; use one of {', '.join(WRITABLE_SUFFIXES)}")
        if path.exists() and not args.overwrite:
            raise FileExistsError(f"{path} exists; pass --overwrite to replace it")
        check_writable(path)
    if args.attention:
        first_map = Path(args.attention) / "attention_01.nii.gz"
        if first_map.exists() and not args.overwrite:
            raise FileExistsError(f"{args.attention} already holds attention maps; pass --overwrite to replace them")
        check_writable(first_map)
    if args.report:
        if Path(args.report).exists() and not args.overwrite:
            raise FileExistsError(f"{args.report} exists; pass --overwrite to replace it")
        check_writable(args.report)
    volume = read_volume(args.input)
    check_finite(volume, args.input)
    if args.quiet:
        progress = None
    else:
        progress = progress_line_printer() if args.progress_lines else _progress_bar()
    result = translate_volume(volume, args.model, args.to, source=args.source, device=args.device,
                              segment=bool(args.segmentation), attention=bool(args.attention),
                              batch_size=args.batch_size, threads=args.threads, progress=progress)
    written = {Path(args.output): result.translated}
    segmentation_file = None
    if args.segmentation and result.segmentation is not None:
        segmentation_file = Path(args.segmentation)
        written[segmentation_file] = result.segmentation
    map_files = []
    if args.attention and result.attention:
        map_files = [Path(args.attention) / f"attention_{k:02d}.nii.gz" for k in range(1, len(result.attention) + 1)]
        written.update(zip(map_files, result.attention))
    write_volumes(written, overwrite=args.overwrite)  # all or nothing
    if args.report:  # last: a report says that every output is complete
        _write_report(Path(args.report), result, Path(args.output), segmentation_file, map_files)
    log.info("translated %s -> %s in %.1f s on %s", args.input, args.output, result.seconds, result.device)
    if result.domain.warning:  # advice, not an error: the outputs are written and the status stays 0
        print(f"{WARNING_PREFIX} {result.domain.warning}", file=sys.stderr, flush=True)
    return 0


def _write_report(path: Path, result, translated: Path, segmentation: Optional[Path], maps: list[Path]) -> None:
    """A finished translation as JSON, for the process that started it: the device it finished on, the engine's
    notes (a GPU out of memory, then the CPU), the input check's warning (null when the input looks like the
    training scans or was not checked) and its numbers, its seconds and the files written (segmentation null
    without)."""
    from .data.io import write_text

    files = {"translated": str(translated), "segmentation": None if segmentation is None else str(segmentation),
             "attention": [str(m) for m in maps]}
    report = {"device": result.device, "notes": list(result.notes), "warning": result.domain.warning,
              "input_check": result.domain.to_dict(), "seconds": round(result.seconds, 3), "files": files}
    write_text(path, json.dumps(report, indent=1) + "\n")


def _progress_bar() -> Progress:
    from tqdm import tqdm

    bar = tqdm(total=100, unit="%", desc="translating")

    def report(fraction: float, message: str = "") -> None:
        bar.n = round(100 * fraction)
        bar.set_postfix_str(message, refresh=False)
        bar.refresh()
        if fraction >= 1:
            bar.close()

    return report


def _evaluate(args: argparse.Namespace) -> int:
    from .protocol import evaluate_model

    print(evaluate_model(Path(args.config), Path(args.model), Path(args.output), device=args.device,
                         overwrite=args.overwrite))
    return 0


def _demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    return run_demo(Path(args.output), quick=args.quick, overwrite=args.overwrite, threads=args.threads,
                    resume=args.resume)


def _phantom(args: argparse.Namespace) -> int:
    """Generate into a hidden folder, then move it (or, with --overwrite, its files) in place."""
    from .atomic import staged_folder
    from .data.phantom import write_phantom

    output = Path(args.output)
    if output.exists() and not output.is_dir():
        raise NotADirectoryError(f"{output} exists and is not a folder; choose another output")
    if output.is_dir() and any(output.iterdir()) and not args.overwrite:
        raise FileExistsError(f"{output} already exists and is not empty; pass --overwrite to replace the "
                              "phantom's files in it (nothing else is deleted)")
    with staged_folder(output) as staging:
        write_phantom(staging, args.subjects, args.seed, args.size)
    print(output)
    return 0


def _add_plugin_commands(commands) -> None:
    """Subcommands of fronts installed beside the engine (``sasan web`` from SASANWeb/), declared as entry points
    of the group ``COMMAND_PLUGINS``: the engine never imports a front."""
    from importlib.metadata import entry_points

    found = entry_points()
    for entry in found.select(group=COMMAND_PLUGINS) if hasattr(found, "select") else found.get(COMMAND_PLUGINS, []):
        entry.load()(commands)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sasan", description=__doc__.splitlines()[0])
    parser.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")
    commands = parser.add_subparsers(dest="command", required=True)

    demo = commands.add_parser("demo", help="the whole protocol on the embedded phantom, with a results table")
    demo.add_argument("--quick", action="store_true", help="small and short (under 5 minutes on 2 CPU cores)")
    demo.add_argument("--output", default="demo_output", help="output folder (default: demo_output)")
    demo.add_argument("--overwrite", action="store_true", help="replace an existing output folder's results")
    demo.add_argument("--resume", action="store_true",
                      help="continue an interrupted full demo in --output: every training run from its last checkpoint")
    demo.add_argument("--threads", type=int, default=None, help="CPU threads for every stage (default: the free cores)")
    demo.set_defaults(handler=_demo)

    translate = commands.add_parser("translate", help="translate (and segment) one volume")
    translate.add_argument("input", help="NIfTI, NRRD, MHA file or DICOM folder")
    translate.add_argument("--model", required=True, help="model file (.safetensors)")
    translate.add_argument("--to", required=True, help="target modality, e.g. MR or CT")
    translate.add_argument("--source", help="source modality (default: the model's other modality)")
    translate.add_argument("-o", "--output", required=True, help="translated volume to write")
    translate.add_argument("--segmentation", help="also write the segmentation (label map) here")
    translate.add_argument("--attention", help="also write the attention maps into this folder")
    translate.add_argument("--device", default="auto", help="auto, cpu or cuda")
    translate.add_argument("--batch-size", type=int, help="slices per batch (default: from free memory)")
    translate.add_argument("--threads", type=int, help="CPU threads (default: every core this process may use)")
    translate.add_argument("--overwrite", action="store_true", help="replace existing output files")
    translate.add_argument("--quiet", action="store_true", help="no progress bar")
    translate.add_argument("--progress-lines", action="store_true",
                           help=f"report progress as lines '{PROGRESS_PREFIX} {{JSON}}' on stdout instead of a bar")
    translate.add_argument("--report", help="once the outputs are written, write this JSON file: the device the run "
                           "finished on, the engine's notes (e.g. a GPU out of memory), the input check's warning, "
                           "seconds, the files written")
    translate.set_defaults(handler=_translate)

    train = commands.add_parser("train", help="train SASAN from a YAML configuration")
    train.add_argument("config")
    train.add_argument("--output", help="run folder (default: the config's output)")
    train.add_argument("--resume", action="store_true", help="continue from the run folder's last checkpoint")
    train.add_argument("--steps", type=int, help="override training.steps")
    train.add_argument("--device", help="override training.device")
    train.add_argument("--export", metavar="FILE", help="write the model file FILE (replaced if it exists) once "
                                                        "training has finished")
    train.add_argument("--progress-lines", action="store_true",
                       help=f"report progress as lines '{PROGRESS_PREFIX} {{JSON}}' on stdout instead of a bar")
    train.set_defaults(handler=_train)

    segmenter = commands.add_parser("train-segmenter", help="train the detached U-Net on the target modality")
    segmenter.add_argument("config")
    segmenter.add_argument("--output", help="run folder (default: <config output>_segmenter)")
    segmenter.add_argument("--resume", action="store_true")
    segmenter.add_argument("--steps", type=int, help="override training.segmenter_steps")
    segmenter.add_argument("--translator", help="model file whose translations of the source modality are "
                                                "added to the training images (the paper's 'w/ aug.')")
    segmenter.set_defaults(handler=_train_segmenter)

    export = commands.add_parser("export", help="write a run's networks and model card as a model file (with the "
                                 "fingerprint of the run's training scans, when they can be read, for the input check)")
    export.add_argument("run_dir")
    export.add_argument("-o", "--output", required=True)
    export.add_argument("--segmenter-run", help="take the target U-Net from this run folder")
    export.add_argument("--half", action="store_true", help="store fp16 tensors (half the size)")
    export.add_argument("--overwrite", action="store_true")
    export.set_defaults(handler=_export)

    evaluate = commands.add_parser("evaluate", help="score a model on held-out volumes (Dice, ASSD; image metrics)")
    evaluate.add_argument("config", help="the run configuration naming the data")
    evaluate.add_argument("--model", required=True, help="model file")
    evaluate.add_argument("--output", default="evaluation", help="folder for tables, CSV and figures")
    evaluate.add_argument("--device", default="auto")
    evaluate.add_argument("--overwrite", action="store_true")
    evaluate.set_defaults(handler=_evaluate)

    phantom = commands.add_parser("phantom", help="write the synthetic cardiac CT/MR phantom")
    phantom.add_argument("output")
    phantom.add_argument("--subjects", type=int, default=10, help="subjects per modality")
    phantom.add_argument("--seed", type=int, default=0)
    phantom.add_argument("--size", type=int, default=96, help="in-plane grid size")
    phantom.add_argument("--overwrite", action="store_true", help="replace the phantom's files in an existing folder")
    phantom.set_defaults(handler=_phantom)

    _add_plugin_commands(commands)
    return parser


def _user_errors() -> tuple[type[BaseException], ...]:
    """Exceptions that mean 'the input is wrong', reported in one line without a traceback."""
    return (ValueError, FileNotFoundError, FileExistsError, PermissionError, IsADirectoryError,
            NotADirectoryError, RuntimeError, OSError)


def main(argv: Optional[list[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    try:
        return args.handler(args)
    except KeyboardInterrupt:
        log.error("interrupted")
        return INTERRUPTED
    except _user_errors() as error:
        if args.debug:
            raise
        log.error("%s", error)
        return USAGE_ERROR


if __name__ == "__main__":
    sys.exit(main())
