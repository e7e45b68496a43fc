"""Progress bars for long loops (training, search, latency tables, data loading)."""
from __future__ import annotations

import sys

from tqdm.auto import tqdm


def progress_bar(**kwargs) -> tqdm:
    """tqdm that redraws often on a terminal, and only every 30 s into a log file."""
    interactive = sys.stderr.isatty()
    return tqdm(mininterval=0.2 if interactive else 30.0, dynamic_ncols=True, **kwargs)
