"""The pipeline's configuration: one typed section per stage, read from YAML plus overrides."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Optional, get_type_hints

import yaml

from .data import DataConfig, check_seed
from .strategies import check_settings, strategy_class
from .typed import ConfigError, from_dict, merge, parse_overrides, to_dict

__all__ = ["ConfigError", "from_dict", "to_dict", "parse_overrides", "merge", "load_config", "dump_config",
           "scope_overrides", "RunConfig", "SECTIONS", "SpaceConfig", "OptimConfig", "TrainConfig", "RetrainConfig", "SearchConfig",
           "ExportConfig", "LatencyConfig"]


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
class TrainConfig:
    """A training stage: the supernet (under the strategy section's method) or a retrain."""

    steps: int = 1000                # optimizer steps (the official supernet: 150,000 at batch 1024)
    batch_size: int = 64             # global batch: per-process batch x number of processes
    optim: OptimConfig = field(default_factory=OptimConfig)
    checkpoint_every: int = 500      # steps between checkpoints (official: 10,000)
    keep_checkpoints: int = 2        # step-*.pt files kept besides last.pt
    log_every: int = 10              # steps between metrics.jsonl lines
    seed: int = 0                    # paths, batches and augmentation are functions of (seed, step)
    device: str = "auto"             # auto = cuda if available, else cpu
    amp: bool = True                 # bf16 autocast on CUDA (ignored on CPU)
    channels_last: bool = True       # on CUDA (ignored on CPU)
    sync_bn: bool = False            # under torchrun on CUDA: BatchNorm statistics over the global batch
    progress: bool = True            # tqdm progress bar
    diverged_at: float = 10.0        # stop when a log window's mean loss exceeds this x log(classes), 10x chance (0: off)
    grad_clip: float = 0.0           # clip the weights' gradient norm to this before each update (0: off; DARTS: 5)

    def __post_init__(self):
        for k in ("steps", "batch_size", "checkpoint_every", "log_every"):
            if getattr(self, k) <= 0:
                raise ValueError(f"{k} must be positive, got {getattr(self, k)}")
        if self.keep_checkpoints < 0:
            raise ValueError(f"keep_checkpoints must be >= 0, got {self.keep_checkpoints}")
        check_seed("seed", self.seed)
        if self.grad_clip < 0:
            raise ValueError(f"grad_clip must be >= 0 (0 turns clipping off), got {self.grad_clip}")
        if self.diverged_at < 0:
            raise ValueError(f"diverged_at must be >= 0 (0 turns the check off), got {self.diverged_at}")


@dataclass
class RetrainConfig(TrainConfig):
    steps: int = 2000
    bn_recal_batches: int = 0        # a final BN-statistics pass over this many batches (official: ~1 epoch)
    space_options: dict = field(default_factory=dict)  # the retrained network's space options over the search's
                                     # (DARTS: channels: 36, layers: 20, affine: true, auxiliary: true)
    aux_weight: float = 0.0          # weight of the auxiliary head's loss (DARTS: 0.4; needs auxiliary: true)
    drop_path: float = 0.0           # drop-path probability, ramped linearly from 0 over the steps (DARTS: 0.2)
    cutout: int = 0                  # cutout square side in pixels on the training images (DARTS: 16; 0: off)

    def __post_init__(self):
        super().__post_init__()
        if self.bn_recal_batches < 0:
            raise ValueError(f"bn_recal_batches must be >= 0, got {self.bn_recal_batches}")
        if self.aux_weight < 0 or self.cutout < 0:
            raise ValueError("aux_weight and cutout must be >= 0")
        if not 0 <= self.drop_path < 1:
            raise ValueError(f"drop_path must be in [0, 1), got {self.drop_path}")


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
        check_seed("seed", self.seed)


@dataclass
class ExportConfig:
    opset: int = 18                  # ONNX opset
    batch_size: int = 1              # the traced sample batch (the batch axis is exported as dynamic)


@dataclass
class LatencyConfig:
    """The latency target: how a table was (or is to be) measured, and the table itself."""

    table: Optional[str] = None      # a table from 'supernet latency' (latency constraints and losses need one)
    backend: Literal["torch", "onnxruntime"] = "torch"  # what the table times, and how export measures (ORT)
    device: str = "cpu"              # cpu or cuda (torch backend)
    threads: int = 1                 # intra-op threads while timing (1: steadiest on a shared machine)
    batch: int = 1                   # the batch that is timed (1: a single-image latency)
    device_name: str = "auto"        # auto: this machine, with its torch/ORT versions; a CPU/GPU name: a table
                                     # measured on that device is trusted without comparing versions

    def __post_init__(self):
        if self.threads < 1 or self.batch < 1:
            raise ValueError(f"latency.threads and latency.batch must be >= 1, got {self.threads} and {self.batch}")
        if not (self.device == "cpu" or self.device == "cuda" or self.device.startswith("cuda:")):
            raise ValueError(f"latency.device {self.device!r}: use cpu or cuda (cuda:N)")
        if self.backend == "onnxruntime" and self.device != "cpu":
            raise ValueError("latency.backend=onnxruntime times on the CPU; set latency.device=cpu")


@dataclass
class RunConfig:
    """The whole pipeline; each stage reads its own section."""

    data: DataConfig = field(default_factory=DataConfig)
    space: SpaceConfig = field(default_factory=SpaceConfig)
    strategy: dict = field(default_factory=dict)  # name: spos | fairnas | ..., plus that strategy's keys
    supernet: TrainConfig = field(default_factory=TrainConfig)
    search: SearchConfig = field(default_factory=SearchConfig)
    retrain: RetrainConfig = field(default_factory=RetrainConfig)
    export: ExportConfig = field(default_factory=ExportConfig)
    latency: LatencyConfig = field(default_factory=LatencyConfig)

    def __post_init__(self):
        self.strategy = check_settings(self.strategy)  # validated, with the strategy's defaults


SECTIONS = tuple(f.name for f in dataclasses.fields(RunConfig))


def load_config(path: str | Path | None = None, overrides: list[str] | dict = (), section: str | None = None) -> RunConfig:
    """Read a YAML file (or nothing), apply ``key=value`` overrides and check everything.

    An override whose first part is not a section name is taken relative to ``section``
    (``population=20`` in the search stage means ``search.population=20``).
    """
    data: dict = {}
    if path is not None:
        path = Path(path)
        data = read_yaml(path)
        if not isinstance(data, dict):
            raise ConfigError(f"{path} must hold a mapping of sections ({', '.join(SECTIONS)})")
    extra = parse_overrides(list(overrides)) if not isinstance(overrides, dict) else overrides
    if section is not None:
        extra = scope_overrides(extra, section)
    merged = merge(_drop_other_strategy_defaults(data, extra), extra)
    check_placement(merged)
    return from_dict(RunConfig, merged)


def read_yaml(path: Path):
    """A config file's YAML data; every problem is one line naming the file (and the line and column)."""
    if path.is_dir():
        raise ConfigError(f"config file {path} is a directory; give a YAML file")
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(f"config file {path} is not UTF-8 text (byte {e.start}); save it as UTF-8") from None
    except OSError as e:
        raise ConfigError(f"cannot read config file {path}: {e.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = " ".join(str(getattr(e, "problem", None) or "cannot parse it").split())
        raise ConfigError(f"config file {path} is not valid YAML{where}: {problem}") from None
    except RecursionError:
        raise ConfigError(f"config file {path} is nested too deeply to parse") from None
    if data is None:  # an empty file would silently mean "all defaults"
        raise ConfigError(f"config file {path} is empty; give at least one section ({', '.join(SECTIONS)}), "
                          f"or a packaged config: --config digits")
    return data


def _drop_other_strategy_defaults(data: dict, extra: dict) -> dict:
    """When an override switches ``strategy.name``, the file's keys of the old strategy that only
    repeat its defaults (a saved, resolved config has them all) are dropped; set ones still count."""
    old, new = (data.get("strategy") or {}), (extra.get("strategy") or {})
    if not isinstance(old, dict) or "name" not in new or new["name"] == old.get("name", "spos"):
        return data
    try:
        defaults = to_dict(strategy_class(old.get("name", "spos")).Config())
    except ConfigError:
        return data
    kept = {k: v for k, v in old.items() if k != "name" and (k not in defaults or defaults[k] != v)}
    return {**data, "strategy": kept}


def check_placement(data: dict) -> None:
    """Refuse a key put in a section that does not use it, naming the section that does
    (``supernet.bn_recal_batches`` is a retrain setting; SPOS's sampling keys are strategy keys)."""
    types = get_type_hints(RunConfig)
    owners: dict[str, list[str]] = {}
    for sec in SECTIONS:
        cls = _section_class(types[sec])
        for key in ([f.name for f in dataclasses.fields(cls)] if cls else []):
            owners.setdefault(key, []).append(sec)
    strategy_keys = {"sampling", "constraints", "flops_bins", "max_tries"}
    for sec, values in data.items():
        cls = _section_class(types.get(sec))
        if cls is None or not isinstance(values, dict):
            continue
        valid = {f.name for f in dataclasses.fields(cls)}
        for key in values:
            if key in valid:
                continue
            if sec in ("supernet", "retrain") and key in strategy_keys:
                raise ConfigError(f"'{sec}.{key}' is not a {sec} setting: path sampling belongs to the strategy "
                                  f"section (strategy.constraints, strategy.flops_bins, strategy.max_tries with "
                                  f"strategy.name=spos)")
            if owners.get(key):
                raise ConfigError(f"'{sec}.{key}' is not a {sec} setting: {key} belongs to "
                                  f"{' and '.join(f'{o}.{key}' for o in owners[key])}")


def _section_class(tp):
    return tp if dataclasses.is_dataclass(tp) else None


def scope_overrides(extra: dict, section: str) -> dict:
    out: dict = {}
    for k, v in extra.items():
        out = merge(out, {k: v} if k in SECTIONS else {section: {k: v}})
    return out


def dump_config(cfg: RunConfig) -> str:
    return yaml.safe_dump(to_dict(cfg), sort_keys=False)
