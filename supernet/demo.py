"""``supernet demo``: the whole pipeline on the embedded digits data, then a summary table."""
from __future__ import annotations

import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Optional

from . import pipeline
from .pipeline.config import load_config
from .pipeline.rundir import owning
from .export import INSTALL, check_export, missing_dependencies
from .runtime.io import write_json
from .runtime.typed import ConfigError


DEMOS = {"spos": ("digits", "SPOS"), "darts": ("darts-digits", "DARTS"), "enas": ("enas-digits", "ENAS")}  # strategy -> (packaged config, name)


def run_demo(run_dir: Optional[Path] = None, overrides: list[str] = (), strategy: Optional[str] = None,
             config: Optional[str] = None) -> dict:
    """Run every stage with ``configs/digits.yaml`` (``darts-digits.yaml`` for DARTS, which derives
    its architecture from α instead of searching; or the packaged digits ``config`` named, such as
    ``mixed-precision-digits``) into a new run directory; return the results."""
    if strategy is not None and config is not None:
        raise ConfigError("give the demo --strategy or --config, not both (a config names its strategy)")
    if config is not None:
        data = load_config(pipeline.resolve_config_path(config))
        if data.data.name != "digits":
            raise ConfigError(f"the demo runs on the embedded digits; config {config!r} reads {data.data.name}: "
                              f"run its stages one by one (supernet train-supernet --config {config} ...)")
        strategy, title = data.strategy["name"], f"{config} ({data.strategy['name'].upper()})"
    else:
        strategy = strategy or "spos"
        if strategy not in DEMOS:
            raise ConfigError(f"unknown demo {strategy!r}; choose one of {', '.join(DEMOS)}")
        config, title = DEMOS[strategy]
    if run_dir is None:  # a new folder each time: a demo never overwrites an earlier run
        run_dir = Path("runs") / datetime.now().strftime("demo-%Y%m%d-%H%M%S")
    run_dir = Path(run_dir)
    if (run_dir / "config.yaml").exists():
        raise ConfigError(f"{run_dir} already holds a run; give the demo a new --run-dir (or none: it makes one)")
    # Checked before minutes of training: the overrides, and whether the last step can write ONNX.
    # Without the export extra the demo still shows the whole search and skips only the ONNX file:
    # a first-time user learns more from a finished run than from a refusal to start.
    cfg = load_config(pipeline.resolve_config_path(config), list(overrides), section="supernet")
    missing = missing_dependencies()
    if missing:
        print(f"note: {' and '.join(missing)} not installed: the demo will skip model.onnx and write arch.json "
              f"only ({INSTALL} to include it)", file=sys.stderr)
    else:
        check_export(cfg.export.opset)
    print(f"supernet demo: {title} on scikit-learn's handwritten digits -> {run_dir}")
    rows, t_all = [], time.perf_counter()

    def timed(name, fn):
        print(f"\n== {name}")
        t = time.perf_counter()
        result = fn()
        rows.append((name, time.perf_counter() - t))
        return result

    with owning(run_dir, "demo"):  # one owner between the stages too (each stage's lock nests)
        sup = timed("train-supernet", lambda: pipeline.train_supernet(run_dir, config, list(overrides)))
        found = timed("search", lambda: pipeline.search(run_dir)) if sup["arch"] is None else None
        timed("retrain", lambda: pipeline.retrain(run_dir))
        ev = timed("evaluate", lambda: pipeline.evaluate(run_dir))
        if missing:
            ex = timed("export", lambda: {"skipped": True, "arch": str(write_json(run_dir / "arch.json", ev["arch"]))})
        else:
            ex = timed("export", lambda: pipeline.export(run_dir))
    total = time.perf_counter() - t_all

    on = "on sampled paths" if found is not None or strategy == "enas" else "of the weighted supernet"
    chose = {"darts": ", architecture derived from α", "enas": ", architecture chosen by the controller"}
    results = {
        "train-supernet": f"{sup['steps']} steps, train top-1 {sup.get('acc', float('nan')):.3f} {on}"
                          + ("" if found is not None else chose.get(strategy, "")),
        **({} if found is None else {"search": f"{found['evaluated']} candidates; best validation top-1 "
                                                f"{found['best']['top1']:.4f} (random architectures: "
                                                f"{found['random_mean_top1']:.4f} mean)"}),
        "retrain": f"{ev['flops'] / 1e6:.2f}M FLOPs, {ev['params'] / 1e3:.1f}K params"
                   + (f", {ev['bitops'] / 1e6:.1f}M BitOps, {ev['size'] / 1e3:.1f} KB" if "bitops" in ev else "")
                   + ", from scratch",
        "evaluate": f"test top-1 {ev['top1']:.4f}, top-5 {ev['top5']:.4f} ({ev['n']} images)",
        "export": f"arch.json only: ONNX skipped ({INSTALL})" if ex.get("skipped") else
                  "arch.json, model.onnx" + ("" if ex["max_abs_diff"] is None else
                                             f" (ONNX vs PyTorch max |diff| {ex['max_abs_diff']:.1e}; "
                                             f"ONNX Runtime {ex['latency']['median_ms']:.3g} ms at batch "
                                             f"{ex['latency']['batch']})"),
    }
    width = max(len(v) for v in results.values())
    print(f"\n{'stage':<15} {'result':<{width}} {'time':>7}")
    for name, seconds in rows:
        print(f"{name:<15} {results[name]:<{width}} {seconds:>6.1f}s")
    print(f"{'total':<15} {'':<{width}} {total:>6.1f}s")
    # What this run wrote: DARTS and ENAS write search/best_arch.json but no search.png, and
    # model_latency.json exists only where ONNX Runtime timed model.onnx.
    written = ["config.yaml", "supernet/", "search/search.png" if found is not None else "search/best_arch.json",
               "retrain/", "eval.json", "arch.json"]
    if not ex.get("skipped"):
        written.append("model.onnx")
    if ex.get("latency") is not None:
        written.append("model_latency.json")
    print(f"\nartifacts in {run_dir}/ ({', '.join(written)})")
    return {"run_dir": str(run_dir), "eval": ev, "search": found, "seconds": total}
