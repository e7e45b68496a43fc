"""Quantized subnets as QDQ ONNX files: the nodes each quantized layer gets, int8 weights that are
PyTorch's own integers, ONNX Runtime's output against PyTorch's, and float models untouched."""
import io
import random
import warnings

import numpy as np
import pytest
import torch
from torch import nn

from supernet import SearchSpace, create, fix
from supernet.cost.timing import compare_latency
from supernet.export import (check_quantized_onnx, dequantized, onnx_bytes, quant_tolerance,
                             QUANT_TIES)
from supernet.nn import Quantized
from supernet.nn.fake_quant import bit_range
from supernet.quant import mixed_precision
from supernet.runtime.typed import ConfigError

from ..conftest import SPACE_NAMES, tiny_input_size, tiny_model

onnx = pytest.importorskip("onnx")
from onnx import numpy_helper  # noqa: E402

# (conv weight, conv input), (linear weight, linear input) bits: 2, 3, 4, 8 and 32 (float), mixed
MIXES = [((2, 2), (2, 2)), ((4, 8), (8, 4)), ((8, 32), (32, 3)), ((32, 4), (2, 8)), ((3, 32), (32, 32))]


class Tiny(nn.Module):
    """A conv (signed input: int8) and a linear layer (input after a ReLU: uint8), both with a bias."""

    def __init__(self, conv_bits, fc_bits):
        super().__init__()
        self.conv = Quantized(nn.Conv2d(1, 4, 3, padding=1), *conv_bits)
        self.fc = Quantized(nn.Linear(4 * 4 * 4, 3), *fc_bits)

    def forward(self, x):
        return self.fc(torch.relu(self.conv(x)).flatten(1))  # (B, 1, 4, 4) -> (B, 64) -> (B, 3)


def trained_steps(model, shape, seed=0):
    """``model`` in eval mode after one training batch (which starts the LSQ steps and fixes signedness)."""
    torch.manual_seed(seed)
    model.train()
    with torch.no_grad():
        model(torch.randn(64, *shape))
    return model.eval()


def graph_of(data):
    model = onnx.load_from_string(data)
    onnx.checker.check_model(model)
    return model.graph


def expected_nodes(model):
    """QuantizeLinear, DequantizeLinear and Clip counts: per quantized input one Q and one DQ (and a Clip
    below 8 bits), per quantized weight one DQ of its int8 values."""
    q = dq = clip = 0
    for m in model.modules():
        if isinstance(m, Quantized):
            q += m.act_bits < 32
            dq += (m.act_bits < 32) + (m.weight_bits < 32)
            clip += m.act_bits < 8
    return {"QuantizeLinear": q, "DequantizeLinear": dq, "Clip": clip}


def count(graph):
    """The graph's QuantizeLinear and DequantizeLinear nodes, and its Clips of integers (a ReLU6 is a float Clip)."""
    quantized = {n.output[0] for n in graph.node if n.op_type == "QuantizeLinear"}
    ops = [n.op_type for n in graph.node if n.op_type != "Clip" or n.input[0] in quantized]
    return {op: ops.count(op) for op in ("QuantizeLinear", "DequantizeLinear", "Clip")}


@pytest.mark.parametrize("conv_bits,fc_bits", MIXES)
def test_each_quantized_layer_gets_its_qdq_nodes_and_int8_weights(conv_bits, fc_bits):
    model = trained_steps(Tiny(conv_bits, fc_bits), (1, 4, 4))
    graph = graph_of(onnx_bytes(model, (torch.randn(2, 1, 4, 4),)))
    assert count(graph) == expected_nodes(model)
    inits = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    consts = {**inits, **{n.output[0]: numpy_helper.to_array(n.attribute[0].t) for n in graph.node
                          if n.op_type == "Constant"}}
    for node in graph.node:
        if node.op_type == "Clip":  # only on a sub-8-bit input, in its integer range
            low, high = (int(consts[i]) for i in node.input[1:])
            assert (low, high) in {bit_range(b, s) for b in (2, 3, 4) for s in (True, False)}
    zeros = {n.input[0]: consts[n.input[2]].dtype for n in graph.node if n.op_type == "QuantizeLinear"}
    assert zeros.pop("input_0", np.int8) == np.int8  # the conv's input is signed: int8
    assert set(zeros.values()) <= {np.dtype(np.uint8)}  # the linear layer's comes from a ReLU: uint8
    weights = [n for n in graph.node if n.op_type == "DequantizeLinear" and n.input[0] in inits]
    assert len(weights) == sum(m.weight_bits < 32 for m in (model.conv, model.fc))
    for layer in (model.conv, model.fc):
        assert (f"{'conv' if layer is model.conv else 'fc'}.layer.weight" in inits) == (layer.weight_bits == 32)
    for node in weights:  # PyTorch's own integers, per output channel
        q, scale = inits[node.input[0]], inits[node.input[1]]
        assert q.dtype == np.int8 and scale.shape == (q.shape[0],)
        layer = model.conv if q.ndim == 4 else model.fc
        step = layer.weight_steps[str(layer.weight_bits)].detach().abs()
        with torch.no_grad():
            expected = layer.quantize(layer.layer.weight, "weight", layer.weight_bits)
        assert np.array_equal(q.astype(np.float32) * scale.reshape(-1, *[1] * (q.ndim - 1)), expected.numpy())
        assert np.allclose(scale, step.numpy())


@pytest.mark.parametrize("conv_bits,fc_bits", MIXES)
def test_onnxruntime_matches_pytorch_within_the_stated_tolerance(tmp_path, conv_bits, fc_bits):
    pytest.importorskip("onnxruntime")
    model = trained_steps(Tiny(conv_bits, fc_bits), (1, 4, 4))
    path = tmp_path / "tiny.onnx"
    path.write_bytes(onnx_bytes(model, (torch.randn(2, 1, 4, 4),), dynamic_batch=True))
    report = check_quantized_onnx(path, model, torch.randn(256, 1, 4, 4, generator=torch.Generator().manual_seed(1)))
    assert report["ok"] and report["outside"] <= QUANT_TIES, report
    assert report["argmax_agreement"] >= 0.99, report
    with torch.no_grad():
        ref = model(torch.randn(8, 1, 4, 4)).numpy()
    assert quant_tolerance(ref) == pytest.approx(1e-4 * ref.std())


def test_onnxruntime_rounds_no_weight_or_bias_that_pytorch_keeps_in_float(tmp_path):
    """ONNX Runtime's WeightBiasQuantization would make the first conv's 32-bit weights int8 and round
    the biases of convs that feed a QuantizeLinear through a ReLU; the export keeps it from doing so."""
    pytest.importorskip("onnxruntime")
    model = trained_steps(nn.Sequential(
        Quantized(nn.Conv2d(1, 8, 3, padding=1), 32, 4), nn.ReLU(),
        Quantized(nn.Conv2d(8, 8, 3, padding=1), 2, 2), nn.ReLU(),
        Quantized(nn.Conv2d(8, 3, 4), 4, 3), nn.Flatten()), (1, 4, 4))
    path = tmp_path / "chain.onnx"
    path.write_bytes(onnx_bytes(model, (torch.randn(2, 1, 4, 4),), dynamic_batch=True))
    report = check_quantized_onnx(path, model, torch.randn(256, 1, 4, 4, generator=torch.Generator().manual_seed(1)))
    assert report["ok"], report


def test_a_searched_subnet_exports_and_matches(tmp_path):
    pytest.importorskip("onnxruntime")
    torch.manual_seed(0)
    m = create("shufflenet-cifar", width_mult=0.5, stage_repeats=[1, 1, 2, 1], channel_search=True, input_size=8,
               num_classes=10, in_channels=1)
    mixed_precision(m, weight_bits=[2, 3, 4, 8, 32], act_bits=[2, 3, 4, 8, 32], share="block")
    space = SearchSpace(m)
    arch = space.sample(random.Random(0))
    space.activate(arch)
    model = fix(trained_steps(m, (1, 8, 8)), arch).eval()
    path = tmp_path / "subnet.onnx"
    path.write_bytes(onnx_bytes(model, (torch.randn(2, 1, 8, 8),), dynamic_batch=True))
    assert count(graph_of(path.read_bytes())) == expected_nodes(model)
    report = check_quantized_onnx(path, model, torch.randn(64, 1, 8, 8, generator=torch.Generator().manual_seed(1)))
    assert report["ok"] and report["argmax_agreement"] >= 0.95, report


@pytest.mark.slow
@pytest.mark.parametrize("name", SPACE_NAMES)
def test_every_space_exports_a_quantized_subnet_that_matches(name, tmp_path):
    pytest.importorskip("onnxruntime")
    torch.manual_seed(0)
    m = tiny_model(name)
    mixed_precision(m, weight_bits=[2, 4, 8, 32], act_bits=[2, 4, 8, 32])
    space = SearchSpace(m)
    arch = space.sample(random.Random(0))
    space.activate(arch)
    size = tiny_input_size(name)
    model = fix(trained_steps(m, (3, size, size)), arch).eval()
    path = tmp_path / f"{name}.onnx"
    path.write_bytes(onnx_bytes(model, (torch.randn(2, 3, size, size),), dynamic_batch=True))
    assert count(graph_of(path.read_bytes())) == expected_nodes(model)
    report = check_quantized_onnx(path, model, torch.randn(16, 3, size, size))
    assert report["ok"], report


def test_a_float_model_exports_exactly_as_before():
    model = dequantized(trained_steps(Tiny((4, 4), (4, 4)), (1, 4, 4)))
    assert not any(isinstance(m, Quantized) for m in model.modules())
    x = torch.randn(2, 1, 4, 4)
    data = onnx_bytes(model, (x,))
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter announces its deprecation
        torch.onnx.export(model, (x,), buf, dynamo=False, opset_version=18, input_names=["input_0"],
                          output_names=["output"])
    assert data == buf.getvalue()
    assert not {"QuantizeLinear", "DequantizeLinear"} & {n.op_type for n in graph_of(data).node}


def test_dequantized_is_a_copy_with_the_float_layers():
    model = trained_steps(Tiny((2, 2), (2, 32)), (1, 4, 4))
    plain = dequantized(model)
    assert isinstance(model.conv, Quantized) and plain.conv is not model.conv.layer
    assert torch.equal(plain.conv.weight, model.conv.layer.weight)
    assert isinstance(dequantized(model.fc), nn.Linear)


def test_refusals_are_one_line():
    model = trained_steps(Tiny((4, 4), (4, 4)), (1, 4, 4))
    x = torch.randn(2, 1, 4, 4)
    with pytest.raises(ConfigError, match=r"opset=12 cannot hold a quantized model: .* need opset 13 or later"):
        onnx_bytes(model, (x,), opset=12)
    with pytest.raises(ConfigError, match="TorchScript exporter only"):
        onnx_bytes(model, (x,), exporter="dynamo")
    cold = Tiny((4, 4), (2, 2)).eval()
    with pytest.raises(ValueError, match=r"layer 'conv' has no learned step size for its weights at 4 bits and "
                                         r"its input at 4 bits: train"):
        onnx_bytes(cold, (x,))


def test_compare_latency_times_both_files():
    pytest.importorskip("onnxruntime")
    model = trained_steps(Tiny((4, 4), (4, 8)), (1, 4, 4))
    result = compare_latency(model, torch.randn(1, 1, 4, 4), threads=1, runs=3, warmup=1)
    assert result["int8_ms"] > 0 and result["float_ms"] > 0
    assert result["ratio"] == pytest.approx(result["int8_ms"] / result["float_ms"])
    assert result["threads"] == 1 and result["batch"] == 1
