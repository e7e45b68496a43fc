"""Export a fixed subnet: the architecture as JSON and the network as ONNX, checked against PyTorch.

A subnet with ``Quantized`` layers (a mixed-precision one) exports as a QDQ model: each quantized
layer reads ``DequantizeLinear(int8 weight initializer, per-channel scale)`` and its input through
``QuantizeLinear -> [Clip] -> DequantizeLinear`` (int8, or uint8 for a non-negative input; the Clip
narrows a sub-8-bit range, for which ONNX has no type); the rest stays float. The file computes
exactly what the PyTorch model does: ``check_quantized_onnx`` measures how exactly (ties aside, to
float rounding), and ``supernet.cost.timing.compare_latency`` times it against the same network in float.

ONNX Runtime runs a conv on int8 kernels (``QLinearConv``) only when its output goes straight (or
through a ReLU) into a ``QuantizeLinear`` of its input's type and it has no bias to round; a conv
followed by BatchNorm, as in every space here, runs as ``DequantizeLinear`` + a float conv. Such a
file shows the quantized network's accuracy in deployment, not int8 speed on this runtime.
"""
from __future__ import annotations

import copy
import importlib
import importlib.util
import io
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .nn import Quantized, full_kernels
from .runtime.io import atomic_write
from .runtime.typed import ConfigError

INSTALL = "pip install 'supernet[export]'"
# Channel shuffle slices with a step (x[:, ::2]): ONNX Slice takes steps from opset 10 on, so an
# older opset fails deep inside the exporter. The dynamo exporter implements 18 and up only and
# would silently keep 18 for a lower request.
MIN_OPSET = {"torchscript": 10, "dynamo": 18}
QDQ_OPSET = 13  # per-channel (axis) QuantizeLinear / DequantizeLinear


@dataclass
class ExportConfig:
    opset: int = 18                  # ONNX opset
    batch_size: int = 1              # the traced sample batch (the batch axis is exported as dynamic)


def _torch_onnx_constant(name: str, default: int) -> int:
    try:
        from torch.onnx import _constants
    except ImportError:  # pragma: no cover - a torch without the module
        return default
    return int(getattr(_constants, name, default))


def has_torchscript_exporter() -> bool:
    """Whether this torch still ships the TorchScript ONNX exporter (what ``exporter="auto"`` prefers)."""
    try:
        return importlib.util.find_spec("torch.onnx._internal.torchscript_exporter") is not None
    except (ImportError, ValueError):
        return False


def opset_range(exporter: str = "auto") -> tuple[int, int]:
    """The ONNX opsets this torch's exporter writes for our networks, ``(lowest, highest)``."""
    if exporter == "auto":
        exporter = "torchscript" if has_torchscript_exporter() else "dynamo"
    if exporter == "torchscript":
        return MIN_OPSET["torchscript"], _torch_onnx_constant("ONNX_TORCHSCRIPT_EXPORTER_MAX_OPSET", 17)
    return MIN_OPSET["dynamo"], _torch_onnx_constant("ONNX_MAX_OPSET", 18)


def missing_dependencies(exporter: str = "auto") -> list[str]:
    """The export extra's packages that writing an ONNX file needs and this Python lacks.

    ``onnx`` always (both exporters serialise with it); ``onnxscript`` for the dynamo exporter.
    ``onnxruntime`` only checks the result, which is skipped (and said) without it.
    """
    if exporter == "auto":
        exporter = "torchscript" if has_torchscript_exporter() else "dynamo"
    needed = ["onnx"] + (["onnxscript"] if exporter == "dynamo" else [])
    missing = []
    for name in needed:
        try:
            importlib.import_module(name)
        except ImportError:
            missing.append(name)
    return missing


def check_export(opset: int, exporter: str = "auto") -> None:
    """Refuse, before any work, an export that cannot succeed: a missing extra or an opset out of range.

    Raises:
        ConfigError: one line naming the missing packages and the pip command, or the valid range.
    """
    missing = missing_dependencies(exporter)
    if missing:
        raise ConfigError(f"ONNX export needs {' and '.join(missing)}, which {'is' if len(missing) == 1 else 'are'} "
                          f"not installed: {INSTALL}")
    low, high = opset_range(exporter)
    if not low <= opset <= high:
        raise ConfigError(f"export.opset={opset} is not supported: this torch {torch.__version__.split('+')[0]} exports "
                          f"these networks at opset {low}..{high}; set export.opset in that range (default 18)")


def export_onnx(model: nn.Module, sample: torch.Tensor, path: Path, opset: int = 18,
                exporter: str = "auto") -> Path:
    """Write ``model`` (eval mode) as ONNX with a dynamic batch axis.

    ``exporter="auto"`` uses the TorchScript exporter where this torch still has it (about 10x
    faster to export a ShuffleNet here, and it needs no onnxscript), else ``torch.export``.
    """
    data = onnx_bytes(model, (sample,), opset, exporter, names=(["images"], ["logits"]), dynamic_batch=True)
    return atomic_write(path, lambda f: f.write(data), mode="wb")


def onnx_bytes(model: nn.Module, inputs: tuple[torch.Tensor, ...], opset: int = 18, exporter: str = "auto",
               names: tuple[list[str], list[str]] | None = None, dynamic_batch: bool = False) -> bytes:
    """``model`` (eval mode) as a serialised ONNX model; the latency tables time each option this way.

    ``names`` are the input and output names (default ``input_0``..., ``output``); with
    ``dynamic_batch`` the first axis of each is dynamic, else every shape is fixed. A model with
    ``Quantized`` layers becomes a QDQ model with int8 weights (the module's doc), with the
    TorchScript exporter at opset 13 or later; any other model exports as it always has.
    """
    check_export(opset, exporter)  # never clamp: a file at another opset than asked is a silent surprise
    model = model.eval()
    if is_quantized(model):
        _check_quantized(model, opset, exporter)
        exporter = "torchscript"
    ins, outs = names or ([f"input_{i}" for i in range(len(inputs))], ["output"])
    use_dynamo = exporter == "dynamo"
    buf = io.BytesIO()
    with warnings.catch_warnings(), full_kernels(model):  # the nominal layers, valid at any input size
        warnings.simplefilter("ignore")  # the TorchScript exporter announces its deprecation
        if not use_dynamo:
            try:
                torch.onnx.export(model, tuple(inputs), buf, dynamo=False, opset_version=opset,
                                  input_names=ins, output_names=outs,
                                  dynamic_axes={n: {0: "batch"} for n in ins + outs} if dynamic_batch else None)
            except TypeError:  # a torch without the dynamo= switch, or without the old exporter
                if exporter == "torchscript":
                    raise
                use_dynamo = True
        if use_dynamo:
            batch = torch.export.Dim("batch")
            program = torch.onnx.export(model, tuple(inputs), dynamo=True, opset_version=opset,
                                        input_names=ins, output_names=outs, verbose=False,
                                        dynamic_shapes=tuple({0: batch} for _ in inputs) if dynamic_batch else None)
            return program.model_proto.SerializeToString()
    return _int8_weights(buf.getvalue()) if is_quantized(model) else buf.getvalue()


def check_onnx(path: Path, model: nn.Module, sample: torch.Tensor) -> float | None:
    """Max |ONNX - PyTorch| on ``sample`` with onnxruntime, or None if onnxruntime is not installed."""
    outputs = _ort_and_torch(path, model, sample)
    return None if outputs is None else float(np.abs(outputs[0] - outputs[1]).max())


def _ort_and_torch(path: Path, model: nn.Module, sample: torch.Tensor) -> tuple[np.ndarray, np.ndarray] | None:
    """``(ONNX Runtime's output, PyTorch's)`` on ``sample``, or None without onnxruntime."""
    try:
        import onnxruntime as ort
    except ImportError:
        return None
    ort_session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (out,) = ort_session.run(None, {ort_session.get_inputs()[0].name: sample.cpu().numpy().astype(np.float32)})
    with torch.no_grad():
        ref = model.eval()(sample).float().cpu().numpy()
    return out, ref


# --- quantized (QDQ) models -------------------------------------------------------------------------------
def is_quantized(model: nn.Module) -> bool:
    """Whether ``model`` has ``Quantized`` layers (it then exports as a QDQ model)."""
    return any(isinstance(m, Quantized) for m in model.modules())


# How close ONNX Runtime comes to PyTorch on a QDQ export. Both compute the same integers and
# float ops, so most samples agree to float rounding: 2e-7..1.5e-6 of the outputs' standard
# deviation (QUANT_RTOL allows 1e-4). A value on a rounding tie can round the other way (PyTorch
# quantizes x * (1 / scale), ONNX Runtime x / scale; float sums run in another order), and one
# flipped activation at 2-4 bits moves that sample further: measured on 12 QAT-trained digits
# subnets of 5 spaces (resnet, enas-macro, shufflenet, proxyless, fbnet; bits 2/3/4/8/32; 397 test
# images each), 0-1.0% of the samples did so, by up to 1.5 std (proxyless), and 1 image in 397 changed
# its prediction in 2 of the 12. QUANT_TIES allows 5% of the samples beyond QUANT_RTOL.
QUANT_RTOL = 1e-4
QUANT_TIES = 0.05


def quant_tolerance(reference: np.ndarray) -> float:
    """The largest |ONNX Runtime - PyTorch| a sample of a QDQ export should show, for PyTorch's
    outputs ``reference``: ``QUANT_RTOL`` times their standard deviation (see ``QUANT_TIES`` for the
    few samples a rounding tie may move further)."""
    return QUANT_RTOL * float(np.std(reference))


def check_quantized_onnx(path: Path, model: nn.Module, sample: torch.Tensor) -> dict | None:
    """A QDQ export against its PyTorch model on ``sample`` (None without onnxruntime):
    ``max_abs_diff``, the ``tolerance`` (``quant_tolerance``), the share of samples ``outside`` it,
    the share whose argmax agrees (``argmax_agreement``), and ``ok``: at most ``QUANT_TIES`` outside."""
    outputs = _ort_and_torch(path, model, sample)
    if outputs is None:
        return None
    out, ref = (o.reshape(len(o), -1) for o in outputs)  # (N, outputs per sample)
    tolerance = quant_tolerance(ref)
    per_sample = np.abs(out - ref).max(1)
    outside = float((per_sample > tolerance).mean())
    return {"max_abs_diff": float(per_sample.max()), "tolerance": tolerance, "outside": outside,
            "argmax_agreement": float((out.argmax(1) == ref.argmax(1)).mean()), "ok": outside <= QUANT_TIES}


def _check_quantized(model: nn.Module, opset: int, exporter: str) -> None:
    """Refuse a quantized export that would not give a static QDQ graph, in one line each."""
    if opset < QDQ_OPSET:
        raise ConfigError(f"export.opset={opset} cannot hold a quantized model: per-channel QuantizeLinear/"
                          f"DequantizeLinear need opset {QDQ_OPSET} or later (default 18)")
    if exporter == "dynamo" or not has_torchscript_exporter():
        raise ConfigError("a quantized model exports with the TorchScript exporter only (its QDQ form is "
                          "fake_quantize's ONNX symbolic); use exporter='torchscript' with a torch that has it")
    for name, m in model.named_modules():
        if isinstance(m, Quantized):
            cold = [f"{'weights' if k.startswith('weight') else 'input'} at {k.strip('weightac')} bits"
                    for k, started in zip(m.keys, m.started.tolist()) if not started]
            if cold:  # its step would be computed from each input: not a static scale
                raise ValueError(f"layer '{name}' has no learned step size for its {' and its '.join(cold)}: "
                                 f"train or fine-tune it before export (one training batch starts the steps)")


def _int8_weights(data: bytes) -> bytes:
    """The exported QDQ model with every quantized weight stored as its int8 values feeding a
    ``DequantizeLinear``: the standard QDQ weight format (a quarter of the float size), and the very
    integers PyTorch used.

    The TorchScript exporter leaves each weight as ``float initializer -> QuantizeLinear -> [Clip] ->
    DequantizeLinear`` (and each step as ``Abs -> Clip``). That form would leave the rounding to the
    runtime, which divides ``x / scale`` where ``torch.fake_quantize_*`` multiplies by ``1 / scale``,
    and stores the float weights; so the chains computed from initializers alone are evaluated here,
    rounding as PyTorch does (``x * (1 / scale)``, half to even). No-op ``Cast`` nodes (float to
    float, from ``fake_quantize``'s dtype handling) are dropped so that nothing sits between a
    ``DequantizeLinear`` and its conv, and ``_kept_exact`` keeps ONNX Runtime's own rounding off.
    """
    import onnx
    from onnx import numpy_helper

    proto = onnx.load_from_string(data)
    graph = proto.graph
    outputs = {o.name for o in graph.output}
    known = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    alias: dict[str, str] = {}
    keep = []
    for node in [onnx.NodeProto.FromString(n.SerializeToString()) for n in graph.node]:  # copies, to edit freely
        ins = [alias.get(i, i) for i in node.input]
        if node.op_type == "Constant" and len(node.attribute) == 1 and node.attribute[0].name == "value":
            known[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
        elif node.op_type in _FOLD and all(i == "" or i in known for i in ins) and not outputs & set(node.output):
            if node.op_type == "Identity":
                alias[node.output[0]] = ins[0]  # no copy of the tensor
            else:
                attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
                known[node.output[0]] = _FOLD[node.op_type](attrs, *[known[i] if i else None for i in ins])
            continue
        del node.input[:]
        node.input.extend(ins)
        keep.append(node)
    info = _value_info(proto, keep, known)
    keep = _without_noop_casts(keep, info, outputs)
    _kept_exact(keep, known, info)
    keep = _live(keep, outputs)
    used = {i for n in keep for i in n.input} | outputs
    made = {o for n in keep for o in n.output}
    initializers = [i for i in graph.initializer if i.name in used]
    initializers += [numpy_helper.from_array(np.asarray(known[name]), name)
                     for name in sorted(used - {i.name for i in initializers} - made) if name in known]
    del graph.initializer[:]
    graph.initializer.extend(initializers)
    del graph.node[:]
    graph.node.extend(keep)
    return proto.SerializeToString()


def _kept_exact(nodes: list, known: dict, info: dict) -> None:
    """Keep ONNX Runtime from rounding what PyTorch does not. Its ``WeightBiasQuantization`` pass
    (on by default) takes a conv or Gemm whose input is a per-tensor ``DequantizeLinear`` and whose
    output reaches a ``QuantizeLinear`` (through a ReLU at most), and rounds a float weight to
    per-tensor int8 and a float bias to int32 at ``input scale * weight scale`` (half a unit of the
    accumulator, a coarse unit at 2-4 bits). (With BatchNorm folded into the convs' biases,
    it moved the logits of QAT-trained digits subnets by up to 1.4 standard deviations and changed
    1-8% of their predictions; that is also why BatchNorm stays unfolded here.) Such a
    layer (a 32-bit weight, or a bias) reads its input through its own ``DequantizeLinear`` along
    an axis of more than one element, the scale repeated: the same numbers, which that pass skips."""
    from onnx import helper

    producer = {o: n for n in nodes for o in n.output}
    for node in [n for n in nodes if n.op_type in ("Conv", "Gemm")]:
        dq, weight = producer.get(node.input[0]), known.get(node.input[1])
        has_bias = len(node.input) > 2 and node.input[2] != ""
        if dq is None or dq.op_type != "DequantizeLinear" or known[dq.input[1]].ndim \
                or not (has_bias or weight is not None and weight.dtype.kind == "f"):
            continue
        shape = info.get(node.input[0], (None, []))[1]
        axis = next((a for a, size in enumerate(shape) if a and size and size > 1), None)
        if axis is None:  # no static axis to spread the scale over (a 1-element input): nothing to do
            continue
        name = node.output[0] + "_input"
        zero = known[dq.input[2]] if len(dq.input) > 2 else np.zeros((), np.uint8)
        known[name + "_scale"] = np.full(shape[axis], known[dq.input[1]], np.float32)
        known[name + "_zero"] = np.full(shape[axis], zero, zero.dtype)
        nodes.insert(nodes.index(node), helper.make_node(
            "DequantizeLinear", [dq.input[0], name + "_scale", name + "_zero"], [name], axis=axis))
        node.input[0] = name


def _live(nodes: list, outputs: set) -> list:
    """``nodes`` without those whose outputs nothing reads."""
    needed, keep = set(outputs), []
    for node in reversed(nodes):
        if needed & set(node.output):
            needed.update(node.input)
            keep.append(node)
    return keep[::-1]


def _quantize(attrs: dict, x, scale, zero=None):
    """ONNX QuantizeLinear as torch's fake quantization rounds: ``rint(x * (1 / scale)) + zero``, saturated."""
    zero = np.zeros((), np.uint8) if zero is None else zero
    shape = [1] * x.ndim
    if scale.ndim:  # per axis
        shape[attrs.get("axis", 1) % x.ndim] = -1
    inv = (np.float32(1) / scale.astype(np.float32)).reshape(shape)
    q = np.rint(x.astype(np.float32) * inv) + zero.astype(np.float32).reshape(shape if zero.ndim else [])
    info = np.iinfo(zero.dtype)
    return np.clip(q, info.min, info.max).astype(zero.dtype)


def _clip(attrs: dict, x, low=None, high=None):
    return np.clip(x, x.min() if low is None else low, x.max() if high is None else high).astype(x.dtype)


def _cast(attrs: dict, x):
    from onnx.helper import tensor_dtype_to_np_dtype
    return x.astype(tensor_dtype_to_np_dtype(attrs["to"]))


_FOLD = {  # what lies between a weight (or a step) and its DequantizeLinear
    "Identity": None,  # an alias, see _int8_weights
    "Abs": lambda attrs, x: np.abs(x),
    "Cast": _cast,
    "Clip": _clip,
    "QuantizeLinear": _quantize,
}


def _value_info(proto, nodes: list, known: dict) -> dict:
    """The element type and shape (None for a dynamic axis) of every value of the graph ``nodes``."""
    import onnx
    from onnx import helper

    consts = [helper.make_tensor_value_info(name, helper.np_dtype_to_tensor_dtype(v.dtype), v.shape)
              for name, v in known.items()]
    graph = helper.make_graph(nodes, "types", [*proto.graph.input, *consts], proto.graph.output)
    inferred = onnx.shape_inference.infer_shapes(helper.make_model(graph, opset_imports=proto.opset_import)).graph
    return {v.name: (v.type.tensor_type.elem_type, [d.dim_value or None for d in v.type.tensor_type.shape.dim])
            for v in [*inferred.value_info, *inferred.input, *inferred.output]}


def _without_noop_casts(nodes: list, info: dict, outputs: set) -> list:
    """``nodes`` without the ``Cast`` nodes whose input already has the target type (their readers
    read the input instead)."""
    alias, keep = {}, []
    for node in nodes:
        ins = [alias.get(i, i) for i in node.input]
        del node.input[:]
        node.input.extend(ins)
        to = next((a.i for a in node.attribute if a.name == "to"), None)
        if node.op_type == "Cast" and info.get(node.input[0], (None,))[0] == to and node.output[0] not in outputs:
            alias[node.output[0]] = node.input[0]
        else:
            keep.append(node)
    return keep


def dequantized(model: nn.Module) -> nn.Module:
    """A copy of ``model`` with every ``Quantized`` layer replaced by its float ``.layer``: the same
    network in full precision (what its QDQ export is measured against)."""
    model = copy.deepcopy(model)
    if isinstance(model, Quantized):
        return model.layer
    for name, m in list(model.named_modules()):
        if isinstance(m, Quantized):
            parent, _, child = name.rpartition(".")
            setattr(model.get_submodule(parent) if parent else model, child, m.layer)
    return model

