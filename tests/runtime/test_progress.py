"""Progress bars: tqdm on a terminal; whole plain lines (no carriage returns, no escape codes) in a log."""
import io

import yaml

from supernet.cli import main
from supernet.runtime import progress
from supernet.runtime.progress import LineProgress, progress_bar

from ..test_pipeline import TINY


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def plain(text: str) -> bool:
    return "\r" not in text and "\x1b" not in text


def test_a_terminal_gets_tqdm_and_a_log_gets_lines():
    assert not isinstance(progress_bar(total=3, file=Terminal()), LineProgress)
    assert isinstance(progress_bar(total=3, file=io.StringIO()), LineProgress)


def test_nested_bars_write_whole_plain_lines():
    log = io.StringIO()
    with progress_bar(total=2, desc="search", unit="generation", file=log) as outer:
        outer.every_s = 0
        for g in range(2):
            for _ in LineProgress(iterable=range(3), desc=f"generation {g}", unit="candidate", file=log, every_s=0):
                pass
            outer.update(1)
            outer.set_postfix(refresh=False, best_top1="0.5000")
    text = log.getvalue()
    assert plain(text) and text.endswith("\n")
    lines = text.splitlines()
    assert all(line.startswith("generation 0: ") for line in lines[:3])
    assert lines[2].startswith("generation 0: 3/3 (100%), ") and " candidate/s, " in lines[2]
    assert lines[-1].startswith("search: 2/2 (100%), ") and lines[-1].endswith("best_top1=0.5000")


def test_a_short_loop_writes_nothing_and_disable_is_respected():
    log = io.StringIO()
    for _ in progress_bar(iterable=range(100), desc="fast", file=log):
        pass
    with progress_bar(total=5, disable=True, file=log) as bar:
        bar.update(5)
    assert log.getvalue() == ""


def test_a_long_loop_says_how_far_it_is_and_its_end():
    log = io.StringIO()
    bar = LineProgress(total=1500, initial=200, desc="supernet (spos)", file=log, every_s=0)
    bar.start_t -= 10  # 100 steps in 10 s
    bar.set_postfix(loss="1.234")
    bar.update(100)
    bar.every_s = 1e9
    bar.update(1200)
    bar.close()
    first, last = log.getvalue().splitlines()
    assert first.startswith("supernet (spos): 300/1500 (20%), 10 it/s, 0:10 elapsed, ~2:00 left, loss=1.234")
    assert last.startswith("supernet (spos): 1500/1500 (100%), ") and "left" not in last


def test_the_cli_writes_plain_progress_into_a_log(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(progress, "LOG_EVERY_S", 0.0)  # a line at every step, as a long run would get
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(TINY))
    run = tmp_path / "run"
    assert main(["train-supernet", "--config", str(config), "--run-dir", str(run), "steps=4", "progress=true"]) == 0
    assert main(["search", "--run-dir", str(run), "generations=1", "population=4", "progress=true"]) == 0
    err = capsys.readouterr().err  # captured: not a terminal, as in a log file
    assert plain(err)
    assert "supernet (spos): 4/4 (100%), " in err and "generation 0: 4/4 (100%), " in err
