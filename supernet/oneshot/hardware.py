"""NNI 2.x's ``ProxylessTrainer`` and an FBNet trainer in the same style, as thin faces on the one loop.

NNI predicted latency with nn-Meter (four fixed devices: NNI v2.10's
``docs/source/deprecated/oneshot_legacy.rst``). Here
``applied_hardware`` names one of our latency tables (a file from ``supernet latency``, or a
``LatencyTable``), or a backend to measure one on now: the model's own target.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

from ..arch import Arch
from ..cost import CostModel
from ..strategies import FBNet, Proxyless
from .trainers import OneShotTrainer, nni_ignores

# grad_reg_loss_type -> its grad_reg_loss_params with NNI's defaults (nni/retiarii/oneshot/pytorch/proxyless.py)
LOSS_PARAMS = {"mul#log": {"alpha": 1.0, "beta": 0.6}, "add#linear": {"lambda": 0.2}}

# applied_hardware name -> (backend, device) of supernet.cost.timing.build_table
HARDWARE = {"torch": ("torch", "cpu"), "torch-cpu": ("torch", "cpu"), "torch-cuda": ("torch", "cuda"),
            "onnxruntime": ("onnxruntime", "cpu"), "onnxruntime-cpu": ("onnxruntime", "cpu")}
NN_METER = ("cortexA76cpu_tflite21", "adreno640gpu_tflite21", "adreno630gpu_tflite21", "myriadvpu_openvino2019r2")


def hardware_cost(model, hardware, dummy_input) -> CostModel:
    """The model's cost model with the latency table ``hardware`` names attached."""
    from ..cost import LatencyTable
    from ..cost.timing import build_table
    shape = tuple(dummy_input[1:])
    cost = CostModel(model, input_shape=shape)
    if isinstance(hardware, LatencyTable):
        table = hardware
    elif isinstance(hardware, str) and hardware in HARDWARE:
        backend, device = HARDWARE[hardware]
        table = build_table(model, shape, backend=backend, device=device, batch=int(dummy_input[0]), cost=cost)
    elif isinstance(hardware, (str, Path)) and str(hardware).endswith(".json"):
        table = LatencyTable.load(hardware)  # attach_latency refuses a table of another model
    else:
        why = " (an nn-Meter predictor, which supernet does not ship)" if hardware in NN_METER else ""
        raise ValueError(f"applied_hardware {hardware!r}{why} cannot be served; use a latency table file (.json from "
                         f"'supernet latency'), a LatencyTable, or a backend to measure one on: {', '.join(HARDWARE)}")
    cost.attach_latency(table)
    return cost


class ProxylessTrainer(OneShotTrainer):
    """ProxylessNAS with NNI's ``ProxylessTrainer`` signature: the ``proxyless`` strategy on the loop.

    As NNI: ``dataset`` is split in two halves (weights / α), every step after the warm-up takes
    an α step (``full_v2`` gates, Adam(arc_learning_rate, betas (0, 0.999))) and then a weight step;
    NNI's loss defaults (mul#log α 1, β 0.6; add#linear λ 0.2). Unlike NNI: the latency term
    reaches α (NNI's ``torch.tensor`` cut it), ``InputChoice`` is supported, and same-label choices
    share one α.

    Args:
        grad_reg_loss_type: None, ``"mul#log"`` or ``"add#linear"``; the latency term is added only
            with ``applied_hardware`` too. As in NNI, either one alone is ignored (with a warning).
        grad_reg_loss_params: ``{"alpha", "beta"}`` (mul#log) or ``{"lambda"}`` (add#linear); other
            keys are ignored, as in NNI, with a warning.
        applied_hardware: a latency table file or ``LatencyTable``, or a backend to measure one on
            (``torch``, ``torch-cuda``, ``onnxruntime``), with ``dummy_input``'s shape and batch.
        ref_latency: LAT_ref in ms (used only with the latency term).
        seed: fixes α's initialisation, the split, the paths and the batches (NNI had none).
    """

    def __init__(self, model, loss, metrics, optimizer, num_epochs, dataset, warmup_epochs=0, batch_size=64, workers=4,
                 device=None, log_frequency=None, arc_learning_rate=0.001, grad_reg_loss_type=None,
                 grad_reg_loss_params=None, applied_hardware=None, dummy_input=(1, 3, 224, 224), ref_latency=65.0,
                 *, seed: int = 0):
        super().__init__(model, loss, metrics, optimizer, num_epochs, dataset, batch_size, workers, device,
                         log_frequency, seed)
        per_epoch = max(1, len(dataset) // 2 // batch_size)  # an epoch is a pass over the weights' half
        self.steps = num_epochs * per_epoch
        self.log_frequency = log_frequency or per_epoch
        loss_type = self._latency_loss(grad_reg_loss_type, applied_hardware)
        latency = self._loss_settings(loss_type, grad_reg_loss_params, ref_latency)
        cost = hardware_cost(model, applied_hardware, dummy_input) if loss_type is not None else None
        config = Proxyless.Config(warmup_steps=warmup_epochs * per_epoch, arch_every=1, arch_lr=arc_learning_rate,
                                  held_out=0.5, latency_loss=loss_type, **latency)
        self.strategy = Proxyless(self.space, config, seed=seed, cost=cost)

    @staticmethod
    def _latency_loss(loss_type, hardware) -> Optional[str]:
        """The latency loss to train with. NNI added it only with both a loss type and a hardware,
        and ignored either one alone: so does this face, saying so."""
        if loss_type is not None and loss_type not in LOSS_PARAMS:
            raise ValueError(f"grad_reg_loss_type must be one of {', '.join(LOSS_PARAMS)} or None, got {loss_type!r}")
        if loss_type is not None and hardware is None:
            nni_ignores("ProxylessTrainer", f"grad_reg_loss_type={loss_type!r} without applied_hardware",
                        "training has no latency term; pass applied_hardware (a latency table file, or 'torch' "
                        "to measure one) to add it")
            return None
        if hardware is not None and loss_type is None:
            nni_ignores("ProxylessTrainer", f"applied_hardware={hardware!r} without grad_reg_loss_type",
                        "training has no latency term; pass grad_reg_loss_type='mul#log' or 'add#linear' to add it")
            return None
        return loss_type

    @staticmethod
    def _loss_settings(loss_type, params, ref_latency) -> dict:
        """Proxyless.Config's latency keys for NNI's ``grad_reg_loss_params`` (NNI's defaults where
        absent; keys the loss does not take are ignored, as NNI's ``.get`` did, with a warning)."""
        if loss_type is None:
            return {}
        known = LOSS_PARAMS[loss_type]
        params = dict(params or {})
        unused = [k for k in params if k not in known]
        if unused:
            nni_ignores("ProxylessTrainer", f"grad_reg_loss_params {', '.join(map(repr, unused))}",
                        f"grad_reg_loss_type={loss_type!r} takes {', '.join(known)}")
        if isinstance(ref_latency, bool) or not isinstance(ref_latency, (int, float)) or not ref_latency > 0:
            raise ValueError(f"ref_latency must be the reference latency in ms (> 0) for grad_reg_loss_type="
                             f"{loss_type!r}, got {ref_latency!r}")
        p = {**known, **{k: v for k, v in params.items() if k in known}}
        keys = {"alpha": "latency_alpha", "beta": "latency_beta", "lambda": "latency_lambda"}
        return {"ref_latency": float(ref_latency), **{keys[k]: v for k, v in p.items()}}

    def fit(self) -> None:
        self._train(self.strategy)

    def export(self) -> Arch:
        return self._found(self.strategy)


class FBNetTrainer(OneShotTrainer):
    """FBNet in the same style: the ``fbnet`` strategy on the loop, with the latency table passed in.

    ``dataset`` is split 80/20 (weights / θ, as FBN-A); after ``warmup_epochs`` every step takes a
    θ step (Gumbel-softmax, Adam(arc_learning_rate, wd arc_weight_decay), loss CE·α·(log LAT_µs)^β)
    and then a weight step; the temperature is multiplied by ``temperature_decay`` every epoch.

    Args:
        latency_table: a ``LatencyTable``, a table file, or a backend to measure one on (as
            ``ProxylessTrainer``'s ``applied_hardware``); None trains with cross-entropy only.
    """

    def __init__(self, model, loss, metrics, optimizer, num_epochs, dataset, warmup_epochs=0, batch_size=64, workers=4,
                 device=None, log_frequency=None, arc_learning_rate=0.01, arc_weight_decay=5e-4, latency_table=None,
                 dummy_input=(1, 3, 224, 224), alpha=0.2, beta=0.6, init_temperature=5.0, temperature_decay=0.956,
                 *, seed: int = 0):
        super().__init__(model, loss, metrics, optimizer, num_epochs, dataset, batch_size, workers, device,
                         log_frequency, seed)
        per_epoch = max(1, int(len(dataset) * 0.8) // batch_size)
        self.steps = num_epochs * per_epoch
        self.log_frequency = log_frequency or per_epoch
        if latency_table is None and (alpha, beta) != (0.2, 0.6):
            raise ValueError("alpha and beta weigh the latency loss, which needs latency_table; pass one or leave "
                             "them at their defaults")
        cost = hardware_cost(model, latency_table, dummy_input) if latency_table is not None else None
        latency = {"latency_alpha": alpha, "latency_beta": beta} if cost is not None else {"latency_loss": None}
        config = FBNet.Config(warmup_steps=warmup_epochs * per_epoch, arch_lr=arc_learning_rate,
                              arch_weight_decay=arc_weight_decay, held_out=0.2, temperature=init_temperature,
                              temperature_decay=temperature_decay, anneal_every=per_epoch, **latency)
        self.strategy = FBNet(self.space, config, seed=seed, cost=cost)

    def fit(self) -> None:
        self._train(self.strategy)

    def export(self) -> Arch:
        return self._found(self.strategy)
