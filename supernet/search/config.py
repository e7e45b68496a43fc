"""The settings of a search over a trained supernet."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Optional

from ..runtime.seeding import check_seed


@dataclass
class SearchConfig:
    # nsga2: the accuracy-versus-cost front; aging: regularized evolution (population, sample_size, mutations)
    algorithm: Literal["evolution", "random", "nsga2", "aging"] = "evolution"
    population: int = 50             # the official SPOS evolution (src/Search/search.py)
    generations: int = 20
    topk: int = 10                   # global elite kept across generations
    mutations: int = 25
    crossovers: int = 25
    mutation_prob: float = 0.1       # each gene resampled with this probability
    sample_size: int = 10            # aging: the tournament, S members of the population (Real et al.: S < P)
    random_candidates: int = 1000    # random search: how many architectures
    constraints: list[str] = field(default_factory=list)  # e.g. ["flops<=330M"] (official search)
    objectives: list[str] = field(default_factory=list)   # nsga2 only: error and costs, e.g. [error, flops]
    recal_batches: int = 200         # BN recalibration per candidate: 200 x 128 training images (paper: ~20k)
    recal_batch_size: int = 128
    val_batch_size: int = 256
    val_images: Optional[int] = None  # score on the first N validation images (None = all of the val split)
    seed: int = 0
    device: str = "auto"
    progress: bool = True

    def __post_init__(self):
        for k in ("population", "generations", "topk", "random_candidates", "recal_batch_size", "val_batch_size",
                  "sample_size"):
            if getattr(self, k) <= 0:
                raise ValueError(f"{k} must be positive, got {getattr(self, k)}")
        if self.mutations < 0 or self.crossovers < 0 or self.recal_batches < 0:
            raise ValueError("mutations, crossovers and recal_batches must be >= 0")
        if not 0 <= self.mutation_prob <= 1:
            raise ValueError(f"mutation_prob must be in [0, 1], got {self.mutation_prob}")
        if self.val_images is not None and self.val_images <= 0:
            raise ValueError(f"val_images must be positive, got {self.val_images}")
        check_seed("seed", self.seed)
        if self.algorithm == "aging" and self.mutations < 1:
            raise ValueError("algorithm=aging makes search.mutations children a generation; set mutations >= 1 "
                             "(1 is Real et al.'s serial algorithm)")
        if self.algorithm == "aging" and self.sample_size > self.population:
            raise ValueError(f"sample_size={self.sample_size} is larger than population={self.population}: the "
                             f"tournament samples the population; lower sample_size or raise population")
        check_objectives(self.algorithm, self.objectives)


# What a multi-objective search can minimise: the held-out top-1 error and any cost of the cost model.
OBJECTIVES = ("error", "flops", "params", "latency", "bitops", "size")


def check_objectives(algorithm: str, objectives: list[str]) -> None:
    """``objectives`` only with nsga2, which needs them: the error and at least one cost, each once."""
    if algorithm != "nsga2":
        if objectives:
            raise ValueError(f"objectives={objectives} are for algorithm=nsga2; algorithm={algorithm} ranks by "
                             f"top-1 error alone: remove objectives, or set algorithm=nsga2")
        return
    example = "e.g. objectives=[error,flops]"
    unknown = [o for o in objectives if o not in OBJECTIVES]
    if unknown:
        raise ValueError(f"unknown objective {unknown[0]!r}; use error and any of {', '.join(OBJECTIVES[1:])} "
                         f"({example})")
    if len(set(objectives)) != len(objectives):
        raise ValueError(f"objectives={objectives} names one twice; name each once ({example})")
    if "error" not in objectives or len(objectives) < 2:
        raise ValueError(f"algorithm=nsga2 needs objectives with the error and at least one cost, got "
                         f"{objectives or 'none'} ({example})")
