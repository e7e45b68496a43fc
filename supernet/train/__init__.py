"""Training machinery: the loop, optimiser and LR schedule, checkpoints, metrics, devices."""
from .checkpoint import CheckpointError, load_checkpoint, load_latest, save_checkpoint
from .loop import TrainingError, evaluate, fit

__all__ = ["fit", "evaluate", "TrainingError", "CheckpointError", "load_checkpoint", "load_latest", "save_checkpoint"]
