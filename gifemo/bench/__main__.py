"""Dispatch ``python -m gifemo.bench NAME [options]`` to ``gifemo.bench.NAME.main``."""

from __future__ import annotations

import importlib
import sys

from gifemo.bench import BENCHMARKS, COMBINED


def main(argv: list[str]) -> int:
    if not argv or argv[0] in {"-h", "--help"}:
        print(f"usage: python -m gifemo.bench {{{','.join(BENCHMARKS + COMBINED)},all}} [options]")
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    names = BENCHMARKS if name == "all" else (name,)
    unknown = [n for n in names if n not in BENCHMARKS + COMBINED]
    if unknown:
        print(
            f"unknown benchmark {unknown[0]!r}; choose from {', '.join(BENCHMARKS + COMBINED)} or all"
        )
        return 2
    status = 0
    for n in names:
        print(f"\n=== bench {n} ===", flush=True)
        module = importlib.import_module(f"gifemo.bench.{n}")
        status |= int(module.main(rest) or 0)
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
