"""The ``supernet`` command: one subcommand per pipeline stage.

User errors (bad options, bad architectures, missing files) print one line on stderr and exit 2,
with no traceback. ``SUPERNET_DEBUG=1`` shows the traceback anyway.
"""
from __future__ import annotations

import argparse
import contextlib
import errno
import json
import os
import re
import shutil
import sys
from pathlib import Path

from .arch import ArchError
from .runtime.typed import ConfigError
from .runtime.units import human_bytes, human_count
from .train.loop import TrainingError

# ValueError covers ConfigError, ArchError, CheckpointError, DataError and bad constraints. A file a
# user hands in that is the wrong kind of thing (a folder, an existing path) is theirs to fix too;
# each reader also checks its files and names them, so these are the net, not the message.
USER_ERRORS = (ConfigError, ArchError, FileNotFoundError, NotADirectoryError, IsADirectoryError, FileExistsError,
               PermissionError, ValueError, TrainingError)
# A full disk or an exceeded quota: nothing is lost (writes are atomic), the user must make room.
DISK_FULL = (errno.ENOSPC, errno.EDQUOT)


def disk_full_message(e: OSError, run_dir) -> str:
    """One line naming the file being written and the free space left where it lives."""
    target = e.filename or run_dir or "."
    path = Path(os.fsdecode(target))
    m = re.fullmatch(r"\.(.+)\.[^.]+\.tmp", path.name)  # atomic_write's temp file: name its target
    if m:
        path = path.with_name(m[1])
    where = next((p for p in (path, *path.parents) if p.exists()), Path("."))
    try:
        free = f"{human_bytes(shutil.disk_usage(where).free)} free"
    except OSError:
        free = "free space unknown"
    what = "disk quota exceeded" if e.errno == errno.EDQUOT else "no space left on the device"
    return (f"{what} while writing {path} ({free} on {where}); free some space or choose another --run-dir "
            f"and run again (--resume continues from the last checkpoint; what was saved is intact)")


def cmd_info(args) -> int:
    from .pipeline.tools import space_info, target_words
    from .spaces import SPACES
    if args.space is None:  # optional for argparse, so that the message can list the spaces
        raise ConfigError(f"info needs a SPACE, one of the registered spaces: {', '.join(SPACES)}")
    if args.threads is None:  # the stages set theirs from the run's config
        from .runtime.threads import use_threads
        use_threads(None)  # warns if the machine is busy
    r = space_info(args.space, args.options, args.arch, args.latency_table)
    if args.json:
        print(json.dumps({k: v for k, v in r.items() if k not in ("doc", "describe", "target")}))
        return 0
    latency = "" if "target" not in r else f" predicted ({target_words(r['target'])})"
    if args.arch is not None:
        print(f"space   {r['space']}")
        print(f"arch    {json.dumps(r['arch'])}")
        print(f"FLOPs   {r['flops']:,} ({human_count(r['flops'])} multiply-accumulates, conv+linear, batch 1)")
        print(f"params  {r['params']:,} ({human_count(r['params'])}, fixed subnet with affine BN)")
        if "bitops" in r:
            print(f"BitOps  {r['bitops']:,} ({human_count(r['bitops'])}, MACs x weight bits x activation bits)")
            print(f"size    {r['size']:,} bytes ({human_bytes(r['size'])}, weights at their bit widths)")
        if latency:
            print(f"latency {r['latency_ms']:.4g} ms{latency}")
        return 0
    print(f"space    {r['space']}: {r['doc']}")
    print("options  " + " ".join(f"{k}={json.dumps(v)}" for k, v in r["options"].items()))
    if "quant" in r:
        print("quant    " + " ".join(f"{k}={json.dumps(v)}" for k, v in r["quant"].items()))
    print(f"labels   {r['labels']}: {r['describe']}")
    print(f"size     {r['size']:.4g} architectures ({r['size']:,})")
    for what, key in (("FLOPs ", "flops"), ("params", "params"), ("BitOps", "bitops"), ("bytes ", "size")):
        if f"{key}_min" not in r:
            continue
        lo, hi = r[f"{key}_min"], r[f"{key}_max"]
        words = human_bytes if key == "size" else human_count
        print(f"{what}   {words(lo)} .. {words(hi)}  ({lo:,} .. {hi:,}{' bytes' if key == 'size' else ''})")
    if latency:
        print(f"latency  {r['latency_min']:.4g} .. {r['latency_max']:.4g} ms{latency}")
    return 0


def cmd_latency(args) -> int:
    from .cost.timing import check_line
    from .pipeline.tools import build_latency_table, check_latency_table, target_words
    from .spaces import SPACES
    space, options = args.space, list(args.options)
    if space is None and args.config is None and args.run_dir is None and args.table is None:
        raise ConfigError(f"latency needs a model: SPACE (one of {', '.join(SPACES)}), --config CFG or --run-dir "
                          f"RUN, and --out FILE for the table (or --table FILE --check K to check one)")
    if space is not None and "=" in space and args.table is None:  # argparse gives SPACE the first key=value
        if args.config is None and args.run_dir is None:
            raise ConfigError(f"latency got the override {space!r} but no model: give SPACE before its options, or "
                              f"--config CFG or --run-dir RUN for config overrides")
        space, options = None, [space, *options]
    if args.table is not None:  # check (again) a table that exists, on this machine, now
        if space or args.config or args.run_dir or options:
            raise ConfigError("--table checks an existing table for the model it names; give no SPACE, --config, "
                              "--run-dir or options with it")
        r = check_latency_table(args.table, args.out, args.check, seed=args.seed, progress=not args.quiet)
        print(check_line(r["check"]))
        print(f"latency: overhead and check saved in {r['out']}; plot {r['plot']}")
        return 0
    if args.out is None:
        raise ConfigError("latency needs --out FILE (where the table is written)")
    r = build_latency_table(args.out, args.force, space, options, args.config, args.run_dir,
                            backend=args.backend, device=args.device, threads=args.threads, batch=args.batch,
                            runs=args.runs, warmup=args.warmup, max_spread=args.max_spread, retries=args.retries,
                            check=args.check, seed=args.seed, progress=not args.quiet)
    table, rng = r["table"], r["range"]
    terms = f" with {r['layer_terms']} int8/float layer terms" if r["layer_terms"] else ""
    print(f"latency: {r['entries']} entries{terms} of space {r['space']} ({target_words(table.target)}) -> {r['out']}")
    print(f"latency: predicted {rng['latency_min']:.4g} .. {rng['latency_max']:.4g} ms over the space")
    if table.check is not None:
        print(check_line(table.check))
        print(f"latency: plot {r['plot']}")
    return 0


def _print_training(stage: str, summary: dict, run_dir) -> None:
    done = f", loss {summary['loss']:.4f}, train acc {summary['acc']:.4f}" if "loss" in summary else " (already done)"
    print(f"{stage}: step {summary.get('step', summary['steps'])}/{summary['steps']}{done}; "
          f"checkpoint {run_dir}/{stage}/last.pt")


def few_shot_line(fs: dict, steps: int) -> str:
    """What a few-shot run cost: its steps (one-shot, then shared by the sub-supernets) and parameters."""
    k, after, done = fs["parts"], steps - fs["split_at"], fs["part_steps"]
    each = (f": each trained in {min(done):,} to {max(done):,} of them (mean {sum(done) / k:,.0f})" if fs["split"]
            else "")
    return (f"few-shot: {fs['split_at']:,} one-shot steps, then {k} sub-supernets (one per option of "
            f"{', '.join(fs['labels'])}) shared the other {after:,}{each}; {steps:,} steps in all, the cost of a "
            f"one-shot run of {steps:,} steps, with {k}x its parameters ({fs['params']:,})")


def cmd_train_supernet(args) -> int:
    from . import pipeline
    summary = pipeline.train_supernet(args.run_dir, args.config, args.options, resume=args.resume, force=args.force)
    _print_training("supernet", summary, args.run_dir)
    if summary.get("few_shot") is not None:
        print(few_shot_line(summary["few_shot"], summary["steps"]))
    if summary.get("arch") is not None:
        print(f"{summary['strategy']}: its architecture -> {args.run_dir}/search/best_arch.json "
              f"(retrain can follow; 'supernet search' can still search this supernet)")
    return 0


def cmd_search(args) -> int:
    from . import pipeline
    r = pipeline.search(args.run_dir, args.options, resume=args.resume, force=args.force)
    b = r["best"]
    if "front" in r:
        f = r["front"]
        print(f"search: {r['evaluated']} candidates; a front of {len(f['front'])} ({', '.join(f['objectives'])}), "
              f"hypervolume {f['hypervolume']:.4f} -> {args.run_dir}/search/pareto.json (retrain --pick chooses)")
    print(f"search: {r['evaluated']} candidates; best validation top-1 {b['top1']:.4f} top-5 {b['top5']:.4f}, "
          f"{human_count(b['flops'])} FLOPs, {human_count(b['params'])} params -> {args.run_dir}/search/best_arch.json")
    return 0


def cmd_retrain(args) -> int:
    from . import pipeline
    summary = pipeline.retrain(args.run_dir, args.arch, args.options, resume=args.resume, force=args.force,
                               pick=args.pick)
    p = summary.get("picked")
    if p is not None:
        from .cost.constraints import formatter
        costs = ", ".join(f"{k} {formatter(k)(v)}" for k, v in p["costs"].items())
        print(f"retrain: --pick {args.pick} chose the front's member with validation top-1 {p['top1']:.4f}, {costs}")
    _print_training("retrain", summary, args.run_dir)
    return 0


def cmd_evaluate(args) -> int:
    from . import pipeline
    r = pipeline.evaluate(args.run_dir, force=args.force, threads=args.threads)
    if r is None:
        return 0
    print(f"evaluate: test top-1 {r['top1']:.4f}, top-5 {r['top5']:.4f} on {r['n']} images -> {args.run_dir}/eval.json")
    return 0


def cmd_export(args) -> int:
    from . import pipeline
    r = pipeline.export(args.run_dir, args.options, force=args.force)
    if r is None:
        return 0
    check = "onnxruntime not installed, not checked" if r["max_abs_diff"] is None else \
        f"matches PyTorch, max |diff| {r['max_abs_diff']:.2e}"
    print(f"export: {r['arch']}, {r['onnx']} ({check})")
    lat = r.get("latency")
    if lat is not None:
        print(f"export: ONNX Runtime latency {lat['median_ms']:.4g} ms (median of {lat['runs']}, batch {lat['batch']}, "
              f"{lat['threads']} thread{'s' * (lat['threads'] != 1)}, {lat['device_name']}) -> "
              f"{args.run_dir}/model_latency.json")
    return 0


def cmd_rank(args) -> int:
    from . import pipeline
    if args.ground_truth is not None:  # the stage sets it and records it, as any rank setting
        args.options.append(f"rank.ground_truth={Path(args.ground_truth).resolve()}")
    r = pipeline.rank(args.run_dir, args.options, resume=args.resume, force=args.force)
    print(f"rank: -> {args.run_dir}/rank/report.json, {args.run_dir}/rank/rank.png (Kendall tau-b of the supernet "
          f"{'-' if r.get('kendall_tau') is None else format(r['kendall_tau'], '+.3f')}, ceiling "
          f"{'-' if r['ceiling']['kendall_tau'] is None else format(r['ceiling']['kendall_tau'], '+.3f')})")
    return 0


def cmd_demo(args) -> int:
    from .demo import run_demo
    run_demo(args.run_dir, args.options, strategy=args.strategy, config=args.config)
    return 0


class _Deprecated(argparse.Action):
    """An option kept under its old name: it works, and says once what to write instead."""

    def __call__(self, parser, namespace, values, option_string=None):
        print(f"note: {option_string} is deprecated; use --{self.dest}", file=sys.stderr)
        setattr(namespace, self.dest, values)


THREADS_HELP = ("torch's CPU threads (default: the run's runtime.threads, else one per core); recorded in "
                "config.yaml. On a machine other processes are using, fewer threads than free cores is much "
                "faster; the count changes results by rounding")


class _Parser(argparse.ArgumentParser):
    """argparse, with its errors in the CLI's one-line form (the usage is one --help away)."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def build_parser() -> argparse.ArgumentParser:
    from .demo import DEMOS
    from .spaces import SPACES
    from .strategies import STRATEGIES
    strategies, spaces = ", ".join(STRATEGIES), ", ".join(SPACES)  # from the registries, so never out of date
    p = _Parser(prog="supernet", description=f"One-shot neural architecture search ({strategies}): train a "
                                             f"supernet, search it, retrain, evaluate and export the result.")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    info = sub.add_parser("info", help="summarise a search space, or cost one architecture",
                          description="Summarise a search space (labels, size, FLOPs/params range), or "
                                      "give one architecture's FLOPs and params.")
    info.add_argument("space", nargs="?", help=f"a registered space: {spaces}")
    info.add_argument("options", nargs="*", metavar="key=value",
                      help="space options, e.g. num_classes=1000 input_size=224 channel_search=true width_mult=0.5")
    info.add_argument("--arch", help="an architecture: a JSON string, a JSON file, or an NNI-format file")
    info.add_argument("--json", action="store_true", help="print one JSON object")
    info.add_argument("--threads", type=int, metavar="N", help=THREADS_HELP)
    info.add_argument("--latency-table", metavar="FILE", help="a table from 'supernet latency' for this space: "
                                                              "print the predicted latency (range)")
    info.set_defaults(func=cmd_info)

    lat = sub.add_parser("latency", help="measure a latency lookup table on this machine (torch or ONNX Runtime)",
                         description="Time every option of every choice at its input shape (and the rest of the "
                                     "network) on this machine; with --check K, also time K random subnets end to "
                                     "end and report the table's error, its ranking quality and the fitted overhead. "
                                     "The table goes to --out, which is required (with --run-dir too); only "
                                     "--table, which checks an existing table, may leave it out.")
    lat.add_argument("space", nargs="?", help=f"a registered space ({spaces}), or use --config / --run-dir")
    lat.add_argument("options", nargs="*", metavar="key=value",
                     help="space options after SPACE; config overrides with --config or --run-dir (e.g. "
                          "latency.threads=2 space.options.width_mult=0.5)")
    lat.add_argument("--config", help="the space and data of a config (a YAML file or a packaged one: digits, ...)")
    lat.add_argument("--run-dir", type=_path, help="the space and data of a run's config.yaml")
    lat.add_argument("--table", metavar="FILE", help="check this existing table (needs --check K)")
    lat.add_argument("--out", metavar="FILE", help="where the table is written (JSON; --check K puts its plot "
                                                   "beside it as .png); required, also with --run-dir. With --table "
                                                   "it defaults to that table, updated in place")
    lat.add_argument("--backend", choices=["torch", "onnxruntime"], help="default: latency.backend (torch)")
    lat.add_argument("--device", help="cpu or cuda (torch backend); default: latency.device (cpu)")
    lat.add_argument("--threads", type=int, help="intra-op threads while timing; default: latency.threads (1)")
    lat.add_argument("--batch", type=int, help="the batch timed; default: latency.batch (1)")
    lat.add_argument("--runs", type=int, default=50, help="timed rounds per entry (median taken; default 50)")
    lat.add_argument("--warmup", type=int, default=5, help="untimed rounds first (default 5)")
    lat.add_argument("--max-spread", type=float, default=0.2,
                     help="re-measure entries whose interquartile range / median is above this (default 0.2)")
    lat.add_argument("--retries", type=int, default=1, help="re-measurements of a wide entry (default 1)")
    lat.add_argument("--check", type=int, default=0, metavar="K",
                     help="also time K random subnets end to end: error, Kendall tau, fitted overhead")
    lat.add_argument("--seed", type=int, default=0, help="which random subnets the check times")
    lat.add_argument("--force", action="store_true", help="replace an existing --out file")
    lat.add_argument("--quiet", action="store_true", help="no progress bars")
    lat.set_defaults(func=cmd_latency)

    def stage(name, func, help_, config=False, arch=False, resume=True, options=True):
        sp = sub.add_parser(name, help=help_, description=help_)
        sp.add_argument("--run-dir", required=name != "demo", default=None, type=_path,
                        help="the run directory (created by train-supernet; read by later stages)")
        if config:
            sp.add_argument("--config", help="a YAML config file, or a packaged one: digits, cifar10, imagenet")
        if arch:
            sp.add_argument("--arch", help="architecture to retrain (default: RUN_DIR/search/best_arch.json); "
                                           "JSON string, JSON file or NNI file")
            sp.add_argument("--pick", metavar="RULE",
                            help="after search.algorithm=nsga2: the front's lowest-error member under a cost bound "
                                 "(flops<=20M, latency<=0.08ms, as constraints are written), or knee")
        if name != "demo":  # continue or start over, not both
            again = sp.add_mutually_exclusive_group()
            if resume:
                again.add_argument("--resume", action="store_true", help="continue this stage where it stopped")
            again.add_argument("--force", action="store_true", help="start this stage over, replacing its results")
        sp.add_argument("--threads", type=int, metavar="N", help=THREADS_HELP)
        if options:
            sp.add_argument("options", nargs="*", metavar="key=value",
                            help="dotted config overrides, e.g. supernet.steps=100 (a stage's own keys need no prefix)")
        sp.set_defaults(func=func)
        return sp

    stage("train-supernet", cmd_train_supernet, f"train the weight-sharing supernet with a one-shot strategy "
                                                f"(strategy.name: {strategies}, or a user's module:Class)", config=True)
    stage("search", cmd_search, "evolutionary (or random) search on the trained supernet, BN-recalibrated, "
                                "scored on the validation split")
    stage("retrain", cmd_retrain, "train the searched architecture from scratch as a plain network", arch=True)
    stage("evaluate", cmd_evaluate, "top-1 / top-5 of the retrained network on the test split -> eval.json",
          resume=False, options=False)
    stage("export", cmd_export, "write RUN_DIR/arch.json and RUN_DIR/model.onnx (checked against PyTorch) and, "
                                "with onnxruntime, its latency -> RUN_DIR/model_latency.json",
          resume=False)
    rank = stage("rank", cmd_rank, "train K architectures alone (the retrain recipe, rank.steps) and report how "
                                   "well the supernet's scores rank them, against FLOPs, params and zero-cost "
                                   "proxies -> RUN_DIR/rank/report.json")
    rank.add_argument("--ground-truth", metavar="TABLE",
                      help="a nas-bench-201 run: read each architecture's accuracy from this NAS-Bench-201 table "
                           "(CSV with ArchitectureString) instead of training it; its column: "
                           "rank.ground_truth_column (cifar10, cifar100, imagenet16-120)")
    demo = stage("demo", cmd_demo, "the whole pipeline on the embedded digits data, then a summary table",
                 resume=False)
    demo.add_argument("--config", help="a packaged digits config instead of the strategy's: e.g. "
                                       "mixed-precision-digits (SPOS with per-block bit widths)")
    demo.add_argument("--strategy", choices=list(DEMOS), default=None,
                      help="spos: supernet, evolution search, retrain (configs/digits.yaml); darts: "
                           "differentiable search, the architecture derived from α (configs/darts-digits.yaml); "
                           "enas: an RL controller picks the architecture (configs/enas-digits.yaml)")
    demo.add_argument("--method", dest="strategy", choices=list(DEMOS), action=_Deprecated,
                      help="deprecated: the old name of --strategy")

    return p


def _path(text: str):
    return Path(text)


def main(argv: list[str] | None = None) -> int:
    from .runtime import dist
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as e:  # --help, or a usage error already printed: a status, as every other return
        return e.code if isinstance(e.code, int) else 2
    if getattr(args, "threads", None) is not None:
        if args.threads < 1:
            print(f"supernet {args.command}: error: --threads must be >= 1, got {args.threads}", file=sys.stderr)
            return 2
        if args.command != "info" and getattr(args, "options", None) is not None:
            args.options.append(f"runtime.threads={args.threads}")  # the stage sets it and records it
        else:
            from .runtime.threads import use_threads
            use_threads(args.threads)
    dist.init_from_env()  # torchrun: join the process group; only rank 0 prints and writes
    quiet = contextlib.nullcontext() if dist.is_main() else contextlib.redirect_stdout(open(os.devnull, "w"))
    try:
        with quiet:
            return args.func(args)
    except USER_ERRORS as e:
        if os.environ.get("SUPERNET_DEBUG"):
            raise
        print(f"supernet {args.command}: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        if e.errno not in DISK_FULL or os.environ.get("SUPERNET_DEBUG"):
            raise
        print(f"supernet {args.command}: error: {disk_full_message(e, getattr(args, 'run_dir', None))}",
              file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"supernet {args.command}: interrupted", file=sys.stderr)
        return 130
    finally:
        dist.shutdown()
