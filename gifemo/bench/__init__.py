"""Benchmarks: ``python -m gifemo.bench {decode,extract,solvers,finetune,label,all}``.

Each benchmark is a module of this package with a ``main(argv: list[str]) -> int`` that prints
its measurements next to those of the peer named in its issue, measured in the same run, and
writes them as JSON under ``.bench/``.
"""

BENCHMARKS: tuple[str, ...] = ("decode", "extract", "solvers", "finetune", "label", "screening")
