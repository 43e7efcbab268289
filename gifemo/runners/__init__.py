"""Runners: one module per experiment kind, chosen by ``_target_`` in the model config.

The only code besides the entry points (``train.py``, ``extract.py``) that reads a Hydra config.
See docs/architecture.md.
"""
