"""Thread count and OpenMP wait policy, on a quiet machine and beside busy processes.

    python benchmarks/threads.py [--json FILE] [--busy 2] [--runs 3]

Each command runs in a fresh process (OpenMP reads its wait policy only at start), every setting
interleaved with the others, first on the machine as it is, then beside ``--busy`` processes that
spin on a core each. Prints one JSON line per (load, command, setting) with the median wall time.
Run it on an otherwise idle machine.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

import torch

SETTINGS = {"2 threads (default)": {"OMP_NUM_THREADS": "2"},
            "1 thread": {"OMP_NUM_THREADS": "1"},
            "2 threads, OMP_WAIT_POLICY=PASSIVE": {"OMP_NUM_THREADS": "2", "OMP_WAIT_POLICY": "PASSIVE"}}


def commands(run_dir: str) -> dict:
    cli = [sys.executable, "-m", "supernet"]
    return {"supernet info shufflenet": cli + ["info", "shufflenet"],
            "train-supernet digits, 60 steps": cli + ["train-supernet", "--config", "digits", "--run-dir", run_dir,
                                                      "supernet.steps=60", "supernet.progress=false", "--force"]}


def wall(cmd: list[str], env: dict) -> float:
    t = time.perf_counter()
    subprocess.run(cmd, env={**os.environ, **env}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    return time.perf_counter() - t


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--json", help="also write the rows here")
    p.add_argument("--busy", type=int, default=2, help="spinning processes for the loaded rows")
    p.add_argument("--runs", type=int, default=3)
    args = p.parse_args()
    out = {"machine": platform.processor() or platform.machine(), "cores": os.cpu_count(), "torch": torch.__version__,
           "rows": []}
    run_dir = os.path.join(tempfile.mkdtemp(), "run")
    for busy in (0, args.busy):
        spinners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(busy)]
        time.sleep(3 if busy else 0)  # the spinners are running before the first timing
        try:
            for name, cmd in commands(run_dir).items():
                times = {k: [] for k in SETTINGS}
                for _ in range(args.runs):
                    for k, env in SETTINGS.items():
                        times[k].append(wall(cmd, env))
                for k, v in times.items():
                    row = {"busy": busy, "command": name, "setting": k, "median_s": statistics.median(v), "runs": v}
                    out["rows"].append(row)
                    print(json.dumps(row), flush=True)
        finally:
            for s in spinners:
                s.kill()
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
