"""Export a fixed subnet: the architecture as JSON and the network as ONNX, checked against PyTorch."""
from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .io import atomic_write
from .nn import full_kernels


def export_onnx(model: nn.Module, sample: torch.Tensor, path: Path, opset: int = 18,
                exporter: str = "auto") -> Path:
    """Write ``model`` (eval mode) as ONNX with a dynamic batch axis.

    ``exporter="auto"`` uses the TorchScript exporter where this torch still has it (about 10x
    faster to export a ShuffleNet here, and it needs no onnxscript), else ``torch.export``.
    """
    model = model.eval()
    use_dynamo = exporter == "dynamo"
    buf = io.BytesIO()
    with warnings.catch_warnings(), full_kernels():  # the nominal layers, valid at any input size
        warnings.simplefilter("ignore")  # the TorchScript exporter announces its deprecation
        if not use_dynamo:
            try:
                torch.onnx.export(model, (sample,), buf, dynamo=False, opset_version=min(opset, 18),
                                  input_names=["images"], output_names=["logits"],
                                  dynamic_axes={"images": {0: "batch"}, "logits": {0: "batch"}})
            except TypeError:  # a torch without the dynamo= switch, or without the old exporter
                if exporter == "torchscript":
                    raise
                use_dynamo = True
        if use_dynamo:
            program = torch.onnx.export(model, (sample,), dynamo=True, opset_version=opset,
                                        input_names=["images"], output_names=["logits"],
                                        dynamic_shapes=({0: torch.export.Dim("batch")},), verbose=False)
            buf = io.BytesIO(program.model_proto.SerializeToString())
    return atomic_write(path, lambda f: f.write(buf.getvalue()), mode="wb")


def check_onnx(path: Path, model: nn.Module, sample: torch.Tensor) -> float | None:
    """Max |ONNX - PyTorch| on ``sample`` with onnxruntime, or None if onnxruntime is not installed."""
    try:
        import onnxruntime as ort
    except ImportError:
        return None
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (out,) = session.run(None, {session.get_inputs()[0].name: sample.cpu().numpy().astype(np.float32)})
    with torch.no_grad():
        ref = model.eval()(sample).float().cpu().numpy()
    return float(np.abs(out - ref).max())
