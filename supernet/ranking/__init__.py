"""Ranking quality: how well a supernet (or a free score) orders architectures by their stand-alone
accuracy. ``proxies``: the zero-cost baselines; ``stats``: the figures; ``report``: the report."""
from .config import RankConfig
from .proxies import naswot, synflow
from .report import build_report, report_table
from .stats import correlations, figures, stratified

__all__ = ["RankConfig", "naswot", "synflow", "build_report", "report_table", "correlations", "figures", "stratified"]
