"""The pipeline: one function per stage, each reading the previous stage's artifacts by path.

    runs/NAME/
      config.yaml                       the resolved config of every stage run here
      supernet/last.pt step-*.pt metrics.jsonl                                    train_supernet
      search/state.json history.jsonl topk.json best_arch.json search.png        search
      search/best_arch.json arch_history.json search.png    train_supernet, when the strategy chooses
      retrain/last.pt metrics.jsonl                                               retrain
      eval.json                                                                   evaluate
      arch.json model.onnx model_latency.json (measured in ONNX Runtime)          export
      rank/plan.json results.jsonl report.json rank.png                           rank

Every stage holds the run directory (``rundir.owning``) for its whole life; ``config`` reads and
checks the settings; ``build`` makes the data, networks and cost model a stage needs.
"""
from .config import RunConfig, dump_config, load_config, resolve_config_path, stage_config
from .evaluate import evaluate
from .export import export
from .rank import rank
from .retrain import retrain
from .search import search
from .supernet import train_supernet

__all__ = ["train_supernet", "search", "retrain", "evaluate", "export", "rank", "load_config", "dump_config", "RunConfig",
           "resolve_config_path", "stage_config"]
