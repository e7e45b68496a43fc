"""ResNet-18: the published size and MACs, channel search that fixes to plain layers, bit widths per
block, and the packaged mixed-precision config's BitOps budget."""
import random

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from supernet import SearchSpace, fix
from supernet.cost import CostModel, count_macs
from supernet.cost.flops import macs_by_layer
from supernet.nn import ChannelChoice, Choice, Quantized, SlicedBatchNorm2d, SlicedConv2d
from supernet.pipeline.config import PACKAGED_CONFIGS, load_config
from supernet.quant import mixed_precision, with_bits
from supernet.runtime.typed import ConfigError
from supernet.spaces import create

RESNET18_PARAMS = 11_689_512   # torchvision's resnet18, and the paper's 11.7M
RESNET18_MACS = 1_814_073_344  # at 224x224: the commonly cited 1.8G


def _random_bn_statistics(model):
    """Non-trivial BN statistics, so that a mismatch of slices would show."""
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)


def _bitops(fixed, x):
    """BitOps of a fixed network, counted here: MACs x weight bits x activation bits, 32 x 32 in float."""
    macs = macs_by_layer(fixed, x)
    bits = {m.layer: (m.weight_bits, m.act_bits) for m in fixed.modules() if isinstance(m, Quantized)}
    return sum(n * bits.get(layer, (32, 32))[0] * bits.get(layer, (32, 32))[1] for layer, n in macs.items())


def test_resnet18_has_the_published_parameter_count_and_macs():
    model = create("resnet18").eval()
    assert sum(p.numel() for p in model.parameters()) == RESNET18_PARAMS
    x = torch.zeros(1, 3, 224, 224)
    with FlopCounterMode(display=False) as counter:  # 2 FLOPs per multiply-accumulate
        model(x)
    assert counter.get_total_flops() == 2 * RESNET18_MACS
    assert count_macs(model, x) == RESNET18_MACS
    assert len(SearchSpace(model)) == 0  # no channel search: a plain network
    assert CostModel(model).cost({}) == (RESNET18_MACS, RESNET18_PARAMS)


@pytest.mark.parametrize("name, kernel, stride, max_pool", [("resnet18", 7, 2, True), ("resnet18-cifar", 3, 1, False)])
def test_stems_and_the_resnet18_block_layout(name, kernel, stride, max_pool):
    model = create(name, input_size=32).eval()
    conv = model.stem[0]
    assert (conv.kernel_size, conv.stride) == ((kernel, kernel), (stride, stride))
    assert any(isinstance(m, nn.MaxPool2d) for m in model.stem) == max_pool
    blocks = list(model.features)
    assert [b.conv1.stride[0] for b in blocks] == [1, 1, 2, 1, 2, 1, 2, 1]
    assert [b.shortcut is not None for b in blocks] == [False, False, True, False, True, False, True, False]
    assert [b.conv2.out_channels for b in blocks] == [64, 64, 128, 128, 256, 256, 512, 512]
    x = torch.randn(2, 3, 32, 32)
    assert model(x).shape == (2, 10 if name == "resnet18-cifar" else 1000)
    torch.testing.assert_close(nn.Sequential(*model.segments())(x), model(x))  # what the evaluator runs


def test_channel_search_fixes_to_plain_layers_of_the_chosen_width():
    model = create("resnet-digits", channel_search=True).eval()
    _random_bn_statistics(model)
    space = SearchSpace(model)
    assert space.labels == ["channel_0", "channel_1", "channel_2", "channel_3"] and space.size == 3 ** 4
    assert space.choice("channel_3").values == [64, 96, 128]  # 0.5 / 0.75 / 1.0 x 128
    cost = CostModel(model)
    x = torch.randn(4, 3, 8, 8)
    rng = random.Random(0)
    archs = [{label: 0 for label in space.labels}, {label: 2 for label in space.labels}]
    for arch in archs + [space.sample(rng) for _ in range(4)]:
        space.activate(arch)
        expected = model(x)
        fixed = fix(model, arch).eval()
        assert not any(isinstance(m, (Choice, SlicedConv2d, SlicedBatchNorm2d)) for m in fixed.modules())
        widths = [space.choice(f"channel_{i}").values[arch[f"channel_{i}"]] for i in range(4)]
        assert [b.conv1.out_channels for b in fixed.features] == widths
        assert [b.bn1.num_features for b in fixed.features] == widths
        assert [b.conv2.in_channels for b in fixed.features] == widths
        torch.testing.assert_close(fixed(x), expected)
        assert cost.cost(arch) == (count_macs(fixed, x[:1]), sum(p.numel() for p in fixed.parameters()))


def test_block_shared_bit_widths_give_each_block_one_decision():
    model = mixed_precision(create("resnet-digits", channel_search=True), [2, 3, 4], [2, 3, 4], share="block")
    space = SearchSpace(model)
    assert space.labels == [label for i in range(4) for label in
                            (f"channel_{i}", f"features.{i}.weight_bits", f"features.{i}.act_bits")]
    block = model.features[1]  # conv1, conv2 and the projection shortcut read one decision
    assert block.conv1.weight_bits is block.conv2.weight_bits is block.shortcut.weight_bits
    assert not isinstance(model.stem[0], Quantized) and not isinstance(model.classifier, Quantized)  # kept in float
    cost = CostModel(model)
    x = torch.zeros(1, 3, 8, 8)
    rng = random.Random(0)
    for _ in range(4):
        arch = space.sample(rng)
        assert cost.bitops(arch) == _bitops(fix(model, arch).eval(), x)


def test_plain_resnet18_becomes_a_bit_width_space():
    model = mixed_precision(create("resnet18-cifar"), [2, 3, 4], [2, 3, 4])
    space = SearchSpace(model)
    assert len(space) == 2 * 19  # 16 block convs and 3 shortcuts; the stem conv and the classifier stay in float
    cost = CostModel(model)
    arch = space.sample(random.Random(0))
    assert cost.bitops(arch) == _bitops(fix(model, arch).eval(), torch.zeros(1, 3, 32, 32))
    assert cost.range()["bitops_min"] == cost.bitops(with_bits(space, arch, 2))


def test_the_packaged_config_budget_is_uniform_3_bit_resnet18():
    """The config's comment gives the BitOps of uniform 2/3/4-bit ResNet-18 at full width, and its
    constraint is the 3-bit one."""
    path = PACKAGED_CONFIGS / "mixed-precision-resnet18-cifar10.yaml"
    cfg = load_config(path)
    assert (cfg.space.name, cfg.space.options, cfg.space.quant.weight_bits) == \
        ("resnet18-cifar", {"channel_search": True}, [2, 3, 4])
    model = cfg.space.quant.apply(create("resnet18-cifar", channel_search=True))
    space = SearchSpace(model)
    widest = {label: space.n_options(label) - 1 for label in space.labels}
    x = torch.zeros(1, 3, 32, 32)
    uniform = [_bitops(fix(model, with_bits(space, widest, b)).eval(), x) for b in (2, 3, 4)]
    plain = cfg.space.quant.apply(create("resnet18-cifar"))  # the widest network, without width choices
    plain_space = SearchSpace(plain)
    cost = CostModel(plain)
    assert [cost.bitops(with_bits(plain_space, {}, b)) for b in (2, 3, 4)] == uniform
    assert uniform == [4_031_774_720, 6_800_015_360, 10_675_552_256]
    text = path.read_text()
    assert all(f"{n:,}" in text for n in uniform)
    assert cfg.search.constraints == [f"bitops<={uniform[1]}"]


def test_zero_init_residual_starts_each_block_as_its_shortcut():
    model = create("resnet-digits", zero_init_residual=True).eval()
    x = torch.rand(2, 16, 8, 8)  # non-negative, as after the stem's ReLU
    assert torch.equal(model.features[0](x), x)
    assert all(b.bn2.weight.eq(1).all() for b in create("resnet-digits").features)  # off by default


@pytest.mark.parametrize("options, words", [
    (dict(stem="resnet"), "stem"),
    (dict(depths=[2, 2]), "depths and widths need one entry per stage"),
    (dict(channel_ratios=[1.0, 0.5]), "channel_ratios must be positive and increasing"),
    (dict(channel_search=True, widths=[2, 2, 2, 2]), "repeated inner widths"),
    (dict(width_mult=0), "width_mult must be positive"),
])
def test_bad_options_are_refused_in_one_line(options, words):
    with pytest.raises(ConfigError) as e:
        create("resnet18-cifar", **options)
    assert words in str(e.value) and "\n" not in str(e.value)


def test_channel_choices_are_declared_in_their_blocks():
    """Each block reads only its own decision (the evaluator's segments rely on it)."""
    model = create("resnet-digits", channel_search=True)
    for i, block in enumerate(model.features):
        assert [m.label for m in block.modules() if isinstance(m, ChannelChoice)] == [f"channel_{i}"]


def test_the_config_space_builds_on_the_meta_device():
    """The pipeline sizes a run on a meta-device build before allocating anything."""
    from supernet.pipeline.sizes import meta_model
    space = load_config(PACKAGED_CONFIGS / "mixed-precision-resnet18-cifar10.yaml").space
    model = meta_model(space, space.options)
    assert model is not None and all(p.is_meta for p in model.parameters())
    assert SearchSpace(model).labels == SearchSpace(space.quant.apply(create(space.name, **space.options))).labels
