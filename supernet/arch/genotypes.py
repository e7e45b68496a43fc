"""Published DARTS cells as architectures of the ``darts`` space.

A genotype in DARTS' format (``genotypes.py`` of https://github.com/quark0/darts) lists two
``(op, input)`` pairs per node of the normal and the reduction cell; inputs 0 and 1 are the
cell's inputs, k >= 2 the output of node k - 2.
"""
from __future__ import annotations

from .space import Arch, SearchSpace

# DARTS (second order): 2.76 ± 0.09% CIFAR-10 test error with 3.3M parameters
# (Liu et al., ICLR 2019, arXiv:1806.09055).
DARTS_V2 = {
    "normal": [("sep_conv_3x3", 0), ("sep_conv_3x3", 1), ("sep_conv_3x3", 0), ("sep_conv_3x3", 1),
               ("sep_conv_3x3", 1), ("skip_connect", 0), ("skip_connect", 0), ("dil_conv_3x3", 2)],
    "reduce": [("max_pool_3x3", 0), ("max_pool_3x3", 1), ("skip_connect", 2), ("max_pool_3x3", 1),
               ("max_pool_3x3", 0), ("skip_connect", 2), ("skip_connect", 2), ("max_pool_3x3", 1)],
}


def genotype_arch(space: SearchSpace, genotype: dict, nodes: int = 4) -> Arch:
    """A genotype (two (op, input) pairs per node and cell kind) as an architecture of ``space``."""
    arch = {label: 0 for label in space.labels}
    for kind, pairs in genotype.items():
        for i in range(nodes):
            (op_a, a), (op_b, b) = pairs[2 * i], pairs[2 * i + 1]
            node = i + 2
            arch[f"{kind}/input_{node}"] = sorted([a, b])
            for op, j in ((op_a, a), (op_b, b)):
                label = f"{kind}/op_{node}_{j}"
                arch[label] = space.choice(label).values.index(op)
    return space.validate(arch)
