"""Search over a trained supernet: evolution and random search, scored after BN recalibration."""
from .evaluator import CandidateEvaluator, recalibrate_bn
from .evolution import EvolutionSearch

__all__ = ["CandidateEvaluator", "EvolutionSearch", "recalibrate_bn"]
