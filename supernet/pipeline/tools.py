"""The two commands beside the stages: ``supernet info`` (a space's size and cost range, or one
architecture's cost) and ``supernet latency`` (build or check a latency table)."""
from __future__ import annotations

import contextlib
import math
from pathlib import Path
from typing import Iterator, Optional

from ..arch import parse_arch
from ..cost import CostModel, LatencyConfig, LatencyTable
from ..cost.flops import fingerprint
from ..cost.latency import TIMING_DEFAULTS
from ..cost.timing import build_table, check_subnets, check_table, check_timing
from ..data.memory import check_fits
from ..quant import QuantConfig, for_timing
from ..runtime.typed import ConfigError, parse_overrides, to_dict
from ..spaces import create, entry, space_options
from .build import load_data, model_options
from .config import load_config, resolve_config_path, stage_config
from .plots import plot_latency_check
from .rundir import REPLACED, run_lock


def space_info(space: str, options: list[str] = (), arch=None, latency_table: Optional[str] = None) -> dict:
    """A registered space's labels, size and FLOPs/params range (and latency range, given a table
    measured for it on any machine; BitOps and size with ``quant.*`` options, which make it a
    mixed-precision space), or the cost of one architecture ``arch`` of it."""
    overrides = parse_overrides(list(options))
    quant = QuantConfig.taken_from(overrides)
    typed = space_options(space, overrides)
    model = quant.apply(create(space, **overrides))
    cost = CostModel(model)
    table = None
    if latency_table is not None:  # the model must be the table's; its machine need not be this one
        table = LatencyTable.load(latency_table)
        table.require_model({"fingerprint": fingerprint(model, cost.input_shape), "space": space,
                             "options": quant.recorded(to_dict(typed)), "input_shape": list(cost.input_shape)},
                            where=f"latency table {latency_table}")
        cost.attach_latency(table)
    target = None if table is None else table.target
    if arch is not None:
        arch = parse_arch(arch, cost.space)
        costs = cost.costs(arch)
        latency = costs.pop("latency", None)
        return {"space": space, "arch": arch, **costs,
                **({} if table is None else {"latency_ms": latency, "target": target})}
    s = cost.space
    return {"space": space, "doc": entry(space).doc, "options": to_dict(typed),
            **({"quant": to_dict(quant)} if quant.enabled else {}), "labels": len(s.labels),
            "describe": s.describe(), "choices": {label: s.count(label) for label in s.labels}, "size": s.size,
            **cost.range(), **({} if table is None else {"target": target})}


def target_words(t: dict) -> str:
    """A table's target in words: ``onnxruntime on AMD EPYC, 1 thread, batch 1``."""
    return (f"{t['backend']} on {t['device_name']}, {t['threads']} thread{'s' * (t['threads'] != 1)}, "
            f"batch {t['batch']}")


def check_latency_table(path: str, out: Optional[str], k: int, seed: int = 0, progress: bool = True) -> dict:
    """Time ``k`` random subnets of the table's model end to end on this machine, now; save the
    fitted overhead and the check into the table (or ``out``) and plot it beside."""
    if not k:
        raise ConfigError("--table needs --check K (the number of random subnets to time end to end)")
    check_subnets(k)
    out = Path(out) if out else Path(path)
    with writing(out):  # refused now if a stage holds the run directory, not after the timing
        pass
    table = LatencyTable.load(path)
    t = table.target
    if not t.get("space"):
        raise ConfigError(f"{path} names no space; check it from Python (supernet.cost.timing.check_table)")
    options = dict(t.get("options") or {})
    model = timing_model(t["space"], options, QuantConfig.taken_from(options))
    cost = _cost_model(model, t["space"])
    check_memory(cost, t["batch"], f"the batch {t['batch']} of {path}", "check it on a machine with more memory")
    check = check_table(model, table, k, seed=seed, progress=progress, cost=cost)
    with writing(out):
        table.save(out)
        plot = plot_latency_check(check, out.with_suffix(".png"), f"{t['space']}: {target_words(t)}")
    return {"check": check, "out": out, "plot": plot}


def build_latency_table(out: str, force: bool, space: Optional[str] = None, options: list[str] = (),
                        config: Optional[str] = None, run_dir: Optional[Path] = None, **timing) -> dict:
    """Measure a latency table of the model of ``space`` (with its ``options``), of a ``config`` or of
    a ``run_dir``'s config, into ``out``; ``timing``: backend, device, threads, batch (None: the
    config's ``latency`` section), runs, warmup, max_spread, retries, check, seed, progress."""
    out = Path(out)
    for path in (out, out.with_suffix(".png")) if timing.get("check") else (out,):  # the check's plot goes beside
        if path.exists() and not force:
            raise FileExistsError(f"{path} already exists; pass --force to replace it (or choose another --out)")
    if sum(x is not None for x in (space, config, run_dir)) != 1:
        raise ConfigError("latency needs exactly one of SPACE (with space options), --config CFG or --run-dir RUN")
    given = {**TIMING_DEFAULTS, "check": 0, **timing}  # checked before the model is built, let alone timed
    check_timing(given["runs"], given["warmup"], given["max_spread"], given["retries"], given["check"])
    with writing(out):  # refused now if a stage holds the run directory, not after the timing
        pass
    if space is not None:
        overrides = parse_overrides(list(options))
        quant = QuantConfig.taken_from(overrides)
        name, typed, lc = space, to_dict(space_options(space, overrides)), LatencyConfig()
    else:
        if config is not None:
            cfg = load_config(resolve_config_path(config), options, section="latency")
        else:
            cfg = stage_config(run_dir, options, "latency")
        name, lc = cfg.space.name, cfg.latency
        typed = to_dict(space_options(name, model_options(cfg, load_data(cfg))))
        quant = cfg.space.quant
    for key in ("backend", "device", "threads", "batch"):  # what the command line leaves open, the config sets
        if timing.get(key) is None:
            timing[key] = getattr(lc, key)
    model = timing_model(name, typed, quant)
    typed = quant.recorded(typed)  # the table records the bit widths among the options
    cost = _cost_model(model, name)
    check_memory(cost, timing["batch"], f"--batch {timing['batch']}", "lower --batch (latency.batch; 1 times a "
                                                                      "single-image latency)")
    table = build_table(model, space=name, options=typed, cost=cost, **timing)
    with writing(out):
        table.save(out)
        cost.attach_latency(table)
        plot = None
        if table.check is not None:
            plot = plot_latency_check(table.check, out.with_suffix(".png"), f"{name}: {target_words(table.target)}")
    return {"table": table, "space": name, "out": out, "range": cost.range(), "plot": plot,
            "entries": sum(len(t) for _, t, _ in table.groups),
            "layer_terms": sum(len(terms) for group in table.precision for terms in group.values())}


def timing_model(space: str, options: dict, quant: QuantConfig):
    """The model a latency table times: the space, made mixed-precision by ``quant`` (every step
    started: an untrained quantized layer exports only so)."""
    model = create(space, **options)
    if not quant.enabled:
        return model
    return for_timing(quant.apply(model))


def _cost_model(model, space: str) -> CostModel:
    """The model's cost model; a kind of model it cannot cost is one line naming the space."""
    try:
        return CostModel(model)
    except NotImplementedError as e:
        raise ConfigError(f"supernet latency cannot time space {space}: {e}") from None


def check_memory(cost: CostModel, batch: int, what: str, fix: str) -> None:
    """Refuse a timing batch whose inputs and activations would not fit in memory, before any is
    allocated: every unit's input is kept for the whole timing, and a forward holds a few
    activations of the largest size at once."""
    inputs = [math.prod(cost.input_shape)] + [math.prod(s[1:]) for u in cost.units for s in u.shapes]
    largest = max(inputs + [math.prod(u.out_shape[1:]) for u in cost.units])
    nbytes = 4 * batch * (sum(inputs) + 4 * largest)  # float32
    check_fits(nbytes, f"{what}: the inputs of {len(cost.units)} choices and the activations of a "
               f"{'x'.join(map(str, cost.input_shape))} input", fix)


@contextlib.contextmanager
def writing(out: Path) -> Iterator[None]:
    """Hold the run directory ``out`` is written into, if it is one (its folder has a run's
    config.yaml), so that a file is never written into a run another stage holds."""
    run = out.parent
    if not ((run / "config.yaml").is_file() or (run / REPLACED).is_dir()):
        yield
        return
    with run_lock(run, "latency", every_rank=False):
        yield
