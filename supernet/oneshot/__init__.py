"""NNI 2.x's one-shot Python API on supernet's loop: port a script by changing its imports.

    nni.retiarii.nn.pytorch (LayerChoice, InputChoice, and torch.nn)  ->  supernet.oneshot.nn
    nni.retiarii.oneshot.pytorch (SinglePathTrainer, ...)              ->  supernet.oneshot
    nni.retiarii.oneshot.pytorch.utils (replace_layer_choice, ...)     ->  supernet.oneshot

The README's "Coming from NNI" table maps every name. The trainers hold no training logic: they
run a strategy (``supernet.strategies``) on ``supernet.train.fit``.
"""
from .hardware import FBNetTrainer, ProxylessTrainer
from .trainers import BaseOneShotTrainer, DartsTrainer, EnasTrainer, OneShotTrainer, RandomTrainer, SinglePathTrainer
from .utils import replace_input_choice, replace_layer_choice


def model_wrapper(cls):
    """NNI's ``@model_wrapper`` class decorator; a supernet model is a plain module, so it returns ``cls``."""
    return cls


__all__ = ["BaseOneShotTrainer", "DartsTrainer", "EnasTrainer", "ProxylessTrainer", "FBNetTrainer", "OneShotTrainer", "SinglePathTrainer", "RandomTrainer", "replace_layer_choice",
           "replace_input_choice", "model_wrapper"]
