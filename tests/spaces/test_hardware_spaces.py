"""The ProxylessNAS and FBNet spaces: their published structure, and exact FLOPs/params against an
independent counter for random architectures."""
import random

import pytest
import torch
from torch import nn

from supernet import SearchSpace
from supernet.cost import CostModel
from supernet.spaces import create
from supernet.spaces.fbnet import ChannelShuffle

from ..test_cost import independent_count


def test_proxyless_space_has_21_blocks_and_zero_only_where_an_identity_shortcut_exists():
    model = create("proxyless")
    space = SearchSpace(model)
    assert len(space.labels) == 21
    ops = ["3x3_MBConv3", "3x3_MBConv6", "5x5_MBConv3", "5x5_MBConv6", "7x7_MBConv3", "7x7_MBConv6"]
    firsts = {0, 4, 8, 12, 16, 20}  # each stage's first block changes the width (or the stride)
    for i, label in enumerate(space.labels):
        assert space.choice(label).values == ops + ([] if i in firsts else ["zero"]), label
        assert model.blocks[i].shortcut == (i not in firsts)
    widths = [model.blocks[i].op[0][-1].num_features for i in range(21)]
    assert widths == [24] * 4 + [40] * 4 + [80] * 4 + [96] * 4 + [192] * 4 + [320]
    strides = [model.blocks[i].op[0][3].stride[0] for i in range(21)]
    assert [i for i, s in enumerate(strides) if s == 2] == [0, 4, 8, 16]
    k7e6 = model.blocks[1].op[5]
    assert k7e6[0].out_channels == 24 * 6 and k7e6[3].kernel_size == (7, 7) and k7e6[3].groups == 144
    first = model.first_conv[0]
    assert (first.out_channels, first.stride) == (32, (2, 2)) and model.first_block[-1].num_features == 16
    assert len(model.first_block) == 5  # MBConv1: no expansion conv
    assert model.feature_mix[0].out_channels == 1280 and model.classifier.out_features == 1000


def test_fbnet_space_has_22_layers_of_9_candidates():
    model = create("fbnet")
    space = SearchSpace(model)
    assert len(space.labels) == 22
    assert all(space.choice(l).values == ["ir_k3_e1", "ir_k3_s2", "ir_k3_e3", "ir_k3_e6", "ir_k5_e1", "ir_k5_s2",
                                          "ir_k5_e3", "ir_k5_e6", "skip"] for l in space.labels)
    outs = [model.layers[i][0].project[0].out_channels for i in range(22)]
    assert outs == [16] + [24] * 4 + [32] * 4 + [64] * 4 + [112] * 4 + [184] * 4 + [352]
    strides = [model.layers[i][0].depthwise[0].stride[0] for i in range(22)]
    assert [i for i, s in enumerate(strides) if s == 2] == [1, 5, 9, 17]
    s2 = model.layers[3][1]
    assert s2.expand[0].groups == s2.project[0].groups == 2 and isinstance(s2.shuffle, ChannelShuffle)
    assert isinstance(model.layers[3][8], nn.Identity) and isinstance(model.layers[1][8][0], nn.Conv2d)
    assert model.stem[0].out_channels == 16 and model.head[0].out_channels == 1504


def test_channel_shuffle_interleaves_the_two_groups():
    x = torch.arange(6.0).view(1, 6, 1, 1)
    assert ChannelShuffle(2)(x).flatten().tolist() == [0, 3, 1, 4, 2, 5]


@pytest.mark.parametrize("name, repeats", [("proxyless-small", (1, 2, 1, 1, 2, 1)), ("fbnet-small", (1, 2, 1, 1, 1, 2, 1))])
def test_cost_table_matches_the_flop_counter_for_random_architectures(name, repeats):
    """Every stage, grouped convs, shuffles and the zero op; fewer repeats for CI time."""
    model = create(name, input_size=16, width_mult=0.25, stage_repeats=repeats)
    cost = CostModel(model)
    rng = random.Random(0)
    for _ in range(6):
        arch = cost.space.sample(rng)
        assert cost.cost(arch) == independent_count(model, arch, (3, 16, 16)), arch
