"""Training machinery: the loop, optimiser and LR schedule, checkpoints, metrics, devices."""
from .checkpoint import CheckpointError, load_checkpoint, load_latest, save_checkpoint
from .config import OptimConfig, TrainConfig
from .loop import TrainingError, evaluate, fit

__all__ = ["fit", "evaluate", "TrainConfig", "OptimConfig", "TrainingError", "CheckpointError", "load_checkpoint",
           "load_latest", "save_checkpoint"]
