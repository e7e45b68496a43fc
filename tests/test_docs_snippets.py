"""Every Python snippet in the README and the docs runs as written: a page's snippets, in order,
are one script (a later one may use an earlier one's names), run in a fresh process in an empty
folder."""
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # end-to-end: pytest -m "not slow" leaves them out

ROOT = Path(__file__).parents[1]
PAGES = sorted(p for p in [ROOT / "README.md", *ROOT.joinpath("docs").rglob("*.md")]
               if "```python" in p.read_text())


def snippets(page: Path) -> str:
    return "\n".join(re.findall(r"^```python\n(.*?)^```", page.read_text(), flags=re.S | re.M))


def test_the_pages_with_snippets_are_found():
    assert ROOT / "README.md" in PAGES and len(PAGES) >= 4


@pytest.mark.parametrize("page", PAGES, ids=[str(p.relative_to(ROOT)) for p in PAGES])
def test_snippets_run_as_written(page, tmp_path):
    script = tmp_path / "snippets.py"
    script.write_text(snippets(page))
    p = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=600,
                       env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"})
    assert p.returncode == 0, f"{page.name}:\n{p.stderr[-3000:]}"
