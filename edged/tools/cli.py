"""The `edged` command line: run, check-config, reload-wait, classify, --version."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading

from edged import __version__
from edged.config import load_config, resolve_config_path
from edged.errors import ConfigError, EdgedError
from edged.model.nativelog import quiet_native_libraries
from edged.service.logs import print_errors

log = logging.getLogger("edged")


def _floats(text: str) -> list[float]:
    try:
        return [float(x) for x in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number or R,G,B numbers: {text!r}") from None


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="edged", description=__doc__)
    p.add_argument("--version", action="version", version=f"edged {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="run the daemon in the foreground")
    run.add_argument("-c", "--config", help="config file (default $EDGED_CONFIG, else "
                                            "/etc/edged/config.yaml)")
    run.add_argument("--log-level", choices=["debug", "info", "warning", "error"],
                     help="override the config's log_level")
    run.add_argument("--log-format", choices=["text", "json"], default="text",
                     help="text (journald-friendly) or json (one object per line)")

    check = sub.add_parser("check-config", help="validate a config file")
    check.add_argument("-c", "--config", help="config file (default as for run)")

    rw = sub.add_parser("reload-wait", help="send SIGHUP to a running edged and wait until it "
                                            "has applied the config (or refused it); for "
                                            "ExecReload= of the systemd units")
    rw.add_argument("--pid", type=int, required=True, help="the daemon's pid ($MAINPID)")
    rw.add_argument("--timeout", type=float, default=90.0,
                    help="seconds to wait for the outcome (default 90)")
    rw.add_argument("--runtime-dir", help="where edged writes reload.json (default "
                                          "$RUNTIME_DIRECTORY)")

    cls = sub.add_parser("classify", help="classify images with the daemon's preprocessing")
    cls.add_argument("--model", required=True, help="TFLite model file")
    cls.add_argument("--labels", help="labels file (default: labels embedded in the model)")
    cls.add_argument("--top-k", type=int, default=3, help="how many classes to show")
    cls.add_argument("--json", action="store_true", help="one JSON object per image")
    cls.add_argument("--mean", type=_floats, help="normalization mean: one value or R,G,B "
                                                   "(default 127.5)")
    cls.add_argument("--std", type=_floats, help="normalization std: one value or R,G,B "
                                                 "(default 127.5)")
    cls.add_argument("--resize", choices=["stretch", "center-crop", "letterbox"],
                     help="fit frames to the input: stretch (default), center-crop, letterbox")
    cls.add_argument("--output", choices=["auto", "probabilities", "logits"],
                     help="output kind (default auto: logits get a softmax)")
    cls.add_argument("--output-tensor", type=_index_or_name,
                     help="models with several outputs: the output's index or name")
    cls.add_argument("--delegate", help="edgetpu, gpu, npu, or the path of a delegate library")
    cls.add_argument("--device", help="Edge TPU device: usb, usb:N, pci:N")
    cls.add_argument("--fallback", choices=["cpu", "fail"],
                     help="when the accelerator fails: cpu (default) or fail")
    cls.add_argument("--cpu-path", help="the CPU version of an accelerator-compiled model")
    cls.add_argument("--timing", action="store_true", help="show per-image times")
    cls.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                     help="progress bar on stderr (default: on a terminal, for many images)")
    cls.add_argument("--eval", metavar="FOLDER", dest="eval_dir",
                     help="evaluate on FOLDER/CLASS_NAME/*.jpg: accuracy, per-class "
                          "precision/recall, confusion table")
    cls.add_argument("images", nargs="*", metavar="IMAGE")

    ins = sub.add_parser("inspect", help="describe a model: tensors, quantization, metadata")
    ins.add_argument("model", metavar="MODEL")
    ins.add_argument("--json", action="store_true", help="one JSON object")

    models = sub.add_parser("models", help="well-known models: list, pull")
    msub = models.add_subparsers(dest="models_command", required=True, metavar="ACTION")
    msub.add_parser("list", help="the catalogue of well-known models")
    pull = msub.add_parser("pull", help="download a model (and its labels), verified")
    pull.add_argument("name", metavar="NAME|URL")
    pull.add_argument("--sha256", help="expected sha256 of the file; without it (a URL, or an "
                                       "entry with no pinned hash) the hash received is printed")
    pull.add_argument("-o", "--output-dir", default=".", help="folder to write to (default .)")
    pull.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                      help="progress bar on stderr (default: on a terminal)")
    bench = sub.add_parser("bench", help="measure this machine: invoke time per threads/workers, "
                                         "end-to-end throughput, latency, memory")
    bench.add_argument("--model", required=True, help="TFLite model file")
    bench.add_argument("--labels", help="labels file (default: embedded or indices)")
    bench.add_argument("--video", help="a video file for the end-to-end and latency runs")
    bench.add_argument("--seconds", type=float, default=3.0, help="length of each invoke run")
    bench.add_argument("--mean", type=_floats, help="normalization mean")
    bench.add_argument("--std", type=_floats, help="normalization std")
    bench.add_argument("--json", action="store_true", help="print the report as JSON")
    from edged.tools.captures import add_parser as add_captures  # argparse only, no work

    add_captures(sub)
    return p


def _index_or_name(text: str) -> int | str:
    return int(text) if text.isdigit() else text


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    quiet_native_libraries(debug=getattr(args, "log_level", None) == "debug")
    try:
        if args.command == "check-config":
            path = resolve_config_path(args.config)
            cfg = load_config(path)
            for note in cfg.notes:  # accepted, but worth knowing
                print(f"warning: {note}", file=sys.stderr)
            print(f"{path}: ok")
            return 0
        if args.command == "reload-wait":
            return _reload_wait(args)
        if args.command == "classify":
            from edged.tools.classify import run_classify
            from edged.service.logs import setup_logging

            setup_logging("warning")
            if args.top_k < 1:
                raise EdgedError("--top-k must be at least 1")
            delegate: object = args.delegate
            if delegate is not None and delegate not in ("edgetpu", "gpu", "npu"):
                delegate = {"library": delegate}
            return run_classify(args.model, args.labels, args.top_k, args.images, args.json,
                                args.mean, args.std, progress=args.progress,
                                eval_dir=args.eval_dir, timing=args.timing, resize=args.resize,
                                output=args.output, output_tensor=args.output_tensor,
                                delegate=delegate, device=args.device, fallback=args.fallback,
                                cpu_path=args.cpu_path)
        if args.command == "inspect":
            from edged.tools.modelinspect import run_inspect
            from edged.service.logs import setup_logging

            setup_logging("warning")
            return run_inspect(args.model, args.json)
        if args.command == "bench":
            from edged.tools.bench import format_report, report_json, run_bench
            from edged.tools.classify import _scalar_or_list
            from edged.service.logs import setup_logging

            setup_logging("warning")
            if args.seconds <= 0:
                raise EdgedError("--seconds must be positive")
            report = run_bench(args.model, args.labels, args.video, args.seconds,
                               _scalar_or_list(args.mean), _scalar_or_list(args.std),
                               progress=sys.stderr.isatty())
            print(report_json(report) if args.json else format_report(report))
            return 0
        if args.command == "captures":
            from edged.tools.captures import run_captures

            return run_captures(args)
        if args.command == "models":
            from edged.tools.pull import run_models

            return run_models(args)
        return _run(args)
    except ConfigError as exc:
        print_errors(exc.lines)
        return 2  # the units' RestartPreventExitStatus=: restarting cannot fix a config
    except EdgedError as exc:
        print_errors([f"edged: {exc}"])
        return 1
    except KeyboardInterrupt:
        return 130


def _reload_wait(args: argparse.Namespace) -> int:
    from edged.service.reloadwait import reload_wait, runtime_directory

    directory = args.runtime_dir or runtime_directory(os.environ)
    if not directory:
        raise EdgedError("reload-wait: no --runtime-dir and no $RUNTIME_DIRECTORY (the units "
                         "set RuntimeDirectory=)")
    if args.timeout <= 0:
        raise EdgedError("reload-wait: --timeout must be positive")
    code, line = reload_wait(args.pid, directory, args.timeout)
    if code == 0:
        print(line)
    else:
        print_errors([f"edged: {line}"])
    return code


def _run(args: argparse.Namespace) -> int:
    # Signals first: a stop asked for while the models load (which can take seconds on a
    # busy box) must end the run cleanly, not kill it.
    stop = threading.Event()
    reload = threading.Event()
    path = resolve_config_path(args.config)

    def on_hup(_signum: int, _frame: object) -> None:
        log.info("received SIGHUP; reloading %s", path)
        reload.set()

    def on_signal(signum: int, _frame: object) -> None:
        log.info("received %s; stopping", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGHUP, on_hup)
    from edged.app.daemon import Daemon
    from edged.service.logs import setup_logging
    from edged.service.notify import Notifier

    cfg = load_config(path)
    setup_logging(args.log_level or cfg.log_level, getattr(args, "log_format", "text"))
    for note in cfg.notes:
        logging.getLogger("edged.config").warning("config: %s", note)
    notifier = Notifier.from_env(os.environ)
    try:
        Daemon(cfg, config_path=path, notifier=notifier, environ=os.environ).run(stop, reload)
    finally:
        notifier.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
