"""Every registered space, looped as timm's test_models.py loops over models."""
import random

import pytest
import torch

from supernet import LayerChoice, SearchSpace, fix
from supernet.nn import Choice, SlicedConv2d, gate_open
from supernet.spaces import create
from supernet.spaces.shufflenet import ShuffleBlock

from ..conftest import SPACE_CASES, tiny_input_size, tiny_model


def _tiny(name, channel_search):
    return tiny_model(name, **({"channel_search": True} if channel_search else {}))


@pytest.mark.parametrize("name, channel_search", SPACE_CASES)
def test_supernet_and_fixed_subnet_agree(name, channel_search):
    model = _tiny(name, channel_search).eval()
    # Non-trivial BN statistics, so that a mismatch of slices would show.
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    space = SearchSpace(model)
    x = torch.randn(3, 3, tiny_input_size(name), tiny_input_size(name))
    rng = random.Random(0)
    for _ in range(8):
        arch = space.sample(rng)
        space.activate(arch)
        expected = model(x)
        fixed = fix(model, arch).eval()
        assert not any(isinstance(m, Choice) for m in fixed.modules())
        assert expected.shape == (3, 5)
        torch.testing.assert_close(fixed(x), expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name, channel_search", SPACE_CASES)
def test_gradients_reach_the_active_path_and_nothing_else(name, channel_search):
    model = _tiny(name, channel_search).train()
    space = SearchSpace(model)
    arch = space.sample(random.Random(1))
    space.activate(arch)
    size = tiny_input_size(name)
    model(torch.randn(4, 3, size, size)).square().mean().backward()
    on_path = set()
    for m in model.modules():
        gate = getattr(m, "gate", None)  # a DARTS edge runs only when its node keeps its input (an ENAS
        if gate is None or gate_open(gate, arch):  # cell's output conv only for a state no node chose)
            if isinstance(m, LayerChoice):
                on_path |= {id(p) for p in m[m.active].parameters()}
            elif gate is not None:
                on_path |= {id(p) for p in m.parameters()}
    in_choices = {id(p) for m in model.modules() if isinstance(m, LayerChoice) or getattr(m, "gate", None) is not None
                  for p in m.parameters()}
    for name_, p in model.named_parameters():
        if id(p) in on_path or id(p) not in in_choices:
            assert p.grad is not None, f"{name_} is on the path but got no gradient"
        else:
            assert p.grad is None, f"{name_} is off the path but got a gradient"
    if channel_search:  # sliced weights: only the active slice moves
        for m in model.modules():
            if isinstance(m, LayerChoice):
                conv = next(c for c in m[m.active].modules() if isinstance(c, SlicedConv2d) and c.out_width)
                c_in, c_out = conv.active_shape()
                assert conv.weight.grad[c_out:].abs().sum() == 0
                assert conv.weight.grad[:c_out].abs().sum() > 0


def _block_table(model):
    rows = []
    for i, lc in enumerate(model.features):
        b = lc[0]  # the k3 candidate
        main_in = b.main[0].in_channels
        mid = b.main[0].out_channels
        main_out = b.main[-3].out_channels
        proj = None if b.split else b.proj[0].in_channels
        rows.append((i, b.main[3].stride[0], main_in, mid, main_out, proj))
    return rows


def test_imagenet_space_matches_the_official_channel_table():
    """The official space (megvii-model/SinglePathOneShot, src/Supernet/blocks.py): per-layer main-branch
    input, mid, output and the projection branch."""
    rows = _block_table(create("shufflenet"))
    expected = ([(0, 2, 16, 32, 48, 16)] + [(i, 1, 32, 32, 32, None) for i in (1, 2, 3)]
                + [(4, 2, 64, 80, 96, 64)] + [(i, 1, 80, 80, 80, None) for i in (5, 6, 7)]
                + [(8, 2, 160, 160, 160, 160)] + [(i, 1, 160, 160, 160, None) for i in range(9, 16)]
                + [(16, 2, 320, 320, 320, 320)] + [(i, 1, 320, 320, 320, None) for i in (17, 18, 19)])
    assert rows == expected


def test_official_details_stem_head_blocks_and_bn():
    model = create("shufflenet")
    stem = model.stem[0]
    assert (stem.in_channels, stem.out_channels, stem.stride, stem.bias) == (3, 16, (2, 2), None)
    assert model.classifier.bias is None and model.classifier.in_features == 1024
    assert model.head[0].in_channels == 640 and model.head[0].out_channels == 1024
    assert any(isinstance(m, torch.nn.Dropout) and m.p == 0.1 for m in model.head)
    assert not any(isinstance(m, torch.nn.MaxPool2d) for m in model.modules())
    bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert bns and not any(m.affine for m in bns)  # supernet: affine=False everywhere
    fixed = fix(model, SearchSpace(model).sample(random.Random(0)))
    assert all(m.affine for m in fixed.modules() if isinstance(m, torch.nn.BatchNorm2d))
    xcep = model.features[5][3].main
    kinds = [type(m).__name__.replace("Depthwise", "") for m in xcep]  # DepthwiseConv2d is a Conv2d
    assert kinds == ["Conv2d", "BatchNorm2d", "Conv2d", "BatchNorm2d", "ReLU"] * 1 + \
        ["Conv2d", "BatchNorm2d", "Conv2d", "BatchNorm2d", "ReLU", "Conv2d", "BatchNorm2d", "Conv2d", "BatchNorm2d", "ReLU"]
    k7 = model.features[5][2].main
    assert [type(m).__name__.replace("Depthwise", "") for m in k7] == ["Conv2d", "BatchNorm2d", "ReLU", "Conv2d", "BatchNorm2d",
                                              "Conv2d", "BatchNorm2d", "ReLU"]
    assert k7[3].kernel_size == (7, 7) and k7[3].groups == k7[3].in_channels


def test_stride1_block_passes_even_channels_through():
    block = ShuffleBlock(8, 8, 1, "k3", 4, affine=False).eval()
    x = torch.randn(2, 8, 5, 5)
    y = block(x)
    assert torch.equal(y[:, :4], x[:, 0::2])


def test_cifar_space_downsamples_at_layers_4_and_8_only():
    model = create("shufflenet-cifar")
    strides = [lc[0].main[3].stride[0] for lc in model.features]
    assert [i for i, s in enumerate(strides) if s == 2] == [4, 8]
    assert model.stem[0].stride == (1, 1)
    space = SearchSpace(model)
    space.activate(space.sample(random.Random(0)))
    assert model.eval()(torch.randn(1, 3, 32, 32)).shape == (1, 10)


def test_channel_search_offers_eight_scales_of_mid():
    model = create("shufflenet", channel_search=True)
    space = SearchSpace(model)
    assert len(space.labels) == 40 and space.size == 32 ** 20
    assert space.choice("channel_0").values == [6, 12, 19, 25, 32, 38, 44, 51]  # int(32 * 0.2..1.6)
    assert space.choice("channel_19").values == [64, 128, 192, 256, 320, 384, 448, 512]
