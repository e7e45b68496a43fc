"""The ``supernet`` command: one subcommand per pipeline stage.

User errors (bad options, bad architectures, missing files) print one line on stderr and exit 2,
with no traceback. ``SUPERNET_DEBUG=1`` shows the traceback anyway.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

from .arch import ArchError
from .config import ConfigError, parse_overrides, to_dict

USER_ERRORS = (ConfigError, ArchError, FileNotFoundError, NotADirectoryError, PermissionError, ValueError)


def _human(n: float) -> str:
    for unit, scale in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.2f}{unit}"
    return f"{n:g}"


def cmd_info(args) -> int:
    from .arch import parse_arch
    from .cost import CostModel
    from .spaces import create, entry, space_options

    overrides = parse_overrides(args.options)
    options = space_options(args.space, overrides)
    model = create(args.space, **overrides)
    cost = CostModel(model)
    space = cost.space
    if args.arch is not None:
        arch = parse_arch(args.arch, space)
        flops, params = cost.cost(arch)
        if args.json:
            print(json.dumps({"space": args.space, "arch": arch, "flops": flops, "params": params}))
        else:
            print(f"space   {args.space}")
            print(f"arch    {json.dumps(arch)}")
            print(f"FLOPs   {flops:,} ({_human(flops)} multiply-accumulates, conv+linear, batch 1)")
            print(f"params  {params:,} ({_human(params)}, fixed subnet with affine BN)")
        return 0
    r = cost.range()
    summary = {"space": args.space, "options": to_dict(options), "labels": len(space.labels),
               "choices": {label: space.count(label) for label in space.labels},
               "size": space.size, **r}
    if args.json:
        print(json.dumps(summary))
        return 0
    print(f"space    {args.space}: {entry(args.space).doc}")
    print("options  " + " ".join(f"{k}={json.dumps(v)}" for k, v in to_dict(options).items()))
    print(f"labels   {len(space.labels)}: {space.describe()}")
    print(f"size     {space.size:.4g} architectures ({space.size:,})")
    print(f"FLOPs    {_human(r['flops_min'])} .. {_human(r['flops_max'])}  ({r['flops_min']:,} .. {r['flops_max']:,})")
    print(f"params   {_human(r['params_min'])} .. {_human(r['params_max'])}  ({r['params_min']:,} .. {r['params_max']:,})")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="supernet", description="One-shot neural architecture search (SPOS).")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    info = sub.add_parser("info", help="summarise a search space, or cost one architecture",
                          description="Summarise a search space (labels, size, FLOPs/params range), or "
                                      "give one architecture's FLOPs and params.")
    info.add_argument("space", help="a registered space, e.g. shufflenet or shufflenet-cifar")
    info.add_argument("options", nargs="*", metavar="key=value",
                      help="space options, e.g. num_classes=1000 input_size=224 channel_search=true width_mult=0.5")
    info.add_argument("--arch", help="an architecture: a JSON string, a JSON file, or an NNI-format file")
    info.add_argument("--json", action="store_true", help="print one JSON object")
    info.set_defaults(func=cmd_info)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except USER_ERRORS as e:
        if os.environ.get("SUPERNET_DEBUG"):
            raise
        print(f"supernet {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"supernet {args.command}: interrupted", file=sys.stderr)
        return 130
