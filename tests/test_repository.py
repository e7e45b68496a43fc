"""The repository as a newcomer meets it: a short README with the two set-up commands, a manual that
builds as a site with warnings as errors (a broken link or a stale API name fails), and words that
speak of the project alone (public sources, no private notes, no work-log vocabulary)."""
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[1]
TEXT = [ROOT / "README.md", ROOT / "CHANGELOG.md", *(ROOT / "docs").rglob("*.md"), *(ROOT / "supernet").rglob("*.py"),
        *(ROOT / "supernet" / "configs").glob("*.yaml"), *(ROOT / "benchmarks").rglob("*.py"),
        *(ROOT / "examples").glob("*.py"), *(ROOT / "scripts").glob("*")]


def test_the_readme_is_short_and_gives_the_two_set_up_commands():
    lines = (ROOT / "README.md").read_text().splitlines()
    assert len(lines) <= 250
    assert any(l.startswith("bash scripts/install.sh && .venv/bin/supernet demo") for l in lines)
    assert any(l.startswith("bash scripts/install.sh && .venv/bin/python -m pytest") for l in lines)  # .ci/run runs it


def test_no_private_notes_or_work_log_words():
    banned = re.compile(r"REFERENCE(-family)?(\.md| §)|\bsessions?\b|\bissue \d+|\bhelper session\b", re.IGNORECASE)
    found = [f"{p.relative_to(ROOT)}:{i}: {line.strip()}" for p in TEXT for i, line in
             enumerate(p.read_text(errors="replace").splitlines(), 1) if banned.search(line)]
    assert not found, found


def test_the_manual_builds_with_warnings_as_errors(tmp_path):  # no -q: it hides the warnings --strict counts
    p = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(tmp_path / "site")],
                       cwd=ROOT, capture_output=True, text=True, env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
                       timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    assert (tmp_path / "site" / "api" / "index.html").stat().st_size > 100_000  # the API pages were generated
