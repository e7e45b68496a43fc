"""The pipeline's configuration: one typed section per stage, read from YAML plus overrides.

Each section's dataclass lives with the code that reads it (``DataConfig`` in ``supernet.data``,
``TrainConfig`` in ``supernet.train``, ``SearchConfig`` in ``supernet.search``, ``LatencyConfig`` in
``supernet.cost``, ``ExportConfig`` in ``supernet.export``, ``RankConfig`` in ``supernet.ranking``);
``RunConfig`` gathers them.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, get_type_hints

import yaml

from ..cost.latency import LatencyConfig
from ..data import DATA_DEFAULTS, ONLY_FOR, DataConfig
from ..export import ExportConfig
from ..runtime.device import resolve_device
from ..runtime.threads import RuntimeConfig, use_threads
from ..runtime.typed import ConfigError, from_dict, merge, parse_overrides, to_dict
from ..quant import QuantConfig
from ..ranking.config import RankConfig
from ..search.config import SearchConfig
from ..strategies import check_settings, strategy_class
from ..train.config import TrainConfig

PACKAGED_CONFIGS = Path(__file__).parents[1] / "configs"
# Keys a later stage may change besides its own section: where the data lives and how it is read,
# and how many CPU threads run it.
# The latency target may be set at any stage: the table is checked against the model whenever it is used.
SHARED_KEYS = {"data": {"root", "num_workers"}, "runtime": {"threads"},
               "latency": {"table", "backend", "device", "threads", "batch", "device_name"}}
# A resumed training stage continues the run its checkpoint records. These sections decide what
# it computes; of them, a resume may change only how it logs, checkpoints, shows progress, where
# it runs and where the data lives (RESUMABLE), and the number of steps where nothing depends on it.
# A latency table is compared by its contents, where training used one (``fitting``'s ``inputs``):
# its path and target may be set by any stage.
DECIDES = {"supernet": ("data", "space", "strategy", "supernet"), "retrain": ("data", "space", "retrain")}
RESUMABLE = ("log_every", "checkpoint_every", "keep_checkpoints", "progress", "device", "diverged_at")


@dataclass
class SpaceConfig:
    name: str = "shufflenet-cifar"              # a registered space (supernet info lists them)
    options: dict = field(default_factory=dict)  # space options; num_classes/in_channels/input_size come from the data
    quant: QuantConfig = field(default_factory=QuantConfig)  # bit widths searched per layer (mixed precision)


@dataclass
class FewShotConfig:
    """Few-shot NAS (Zhao et al., ICML 2021): the supernet split into sub-supernets at ``split_at``."""

    split_at: Optional[int] = None     # null: one-shot only; else the first step of the sub-supernets
                                       # (steps before it train the one-shot supernet; supernet.steps in all)
    labels: Optional[list[str]] = None  # the decisions to split on, one sub-supernet per option (per
                                       # combination); null: the space's first decision, as the paper's first edge


@dataclass
class SupernetConfig(TrainConfig):
    few_shot: FewShotConfig = field(default_factory=FewShotConfig)

    def __post_init__(self):
        super().__post_init__()
        fs = self.few_shot
        if fs.split_at is None and fs.labels is not None:
            raise ValueError(f"few_shot.labels is set but few_shot.split_at is not: set the step where the one-shot "
                             f"phase ends, e.g. few_shot.split_at={self.steps // 2} (half of steps={self.steps})")
        if fs.split_at is not None and not 0 <= fs.split_at < self.steps:
            raise ValueError(f"few_shot.split_at must be in 0..{self.steps - 1} (a step of this run, steps={self.steps}; "
                             f"the sub-supernets share the steps after it), got {fs.split_at}")


@dataclass
class RetrainConfig(TrainConfig):
    steps: int = 2000
    bn_recal_batches: int = 0        # a final BN-statistics pass over this many batches (official: ~1 epoch)
    space_options: dict = field(default_factory=dict)  # the retrained network's space options over the search's
                                     # (DARTS: channels: 36, layers: 20, affine: true, auxiliary: true)
    aux_weight: float = 0.0          # weight of the auxiliary head's loss (DARTS: 0.4; needs auxiliary: true)
    drop_path: float = 0.0           # drop-path probability, ramped linearly from 0 over the steps (DARTS: 0.2)
    cutout: int = 0                  # cutout square side in pixels on the training images (DARTS: 16; 0: off)
    init: str = "scratch"            # scratch: fresh weights (SPOS); supernet: fine-tune the supernet's weights
                                     # (and its quantizers' step sizes) for this architecture

    def __post_init__(self):
        super().__post_init__()
        if self.bn_recal_batches < 0:
            raise ValueError(f"bn_recal_batches must be >= 0, got {self.bn_recal_batches}")
        if self.aux_weight < 0 or self.cutout < 0:
            raise ValueError("aux_weight and cutout must be >= 0")
        if not 0 <= self.drop_path < 1:
            raise ValueError(f"drop_path must be in [0, 1), got {self.drop_path}")
        if self.init not in ("scratch", "supernet"):
            raise ValueError(f"retrain.init must be 'scratch' or 'supernet', got {self.init!r}")


@dataclass
class RunConfig:
    """The whole pipeline; each stage reads its own section."""

    data: DataConfig = field(default_factory=DataConfig)
    space: SpaceConfig = field(default_factory=SpaceConfig)
    strategy: dict = field(default_factory=dict)  # name: spos | fairnas | ..., plus that strategy's keys
    supernet: SupernetConfig = field(default_factory=SupernetConfig)
    search: SearchConfig = field(default_factory=SearchConfig)
    retrain: RetrainConfig = field(default_factory=RetrainConfig)
    export: ExportConfig = field(default_factory=ExportConfig)
    rank: RankConfig = field(default_factory=RankConfig)  # supernet rank: the supernet's ranking against stand-alone
    latency: LatencyConfig = field(default_factory=LatencyConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)  # how this machine runs it (CPU threads)

    def __post_init__(self):
        self.strategy = check_settings(self.strategy)  # validated, with the strategy's defaults
        name = self.strategy["name"]
        if self.supernet.few_shot.split_at is not None and not strategy_class(name).single_path():
            raise ConfigError(f"supernet.few_shot needs a single-path strategy (spos, fairnas, enas): strategy.name="
                              f"{name} mixes or gates the options of a choice in one forward, which no one "
                              f"sub-supernet can run; unset supernet.few_shot or choose another strategy")


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
    data = _drop_objectives_of_nsga2(data, extra)
    merged = merge(_drop_other_dataset_settings(_drop_other_strategy_defaults(data, extra), extra), extra)
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


def _drop_objectives_of_nsga2(data: dict, extra: dict) -> dict:
    """When an override switches ``search.algorithm`` away from nsga2, the file's ``objectives`` (a
    saved config of an NSGA-II search has them) are dropped; set by the override, they are refused."""
    old, new = (data.get("search") or {}), (extra.get("search") or {})
    if not isinstance(old, dict) or not isinstance(new, dict) or new.get("algorithm") in (None, "nsga2") \
            or "objectives" in new:
        return data
    return {**data, "search": {k: v for k, v in old.items() if k != "objectives"}}


def _drop_other_dataset_settings(data: dict, extra: dict) -> dict:
    """When an override switches ``data.name``, the file's data keys that only its old dataset
    reads (``synthetic_train`` when switching to cifar10) are dropped: they described that dataset.
    Set by an override, such a key is still refused."""
    old, new = (data.get("data") or {}), (extra.get("data") or {})
    if not isinstance(old, dict) or not isinstance(new, dict) or "name" not in new \
            or new["name"] == old.get("name", DATA_DEFAULTS["name"]):
        return data
    kept = {k: v for k, v in old.items() if k not in ONLY_FOR or new["name"] in ONLY_FOR[k]}
    return {**data, "data": kept}


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
    """Overrides with their section: ``seed=1`` in the supernet stage is ``supernet.seed=1``. A key
    given both ways is refused, as neither could be said to win."""
    out: dict = {}
    bare = _leaves({k: v for k, v in extra.items() if k not in SECTIONS})
    both = sorted(bare & _leaves(extra.get(section)))
    if both:
        raise ConfigError(f"{both[0]} is given twice, as '{both[0]}' and as '{section}.{both[0]}'; give it once")
    for k, v in extra.items():
        out = merge(out, {k: v} if k in SECTIONS else {section: {k: v}})
    return out


def _leaves(tree, prefix: str = "") -> set[str]:
    if not isinstance(tree, dict):
        return {prefix[:-1]} if prefix else set()
    return set().union(*(_leaves(v, f"{prefix}{k}.") for k, v in tree.items())) if tree else set()


def resumable_keys(cfg: RunConfig, section: str) -> list[str]:
    """The keys of the resolved config that a resumed ``section`` stage may change (``DECIDES``),
    as ``fit``'s ``may_change``: sections that do not decide it end in ``.``."""
    keys = [f"{section}.{k}" for k in RESUMABLE] + [f"data.{k}" for k in SHARED_KEYS["data"]]
    keys += [f"{s}." for s in SECTIONS if s not in DECIDES[section]]
    train = getattr(cfg, section)
    # The linear and cosine schedules (and retrain's drop-path ramp) run over the whole length, so
    # another length would have changed the steps already taken.
    if train.optim.schedule == "constant" and not getattr(train, "drop_path", 0):
        keys.append(f"{section}.steps")
    return keys


def dump_config(cfg: RunConfig) -> str:
    """``cfg`` as ``config.yaml`` records it, which loads back to ``cfg``: every section, less the
    settings of other datasets (``data.synthetic_train`` in a digits run), which hold their defaults
    and so load as they were; under a comment on the setting that acts on CUDA only."""
    data = to_dict(cfg)
    data["data"] = {k: v for k, v in data["data"].items() if cfg.data.applies(k) or v != DATA_DEFAULTS[k]}
    if not cfg.space.quant.enabled:  # all defaults: loads back the same
        del data["space"]["quant"]
    where = ("here with device auto or cuda, not with device cpu" if resolve_device("auto").type == "cuda"
             else "this machine has no CUDA, so here it does nothing")
    return (f"# The resolved config: later stages and --resume read it back.\n"
            f"# amp acts on CUDA only: {where}.\n") + yaml.safe_dump(data, sort_keys=False)


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


def no_run(run_dir: Path) -> ConfigError:
    """What a later stage says on a run directory that train-supernet has not made."""
    return ConfigError(f"{run_dir} has no config.yaml: run 'supernet train-supernet --run-dir {run_dir}' first")


def stage_config(run_dir: Path, overrides: list[str], section: str) -> RunConfig:
    """The run's saved config with this stage's overrides, which may only touch its own section."""
    saved = Path(run_dir) / "config.yaml"
    if not saved.is_file():
        raise no_run(run_dir)
    extra = scope_overrides(parse_overrides(overrides), section)
    for sec, values in extra.items():
        bad = [k for k in values if sec != section and k not in SHARED_KEYS.get(sec, ())]
        if bad:
            raise ConfigError(f"{section} may not change {sec}.{bad[0]} (it was fixed when the supernet was trained); "
                              f"use a new --run-dir to change it")
    return load_config(saved, extra)


def use_runtime(cfg: RunConfig) -> None:
    """Run this process with the config's CPU thread count; torch's default is resolved to its
    count, so that ``config.yaml`` records the count every later stage then uses."""
    cfg.runtime.threads = use_threads(cfg.runtime.threads)
