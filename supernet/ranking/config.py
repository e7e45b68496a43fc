"""The settings of ``supernet rank``: which architectures are trained alone, for how long, and with
which seeds."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from ..runtime.seeding import check_seed


@dataclass
class RankConfig:
    archs: int = 24                  # K, the architectures trained alone (the search's picks count among them)
    steps: int = 300                 # the stand-alone schedule: the retrain recipe, shortened to this many steps
    pool: int = 200                  # random architectures scored on the supernet; K are taken evenly over their scores
    top_picks: int = 3               # the search's best (search/topk.json) added to the K, with its best_arch.json
    archs_file: Optional[str] = None  # a user's architectures instead: a JSON list of archs, or one arch file per line
    seeds: list[int] = field(default_factory=lambda: [0, 1])  # every arch trains with the first; the ceiling with all
    repeat: int = 8                  # architectures trained again with every other seed: the ground truth's repeatability
    topk: int = 5                    # the k of the top-k overlap
    proxy_batch: int = 64            # images in the NASWOT batch (the paper: 128)
    ground_truth: Optional[str] = None  # a NAS-Bench-201 table (CSV): accuracies read from it, nothing trained
    ground_truth_column: str = "cifar10"  # its column: cifar10, cifar100, imagenet16-120, or a column's own name
    seed: int = 0                    # which random architectures the pool holds
    device: str = "auto"
    progress: bool = True

    def __post_init__(self):
        for k in ("archs", "steps", "pool", "topk", "proxy_batch"):
            if getattr(self, k) <= 0:
                raise ValueError(f"rank.{k} must be positive, got {getattr(self, k)}")
        if self.archs < 3:
            raise ValueError(f"rank.archs={self.archs} is too few to rank: use at least 3 (24 is the default)")
        if self.top_picks < 0 or self.repeat < 0:
            raise ValueError("rank.top_picks and rank.repeat must be >= 0")
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"rank.seeds={self.seeds} must list distinct seeds, the first for every architecture")
        for s in self.seeds:
            check_seed("rank.seeds", s)
        check_seed("rank.seed", self.seed)
        if not isinstance(self.ground_truth_column, str) or not self.ground_truth_column:
            raise ValueError(f"rank.ground_truth_column must name a column of the table (cifar10, cifar100, "
                             f"imagenet16-120 or a column's name), got {self.ground_truth_column!r}")
        if self.repeat and len(self.seeds) < 2:
            raise ValueError(f"rank.repeat={self.repeat} trains architectures again with the other seeds, and "
                             f"rank.seeds={self.seeds} has one: give two (seeds=[0,1]) or set repeat=0")
        if 0 < self.repeat < 3:
            raise ValueError(f"rank.repeat={self.repeat} is too few to measure a ranking's repeatability: use at "
                             f"least 3 (or 0 for none)")
