"""NNI 2.x's ``ProxylessTrainer`` and an FBNet trainer in the same style, as thin faces on the one loop.

NNI predicted latency with nn-Meter (four fixed devices: NNI v2.10's
``docs/source/deprecated/oneshot_legacy.rst``). Here
``applied_hardware`` names one of our latency tables (a file from ``supernet latency``, or a
``LatencyTable``), or a backend to measure one on now: the model's own target.
"""
from __future__ import annotations

from pathlib import Path

from ..arch import Arch
from ..cost import CostModel
from ..strategies import FBNet, Proxyless
from .trainers import OneShotTrainer

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
        grad_reg_loss_type: None, ``"mul#log"`` or ``"add#linear"``; needs ``applied_hardware``.
        grad_reg_loss_params: ``{"alpha", "beta"}`` (mul#log) or ``{"lambda"}`` (add#linear).
        applied_hardware: a latency table file or ``LatencyTable``, or a backend to measure one on
            (``torch``, ``torch-cuda``, ``onnxruntime``), with ``dummy_input``'s shape and batch.
        ref_latency: LAT_ref in ms.
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
        params = dict(grad_reg_loss_params or {})
        known = {"mul#log": {"alpha": 1.0, "beta": 0.6}, "add#linear": {"lambda": 0.2}}.get(grad_reg_loss_type, {})
        unknown = [k for k in params if k not in known]
        if unknown:
            raise ValueError(f"grad_reg_loss_params {unknown[0]!r} is not used by grad_reg_loss_type="
                             f"{grad_reg_loss_type!r}; it takes {sorted(known) or 'no parameters'}")
        if (grad_reg_loss_type is None) != (applied_hardware is None):
            raise ValueError("grad_reg_loss_type and applied_hardware go together: the latency loss needs a latency "
                             "table, and a table is used only by the latency loss")
        cost = hardware_cost(model, applied_hardware, dummy_input) if applied_hardware is not None else None
        p = {**known, **params}
        latency = {} if grad_reg_loss_type is None else {"ref_latency": ref_latency}
        if grad_reg_loss_type == "mul#log":
            latency.update(latency_alpha=p["alpha"], latency_beta=p["beta"])
        elif grad_reg_loss_type == "add#linear":
            latency.update(latency_lambda=p["lambda"])
        config = Proxyless.Config(warmup_steps=warmup_epochs * per_epoch, arch_every=1, arch_lr=arc_learning_rate,
                                  held_out=0.5, latency_loss=grad_reg_loss_type, **latency)
        self.strategy = Proxyless(self.space, config, seed=seed, cost=cost)

    def fit(self) -> None:
        self._train(self.strategy)

    def export(self) -> Arch:
        return self.strategy.final_arch()


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
        return self.strategy.final_arch()
