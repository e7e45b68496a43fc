"""supernet's benchmarks: what users wait for, measured in one process with A and B interleaved.

They live outside the package (nothing here ships in the wheel) and run from the repository root:

    python -m benchmarks --quick                 # every part, fewer rounds (under 10 minutes on 2 cores)
    python -m benchmarks --only darts --json F   # one part; every figure also as JSON

    spos       the SPOS step against the fixed subnet, the candidate evaluator against a naive loop,
               cost queries and memory
    family     DARTS and ENAS steps against hand-written and fixed references
    hardware   ProxylessNAS and FBNet steps against the fixed subnet of the same path
    common     statistics, the machine, the shared step helpers, peak-memory accounting

Times are medians over rounds with a 95% confidence interval of the median, min-max and n.
Compare ratios, not absolute times, across machines: CPU speed on shared machines drifts by tens
of percent. Results of past runs are in ``docs/results/``.
"""
