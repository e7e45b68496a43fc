import runpy
from pathlib import Path


def test_custom_space_example_runs_and_learns():
    example = runpy.run_path(str(Path(__file__).parents[1] / "examples" / "custom_space.py"))
    best = example["main"](steps=150)
    assert best["top1"] > 0.4  # 4 classes: chance is 0.25
