"""What an architecture costs: exact FLOPs and parameters, constraints on them, and latency tables
measured on the user's own target.

    flops        ``CostModel``: per-choice lookup tables of multiply-accumulates and parameters
    constraints  ``Constraint`` / ``Constraints``: ``flops<=330M``, ``latency<=12ms``, ...
    latency      ``LatencyTable``: per-option latencies, their target and file
    timing       ``build_table`` / ``check_table``: measuring a table, checking it end to end
"""
from .constraints import Constraint, Constraints
from .flops import CostModel, count_macs
from .latency import LatencyConfig, LatencyTable, LatencyTableError
from .timing import build_table, check_table

__all__ = ["CostModel", "count_macs", "Constraint", "Constraints", "LatencyTable", "LatencyTableError",
           "LatencyConfig", "build_table", "check_table"]
