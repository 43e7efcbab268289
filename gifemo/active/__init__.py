"""Active re-ranking while people label, and the screening simulator (issue 15).

* :mod:`gifemo.active.reranker` — the :class:`Reranker` protocol the labelling tool's ``active``
  queue calls, :class:`ActiveReranker` (warm-started refit on GIFGIF + consensus labels, then
  re-score), :class:`StaticReranker` (the paper: the order never changes);
* :mod:`gifemo.active.load` — :func:`load_reranker` from a trained run directory;
* :mod:`gifemo.active.simdata` — generated screening data (feature space);
* :mod:`gifemo.active.simulate` — the simulator (unsorted / static / active strategies).

docs/active.md explains the choices and the measured results.
"""

from gifemo.active.load import load_reranker
from gifemo.active.reranker import (
    ActiveReranker,
    Reranker,
    StaticReranker,
    class_mean_targets,
    order_by_scores,
)

__all__ = [
    "ActiveReranker",
    "Reranker",
    "StaticReranker",
    "class_mean_targets",
    "load_reranker",
    "order_by_scores",
]
