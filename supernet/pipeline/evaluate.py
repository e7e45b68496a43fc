"""``supernet evaluate``: the retrained network's top-1 / top-5 on the test split, its cost and
latency, in ``RUN/eval.json``."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

from ..cost import CostModel, LatencyTableError
from ..runtime import dist
from ..runtime.device import memory_format, resolve_device
from ..runtime.io import read_json_file, write_json

from ..train import evaluate as evaluate_model
from .build import cost_model, load_data, load_subnet, model_options, space_model, subnet_options
from .config import RunConfig, stage_config, use_runtime
from .rundir import owning, refuse_overwrite, require_run


def evaluate(run_dir: Path, force: bool = False, threads: Optional[int] = None) -> dict | None:
    """Evaluate ``RUN/retrain`` on the test split; None on ranks other than 0 under torchrun.

    Args:
        threads: CPU threads (default: the run's recorded ``runtime.threads``).
    """
    if not dist.is_main():  # one process is plenty; under torchrun the others have nothing to do
        return None
    run_dir = Path(run_dir)
    require_run(run_dir)
    with owning(run_dir, "evaluate", every_rank=False):
        cfg = stage_config(run_dir, [] if threads is None else [f"runtime.threads={threads}"], "retrain")
        use_runtime(cfg)
        refuse_overwrite([run_dir / "eval.json"], force)
        data = load_data(cfg)
        model, arch = load_subnet(run_dir, cfg, data)
        device = resolve_device(cfg.retrain.device)
        fmt = memory_format(cfg.retrain.channels_last)
        result = evaluate_model(model.to(device, memory_format=fmt), data.test, batch_size=256, device=device,
                                num_workers=cfg.data.num_workers, channels_last=cfg.retrain.channels_last)
        space = space_model(cfg, subnet_options(cfg, data))
        cost = CostModel(space)
        report = {"top1": result["top1"], "top5": result["top5"], "loss": result["loss"], "n": result["n"],
                  "split": "test", "arch": arch, **{k: v for k, v in cost.costs(arch).items() if k != "latency"}}
        latency = latency_report(run_dir, cfg, data, arch, space, cost)
        if latency:
            report["latency"] = latency
        write_json(run_dir / "eval.json", report)
    return report


def latency_report(run_dir: Path, cfg: RunConfig, data, arch: dict, space, cost: CostModel) -> dict:
    """The retrained network's latency: the table's prediction (when ``latency.table`` is set and the
    retrained network is the searched one) and the exported ONNX model's measured latency.
    ``space`` is the retrained network's space model and ``cost`` its FLOPs tables."""
    out = {}
    options = subnet_options(cfg, data)
    if cfg.latency.table is not None:
        if options != model_options(cfg, data):
            print("note: no latency-table prediction: the retrained network has other space options than the "
                  "searched one (retrain.space_options)", file=sys.stderr)
        else:
            try:
                cost = cost_model(cfg, space, options, cost=cost)
            except LatencyTableError as e:
                print(f"note: no latency-table prediction: {e}", file=sys.stderr)
            else:
                t = cost.latency_table.target
                out["table"] = {"ms": cost.latency(arch), "backend": t["backend"], "device_name": t["device_name"],
                                "threads": t["threads"], "batch": t["batch"], "file": str(cfg.latency.table)}
    measured = run_dir / "model_latency.json"
    if measured.is_file():
        out["onnxruntime"] = read_json_file(measured, str(measured))
    return out
