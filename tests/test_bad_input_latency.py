"""The bad-input table for latency tables and 'supernet latency' (as tests/test_bad_input.py): each
case gets one clear line on stderr, exit 2, no traceback, and leaves the run directory as it was."""

import pytest


from . import bad_scenes as scene
from .test_bad_input import refused_in_one_line, trained  # noqa: F401 (the module fixture)
from .test_lock import hold_lock

pytestmark = pytest.mark.slow  # end-to-end: pytest -m "not slow" leaves them out

FAST = ["--runs", "2", "--warmup", "0", "--retries", "0", "--quiet"]


def _search_with(table):
    """argv: a search of the run with a latency constraint and ``table`` (the table is read first)."""
    return lambda t, r: ["search", "--run-dir", r, "--force", "constraints=[latency<=2ms]", f"latency.table={table(t)}"]


def _info_with(table):
    return lambda t, r: ["info", "shufflenet-cifar", "--latency-table", table(t)]


# (id, command builder(tmp, run) -> argv, the message it must print, whether it runs on the trained run)
CASES = [
    # numbers in a table file
    ("table: NaN entry", _search_with(lambda t: scene.bad_table(t, ms=float("nan"))),
     "bad-latency.json is damaged: groups[0] (labels ['layer_0']) entry [0] is nan ms; a latency must be a finite "
     "number > 0", True),
    ("table: infinite entry", _info_with(lambda t: scene.bad_table(t, ms=float("inf"))),
     "groups[0] (labels ['layer_0']) entry [0] is inf ms", False),
    ("table: negative entry", _search_with(lambda t: scene.bad_table(t, ms=-3.0)),
     "groups[0] (labels ['layer_0']) entry [0] is -3.0 ms; a latency must be a finite number > 0", True),
    ("table: zero entry", _info_with(lambda t: scene.bad_table(t, ms=0)),
     "groups[0] (labels ['layer_0']) entry [0] is 0 ms", False),
    ("table: entry as a string", _info_with(lambda t: scene.bad_table(t, ms="0.5")),
     "groups[0] (labels ['layer_0']) entry [0] is '0.5' ms", False),
    ("table: NaN spread", _info_with(lambda t: scene.bad_table(t, spread=float("nan"))),
     "entry [0] has spread nan; a spread (interquartile range / median) must be a finite number >= 0", False),
    ("table: NaN overhead", _search_with(lambda t: scene.bad_table(t, overhead_ms=float("nan"))),
     "bad-latency.json is damaged: overhead_ms is nan; it must be a finite number", True),
    ("table: -inf overhead", _info_with(lambda t: scene.bad_table(t, overhead_ms=float("-inf"))),
     "overhead_ms is -inf; it must be a finite number", False),
    # the file itself
    ("table: nested 100,000 deep", _search_with(scene.deep_table), "deep-latency.json is nested too deeply to parse",
     True),
    ("table: 2 GB", _info_with(scene.huge_table),
     "huge-latency.json is 2.0 GB, more than the 256.0 MB such a file may be", False),
    ("table: not UTF-8", _info_with(lambda t: scene.write(t / "latin1-latency.json", "{\"format\": \"\xe9\"}"
                                                          .encode("latin-1"))),
     "latin1-latency.json is not UTF-8 text (byte 12)", False),
    ("table: not JSON", _info_with(lambda t: scene.write(t / "text-latency.json", "layer_0: 1 ms")),
     "text-latency.json is not valid JSON", False),
    ("table: a directory", lambda t, r: ["info", "shufflenet-cifar", "--latency-table", r],
     "run is a directory; give a JSON file", False),
    ("search state nested 100,000 deep", scene.deep_state, "state.json is nested too deeply to parse", True),
    ("search state of 2 GB", scene.huge_state, "state.json is 2.0 GB, more than the 1.0 GB such a file may be", True),
    # supernet latency
    ("latency --run-dir with an override", lambda t, r: ["latency", "--run-dir", r, "latency.threads=0", "--out",
                                                         t / "lat.json", *FAST],
     "latency.threads and latency.batch must be >= 1, got 0 and 1", True),
    ("latency --config with an override", lambda t, r: ["latency", "--config", t / "tiny.yaml", "latency.device=tpu",
                                                        "--out", t / "lat.json", *FAST],
     "latency.device 'tpu': use cpu or cuda (cuda:N)", False),
    ("latency: an override without a model", lambda t, r: ["latency", "threads=2", "--out", t / "lat.json"],
     "latency got the override 'threads=2' but no model", False),
    ("latency on enas-micro", lambda t, r: ["latency", "enas-micro-digits", "--out", t / "lat.json", *FAST],
     "latency tables do not support enas-micro-digits: its NoneChosen-gated modules", False),
    ("proxyless with a DARTS table", lambda t, r: scene.darts_table_for_proxyless(t),
     "darts-latency.json has a gated group (('reduce/input_2', 0): DARTS-style cell edges), which the expected "
     "latency of the Proxyless/FBNet loss does not cover", False),
    ("latency --check -3", lambda t, r: ["latency", "--run-dir", r, "--out", t / "lat.json", "--check", "-3", *FAST],
     "latency check (--check) must be 0 (no check) or at least 3 random subnets (to fit the overhead and test it), "
     "got -3", True),
    ("latency --check 2", lambda t, r: ["latency", "--run-dir", r, "--out", t / "lat.json", "--check", "2", *FAST],
     "got 2", True),
    ("latency --table --check -3", lambda t, r: ["latency", "--table", scene.bad_table(t), "--check", "-3"],
     "got -3", False),
    ("latency --max-spread nan", lambda t, r: ["latency", "--run-dir", r, "--out", t / "lat.json", "--max-spread",
                                               "nan", *FAST], "max_spread (--max-spread) must be a finite number > 0", True),
    ("latency --max-spread inf", lambda t, r: ["latency", "--run-dir", r, "--out", t / "lat.json", "--max-spread",
                                               "inf", "--quiet"], "got inf", True),
    ("latency --runs 1", lambda t, r: ["latency", "--run-dir", r, "--out", t / "lat.json", "--runs", "1", "--quiet"],
     "runs (--runs) must be an integer >= 2 (a median and its spread), got 1", True),
    ("latency --batch beyond memory", lambda t, r: ["latency", "--run-dir", r, "--out", t / "lat.json", "--batch",
                                                    "10000000", *FAST],
     "--batch 10000000: the inputs of 4 choices and the activations of a 3x16x16 input would take about", True),
    ("latency --out into a run in use", lambda t, r: hold_lock(r) + ["latency", "--run-dir", r, "--force", "--out",
                                                                     r / "eval.json", *FAST],
     "is in use by supernet pid ", True),
    ("latency --table --out into a run in use", lambda t, r: hold_lock(r) + [
        "latency", "--table", scene.bad_table(t), "--check", "3", "--out", r / "lat.json", "--quiet"],
     "is in use by supernet pid ", True),
    ("latency table with a NaN entry checked again", lambda t, r: ["latency", "--table", scene.bad_table(
        t, ms=float("nan")), "--check", "3", "--quiet"], "entry [0] is nan ms", False),
]


@pytest.mark.parametrize("argv, message, on_run", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_latency_input_gets_one_clear_line_and_changes_nothing(trained, tmp_path, capsys, argv, message, on_run):
    refused_in_one_line(trained, tmp_path, capsys, argv, message)
