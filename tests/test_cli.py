import json
import subprocess
import sys

import pytest

from supernet.cli import main

B = [2, 1, 0, 1, 2, 0, 2, 0, 2, 0, 2, 3, 0, 0, 0, 0, 3, 2, 3, 3]


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_info_summary_json_has_the_range_and_size(capsys):
    code, out, _ = run(capsys, "info", "shufflenet", "--json")
    info = json.loads(out)
    assert code == 0 and info["size"] == 4 ** 20 and info["labels"] == 20
    assert (info["flops_min"], info["flops_max"]) == (270_359_360, 398_609_216)
    assert {"params_min", "params_max"} <= set(info)


def test_info_text_summary(capsys):
    code, out, _ = run(capsys, "info", "shufflenet-cifar", "channel_search=true", "width_mult=0.5")
    assert code == 0
    assert "layer_0..layer_19: 0..3" in out and "channel_0..channel_19: 0..7" in out and "FLOPs" in out


def test_info_arch_from_string_file_and_nni_legacy_file(capsys, tmp_path):
    code, out, _ = run(capsys, "info", "shufflenet", "--arch", json.dumps(B), "--json")
    assert code == 0 and json.loads(out)["flops"] == 322_918_720 and json.loads(out)["params"] == 3_558_464
    legacy = {f"LayerChoice{i + 1}": [j == b for j in range(4)] for i, b in enumerate(B)}
    path = tmp_path / "architecture_final.json"
    path.write_text(json.dumps(legacy))
    code, out, _ = run(capsys, "info", "shufflenet", "num_classes=1000", "input_size=224", f"--arch={path}", "--json")
    assert code == 0 and json.loads(out)["flops"] == 322_918_720
    code, out, _ = run(capsys, "info", "shufflenet", "--arch", json.dumps(B))
    assert "322,918,720" in out


@pytest.mark.parametrize("argv, message", [
    (["info", "nope"], "unknown space 'nope'; registered spaces: shufflenet, shufflenet-cifar"),
    (["info", "shufflenet", "colour=red"], "unknown key 'colour'; valid keys: input_size"),
    (["info", "shufflenet", "num_classes=ten"], "num_classes must be an integer, got 'ten'"),
    (["info", "shufflenet", "input_size=0"], "input_size must be positive"),
    (["info", "shufflenet", "--arch", '{"layer_0": 9}'], "missing label"),
    (["info", "shufflenet", "--arch", json.dumps([9] + B[1:])], "label 'layer_0' index 9 is out of range; valid: 0..3"),
    (["info", "shufflenet", "channel_search=true", "--arch", json.dumps(B)], "needs 40 values"),
])
def test_info_errors_are_one_line_and_exit_2(capsys, argv, message):
    code, out, err = run(capsys, *argv)
    assert code == 2 and message in err and err.count("\n") == 1 and "Traceback" not in err


def test_nni_file_for_a_different_space_is_refused(capsys, tmp_path):
    legacy = {f"LayerChoice{i + 1}": [j == 0 for j in range(4)] for i in range(12)}
    path = tmp_path / "arch.json"
    path.write_text(json.dumps(legacy))
    code, _, err = run(capsys, "info", "shufflenet", "--arch", str(path))
    assert code == 2 and "has 12 choices" in err and "different space" in err


@pytest.mark.slow
def test_console_entry_point_runs_as_a_module():
    out = subprocess.run([sys.executable, "-m", "supernet", "info", "shufflenet-cifar", "--json"],
                         capture_output=True, text=True, check=True).stdout
    assert json.loads(out)["labels"] == 20


def test_every_subcommand_has_working_help(capsys):
    from supernet.cli import build_parser
    commands = build_parser()._subparsers._group_actions[0].choices
    for name in ["--help"] + [f"{c} --help" for c in commands]:
        assert main(name.split()) == 0, name
        assert "usage: supernet" in capsys.readouterr().out


def flat(text: str) -> str:
    return "".join(text.split())


def help_text(capsys, *argv) -> str:
    """The help without whitespace: argparse wraps lines anywhere, even after a word's hyphen."""
    assert main([*argv, "--help"]) == 0
    return flat(capsys.readouterr().out)


def test_the_help_names_every_registered_strategy_space_and_demo(capsys):
    from supernet.demo import DEMOS
    from supernet.spaces import SPACES
    from supernet.strategies import STRATEGIES
    assert len(STRATEGIES) >= 6 and ",".join(STRATEGIES) in help_text(capsys)
    assert ",".join(STRATEGIES) in help_text(capsys, "train-supernet")
    for command in ("info", "latency"):
        assert ",".join(SPACES) in help_text(capsys, command), command
    assert "{" + ",".join(DEMOS) + "}" in help_text(capsys, "demo")
    assert "model_latency.json" in help_text(capsys, "export")


def test_latency_help_says_where_the_table_goes(capsys):
    text = help_text(capsys, "latency")
    assert flat("required, also with --run-dir") in text and flat("With --table it defaults to that table") in text


@pytest.mark.parametrize("argv, words", [
    (["info"], "info needs a SPACE, one of the registered spaces: "),
    (["latency"], "latency needs a model: SPACE (one of "),
])
def test_a_command_without_its_space_lists_the_registered_ones(capsys, argv, words):
    from supernet.spaces import SPACES
    code, _, err = run(capsys, *argv)
    line = err.strip().splitlines()[-1]  # after any warning about the machine's load
    assert code == 2 and words in line and ", ".join(SPACES) in line and "key=value" not in err


@pytest.mark.slow
def test_the_unknown_strategy_message_in_the_docs_is_the_real_one(capsys, tmp_path):
    """Every example of the message in README.md and docs/ lists what the command lists."""
    import re
    from pathlib import Path
    import subprocess
    import sys
    # A fresh process: other tests register example strategies in this one.
    p = subprocess.run([sys.executable, "-m", "supernet", "train-supernet", "--config", "digits", "--run-dir",
                        str(tmp_path / "run"), "strategy.name=nope"], capture_output=True, text=True)
    code, err = p.returncode, p.stderr
    real = re.search(r"strategy\.name must be one of .*", err)[0]
    root = Path(__file__).resolve().parents[1]
    examples = [(path.name, m[0]) for path in [root / "README.md", *sorted((root / "docs").rglob("*.md"))]
                for m in re.finditer(r"strategy\.name must be one of [^`|\n]*", path.read_text())]
    assert code == 2 and examples
    assert all(text.strip() == real.strip() for _, text in examples), (real, examples)


def test_the_demo_lists_the_files_it_wrote(tmp_path, capsys, monkeypatch):
    from supernet import demo
    pytest.importorskip("onnxruntime")
    best = {"top1": 0.5, "top5": 1.0, "flops": 1e6, "params": 1e4}
    ev = {"top1": 0.9, "top5": 1.0, "n": 3, "flops": 1e6, "params": 1e4, "arch": {"layer_0": 1}}
    latency = {"median_ms": 0.08, "batch": 1}
    monkeypatch.setattr(demo.pipeline, "train_supernet", lambda *a, **k: {"steps": 1, "acc": 0.5, "arch": None})
    monkeypatch.setattr(demo.pipeline, "search", lambda *a, **k: {"best": best, "evaluated": 2, "random_mean_top1": .2})
    monkeypatch.setattr(demo.pipeline, "retrain", lambda *a, **k: {})
    monkeypatch.setattr(demo.pipeline, "evaluate", lambda *a, **k: ev)
    monkeypatch.setattr(demo.pipeline, "export", lambda *a, **k: {"max_abs_diff": 1e-6, "latency": latency})
    demo.run_demo(tmp_path / "demo")
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last == (f"artifacts in {tmp_path / 'demo'}/ (config.yaml, supernet/, search/search.png, retrain/, "
                    f"eval.json, arch.json, model.onnx, model_latency.json)")


def test_the_commands_in_the_packaged_configs_parse():
    """Each config file starts with the commands that run it: they must be commands the CLI has."""
    import re
    import shlex
    from pathlib import Path

    from supernet.cli import build_parser
    from supernet.pipeline.config import PACKAGED_CONFIGS
    parser = build_parser()
    seen = 0
    for config in sorted(Path(PACKAGED_CONFIGS).glob("*.yaml")):
        for line in config.read_text().splitlines():
            m = re.match(r"#\s+(?:torchrun .*?-m )?(supernet .*)", line)
            if not m:
                continue
            for command in re.sub(r"\s{2,}\(.*\)$", "", m[1]).split("&&"):
                args = parser.parse_args(shlex.split(command)[1:])  # exits (SystemExit) on what the CLI lacks
                assert all("=" in o for o in getattr(args, "options", [])), (config.name, command)
                seen += 1
    assert seen > 20


def test_the_quick_start_shows_the_readmes_demo_table():
    """Both pages show the same run: a row the demo prints in one must not be missing in the other."""
    import re
    from pathlib import Path
    root = Path(__file__).resolve().parents[1]
    tables = [re.search(r"```\nstage .*?```", (root / page).read_text(), re.S)[0]
              for page in ("README.md", "docs/quickstart.md")]
    assert tables[0] == tables[1] and "ONNX Runtime" in tables[0]
