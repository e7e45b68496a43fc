"""Stand-ins for the strategy tests: a latency table made of the cost model's FLOPs, and settings
that take a short run through a strategy's whole schedule."""
from pathlib import Path

import torch

from supernet import SearchSpace
from supernet.cost import CostModel, LatencyTable
from supernet.cost.latency import target_of
from supernet.pipeline.build import build_supernet, load_data, model_options
from supernet.pipeline.config import load_config
from supernet.runtime.typed import to_dict
from supernet.spaces import space_options
from supernet.strategies import build_strategy, check_settings

from ..conftest import SPACE_NAMES, TINY_OPTIONS, tiny_model

# Settings that make a 6-step run go through a strategy's whole schedule (its architecture steps,
# controller phases or temperature steps); a strategy without an entry runs on its defaults.
SHORT = {"darts": {"snapshot_every": 1},
         "enas": {"train_steps": 2, "ctrl_steps": 1, "ctrl_aggregate": 2, "export_samples": 3, "held_out": 0.2},
         "proxyless": {"warmup_steps": 1, "arch_every": 2},
         "fbnet": {"warmup_steps": 1, "anneal_every": 2}}


def standin_table(cost: CostModel, target: dict, scale=1e-6, overhead_ms=0.0) -> LatencyTable:
    """The cost model's FLOPs groups read as milliseconds (flops x scale), as a real ``LatencyTable``."""
    groups = [(list(labels), {k: v[0] * scale for k, v in table.items()}, gate) for labels, table, gate in cost.groups]
    spread = [{k: 0.0 for k in table} for _, table, _ in groups]
    return LatencyTable(target, groups, spread, overhead_ms)


def standin_cost(model, input_shape=None, scale=1e-6, overhead_ms=0.0) -> CostModel:
    """The model's ``CostModel`` with a stand-in latency table attached (what the pipeline hands a strategy)."""
    cost = CostModel(model, input_shape)
    cost.attach_latency(standin_table(cost, {"backend": "flops-stand-in"}, scale, overhead_ms))
    return cost


def standin_table_file(config: Path, out: Path, overhead_ms=10.0) -> Path:
    """A stand-in table for the supernet a config's run trains, as a file the pipeline accepts for
    ``latency.table`` on this machine (the target of the config's latency section)."""
    cfg = load_config(config)
    data = load_data(cfg)
    model = build_supernet(cfg, data)
    cost = CostModel(model)
    lc = cfg.latency
    options = to_dict(space_options(cfg.space.name, model_options(cfg, data)))
    target = target_of(model, cost.input_shape, lc.backend, lc.device, lc.threads, lc.batch, cfg.space.name, options)
    return standin_table(cost, target, overhead_ms=overhead_ms).save(out)


# Spaces in the order a strategy's tests try them: channel search first, then every registered space.
SPACES = [("shufflenet-cifar", {"channel_search": True}), ("shufflenet-cifar", {})] + \
         [(name, {}) for name in SPACE_NAMES if name != "shufflenet-cifar"]


def short_strategy(name: str, input_size: int = 16):
    """``(model, strategy, space options)``: strategy ``name`` with its ``SHORT`` settings on the first
    of ``SPACES`` it accepts (a fresh model seeded alike on every call), with a stand-in latency
    table for the strategies that take one."""
    for space, options in SPACES:
        torch.manual_seed(0)
        model = tiny_model(space, input_size=input_size, **options)
        try:
            strategy = build_strategy(check_settings({"name": name, **SHORT.get(name, {})}), SearchSpace(model),
                                      seed=3, cost=standin_cost(model, overhead_ms=10.0))
        except ValueError:  # a kind of choice this strategy does not handle: the next space
            continue
        return model, strategy, {"name": space, "options": {**TINY_OPTIONS[space], **options}}
    raise AssertionError(f"strategy {name!r} accepts none of the registered spaces")
