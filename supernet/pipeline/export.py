"""``supernet export``: the retrained network as ``RUN/model.onnx`` (checked against PyTorch, its
ONNX Runtime latency measured) and its architecture as ``RUN/arch.json``."""
from __future__ import annotations

from pathlib import Path

import torch

from ..cost.timing import compare_latency, onnx_latency
from ..export import QUANT_TIES, check_export, check_onnx, check_quantized_onnx, export_onnx, is_quantized
from ..runtime import dist
from ..runtime.io import read_json_file, write_json
from .build import load_data, load_subnet
from .config import stage_config, use_runtime
from .rundir import owning, record_config, refuse_overwrite, require_run


def export(run_dir: Path, overrides: list[str] = (), force: bool = False) -> dict | None:
    """Export ``RUN/retrain``; None on ranks other than 0 under torchrun."""
    if not dist.is_main():
        return None
    run_dir = Path(run_dir)
    require_run(run_dir)
    check_export(stage_config(run_dir, overrides, "export").export.opset)  # the extra and the opset, before the lock
    with owning(run_dir, "export", every_rank=False):
        cfg = stage_config(run_dir, overrides, "export")
        use_runtime(cfg)
        check_export(cfg.export.opset)  # the export extra and the opset, before any work
        refuse_overwrite([run_dir / "arch.json", run_dir / "model.onnx"], force)
        data = load_data(cfg)
        model, arch = load_subnet(run_dir, cfg, data)
        model = model.cpu().eval()
        sample = torch.stack([data.test[i][0] for i in range(min(cfg.export.batch_size, len(data.test)))])
        onnx_path = export_onnx(model, sample, run_dir / "model.onnx", cfg.export.opset)
        quantized = is_quantized(model)
        check = torch.stack([data.test[i][0] for i in range(min(64 if quantized else 8, len(data.test)))])
        if quantized:  # integer rounding may resolve a tie the other way: the share of samples counts
            report = check_quantized_onnx(onnx_path, model, check)
            diff = None if report is None else report["max_abs_diff"]
            if report is not None and not report["ok"]:
                onnx_path.unlink()
                raise RuntimeError(f"ONNX output differs from PyTorch beyond {report['tolerance']:.3g} on "
                                   f"{report['outside']:.0%} of {len(check)} test images (ties allow {QUANT_TIES:.0%})")
        else:
            diff = check_onnx(onnx_path, model, check)
            if diff is not None and diff > 1e-3:
                onnx_path.unlink()  # a failed export leaves neither file, so a retry is not refused
                raise RuntimeError(f"ONNX output differs from PyTorch by {diff:.3g} on a test batch")
        latency = None
        if diff is not None:  # onnxruntime is installed: the deployed file's own latency on this CPU
            lc = cfg.latency
            latency = onnx_latency(onnx_path, tuple(sample.shape[1:]), lc.threads, lc.batch)
            if quantized:  # and the same network in float, timed in the same rounds
                one = sample[:lc.batch] if len(sample) >= lc.batch else sample
                latency["against_float"] = compare_latency(model, one, lc.threads)
            write_json(run_dir / "model_latency.json", latency)
            if (run_dir / "eval.json").is_file():  # evaluate ran first: its report gets the measurement too
                report = read_json_file(run_dir / "eval.json", f"{run_dir / 'eval.json'}")
                report["latency"] = {**report.get("latency", {}), "onnxruntime": latency}
                write_json(run_dir / "eval.json", report)
        record_config(run_dir, cfg)  # once the export has passed its check: a refused one changes no setting
        write_json(run_dir / "arch.json", arch)  # last: arch.json means the export is complete
    return {"arch": str(run_dir / "arch.json"), "onnx": str(onnx_path), "max_abs_diff": diff, "latency": latency}
