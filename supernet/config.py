"""Typed configuration: dataclasses filled from YAML/dicts plus dotted ``key=value`` overrides.

Unknown keys and wrong types are errors that list what is valid; nothing is silently ignored.
The stage dataclasses live in ``supernet.stages``; this file holds the machinery.
"""
from __future__ import annotations

import dataclasses
import types
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

import yaml


class ConfigError(ValueError):
    """A bad configuration value or key, said in words a user can act on."""


def to_dict(obj) -> dict:
    """A dataclass as plain JSON/YAML data (tuples become lists)."""
    def plain(v):
        if dataclasses.is_dataclass(v):
            return {f.name: plain(getattr(v, f.name)) for f in dataclasses.fields(v)}
        if isinstance(v, (list, tuple)):
            return [plain(x) for x in v]
        return v
    return plain(obj)


def from_dict(cls, data: dict | None, where: str = ""):
    """Build dataclass ``cls`` from ``data``, checking every key and type; nested dataclasses recurse."""
    data = {} if data is None else data
    if not isinstance(data, dict):
        raise ConfigError(f"{where or cls.__name__} must be a mapping of keys to values, got {data!r}")
    hints = get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls) if f.init]
    unknown = [k for k in data if k not in names]
    if unknown:
        raise ConfigError(f"unknown key '{where}{unknown[0]}'; valid keys: {', '.join(names)}")
    values = {k: _coerce(hints[k], v, f"{where}{k}") for k, v in data.items()}
    try:
        return cls(**values)
    except (ValueError, TypeError) as e:
        if isinstance(e, ConfigError):
            raise
        msg, section = str(e), where.rstrip(".")
        raise ConfigError(f"{section}: {msg}" if where and not msg.startswith(section) else msg) from None


def _coerce(tp, value, key: str):
    origin, args = get_origin(tp), get_args(tp)
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, where=f"{key}.")
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _coerce(a, value, key)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(errors[0] if len(errors) == 1 else f"{key}: {value!r} matches none of {tp}")
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{key} must be one of {', '.join(map(repr, args))}; got {value!r}")
        return value
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key} must be a list, got {value!r}")
        item = args[0] if args else Any
        out = [_coerce(item, v, f"{key}[{i}]") for i, v in enumerate(value)]
        return tuple(out) if origin is tuple else out
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key} must be a mapping, got {value!r}")
        return dict(value)
    if tp is Any:
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key} must be true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key} must be an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, str):  # PyYAML reads 290.0e6 (no exponent sign) as a string
            try:
                value = float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key} must be a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key} must be a string, got {value!r}")
        return value
    return value


def parse_overrides(pairs: list[str]) -> dict:
    """``["a.b=1", "c=[1,2]"]`` -> ``{"a": {"b": 1}, "c": [1, 2]}``; values are parsed as YAML."""
    out: dict = {}
    for pair in pairs:
        if "=" not in pair:
            raise ConfigError(f"override {pair!r} is not key=value (e.g. train.steps=100)")
        key, raw = pair.split("=", 1)
        if not key or any(not p for p in key.split(".")):
            raise ConfigError(f"override {pair!r} has an empty key")
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError:
            value = raw
        node = out
        parts = key.split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {pair!r} conflicts with an earlier override of {p!r}")
        node[parts[-1]] = value
    return out


def merge(base: dict, overrides: dict) -> dict:
    """Deep-merge ``overrides`` into a copy of ``base``."""
    out = dict(base)
    for k, v in overrides.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = merge(out[k], v)
        else:
            out[k] = v
    return out


# --- the pipeline's configuration: one section per stage ---------------------------------------------
from dataclasses import dataclass, field  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Optional  # noqa: E402

from .data import DataConfig  # noqa: E402


@dataclass
class SpaceConfig:
    name: str = "shufflenet-cifar"              # a registered space (supernet info lists them)
    options: dict = field(default_factory=dict)  # space options; num_classes/in_channels/input_size come from the data


@dataclass
class OptimConfig:
    lr: float = 0.5                  # official SPOS base LR at batch 1024 (scale it with the batch)
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 4e-5       # applied to weights with ndim > 1 only: no decay on BN or biases
    schedule: Literal["linear", "cosine", "constant"] = "linear"  # official: linear decay to 0 per step
    warmup_steps: int = 0            # linear warm-up from 0 (the official recipe has none)
    label_smoothing: float = 0.1     # official: 0.1

    def __post_init__(self):
        for k in ("lr", "weight_decay", "momentum", "label_smoothing"):
            if getattr(self, k) < 0:
                raise ValueError(f"{k} must be >= 0, got {getattr(self, k)}")
        if self.warmup_steps < 0:
            raise ValueError(f"warmup_steps must be >= 0, got {self.warmup_steps}")


@dataclass
class SamplingConfig:
    constraints: list[str] = field(default_factory=list)  # hard limits on every sampled path, e.g. ["flops<=330M"]
    flops_bins: Optional[list[float]] = None  # official: [290e6, 300e6, ..., 360e6] = 7 bins, one drawn uniformly per step
    max_tries: int = 500                      # official: 500 tries per step, then a plain uniform path

    def __post_init__(self):
        if self.max_tries < 1:
            raise ValueError(f"max_tries must be >= 1, got {self.max_tries}")
        if self.flops_bins is not None and (len(self.flops_bins) < 2 or sorted(self.flops_bins) != list(self.flops_bins)):
            raise ValueError(f"flops_bins must be >= 2 increasing bin edges, got {self.flops_bins}")


@dataclass
class TrainConfig:
    steps: int = 1000                # optimizer steps (the official supernet: 150,000 at batch 1024)
    batch_size: int = 64             # global batch: per-process batch x number of processes
    optim: OptimConfig = field(default_factory=OptimConfig)
    sampling: SamplingConfig = field(default_factory=SamplingConfig)  # supernet training only
    checkpoint_every: int = 500      # steps between checkpoints (official: 10,000)
    keep_checkpoints: int = 2        # step-*.pt files kept besides last.pt
    log_every: int = 10              # steps between metrics.jsonl lines
    seed: int = 0                    # paths, batches and augmentation are functions of (seed, step)
    device: str = "auto"             # auto = cuda if available, else cpu
    amp: bool = True                 # bf16 autocast on CUDA (ignored on CPU)
    channels_last: bool = True       # on CUDA (ignored on CPU)
    bn_recal_batches: int = 0        # retrain: a final BN-statistics pass over this many batches (official: ~1 epoch)
    sync_bn: bool = False            # under torchrun on CUDA: BatchNorm statistics over the global batch
    progress: bool = True            # tqdm progress bar

    def __post_init__(self):
        for k in ("steps", "batch_size", "checkpoint_every", "log_every"):
            if getattr(self, k) <= 0:
                raise ValueError(f"{k} must be positive, got {getattr(self, k)}")
        if self.keep_checkpoints < 0 or self.bn_recal_batches < 0:
            raise ValueError("keep_checkpoints and bn_recal_batches must be >= 0")


@dataclass
class SearchConfig:
    algorithm: Literal["evolution", "random"] = "evolution"
    population: int = 50             # official SPOS evolution (REFERENCE §5)
    generations: int = 20
    topk: int = 10                   # global elite kept across generations
    mutations: int = 25
    crossovers: int = 25
    mutation_prob: float = 0.1       # each gene resampled with this probability
    random_candidates: int = 1000    # random search: how many architectures
    constraints: list[str] = field(default_factory=list)  # e.g. ["flops<=330M"] (official search)
    recal_batches: int = 200         # BN recalibration per candidate: 200 x 128 training images (paper: ~20k)
    recal_batch_size: int = 128
    val_batch_size: int = 256
    val_images: Optional[int] = None  # score on the first N held-out images (None = all of the val split)
    seed: int = 0
    device: str = "auto"
    progress: bool = True

    def __post_init__(self):
        for k in ("population", "generations", "topk", "random_candidates", "recal_batch_size", "val_batch_size"):
            if getattr(self, k) <= 0:
                raise ValueError(f"{k} must be positive, got {getattr(self, k)}")
        if self.mutations < 0 or self.crossovers < 0 or self.recal_batches < 0:
            raise ValueError("mutations, crossovers and recal_batches must be >= 0")
        if not 0 <= self.mutation_prob <= 1:
            raise ValueError(f"mutation_prob must be in [0, 1], got {self.mutation_prob}")
        if self.val_images is not None and self.val_images <= 0:
            raise ValueError(f"val_images must be positive, got {self.val_images}")


def _retrain_default() -> TrainConfig:
    return TrainConfig(steps=2000)


@dataclass
class ExportConfig:
    opset: int = 18                  # ONNX opset
    batch_size: int = 1              # the traced sample batch (the batch axis is exported as dynamic)


@dataclass
class RunConfig:
    """The whole pipeline; each stage reads its own section."""

    data: DataConfig = field(default_factory=DataConfig)
    space: SpaceConfig = field(default_factory=SpaceConfig)
    supernet: TrainConfig = field(default_factory=TrainConfig)
    search: SearchConfig = field(default_factory=SearchConfig)
    retrain: TrainConfig = field(default_factory=_retrain_default)
    export: ExportConfig = field(default_factory=ExportConfig)


SECTIONS = tuple(f.name for f in dataclasses.fields(RunConfig))


def load_config(path: str | Path | None = None, overrides: list[str] | dict = (), section: str | None = None) -> RunConfig:
    """Read a YAML file (or nothing), apply ``key=value`` overrides and check everything.

    An override whose first part is not a section name is taken relative to ``section``
    (``population=20`` in the search stage means ``search.population=20``).
    """
    data: dict = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file {path} does not exist")
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as e:
            raise ConfigError(f"{path} is not valid YAML: {e}") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{path} must hold a mapping of sections ({', '.join(SECTIONS)})")
    extra = parse_overrides(list(overrides)) if not isinstance(overrides, dict) else overrides
    if section is not None:
        extra = scope_overrides(extra, section)
    return from_dict(RunConfig, merge(data, extra))


def scope_overrides(extra: dict, section: str) -> dict:
    out: dict = {}
    for k, v in extra.items():
        out = merge(out, {k: v} if k in SECTIONS else {section: {k: v}})
    return out


def dump_config(cfg: RunConfig) -> str:
    return yaml.safe_dump(to_dict(cfg), sort_keys=False)
