"""Benchmarks: ``python -m gifemo.bench {decode,extract,solvers,finetune,label,screening,gpu,all}``.

Each benchmark is a module of this package with a ``main(argv: list[str]) -> int`` that prints
its measurements next to those of the peer named in its issue, measured in the same run, and
writes them as JSON under ``.bench/``.
"""

from __future__ import annotations

import time
from typing import Any

BENCHMARKS: tuple[str, ...] = ("decode", "extract", "solvers", "finetune", "label", "screening")
# runs of the benchmarks above, sized for one machine (not part of "all"): gpu = extract + finetune
COMBINED: tuple[str, ...] = ("gpu",)


def loader_rate(
    loader: Any,
    batches: int = 1,
    min_seconds: float = 5.0,
    main_cpu: dict[str, float] | None = None,
) -> float:
    """Clips/s a DataLoader delivers on its own (no model): the data pipeline's ceiling.

    The first batch is taken untimed (workers started, prefetch under way); then at least
    ``batches`` batches and at least ``min_seconds`` are timed, the loader restarted when it
    runs out. A batch's clips are its ``gif_index`` rows (every collate of the repo has them);
    each batch is made what its consumer gets (:func:`tensors_after_transfer`) and handed
    back (a :class:`~gifemo.data.worker_batches.TransferCollate`'s shared buffers).
    ``main_cpu``: filled with this process's CPU time per batch and per clip (ms) — the main
    process's side of the transfer."""
    from gifemo.data.worker_batches import hand_back, tensors_after_transfer  # torch: lazily

    it = iter(loader)
    next(it)
    clips, start, done, cpu = 0, time.perf_counter(), 0, time.process_time()
    while done < batches or time.perf_counter() - start < min_seconds:
        done += 1
        try:
            batch = next(it)
        except StopIteration:
            it = iter(loader)
            batch = next(it)
        batch = tensors_after_transfer(batch)
        clips += len(batch["gif_index"])
        hand_back(batch)
    rate = clips / (time.perf_counter() - start)
    if main_cpu is not None:
        cpu = 1e3 * (time.process_time() - cpu)
        main_cpu.update(ms_per_batch=cpu / done, ms_per_clip=cpu / max(clips, 1))
    return rate
