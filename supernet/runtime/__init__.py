"""The ground floor: what every other part of supernet uses and nothing here imports upward.

    dist       torch.distributed under torchrun (rank, world, gradient averaging)
    device     device selection, bf16 autocast on CUDA, channels_last
    io         atomic file writes (a reader sees the old file or the new one)
    typed      settings dataclasses filled from YAML and ``key=value`` overrides, checked
    seeding    seeds as functions of a few ints
    progress   progress bars
    threads    torch's CPU thread count, and a warning when the machine is busy
    units      counts, latencies and sizes in words
"""
