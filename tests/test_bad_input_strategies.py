"""The bad-input table's strategy rows: settings that name code (``strategy.reward``,
``strategy.name`` as module:attribute) that is not what they take get one clear line on stderr,
exit 2, no traceback, and leave an existing run directory exactly as it was."""

import pytest

from .test_bad_input import refused_in_one_line, trained  # noqa: F401  (trained: the module's fixture)

ENAS = ["strategy.name=enas"]

# (id, command builder(tmp, run) -> argv, the message it must print, whether it runs on the trained run)
CASES = [
    ("reward os:system", lambda t, r: ["train-supernet", "--config", t / "tiny.yaml", "--run-dir", t / "new", *ENAS,
                                       "strategy.reward=os:system"],
     "strategy.reward 'os:system' is the built-in system, not a Python function", False),
    ("reward builtins:exec", lambda t, r: ["train-supernet", "--config", t / "tiny.yaml", "--run-dir", t / "new",
                                           *ENAS, "strategy.reward=builtins:exec"],
     "strategy.reward 'builtins:exec' is the built-in exec, not a Python function", False),
    ("reward builtins:max", lambda t, r: ["train-supernet", "--config", t / "tiny.yaml", "--run-dir", r, "--force",
                                          *ENAS, "strategy.reward=builtins:max"],
     "strategy.reward 'builtins:max' is the built-in max, not a Python function", True),
    ("strategy os:system", lambda t, r: ["train-supernet", "--config", t / "tiny.yaml", "--run-dir", r, "--force",
                                         "strategy.name=os:system"],
     "strategy.name 'os:system' is not a supernet.strategies.Strategy subclass", True),
]


@pytest.mark.parametrize("argv, message, on_run", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_gets_one_clear_line_and_changes_nothing(trained, tmp_path, capsys, argv, message,  # noqa: F811
                                                           on_run):
    refused_in_one_line(trained, tmp_path, capsys, argv, message)
    assert not (tmp_path / "new").exists()
