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
