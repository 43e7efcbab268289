"""Benchmarks: ``python -m gifemo.bench {decode,extract,solvers,finetune,label,screening,gpu,all}``.

Each benchmark is a module of this package with a ``main(argv: list[str]) -> int`` that prints
its measurements next to those of the peer named in its issue, measured in the same run, and
writes them as JSON under ``.bench/``.
"""

BENCHMARKS: tuple[str, ...] = ("decode", "extract", "solvers", "finetune", "label", "screening")
# runs of the benchmarks above, sized for one machine (not part of "all"): gpu = extract + finetune
COMBINED: tuple[str, ...] = ("gpu",)
