"""``Quantized``: a conv or linear layer whose weights and input are fake-quantized at chosen bit widths.

The layer keeps one set of weights for every bit width (the weights are shared, as a supernet's
are); each bit width has its own learned step size (LSQ): one per output channel for the weights
(or one per layer), one per layer for the input activations. A step starts at LSQ's initial value,
computed from the weights, or from the first training batch for activations (averaged over the
processes under torchrun, so 2 ranks start where 1 process does); which steps have started, and
whether the layer's input is signed, are buffers, so a checkpoint resumes them exactly.

The bit widths come from two ``BitChoice``s (``weight_bits``, ``act_bits``), or are plain ints in
a fixed subnet. 32 means full precision: that tensor is not quantized. Activations found
non-negative at the first batch (after a ReLU) use the unsigned range ``[0, 2^b - 1]``, others the
signed one.
"""
from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn

from .choices import FULL_PRECISION, BitChoice, _selection
from .fake_quant import bit_range, fake_quantize, lsq_init

QUANTIZABLE = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)
_PLAIN = {nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear}  # forward(x) is their own op on self.weight


def _options(bits) -> list[int]:
    return list(bits.values) if isinstance(bits, BitChoice) else [int(bits)]


class Quantized(nn.Module):
    """``layer`` (a ``Conv1d/2d/3d`` or ``Linear``, sliced and depthwise ones included) run on
    fake-quantized weights and inputs.

    Args:
        layer: the layer; it stays a child (``.layer``) and keeps its parameters.
        weight_bits: a ``BitChoice`` (searched; may be shared with other layers) or an int.
        act_bits: the same for the inputs.
        per_channel: one weight step per output channel (else one per layer).
        labels: the ``(weight, act)`` labels of the decisions, kept by the fixed form for costs and
            reports; the choices' own labels when omitted.
    """

    def __init__(self, layer: nn.Module, weight_bits: BitChoice | int, act_bits: BitChoice | int,
                 per_channel: bool = True, labels: tuple[str, str] | None = None):
        super().__init__()
        if not isinstance(layer, QUANTIZABLE):
            raise TypeError(f"Quantized wraps Conv1d/2d/3d or Linear layers, got {type(layer).__name__}")
        self.layer = layer
        self.weight_bits = weight_bits
        self.act_bits = act_bits
        self.per_channel = per_channel
        self.labels = labels or (getattr(weight_bits, "label", None), getattr(act_bits, "label", None))
        channels = layer.weight.shape[0] if per_channel else None
        wb = [b for b in _options(weight_bits) if b != FULL_PRECISION]
        ab = [b for b in _options(act_bits) if b != FULL_PRECISION]
        self.weight_steps = nn.ParameterDict(
            {str(b): nn.Parameter(torch.ones(() if channels is None else (channels,))) for b in wb})
        self.act_steps = nn.ParameterDict({str(b): nn.Parameter(torch.ones(())) for b in ab})
        self.keys = [f"weight{b}" for b in wb] + [f"act{b}" for b in ab]  # the order of `started`
        self.register_buffer("started", torch.zeros(len(self.keys), dtype=torch.bool))
        self.register_buffer("signed", torch.tensor(-1, dtype=torch.int8))  # input: -1 unknown, 0 >= 0, 1 signed
        self._started: set[str] = set()  # the keys seen started: saves a device sync per forward
        self._signed: bool | None = None  # `signed` once known, for the same reason

    def extra_repr(self) -> str:
        def say(bits):
            return f"{bits.label!r}: {bits.values}" if isinstance(bits, BitChoice) else str(bits)
        return f"weight_bits={say(self.weight_bits)}, act_bits={say(self.act_bits)}, per_channel={self.per_channel}"

    def step_parameters(self) -> list[nn.Parameter]:
        """The learned step sizes (the parameter counts of the cost model leave them out)."""
        return [*self.weight_steps.values(), *self.act_steps.values()]

    # --- forward --------------------------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self._mix(x, "act", self.act_bits)
        weight = self._mix(self.layer.weight, "weight", self.weight_bits)
        if weight is self.layer.weight:
            return self.layer(x)
        if type(self.layer) in _PLAIN and not self.layer._forward_hooks and not self.layer._forward_pre_hooks:
            if isinstance(self.layer, nn.Linear):
                return nn.functional.linear(x, weight, self.layer.bias)
            return self.layer._conv_forward(x, weight, self.layer.bias)
        # Any other layer (depthwise, sliced, with hooks) runs its own forward on the quantized weight,
        # put in place of its parameter for this call (torch.func.functional_call does the same, but
        # refuses to run under the TorchScript tracer that exports ONNX).
        params = self.layer._parameters
        saved = params["weight"]
        params["weight"] = weight
        try:
            return self.layer(x)
        finally:
            params["weight"] = saved

    def _mix(self, t: torch.Tensor, kind: str, bits) -> torch.Tensor:
        if not isinstance(bits, BitChoice):
            return self.quantize(t, kind, bits)
        if bits.weights is None:
            return self.quantize(t, kind, bits.current())
        out = None  # EdMIPS: the weighted sum of the tensor quantized at each option
        for i in _selection(bits.active, bits.n_options):
            y = bits.weights[i] * self.quantize(t, kind, bits.values[i])
            out = y if out is None else out + y
        return out

    def quantize(self, t: torch.Tensor, kind: str, bits: int) -> torch.Tensor:
        """``t`` (the weight, or the input for ``kind="act"``) fake-quantized at ``bits``."""
        if bits == FULL_PRECISION or t.is_meta:  # meta: shapes only (size estimates), nothing to round
            return t
        key = f"{kind}{bits}"
        step = (self.weight_steps if kind == "weight" else self.act_steps)[str(bits)]
        if key not in self._started:
            step = self._start(key, kind, bits, t, step)
        signed = kind == "weight" or self._is_signed(t)
        qmin, qmax = bit_range(bits, signed)
        axis = 0 if kind == "weight" and self.per_channel else None
        count = None if kind == "weight" else t[0].numel()  # activations: one sample's features (LSQ)
        # |step|: a step that an update pushes through zero keeps learning (clamped at 0 it would be dead)
        return fake_quantize(t, step.abs().clamp_min(1e-8), qmin, qmax, axis, count)

    # --- the steps' start -----------------------------------------------------------------------
    def _start(self, key: str, kind: str, bits: int, t: torch.Tensor, step: nn.Parameter) -> torch.Tensor:
        """Give a step LSQ's initial value the first time its bit width trains (once per run: the
        buffer ``started`` remembers it in checkpoints). In eval mode a step that never trained is
        computed for this forward only, so evaluating or costing a model never changes it."""
        i = self.keys.index(key)
        if bool(self.started[i]):
            self._started.add(key)
            return step
        if not self.training:
            with torch.no_grad():
                if kind == "weight":
                    return self._weight_start(t, bits)
                return lsq_init(t, bit_range(bits, self._is_signed(t))[1])
        with torch.no_grad():
            if kind == "weight":
                value = self._weight_start(t, bits)
            else:
                stats = torch.stack([t.detach().float().abs().mean(), (t.detach() < 0).any().float()])
                if self.training and dist.is_available() and dist.is_initialized():
                    dist.all_reduce(stats)  # every rank runs the same path and starts the same steps
                    stats[0] /= dist.get_world_size()
                if int(self.signed) < 0:
                    self.signed.fill_(int(stats[1] > 0))
                qmax = bit_range(bits, bool(self.signed))[1]
                value = (2 * stats[0] / qmax ** 0.5).clamp_min(1e-8)
            step.copy_(value.to(step.dtype).expand_as(step))
            self.started[i] = True
        self._started.add(key)
        return step

    def _weight_start(self, weight: torch.Tensor, bits: int) -> torch.Tensor:
        """LSQ's initial weight step at ``bits``: per output channel, or one for the layer."""
        return lsq_init(weight, bit_range(bits, True)[1], 0 if self.per_channel else None)

    def _is_signed(self, x: torch.Tensor) -> bool:
        """Whether the input uses the signed range: as found at the first training batch (cached:
        one device read per layer), or, before any, whether this input has a negative value."""
        if self._signed is None:
            sign = int(self.signed)
            if sign < 0:
                return bool((x < 0).any())
            self._signed = sign > 0
        return self._signed

    def start_untrained(self) -> None:
        """Give every step that never trained a value without data (weights: LSQ's start from the
        weights; inputs: 1.0, signed), so that an untrained model exports as a static QDQ graph: a
        latency table times the layers, whatever numbers they compute."""
        with torch.no_grad():
            if int(self.signed) < 0:
                self.signed.fill_(1)
            for i, key in enumerate(self.keys):
                if bool(self.started[i]):
                    continue
                bits = int(key.lstrip("weightac"))
                if key.startswith("weight"):
                    value = self._weight_start(self.layer.weight, bits)
                    self.weight_steps[str(bits)].copy_(value.expand_as(self.weight_steps[str(bits)]))
                self.started[i] = True
        self._started.clear()
        self._signed = None

    def reset_steps(self) -> None:
        """Forget the steps (a subnet retrained from scratch starts them again from its new weights)."""
        with torch.no_grad():
            for p in self.step_parameters():
                p.fill_(1.0)
            self.started.zero_()
            self.signed.fill_(-1)
        self._started.clear()
        self._signed = None

    def _load_from_state_dict(self, *args, **kwargs):
        self._started.clear()  # the loaded buffer says which steps have started
        self._signed = None
        super()._load_from_state_dict(*args, **kwargs)

    # --- the fixed form -------------------------------------------------------------------------
    def fixed(self, layer: nn.Module | None = None) -> "Quantized":
        """This layer at its chosen bit widths with no choice left (``layer``: its fixed form, which
        ``fix`` passes; a copy of ``.layer`` otherwise): the chosen widths' steps are kept."""
        wb, ab = (b.current() if isinstance(b, BitChoice) else b for b in (self.weight_bits, self.act_bits))
        layer = layer if layer is not None else self.layer
        new = Quantized(layer, wb, ab, self.per_channel, self.labels)
        out = layer.weight.shape[0]
        with torch.no_grad():
            for kind, bits, steps in (("weight", wb, new.weight_steps), ("act", ab, new.act_steps)):
                if bits == FULL_PRECISION:
                    continue
                src = (self.weight_steps if kind == "weight" else self.act_steps)[str(bits)]
                steps[str(bits)].copy_(src[:out] if kind == "weight" and self.per_channel else src)
                new.started[0 if kind == "weight" or wb == FULL_PRECISION else 1] = \
                    self.started[self.keys.index(f"{kind}{bits}")]
            new.signed.copy_(self.signed)
        new.train(self.training)
        return new
