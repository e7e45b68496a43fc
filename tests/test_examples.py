import runpy
from pathlib import Path

import pytest


def test_custom_space_example_runs_and_learns():
    example = runpy.run_path(str(Path(__file__).parents[1] / "examples" / "custom_space.py"))
    best = example["main"](steps=150)
    assert best["top1"] > 0.4  # 4 classes: chance is 0.25


@pytest.mark.parametrize("method", ["spos", "darts", "enas", "proxyless"])
def test_the_nni_style_examples_run_and_export_an_architecture_of_their_space(method, capsys):
    from supernet import SearchSpace
    example = runpy.run_path(str(Path(__file__).parents[1] / "examples" / f"nni_{method}.py"))
    arch = example["main"](epochs=1)
    assert SearchSpace(example["Net"]()).validate(arch) == arch
    assert f"Final architecture: {arch}" in capsys.readouterr().out
