"""``python -m benchmarks``: run the benchmarks, print one table and optionally write every figure as JSON."""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Optional

import torch

from supernet.runtime.io import write_json

from . import family, hardware, layout, quant, spos
from .common import Table, keep_freed_memory, machine, read_peer

# How long each part runs: seconds of step rounds per shape (at least step_rounds rounds), repetitions
# of the candidate evaluation, rounds of cost queries.
EFFORT = {"quick": dict(step_s=20, step_rounds=6, eval_reps=2, cost_rounds=5, darts_s=30, darts_rounds=3, enas_s=30,
                        enas_rounds=6, hardware_s=20, hardware_rounds=5, layout_s=10, layout_rounds=5),
          "full": dict(step_s=90, step_rounds=20, eval_reps=5, cost_rounds=20, darts_s=300, darts_rounds=10, enas_s=120,
                       enas_rounds=20, hardware_s=120, hardware_rounds=15, layout_s=40, layout_rounds=10)}
PARTS = ("spos", "darts", "enas", "proxyless", "fbnet", "quant", "layout")  # --only: the SPOS figures (step, eval,
# cost, memory), one method's rows, the mixed-precision (QAT) step figures, or channels_last against contiguous
HARDWARE = {"proxyless": hardware.bench_proxyless, "fbnet": hardware.bench_fbnet}


def run(quick: bool = False, progress: bool = True, nni: Optional[dict] = None, only: Optional[str] = None,
        nni_family: Optional[dict] = None) -> dict:
    e = EFFORT["quick" if quick else "full"]
    t0 = time.perf_counter()
    result: dict = {"machine": machine(), "quick": quick}
    if only in (None, "darts"):  # first: its RSS growth is only meaningful in a fresh process
        result["darts"] = family.bench_darts(e["darts_s"], e["darts_rounds"], progress=progress)
        if nni_family is not None:
            try:
                result["darts"]["nni"] = family.nni_darts(nni_family)
            except (KeyError, TypeError) as err:
                raise ValueError(f"the NNI family results lack {err}; pass the file written by "
                                 f"family_cpu.py --json") from None
    if only in (None, "enas"):
        result["enas"] = family.bench_enas(e["enas_s"], e["enas_rounds"], progress=progress)
    for name, bench in HARDWARE.items():
        if only in (None, name):
            result[name] = bench(e["hardware_s"], e["hardware_rounds"], progress=progress)
            peer = hardware.nni_hardware(nni_family).get(name) if nni_family is not None else None
            if peer is not None:
                result[name]["nni"] = peer
    if only in (None, "spos"):
        steps = {name: spos.bench_step(name, e["step_s"], e["step_rounds"], progress=progress) for name in spos.SHAPES}
        result["step"] = steps
        result["step_ratio_pinned"] = {k: v["ratio_pinned"]["median"] for k, v in steps.items()}
        result["step_ratio_random"] = {k: v["ratio_random"]["median"] for k, v in steps.items()}
        result["memory"] = {k: v.pop("memory") for k, v in steps.items()}
        ev = spos.bench_eval(e["eval_reps"], progress=progress)
        result["eval"] = ev
        result["eval_speedup"] = ev["speedup"]["median"]
        result["cost"] = spos.bench_cost(e["cost_rounds"])
        if nni is not None:
            try:
                result["nni"] = spos.nni_summary(nni, ev)
            except (KeyError, TypeError) as err:
                raise ValueError(f"the NNI results lack {err}; pass the file written by spos_cpu.py --json") from None
    if only in (None, "quant"):  # same effort per shape as the SPOS step figures
        result["quant"] = quant.bench(e["step_s"], e["step_rounds"], progress=progress)
    if only in (None, "layout"):
        result["layout"] = layout.bench(e["layout_s"], e["layout_rounds"], progress=progress)
    result["seconds"] = time.perf_counter() - t0
    return result


def format_table(res: dict) -> str:
    m = res["machine"]
    table = Table(f"python -m benchmarks{' --quick' if res['quick'] else ''}: {m['cpu']}, {m['cores']} cores, "
                  f"{m['threads']} threads, torch {m['torch']}, Python {m['python']}, malloc {m['malloc']}")
    if "darts" in res:
        family.darts_rows(res["darts"], table)
    if "enas" in res:
        family.enas_rows(res["enas"], table)
    for name in HARDWARE:
        if name in res:
            hardware.rows(name, res[name], table)
    if "step" in res:
        spos.rows(res, table)
    if "quant" in res:
        quant.rows(res["quant"], table)
    if "layout" in res:
        layout.rows(res["layout"], table)
    table.text(f"total {res['seconds']:.0f} s")
    return str(table)


def main(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    p.add_argument("--quick", action="store_true", help="fewer rounds: under 10 minutes on 2 CPU cores")
    p.add_argument("--json", metavar="FILE", help="also write every figure to FILE")
    p.add_argument("--threads", type=int, help="torch threads (default: torch's default)")
    p.add_argument("--only", choices=PARTS,
                   help="only the SPOS figures, only one method's rows, only the QAT step figures, or only "
                        "channels_last against contiguous memory (every space's training step)")
    p.add_argument("--malloc", choices=["keep", "default"], default="keep",
                   help="keep: glibc keeps freed memory (common.keep_freed_memory; steadier step ratios); "
                        "default: glibc's defaults, or what MALLOC_* variables set (for RSS figures)")
    p.add_argument("--nni", metavar="FILE", help="add the NNI 3.0 peer's SPOS figures (spos_cpu.py --json FILE)")
    p.add_argument("--nni-family", metavar="FILE", help="add NNI 3.0's DARTS, Proxyless and GumbelDARTS figures "
                                                        "(family_cpu.py --json FILE)")
    args = p.parse_args(argv)
    if args.threads is not None and args.threads < 1:
        p.error(f"--threads must be at least 1, got {args.threads}")
    try:
        nni, peers = read_peer(args.nni, "spos_cpu.py"), read_peer(args.nni_family, "family_cpu.py")
    except ValueError as e:
        p.error(str(e))
    if args.malloc == "keep":
        keep_freed_memory()  # steps stop page-faulting their activations back in (the noisiest part of a ratio)
    before = torch.get_num_threads()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    try:
        res = run(quick=args.quick, progress=sys.stderr.isatty(), nni=nni, only=args.only, nni_family=peers)
    finally:
        torch.set_num_threads(before)  # called in-process (tests), the thread count must not leak
    print(format_table(res))
    if args.json:
        write_json(Path(args.json), res)
    return 0 if "eval" not in res or res["eval"]["scores_identical"] else 1


if __name__ == "__main__":
    sys.exit(main())
