"""Search over a trained supernet: evolution and random search, scored after BN recalibration."""
from .config import SearchConfig
from .evaluator import CandidateEvaluator, recalibrate_bn
from .evolution import EvolutionSearch

__all__ = ["CandidateEvaluator", "EvolutionSearch", "SearchConfig", "recalibrate_bn"]
