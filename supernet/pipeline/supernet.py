"""``supernet train-supernet``: train the weight-sharing supernet under the run's strategy."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import torch

from ..arch import SearchSpace
from ..runtime import dist
from ..runtime.io import write_json
from ..runtime.typed import ConfigError, parse_overrides
from ..strategies import FewShot, build_strategy
from ..train import CheckpointError, fit
from .build import benchmark_string, build_supernet, cost_model, load_data, model_options, needs_latency_table, supernet_meta
from .config import DECIDES, SHARED_KEYS, load_config, resolve_config_path, scope_overrides, use_runtime
from .plots import plot_arch_history
from .rundir import fitting, owning


def train_supernet(run_dir: Path, config: Optional[str | Path] = None, overrides: list[str] = (), resume: bool = False,
                   force: bool = False) -> dict:
    """Train the supernet into ``RUN/supernet`` (split into sub-supernets at ``supernet.few_shot.split_at``
    when set); a strategy that chooses an architecture itself (DARTS, ENAS, Proxyless, FBNet) writes it
    to ``RUN/search/best_arch.json``.

    Args:
        config: a YAML file or a packaged config's name; None with ``resume`` reads ``RUN/config.yaml``.
        overrides: ``key=value`` pairs; a key without a section is a ``supernet`` key.
    """
    run_dir = Path(run_dir)
    if config is None and not resume:
        raise ConfigError("train-supernet needs --config FILE (or --resume on an existing run)")
    nothing = CheckpointError(f"nothing to resume: {run_dir} holds no run (no config.yaml); start one with --config FILE")
    if config is None and not run_dir.is_dir():
        raise nothing
    if resume:
        refuse_later_sections(overrides)
    cfg = None if config is None else load_config(resolve_config_path(config), overrides, section="supernet")
    with owning(run_dir, "train-supernet"):  # first: finishing a killed --force may bring config.yaml back
        if cfg is None:
            if not (run_dir / "config.yaml").is_file():
                raise nothing
            cfg = load_config(run_dir / "config.yaml", overrides, section="supernet")
        if not resume and list((run_dir / "supernet").glob("*.pt")) and not force:
            raise CheckpointError(f"{run_dir} already holds a supernet; pass --resume to continue it or --force to "
                                  f"start over (or use a new --run-dir)")
        use_runtime(cfg)
        data = load_data(cfg)
        torch.manual_seed(cfg.supernet.seed)  # the initial weights, so that a run is a function of its config
        model = build_supernet(cfg, data)
        needs_latency_table(cfg.strategy.get("constraints") or [], cfg, "strategy.constraints")
        cost = cost_model(cfg, model, model_options(cfg, data)) if cfg.latency.table else None
        strategy = build_strategy(cfg.strategy, SearchSpace(model), cfg.supernet.seed, cost=cost)
        if cfg.supernet.few_shot.split_at is not None:  # its paths run in their own sub-supernets from split_at
            strategy = FewShot(strategy, cfg.supernet.few_shot.split_at)
        table = cost.latency_table if cost is not None else None
        inputs = {"latency_table_sha256": table.digest()} if table is not None else None
        with fitting(run_dir, "supernet", cfg, resume, force, inputs) as run:
            summary = fit(model, data.train, cfg.supernet, run_dir / "supernet", meta=supernet_meta(cfg, data),
                          strategy=strategy, desc=f"supernet ({strategy.name})", **run)
        arch = strategy.final_arch()
        out = run_dir / "search"
        finished_before = summary.get("already_done") and (out / "best_arch.json").is_file()
        # A strategy that chose: retrain can follow without a search. A finished run resumed
        # leaves what it wrote as it was.
        if arch is not None and dist.is_main() and not finished_before:
            out.mkdir(exist_ok=True)
            history = strategy.arch_history()
            if history is not None:
                write_json(out / "arch_history.json", history)
                plot_arch_history(history, out / "search.png",
                                  title=f"{strategy.name} on {cfg.space.name}: weights over {summary['steps']} steps")
            write_json(out / "best_arch.json", {"arch": arch, **benchmark_string(cfg, strategy.space, arch),
                                                "space": cfg.space.name, "strategy": strategy.name,
                                                "step": summary.get("step"), **strategy.final_arch_info()})
    return {**summary, "strategy": strategy.name, "arch": arch}


def refuse_later_sections(overrides: list[str]) -> None:
    """A resumed supernet run may not change a later stage's settings: the record would then say
    that stage ran with them. Each stage sets its own section (``supernet search ... population=20``)."""
    extra = scope_overrides(parse_overrides(list(overrides)), "supernet")
    later = [f"{sec}.{next(iter(values))}" for sec, values in extra.items()
             if sec not in DECIDES["supernet"] and sec not in SHARED_KEYS and isinstance(values, dict) and values]
    if later:
        stage = later[0].split(".")[0]
        raise ConfigError(f"train-supernet --resume may not change {later[0]}: it is set by the {stage} stage "
                          f"(supernet {stage} --run-dir RUN {later[0].split('.', 1)[1]}=...)")
