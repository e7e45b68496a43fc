"""Search over a trained supernet: evolution, random search and NSGA-II (the accuracy-versus-cost
front), scored after BN recalibration."""
from .config import SearchConfig
from .evaluator import CandidateEvaluator, recalibrate_bn
from .evolution import EvolutionSearch
from .nsga2 import NSGA2Search, make_search

__all__ = ["CandidateEvaluator", "EvolutionSearch", "NSGA2Search", "SearchConfig", "make_search", "recalibrate_bn"]
