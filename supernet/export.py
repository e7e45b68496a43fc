"""Export a fixed subnet: the architecture as JSON and the network as ONNX, checked against PyTorch."""
from __future__ import annotations

import importlib
import importlib.util
import io
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .nn import full_kernels
from .runtime.io import atomic_write
from .runtime.typed import ConfigError

INSTALL = "pip install 'supernet[export]'"
# Channel shuffle slices with a step (x[:, ::2]): ONNX Slice takes steps from opset 10 on, so an
# older opset fails deep inside the exporter. The dynamo exporter implements 18 and up only and
# would silently keep 18 for a lower request.
MIN_OPSET = {"torchscript": 10, "dynamo": 18}


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
    ``dynamic_batch`` the first axis of each is dynamic, else every shape is fixed.
    """
    check_export(opset, exporter)  # never clamp: a file at another opset than asked is a silent surprise
    model = model.eval()
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
    return buf.getvalue()


def check_onnx(path: Path, model: nn.Module, sample: torch.Tensor) -> float | None:
    """Max |ONNX - PyTorch| on ``sample`` with onnxruntime, or None if onnxruntime is not installed."""
    try:
        import onnxruntime as ort
    except ImportError:
        return None
    ort_session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (out,) = ort_session.run(None, {ort_session.get_inputs()[0].name: sample.cpu().numpy().astype(np.float32)})
    with torch.no_grad():
        ref = model.eval()(sample).float().cpu().numpy()
    return float(np.abs(out - ref).max())
