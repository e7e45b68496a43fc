"""``supernet retrain``: the chosen architecture as a plain network, trained from scratch (or
fine-tuned from the supernet's weights, ``retrain.init=supernet``)."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import torch

from ..arch import SearchSpace, fix, parse_arch
from ..cost.constraints import Constraint, formatter
from ..data.loader import Cutout, fixed_batches
from ..data.memory import check_batches_fit
from ..nn.layers import DropPath
from ..runtime import dist
from ..runtime.device import resolve_device
from ..runtime.io import MB, read_json_file
from ..runtime.typed import ConfigError
from ..search import recalibrate_bn
from ..search.pareto import knee
from ..strategies import Plain
from ..train import fit, load_latest, save_checkpoint
from .build import build_subnet, load_data, load_supernet, subnet_options, supernet_space
from .config import RunConfig, stage_config, use_runtime
from .rundir import fitting, owning, require_run
from .sizes import check_subnet_fits


def retrain(run_dir: Path, arch_path=None, overrides: list[str] = (), resume: bool = False, force: bool = False,
            pick: Optional[str] = None) -> dict:
    """Train ``arch_path`` (default ``RUN/search/best_arch.json``; with ``pick``, that member of the
    front in ``RUN/search/pareto.json``: see ``pick_from_front``) from scratch into ``RUN/retrain``.

    Every check that can refuse runs before ``fitting`` begins: a forced restart moves the earlier
    retrain aside there, and the recalibration at the end comes after the new one has replaced it.
    """
    run_dir = Path(run_dir)
    require_run(run_dir)
    with owning(run_dir, "retrain"):
        cfg = stage_config(run_dir, overrides, "retrain")
        use_runtime(cfg)
        rc = cfg.retrain
        data = load_data(cfg)
        picked = None
        if pick is not None:
            if arch_path is not None:
                raise ConfigError(f"--pick {pick!r} and --arch both choose the architecture; give one of them")
            picked = pick_from_front(run_dir, pick)
            arch_path = picked["arch"]
        arch = arch_for_retrain(run_dir, arch_path, supernet_space(cfg, data))
        check_subnet_fits(cfg, data, arch, subnet_options(cfg, data))
        check_batches_fit(data.train, rc.batch_size, rc.bn_recal_batches,
                          f"retrain.bn_recal_batches={rc.bn_recal_batches:,}", "lower retrain.bn_recal_batches")
        torch.manual_seed(rc.seed)  # the fresh initialisation
        model = build_subnet(cfg, data, arch) if rc.init == "scratch" else supernet_subnet(run_dir, cfg, data, arch)
        check_retrain_recipe(cfg, model)
        meta = {"kind": "subnet", "space": cfg.space.name, "options": subnet_options(cfg, data), "arch": arch}
        out = run_dir / "retrain"
        train_set = Cutout(data.train, rc.cutout) if rc.cutout else data.train
        with fitting(run_dir, "retrain", cfg, resume, force) as run:
            summary = fit(model, train_set, rc, out, meta=meta, strategy=Plain(rc.aux_weight, rc.drop_path, rc.steps,
                                                                               seed=rc.seed), desc="retrain", **run)
        ck, _ = load_latest(out)
        if rc.bn_recal_batches and not ck.get("bn_recalibrated") and dist.is_main():
            # The official final pass: re-estimate BN statistics with LR 0 (weights unchanged), with
            # every path kept, as evaluation computes.
            for m in model.modules():
                if isinstance(m, DropPath):
                    m.p = 0.0
            device = resolve_device(rc.device)
            recalibrate_bn(model, fixed_batches(data.train, rc.batch_size, rc.bn_recal_batches, rc.seed + 1), device)
            save_checkpoint(out / "last.pt", {**ck, "model": model.state_dict(), "bn_recalibrated": True})
    return {**summary, "arch": arch, **({"picked": picked} if picked else {})}


def pick_from_front(run_dir: Path, rule: str) -> dict:
    """The member of the NSGA-II front (``RUN/search/pareto.json``) that ``rule`` chooses: ``knee``
    (``supernet.search.pareto.knee``: the smallest sum of min-max-normalised objectives), or a
    cost bound written as a constraint (``flops<=20M``, ``latency<=0.08ms``), which chooses the
    lowest-error member that meets it."""
    front = read_front(run_dir)
    members = front["front"]
    if rule.strip() == "knee":
        points = [[m["top1_err"] if o == "error" else m["costs"][o] for o in front["objectives"]] for m in members]
        return members[knee(points)]
    try:
        bound = Constraint.parse(rule)
    except ValueError as e:
        raise ConfigError(f"--pick {rule!r}: {e}; or write --pick knee") from None
    recorded = members[0]["costs"]
    if bound.metric not in recorded:
        raise ConfigError(f"--pick {rule!r}: the front records {', '.join(recorded)}, not {bound.metric} (the search's "
                          f"cost model had no {bound.metric}); pick by one of those")
    meeting = [m for m in members if bound.ok(m["costs"][bound.metric])]
    if not meeting:
        values, fmt = [m["costs"][bound.metric] for m in members], formatter(bound.metric)
        raise ConfigError(f"--pick {rule!r}: no member of the front meets {bound}; its {len(members)} members' "
                          f"{bound.metric} runs from {fmt(min(values))} to {fmt(max(values))}")
    return min(meeting, key=lambda m: m["top1_err"])  # the front is sorted by error: the first such member


def read_front(run_dir: Path) -> dict:
    """``RUN/search/pareto.json``, or one line saying why this run has none."""
    path = run_dir / "search" / "pareto.json"
    if path.is_file():
        return read_json_file(path, f"front {path}", ConfigError, 100 * MB, "run the search again with --force")
    state = run_dir / "search" / "state.json"
    algorithm = read_json_file(state, "search state", ConfigError, 1000 * MB).get("algorithm") if state.is_file() else None
    again = f"'supernet search --run-dir {run_dir} algorithm=nsga2 objectives=[error,flops]'"
    if algorithm is not None:
        raise ConfigError(f"--pick chooses from an NSGA-II front, and this run's search ran algorithm={algorithm}, "
                          f"which finds one architecture (search/best_arch.json): drop --pick, or search again "
                          f"with {again[:-1]} --force'")
    raise ConfigError(f"--pick chooses from an NSGA-II front, and {path} does not exist: run {again} first")


def supernet_subnet(run_dir: Path, cfg: RunConfig, data, arch: dict):
    """``arch`` cut from the trained supernet with its weights (retrain.init=supernet: fine-tuning)."""
    if cfg.retrain.space_options:
        raise ConfigError("retrain.init=supernet fine-tunes the supernet's own weights, so retrain.space_options "
                          "cannot change the network: remove them, or set retrain.init=scratch")
    supernet, _ = load_supernet(run_dir, cfg, data, torch.device("cpu"))
    return fix(supernet, parse_arch(arch, SearchSpace(supernet)), weights="copy")


def arch_for_retrain(run_dir: Path, arch_path, space: SearchSpace) -> dict:
    """The architecture to retrain: ``arch_path``, else the search's (or the strategy's) best."""
    if arch_path is not None:
        return parse_arch(arch_path, space)
    best = run_dir / "search" / "best_arch.json"
    if not best.is_file():
        raise ConfigError(f"{best} does not exist: run 'supernet search --run-dir {run_dir}' first or pass --arch FILE")
    return parse_arch(best, space)


def check_retrain_recipe(cfg: RunConfig, model) -> None:
    """Refuse a retrain setting that this network cannot use (it would be silently ignored)."""
    rc = cfg.retrain
    if hasattr(model, "auxiliary_head") and not rc.aux_weight:
        raise ConfigError("the retrained network has an auxiliary head (space option auxiliary=true) but "
                          "retrain.aux_weight is 0, so it would run and never learn: set aux_weight (DARTS: 0.4) "
                          "or auxiliary=false")
    if rc.aux_weight and not hasattr(model, "auxiliary_head"):
        raise ConfigError(f"retrain.aux_weight={rc.aux_weight} needs a network with an auxiliary head: set "
                          f"retrain.space_options.auxiliary=true (darts space) or aux_weight=0")
    if rc.drop_path and not any(isinstance(m, DropPath) for m in model.modules()):
        raise ConfigError(f"retrain.drop_path={rc.drop_path} needs a network with drop-path (the darts space's "
                          f"fixed cells); space {cfg.space.name!r} has none: set drop_path=0")
