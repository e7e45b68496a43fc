"""What the stages build from a run's config: its data, the supernet, the stand-alone subnet, the
cost model with the run's latency table, and the trained networks read back from the run directory."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import torch

from ..arch import FewShotSupernet, SearchSpace, fix, parse_arch, split_labels
from ..arch.formats import to_nas_bench_201
from ..cost import CostModel, LatencyTable
from ..cost.latency import target_of
from ..data import build_data
from ..data.memory import check_fits
from ..runtime.typed import ConfigError, to_dict
from ..spaces import create, space_options
from ..train import CheckpointError, load_latest
from ..train.checkpoint import load_weights
from ..train.resume import diff_meta
from .config import RunConfig
from .sizes import check_supernet_fits, count, count_bytes, in_words, meta_model


def load_data(cfg: RunConfig):
    """``build_data``, saying how many unreadable images ``data.skip_corrupt`` dropped."""
    data = build_data(cfg.data)
    if data.skipped:
        n = len(data.skipped)
        print(f"note: skipped {n} unreadable image{'s' * (n != 1)} (data.skip_corrupt=true), e.g. {data.skipped[0]}",
              file=sys.stderr)
    return data


def model_options(cfg: RunConfig, data) -> dict:
    """The space's options: the config's, with what the data dictates."""
    return {**cfg.space.options, "num_classes": data.num_classes, "in_channels": data.in_channels,
            "input_size": data.image_size}


def space_model(cfg: RunConfig, options: dict):
    """The run's space with ``options``: the registered space, made mixed-precision by ``space.quant``."""
    return cfg.space.quant.apply(create(cfg.space.name, **options))


def build_supernet(cfg: RunConfig, data):
    """The supernet to train, freshly initialised (with ``supernet.few_shot``, its sub-supernets);
    refused in one line, before anything is allocated, when training it (with its strategy's own
    state) would not fit in memory."""
    check_supernet_fits(cfg, data, model_options(cfg, data))
    return few_shot(cfg, space_model(cfg, model_options(cfg, data)))


def few_shot(cfg: RunConfig, model):
    """``model`` split into sub-supernets when ``supernet.few_shot`` is set, else ``model``."""
    fs = cfg.supernet.few_shot
    return model if fs.split_at is None else FewShotSupernet(model, checked_labels(SearchSpace(model), fs.labels))


def checked_labels(space: SearchSpace, labels) -> list[str]:
    """``supernet.few_shot.labels`` resolved (None: the first decision), or one ``ConfigError`` line."""
    try:
        return split_labels(space, labels)
    except ValueError as e:
        raise ConfigError(f"supernet.few_shot.labels: {e}") from None


def supernet_space(cfg: RunConfig, data) -> SearchSpace:
    """The decisions of the run's supernet, read from one built on the meta device when the space
    allows it (nothing allocated: a stage that only validates an architecture needs no weights)."""
    model = meta_model(cfg.space, model_options(cfg, data))
    return SearchSpace(model if model is not None else space_model(cfg, model_options(cfg, data)))


def subnet_options(cfg: RunConfig, data) -> dict:
    """The retrained network's space options: the search's with ``retrain.space_options`` over them
    (the data's own values, classes, channels and size, cannot be changed there)."""
    fixed = [k for k in ("num_classes", "in_channels", "input_size") if k in cfg.retrain.space_options]
    if fixed:
        raise ConfigError(f"retrain.space_options.{fixed[0]} is set by the data ({model_options(cfg, data)[fixed[0]]}); "
                          f"remove it (change data.* in a new run instead)")
    return {**model_options(cfg, data), **cfg.retrain.space_options}


def build_subnet(cfg: RunConfig, data, arch: dict):
    """The stand-alone network of ``arch``: freshly initialised, affine BN (as the SPOS code retrains it)."""
    supernet = space_model(cfg, subnet_options(cfg, data))
    return fix(supernet, parse_arch(arch, SearchSpace(supernet)), weights="init")


def cost_model(cfg: RunConfig, model, options: dict, cost: Optional[CostModel] = None) -> CostModel:
    """The model's FLOPs/params tables (``cost``, when already built for ``model``), with the run's
    latency table attached when one is set (refused, naming the difference, when it was measured
    for another model or target)."""
    cost = cost if cost is not None else CostModel(model)
    lc = cfg.latency
    if lc.table is None:
        return cost
    table = LatencyTable.load(lc.table)
    options = table_options(cfg, options)
    table.require(target_of(model, cost.input_shape, lc.backend, lc.device, lc.threads, lc.batch, cfg.space.name,
                            options, name=lc.device_name), where=f"latency table {lc.table}")
    cost.attach_latency(table)
    return cost


def table_options(cfg: RunConfig, options: dict) -> dict:
    """The space's options as a latency table records them: every option, and ``quant`` when set."""
    return cfg.space.quant.recorded(to_dict(space_options(cfg.space.name, options)))


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
    meta = {"kind": "supernet", "space": cfg.space.name, "options": model_options(cfg, data),
            "strategy": cfg.strategy["name"]}
    if cfg.space.quant.enabled:
        meta["quant"] = to_dict(cfg.space.quant)
    if cfg.supernet.few_shot.split_at is not None:  # the parts: which labels' options they serve
        meta["few_shot"] = {"labels": checked_labels(supernet_space(cfg, data), cfg.supernet.few_shot.labels)}
    return meta


def load_supernet(run_dir: Path, cfg: RunConfig, data, device):
    """The trained supernet (a few-shot one scores each architecture in its own sub-supernet), and
    which checkpoint it is (step and checksum: a resumed search must score with the same weights)."""
    if not (run_dir / "supernet").is_dir():
        raise CheckpointError(f"{run_dir} has no trained supernet: run 'supernet train-supernet --run-dir {run_dir}' first")
    ck, path = load_latest(run_dir / "supernet")
    problems = diff_meta(ck["meta"], supernet_meta(cfg, data))
    if problems:
        raise CheckpointError(f"{path} does not match this run's space and data: " + "; ".join(problems))
    if ck["step"] < cfg.supernet.steps:
        print(f"note: the supernet checkpoint is at step {ck['step']} of {cfg.supernet.steps}")
    check_loading_fits(ck, path)
    model = few_shot(cfg, space_model(cfg, model_options(cfg, data)))
    load_weights(model, ck["model"], path)
    with path.open("rb") as f:
        checksum = f.readline().strip().rpartition(b"=")[2].decode()[:16]
    return model.to(device), {"step": ck["step"], "sha256": checksum}


def load_subnet(run_dir: Path, cfg: RunConfig, data):
    """The retrained network and its architecture."""
    if not (run_dir / "retrain").is_dir():
        raise CheckpointError(f"{run_dir} has no retrained network: run 'supernet retrain --run-dir {run_dir}' first")
    ck, path = load_latest(run_dir / "retrain")
    check_loading_fits(ck, path)
    model = build_subnet(cfg, data, ck["meta"]["arch"])
    load_weights(model, ck["model"], path)
    return model, ck["meta"]["arch"]


def check_loading_fits(ck: dict, path: Path) -> None:
    """Refuse in one line a trained network that needs more memory than is left beside its
    checkpoint ``ck``, read from ``path`` (e.g. a run copied to a smaller machine)."""
    tensors = [t for t in ck["model"].values() if isinstance(t, torch.Tensor)]
    check_fits(count_bytes(tensors), f"the network of {path} ({in_words(count(tensors))} parameters and buffers)",
               "free memory or load it on a machine with more")


def benchmark_string(cfg: RunConfig, space: SearchSpace, arch: dict) -> dict:
    """``{"nas_bench_201": string}`` on the nas-bench-201 space (the key of its tables), else ``{}``;
    searched bit widths have no string."""
    if cfg.space.name != "nas-bench-201" or cfg.space.quant.enabled:
        return {}
    return {"nas_bench_201": to_nas_bench_201(arch, space)}
