"""The SPOS pipeline, one function per stage; each reads the previous stage's artifacts by path.

    runs/NAME/
      config.yaml                       the resolved config of every stage run here
      supernet/last.pt step-*.pt metrics.jsonl
      search/state.json history.jsonl topk.json best_arch.json search.png
      retrain/last.pt metrics.jsonl
      eval.json arch.json model.onnx model_latency.json (measured in ONNX Runtime)
"""
from __future__ import annotations

import contextlib
import json
import sys
import time
from pathlib import Path
from typing import Callable, Iterator, Optional

import torch
from torch.utils.data import Subset

from .arch import SearchSpace, fix, parse_arch
from .config import ConfigError, RunConfig, SearchConfig, dump_config, load_config, parse_overrides, scope_overrides, to_dict
from .cost import Constraints, CostModel
from .latency import LatencyTable, LatencyTableError, onnx_latency, target_of
from .data import build_data
from .data.loader import Compact, Cutout, eval_loader, fixed_batches
from .io import read_json, write_json, write_text
from .lock import replacing, run_lock
from .search import CandidateEvaluator, EvolutionSearch, recalibrate_bn
from .search.evolution import SearchStateError
from .search.plot import plot_arch_history, plot_search
from .search.state import check_population, validate_state
from .spaces import create, space_options
from .strategies import Plain, build_strategy
from .train import CheckpointError, evaluate as evaluate_model, fit, load_latest, save_checkpoint
from .train import dist
from .train.checkpoint import remove_stale_temp_files
from .train.loop import TrainingError, diff_meta
from .train.device import resolve_device
from .train.metrics import progress_bar

PACKAGED_CONFIGS = Path(__file__).parent / "configs"
# Keys a later stage may change besides its own section: where the data lives and how it is read.
# The latency target may be set at any stage: the table is checked against the model whenever it is used.
SHARED_KEYS = {"data": {"root", "num_workers"},
               "latency": {"table", "backend", "device", "threads", "batch", "device_name"}}


def resolve_config_path(name: str | Path) -> Path:
    """A config path, or the name of a packaged config (``digits``, ``cifar10``, ``imagenet``)."""
    path = Path(name)
    if path.is_file():
        return path
    packaged = PACKAGED_CONFIGS / f"{name}.yaml"
    if packaged.is_file():
        return packaged
    names = ", ".join(sorted(p.stem for p in PACKAGED_CONFIGS.glob("*.yaml")))
    raise ConfigError(f"config {str(name)!r} is neither a file nor a packaged config ({names})")


def load_data(cfg: RunConfig):
    """``build_data``, saying how many unreadable images ``data.skip_corrupt`` dropped."""
    data = build_data(cfg.data)
    skipped = list(getattr(data.train, "skipped", [])) + list(getattr(data.test, "skipped", []))
    if skipped:
        n = len(skipped)
        print(f"note: skipped {n} unreadable image{'s' * (n != 1)} (data.skip_corrupt=true), e.g. {skipped[0]}",
              file=sys.stderr)
    return data


def writable_run_dir(run_dir: Path) -> None:
    """Create ``run_dir`` and prove it is writable, before any work is done."""
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        probe = run_dir / ".write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as e:
        raise ConfigError(f"cannot write the run directory {run_dir}: {e.strerror}; choose another --run-dir") from None


@contextlib.contextmanager
def owning(run_dir: Path, stage: str, every_rank: bool = True) -> Iterator[None]:
    """Hold ``run_dir`` for ``stage`` (``supernet.lock``), once it is known to be writable.

    Taken before the stage reads anything from the run directory: a forced restart that a killed
    process left half done is finished on entry and may change what is there.
    """
    if dist.is_main():
        writable_run_dir(run_dir)
    with run_lock(run_dir, stage, every_rank=every_rank):
        yield


def require_run(run_dir: Path) -> None:
    """A later stage needs a run directory that train-supernet made (checked before it is locked)."""
    if not (run_dir / "config.yaml").is_file() and not (run_dir / ".replaced").is_dir():
        raise ConfigError(f"{run_dir} has no config.yaml: run 'supernet train-supernet --run-dir {run_dir}' first")


def stage_config(run_dir: Path, overrides: list[str], section: str) -> RunConfig:
    """The run's saved config with this stage's overrides, which may only touch its own section."""
    saved = run_dir / "config.yaml"
    if not saved.is_file():
        raise ConfigError(f"{run_dir} has no config.yaml: run 'supernet train-supernet --run-dir {run_dir}' first")
    extra = scope_overrides(parse_overrides(overrides), section)
    for sec, values in extra.items():
        bad = [k for k in values if sec != section and k not in SHARED_KEYS.get(sec, ())]
        if bad:
            raise ConfigError(f"{section} may not change {sec}.{bad[0]} (it was fixed when the supernet was trained); "
                              f"use a new --run-dir to change it")
    return load_config(saved, extra)


def record_config(run_dir: Path, cfg: RunConfig) -> None:
    """Save the resolved config once a stage's checks have passed (a refused stage changes nothing)."""
    text = dump_config(cfg)
    path = run_dir / "config.yaml"
    if not path.is_file() or path.read_text() != text:
        writable_run_dir(run_dir)
        write_text(path, text)


def model_options(cfg: RunConfig, data) -> dict:
    """The space's options: the config's, with what the data dictates."""
    return {**cfg.space.options, "num_classes": data.num_classes, "in_channels": data.in_channels,
            "input_size": data.image_size}


def build_supernet(cfg: RunConfig, data):
    return create(cfg.space.name, **model_options(cfg, data))


def cost_model(cfg: RunConfig, model, options: dict, cost: Optional[CostModel] = None) -> CostModel:
    """The model's FLOPs/params tables (``cost``, when already built for ``model``), with the run's
    latency table attached when one is set (refused, naming the difference, when it was measured
    for another model or target)."""
    cost = cost if cost is not None else CostModel(model)
    lc = cfg.latency
    if lc.table is None:
        return cost
    table = LatencyTable.load(lc.table)
    options = to_dict(space_options(cfg.space.name, options))  # every option, as 'supernet latency' records them
    table.require(target_of(model, cost.input_shape, lc.backend, lc.device, lc.threads, lc.batch, cfg.space.name,
                            options, name=lc.device_name), where=f"latency table {lc.table}")
    cost.attach_latency(table)
    return cost


def needs_latency_table(constraints: list[str], cfg: RunConfig, key: str, run_dir: Optional[Path] = None) -> None:
    """A latency constraint with no ``latency.table``: one line with the command that builds one."""
    timed = [c for c in constraints if str(c).replace(" ", "").startswith("latency")]
    if timed and cfg.latency.table is None:
        source = f"--run-dir {run_dir}" if run_dir is not None else "--config CONFIG"
        lc = cfg.latency
        raise ConfigError(f"{key} {timed[0]!r} needs a latency table for this target: build one with 'supernet latency "
                          f"{source} --backend {lc.backend} --threads {lc.threads} --batch {lc.batch} --out latency.json' "
                          f"and set latency.table=latency.json")


def supernet_meta(cfg: RunConfig, data) -> dict:
    """What a supernet checkpoint's weights mean; a resume must match it."""
    return {"kind": "supernet", "space": cfg.space.name, "options": model_options(cfg, data),
            "strategy": cfg.strategy["name"]}


def _load_supernet(run_dir: Path, cfg: RunConfig, data, device):
    """The trained supernet, and which checkpoint it is (step and checksum: a resumed search must score
    with the same weights)."""
    if not (run_dir / "supernet").is_dir():
        raise CheckpointError(f"{run_dir} has no trained supernet: run 'supernet train-supernet --run-dir {run_dir}' first")
    ck, path = load_latest(run_dir / "supernet")
    problems = diff_meta(ck["meta"], supernet_meta(cfg, data))
    if problems:
        raise CheckpointError(f"{path} does not match this run's space and data: " + "; ".join(problems))
    if ck["step"] < cfg.supernet.steps:
        print(f"note: the supernet checkpoint is at step {ck['step']} of {cfg.supernet.steps}")
    model = build_supernet(cfg, data)
    model.load_state_dict(ck["model"])
    with path.open("rb") as f:
        checksum = f.readline().strip().rpartition(b"=")[2].decode()[:16]
    return model.to(device), {"step": ck["step"], "sha256": checksum}


def _fit_stage(run_dir: Path, stage: str, cfg: RunConfig, resume: bool, force: bool, model, train_set, tc,
               **kw) -> dict:
    """``fit`` into ``RUN/stage``. A forced restart (``supernet.lock.Replacement``) keeps the old folder
    and ``config.yaml`` until the new run's first checkpoint, and puts them back if it fails before."""
    with replacing(run_dir, stage, dump_config(cfg), force and not resume) as rep:
        try:
            return fit(model, train_set, tc, run_dir / stage, run_config=to_dict(cfg), resume=resume, force=force,
                       num_workers=cfg.data.num_workers, **kw,
                       on_start=(lambda: record_config(run_dir, cfg)) if rep is None else None,
                       on_log=None if rep is None else lambda record: rep.commit_if_ready())
        except TrainingError as e:
            if rep is not None and not rep.commit_if_ready():
                raise TrainingError(f"{e}; --force changed nothing: the earlier {stage} is still in {run_dir / stage}") from None
            raise


# --- stages ------------------------------------------------------------------------------------------
def train_supernet(run_dir: Path, config: Optional[str | Path], overrides: list[str] = (), resume: bool = False,
                   force: bool = False) -> dict:
    run_dir = Path(run_dir)
    if resume and config is None:
        nothing = CheckpointError(f"nothing to resume: {run_dir} holds no run (no config.yaml); "
                                  f"start one with --config FILE")
        if not run_dir.is_dir():
            raise nothing
        with owning(run_dir, "train-supernet"):  # first: finishing a killed --force may bring config.yaml back
            if not (run_dir / "config.yaml").is_file():
                raise nothing
            cfg = load_config(run_dir / "config.yaml", overrides, section="supernet")
            return _train_supernet(run_dir, cfg, resume, force)
    if config is None:
        raise ConfigError("train-supernet needs --config FILE (or --resume on an existing run)")
    cfg = load_config(resolve_config_path(config), overrides, section="supernet")
    with owning(run_dir, "train-supernet"):
        return _train_supernet(run_dir, cfg, resume, force)


def _train_supernet(run_dir: Path, cfg: RunConfig, resume: bool, force: bool) -> dict:
    if not resume and list((run_dir / "supernet").glob("*.pt")) and not force:
        raise CheckpointError(f"{run_dir} already holds a supernet; pass --resume to continue it or --force to start "
                              f"over (or use a new --run-dir)")
    data = load_data(cfg)
    torch.manual_seed(cfg.supernet.seed)  # the initial weights, so that a run is a function of its config
    model = build_supernet(cfg, data)
    needs_latency_table(cfg.strategy.get("constraints") or [], cfg, "strategy.constraints")
    cost = cost_model(cfg, model, model_options(cfg, data)) if cfg.latency.table else None
    strategy = build_strategy(cfg.strategy, SearchSpace(model), cfg.supernet.seed, cost=cost)
    summary = _fit_stage(run_dir, "supernet", cfg, resume, force, model, data.train, cfg.supernet, strategy=strategy,
                         meta=supernet_meta(cfg, data), desc=f"supernet ({strategy.name})")
    arch = strategy.export()
    if arch is not None and dist.is_main():  # a strategy that chose: retrain can follow without a search
        out = run_dir / "search"
        out.mkdir(exist_ok=True)
        history = strategy.arch_history()
        if history is not None:
            write_json(out / "arch_history.json", history)
            plot_arch_history(history, out / "search.png",
                              title=f"{strategy.name} on {cfg.space.name}: weights over {summary['steps']} steps")
        write_json(out / "best_arch.json", {"arch": arch, "space": cfg.space.name, "strategy": strategy.name,
                                            "step": summary.get("step"), **strategy.export_info()})
    return {**summary, "strategy": strategy.name, "arch": arch}


def search(run_dir: Path, overrides: list[str] = (), resume: bool = False, force: bool = False) -> dict:
    run_dir = Path(run_dir)
    require_run(run_dir)
    with owning(run_dir, "search"):
        return _search(run_dir, overrides, resume, force)


def _search(run_dir: Path, overrides: list[str], resume: bool, force: bool) -> dict:
    cfg = stage_config(run_dir, overrides, "search")
    sc = cfg.search
    out = run_dir / "search"
    state_path = out / "state.json"
    state = None
    if resume:
        if not state_path.exists():
            raise CheckpointError(f"nothing to resume: {state_path} does not exist (run without --resume)")
        state = validate_state(read_json(state_path), state_path)
    elif state_path.exists() and not force:
        raise CheckpointError(f"{out} already holds a search; pass --resume to continue it or --force to start over")
    device = resolve_device(sc.device)
    data = load_data(cfg)  # the search reads data.train (recalibration) and data.val (scores) only
    needs_latency_table(sc.constraints, cfg, "search.constraints", run_dir)
    model, supernet_id = _load_supernet(run_dir, cfg, data, device)
    cost = cost_model(cfg, model, model_options(cfg, data))
    constraints = Constraints(cost, sc.constraints)
    check_population(sc, SearchSpace(model))  # a generation too large for memory, before it is built
    if state is not None:
        validate_state(state, state_path, SearchSpace(model))  # each result fits this space; top-k among them
    if state is not None and state.get("supernet", supernet_id) != supernet_id:
        raise SearchStateError(f"cannot resume {state_path}: its candidates were scored with the supernet "
                               f"checkpoint at step {state['supernet'].get('step')} (sha256 "
                               f"{state['supernet'].get('sha256')}...), now at step {supernet_id['step']} (sha256 "
                               f"{supernet_id['sha256']}...); start over with --force")
    try:  # refuses a resume whose settings differ from the saved search's, before the images are loaded
        engine = EvolutionSearch(SearchSpace(model), None, sc, cost, constraints, state=state)
    except SearchStateError as e:
        raise SearchStateError(f"cannot resume {state_path}: {e}") from None
    recal, val, finish = search_batches(data, sc, cfg.data.num_workers, progress=sc.progress and dist.is_main())
    engine.evaluate = CandidateEvaluator(model, recal, val, device=device, prepare=finish)
    del recal, val  # the evaluator regroups them; these lists would double the memory
    main = dist.is_main()  # under torchrun every rank evaluates its share; rank 0 writes
    with replacing(run_dir, "search", dump_config(cfg), force and not resume) as rep:
        if main and rep is None:
            record_config(run_dir, cfg)

        chance = at_chance(data.num_classes, len(engine.evaluate.val_y))
        warned = []

        def save(engine: EvolutionSearch, new: list) -> None:
            if not main:
                return
            if new and not warned and max(r["top1"] for r in new) <= chance:
                warned.append(True)
                print(f"warning: all {len(new)} candidates of generation {new[0]['generation']} scored at chance "
                      f"(best held-out top-1 {max(r['top1'] for r in new):.3f}, at or below {chance:.3f} for "
                      f"{data.num_classes} classes on {len(engine.evaluate.val_y)} images): the supernet has not "
                      f"learned, so this search ranks noise; check {run_dir / 'supernet' / 'metrics.jsonl'} "
                      f"(e.g. lower supernet.optim.lr) before trusting best_arch.json", file=sys.stderr)
            write_json(state_path, {**engine.state_dict(), "supernet": supernet_id})
            write_text(out / "history.jsonl", "".join(json.dumps(r) + "\n" for r in engine.results))
            write_json(out / "topk.json", engine.topk)
            if rep is not None:
                rep.commit_if_ready()

        if main:
            out.mkdir(parents=True, exist_ok=True)
            remove_stale_temp_files(out)
        t0 = time.perf_counter()
        topk = engine.run(on_generation=save, progress=sc.progress and main)
        if not topk:  # inside: a forced search that found nothing puts the earlier one back
            kept = "" if rep is None else f"; --force changed nothing: the earlier search is still in {out}"
            raise ValueError(f"the search evaluated no candidate; loosen search.constraints{kept}")
    best = topk[0]
    first = [r["top1"] for r in engine.results if r["generation"] == 0]
    summary = {"best": best, "evaluated": len(engine.results), "seconds": time.perf_counter() - t0,
               "random_mean_top1": sum(first) / len(first) if first else None}
    if not main:
        return summary
    assert constraints.ok(best["arch"]), "a resumed search kept a candidate that breaks search.constraints"
    write_json(out / "best_arch.json", {"arch": best["arch"], "space": cfg.space.name, **{
        k: best[k] for k in ("top1", "top5", "flops", "params", "latency_ms", "generation") if k in best}})
    bounds = constraints.items
    metric = "latency" if any(c.metric == "latency" for c in bounds) else "flops"  # the x-axis of search.png
    upper = min((c.max for c in bounds if c.metric == metric and c.max is not None), default=None)
    lower = max((c.min for c in bounds if c.metric == metric and c.min is not None), default=None)
    plot_search(engine.results, out / "search.png", upper, lower, metric=metric,
                title=f"{sc.algorithm} search on {cfg.space.name}: best top-1 {100 * best['top1']:.2f}%")
    return summary


def at_chance(classes: int, n: int) -> float:
    """The highest top-1 that guessing reaches by luck: chance plus three binomial standard errors."""
    p = 1 / classes
    return p + 3 * (p * (1 - p) / max(n, 1)) ** 0.5


def search_batches(data, sc: SearchConfig, num_workers: int = 0, progress: bool = False) -> tuple[list, list, Callable]:
    """The recalibration and validation batches, loaded once per search and kept compact (uint8
    for image files and CIFAR-10); the evaluator finishes them group by group as it uses them."""
    train, val = Compact(data.train), Compact(data.val)
    if sc.val_images is not None:
        val = Subset(val, range(min(sc.val_images, len(val))))
    bar = lambda desc: lambda it: progress_bar(iterable=it, desc=desc, unit="batch", leave=False, disable=not progress)
    recal = fixed_batches(train, sc.recal_batch_size, sc.recal_batches, sc.seed, num_workers, bar("recalibration images"))
    return recal, list(bar("validation images")(eval_loader(val, sc.val_batch_size, num_workers))), train.finish


def _arch_for_retrain(run_dir: Path, arch_path, space: SearchSpace) -> dict:
    if arch_path is not None:
        return parse_arch(arch_path, space)
    best = run_dir / "search" / "best_arch.json"
    if not best.is_file():
        raise ConfigError(f"{best} does not exist: run 'supernet search --run-dir {run_dir}' first or pass --arch FILE")
    return parse_arch(best, space)


def subnet_options(cfg: RunConfig, data) -> dict:
    """The retrained network's space options: the search's with ``retrain.space_options`` over them
    (the data's own values, classes, channels and size, cannot be changed there)."""
    fixed = [k for k in ("num_classes", "in_channels", "input_size") if k in cfg.retrain.space_options]
    if fixed:
        raise ConfigError(f"retrain.space_options.{fixed[0]} is set by the data ({model_options(cfg, data)[fixed[0]]}); "
                          f"remove it (change data.* in a new run instead)")
    return {**model_options(cfg, data), **cfg.retrain.space_options}


def build_subnet(cfg: RunConfig, data, arch: dict):
    """The stand-alone network of ``arch``: freshly initialised, affine BN (REFERENCE §6)."""
    supernet = create(cfg.space.name, **subnet_options(cfg, data))
    return fix(supernet, parse_arch(arch, SearchSpace(supernet)), weights="init")


def check_retrain_recipe(cfg: RunConfig, model) -> None:
    """Refuse a retrain setting that this network cannot use (it would be silently ignored)."""
    from .nn.layers import DropPath
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


def retrain(run_dir: Path, arch_path=None, overrides: list[str] = (), resume: bool = False, force: bool = False) -> dict:
    run_dir = Path(run_dir)
    require_run(run_dir)
    with owning(run_dir, "retrain"):
        return _retrain(run_dir, arch_path, overrides, resume, force)


def _retrain(run_dir: Path, arch_path, overrides: list[str], resume: bool, force: bool) -> dict:
    cfg = stage_config(run_dir, overrides, "retrain")
    data = load_data(cfg)
    space = SearchSpace(build_supernet(cfg, data))
    arch = _arch_for_retrain(run_dir, arch_path, space)
    torch.manual_seed(cfg.retrain.seed)  # the fresh initialisation
    model = build_subnet(cfg, data, arch)
    check_retrain_recipe(cfg, model)
    rc = cfg.retrain
    meta = {"kind": "subnet", "space": cfg.space.name, "options": subnet_options(cfg, data), "arch": arch}
    out = run_dir / "retrain"
    train_set = Cutout(data.train, rc.cutout) if rc.cutout else data.train
    summary = _fit_stage(run_dir, "retrain", cfg, resume, force, model, train_set, rc, meta=meta, desc="retrain",
                         strategy=Plain(rc.aux_weight, rc.drop_path, rc.steps, seed=rc.seed))
    ck, _ = load_latest(out)
    if rc.bn_recal_batches and not ck.get("bn_recalibrated") and dist.is_main():
        # The official final pass: re-estimate BN statistics with LR 0 (weights unchanged), with
        # every path kept, as evaluation computes.
        from .nn.layers import DropPath
        for m in model.modules():
            if isinstance(m, DropPath):
                m.p = 0.0
        device = resolve_device(rc.device)
        recalibrate_bn(model, fixed_batches(data.train, rc.batch_size, rc.bn_recal_batches, rc.seed + 1), device)
        save_checkpoint(out / "last.pt", {**ck, "model": model.state_dict(), "bn_recalibrated": True})
    return {**summary, "arch": arch}


def load_subnet(run_dir: Path, cfg: RunConfig, data):
    if not (run_dir / "retrain").is_dir():
        raise CheckpointError(f"{run_dir} has no retrained network: run 'supernet retrain --run-dir {run_dir}' first")
    ck, _ = load_latest(run_dir / "retrain")
    model = build_subnet(cfg, data, ck["meta"]["arch"])
    model.load_state_dict(ck["model"])
    return model, ck["meta"]["arch"]


def _refuse_overwrite(paths: list[Path], force: bool) -> None:
    existing = [p for p in paths if p.exists()]
    if existing and not force:
        raise CheckpointError(f"{existing[0]} already exists; pass --force to replace it (or use a new --run-dir)")


def evaluate(run_dir: Path, force: bool = False) -> dict | None:
    if not dist.is_main():  # one process is plenty; under torchrun the others have nothing to do
        return None
    run_dir = Path(run_dir)
    require_run(run_dir)
    with owning(run_dir, "evaluate", every_rank=False):
        return _evaluate(run_dir, force)


def _evaluate(run_dir: Path, force: bool) -> dict:
    cfg = stage_config(run_dir, [], "retrain")
    _refuse_overwrite([run_dir / "eval.json"], force)
    data = load_data(cfg)
    model, arch = load_subnet(run_dir, cfg, data)
    device = resolve_device(cfg.retrain.device)
    result = evaluate_model(model.to(device), data.test, batch_size=256, device=device, num_workers=cfg.data.num_workers)
    space = create(cfg.space.name, **subnet_options(cfg, data))
    cost = CostModel(space)
    flops, params = cost.cost(arch)
    report = {"top1": result["top1"], "top5": result["top5"], "loss": result["loss"], "n": result["n"],
              "split": "test", "arch": arch, "flops": flops, "params": params}
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
        out["onnxruntime"] = read_json(measured)
    return out


def export(run_dir: Path, overrides: list[str] = (), force: bool = False) -> dict | None:
    if not dist.is_main():
        return None
    run_dir = Path(run_dir)
    require_run(run_dir)
    with owning(run_dir, "export", every_rank=False):
        return _export(run_dir, overrides, force)


def _export(run_dir: Path, overrides: list[str], force: bool) -> dict:
    from .export import check_export, check_onnx, export_onnx
    cfg = stage_config(run_dir, overrides, "export")
    check_export(cfg.export.opset)  # the export extra and the opset, before any work
    _refuse_overwrite([run_dir / "arch.json", run_dir / "model.onnx"], force)
    data = load_data(cfg)
    model, arch = load_subnet(run_dir, cfg, data)
    model = model.cpu().eval()
    record_config(run_dir, cfg)
    sample = torch.stack([data.test[i][0] for i in range(min(cfg.export.batch_size, len(data.test)))])
    onnx_path = export_onnx(model, sample, run_dir / "model.onnx", cfg.export.opset)
    check = torch.stack([data.test[i][0] for i in range(min(8, len(data.test)))])
    diff = check_onnx(onnx_path, model, check)
    if diff is not None and diff > 1e-3:
        onnx_path.unlink()  # a failed export leaves neither file, so a retry is not refused
        raise RuntimeError(f"ONNX output differs from PyTorch by {diff:.3g} on a test batch")
    latency = None
    if diff is not None:  # onnxruntime is installed: the deployed file's own latency on this CPU
        lc = cfg.latency
        latency = onnx_latency(onnx_path, tuple(sample.shape[1:]), lc.threads, lc.batch)
        write_json(run_dir / "model_latency.json", latency)
        if (run_dir / "eval.json").is_file():  # evaluate ran first: its report gets the measurement too
            report = read_json(run_dir / "eval.json")
            report["latency"] = {**report.get("latency", {}), "onnxruntime": latency}
            write_json(run_dir / "eval.json", report)
    write_json(run_dir / "arch.json", arch)  # last: arch.json means the export is complete
    return {"arch": str(run_dir / "arch.json"), "onnx": str(onnx_path), "max_abs_diff": diff, "latency": latency}
