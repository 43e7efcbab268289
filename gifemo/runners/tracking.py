"""Experiment tracking: one Lightning logger per run, W&B offline by default, secrets scrubbed.

The ``logger`` config group chooses the tracker (``conf/logger/``):

- ``wandb`` (default): :class:`lightning.pytorch.loggers.WandbLogger` in **offline** mode. No
  account and no network are needed; ``wandb sync <output_dir>/wandb/offline-run-*`` uploads a
  run later. ``WANDB_DIR``, ``WANDB_CACHE_DIR``, ``WANDB_CONFIG_DIR`` and ``WANDB_DATA_DIR`` are
  pointed inside the run's output directory, so nothing is written under ``~/.cache`` or
  ``~/.config``. In a Hydra multirun every job is one W&B run and the runs are grouped by the
  sweep directory's name.
- ``csv``: :class:`lightning.pytorch.loggers.CSVLogger` (``metrics.csv`` + ``hparams.yaml``).
- ``none``: no logger (``build_logger`` returns ``None`` and every helper here is a no-op).

Secrets never reach a tracker: :func:`scrub` replaces the value of any key that looks like a
credential (``api_key``, ``token``, ``secret``, ``password``, …), any string that looks like an
API key (a bare 40-hex W&B key, ``sk-…``, ``ghp_…``, ``hf_…``, ``xox?-…``, ``AKIA…``) and any
occurrence of the value of a credential-looking environment variable (``WANDB_API_KEY``,
``HF_TOKEN``, …) by ``"<redacted>"``. The config logged by :func:`build_logger` and W&B's record
of the command line both go through it.
"""

from __future__ import annotations

import contextlib
import csv
import logging
import math
import os
import re
import sys
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

log = logging.getLogger(__name__)

REDACTED = "<redacted>"

# A key whose name says it holds a credential. "token"/"auth" only as whole words of a
# snake/kebab-case name, so that e.g. "tokenizer" or "author" stay visible.
SECRET_KEY = re.compile(
    r"(api[_-]?key|apikey|secret|passw(or)?d|credential|private[_-]?key|access[_-]?key"
    r"|(^|[_-])(token|auth)s?($|[_-]))",
    re.IGNORECASE,
)
# Strings that look like an API key wherever they appear.
_SECRET_SUBSTRINGS = re.compile(
    r"(sk-[A-Za-z0-9_\-]{20,}|gh[pousr]_[A-Za-z0-9]{20,}|github_pat_[A-Za-z0-9_]{20,}"
    r"|hf_[A-Za-z0-9]{20,}|xox[abprs]-[A-Za-z0-9\-]{10,}|AKIA[0-9A-Z]{16}"
    r"|local-[0-9a-f]{40})"
)
# A value that is exactly a W&B API key (40 lower-case hex digits).
_WANDB_KEY = re.compile(r"[0-9a-f]{40}")
_MIN_ENV_SECRET_LEN = 6


def secret_env_values(environ: Mapping[str, str] | None = None) -> list[str]:
    """Values of environment variables whose names look like credentials (longest first)."""
    env = os.environ if environ is None else environ
    values = {v for k, v in env.items() if SECRET_KEY.search(k) and len(v) >= _MIN_ENV_SECRET_LEN}
    return sorted(values, key=len, reverse=True)


def scrub_text(text: str, secrets: Sequence[str] = ()) -> str:
    """``text`` with every known secret value and every API-key-looking substring redacted."""
    for s in secrets:
        text = text.replace(s, REDACTED)
    if _WANDB_KEY.fullmatch(text):
        return REDACTED
    return _SECRET_SUBSTRINGS.sub(REDACTED, text)


def scrub(obj: Any, *, secrets: Sequence[str] | None = None) -> Any:
    """A copy of a nested dict/list/scalar structure with credentials redacted (see module doc).

    ``secrets`` defaults to :func:`secret_env_values` of the current environment.
    """
    known = secret_env_values() if secrets is None else list(secrets)

    def walk(x: Any) -> Any:
        if isinstance(x, Mapping):
            return {
                k: (REDACTED if SECRET_KEY.search(str(k)) and v not in (None, "") else walk(v))
                for k, v in x.items()
            }
        if isinstance(x, list | tuple):
            return type(x)(walk(v) for v in x)
        if isinstance(x, str):
            return scrub_text(x, known)
        return x

    return walk(obj)


def scrub_config(cfg: DictConfig | Mapping[str, Any]) -> dict[str, Any]:
    """The resolved config as a plain dict with secrets scrubbed.

    Interpolations that cannot be resolved here (e.g. ``${hydra:...}`` outside a Hydra run) are
    kept as their ``${...}`` text rather than failing.
    """
    if isinstance(cfg, DictConfig):
        try:
            container = OmegaConf.to_container(cfg, resolve=True, throw_on_missing=False)
        except Exception:  # an interpolation that only resolves inside a Hydra run
            container = OmegaConf.to_container(cfg, resolve=False)
    else:
        container = dict(cfg)
    assert isinstance(container, dict)
    return scrub(container)


@contextlib.contextmanager
def scrubbed_argv() -> Iterator[None]:
    """Temporarily redact secrets in ``sys.argv`` (W&B records the command line at init)."""
    original = list(sys.argv)
    known = secret_env_values()
    sys.argv[:] = [scrub_text(a, known) for a in scrub_overrides(original)]
    try:
        yield
    finally:
        sys.argv[:] = original


def _is_wandb(logger: Any) -> bool:
    return type(logger).__name__ == "WandbLogger"


def _multirun_dir() -> Path | None:
    """The sweep directory when running inside a Hydra multirun, else ``None``."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not HydraConfig.initialized():
        return None
    hc = HydraConfig.get()
    if hc.mode != RunMode.MULTIRUN:
        return None
    return Path(str(hc.sweep.dir))


def sweep_group() -> str | None:
    """The sweep directory's name when running inside a Hydra multirun, else ``None``."""
    d = _multirun_dir()
    return None if d is None else d.name


def point_wandb_dirs(output_dir: str | Path) -> dict[str, str]:
    """Set WANDB_DIR / _CACHE_DIR / _CONFIG_DIR / _DATA_DIR inside the output directory.

    In a multirun they point inside the sweep directory (shared by its jobs: W&B reads them
    once per process), otherwise inside ``output_dir``; each run's own files still go to
    ``output_dir/wandb/`` (the logger's ``save_dir``). Returns the variables set.
    """
    base = (_multirun_dir() or Path(output_dir)).resolve()
    dirs = {
        "WANDB_DIR": base,
        "WANDB_CACHE_DIR": base / "wandb" / ".cache",
        "WANDB_CONFIG_DIR": base / "wandb" / ".config",
        "WANDB_DATA_DIR": base / "wandb" / ".data",
    }
    for var, path in dirs.items():
        path.mkdir(parents=True, exist_ok=True)
        os.environ[var] = str(path)
    return {k: str(v) for k, v in dirs.items()}


def build_logger(cfg: DictConfig, *, name: str) -> Any | None:
    """Instantiate ``cfg.logger`` (a Lightning logger config with ``_target_``) for one run.

    ``name`` is the run's name (used unless ``cfg.logger.name`` is set). For W&B the offline
    run is started here, with its directories inside ``cfg.logger.save_dir`` (default
    ``paths.output_dir``), its group set to the sweep directory's name in a multirun (unless
    ``cfg.logger.group`` is set), and the resolved, scrubbed config logged as its config. For
    the CSV logger the scrubbed config is written to ``hparams.yaml``. Returns ``None`` when
    ``cfg.logger`` is null or has no ``_target_`` (``logger=none``).
    """
    import hydra.utils

    lcfg = cfg.get("logger")
    if lcfg is None or "_target_" not in lcfg:
        return None
    target = str(lcfg._target_)
    overrides: dict[str, Any] = {}
    if lcfg.get("name") is None:
        overrides["name"] = name
    if target.endswith("WandbLogger"):
        save_dir = lcfg.get("save_dir") or cfg.paths.output_dir
        overrides["save_dir"] = str(save_dir)
        point_wandb_dirs(save_dir)
        if lcfg.get("offline", False):
            os.environ["WANDB_MODE"] = "offline"
        if lcfg.get("group") is None and (group := sweep_group()) is not None:
            overrides["group"] = group
    logger = hydra.utils.instantiate(lcfg, **overrides)
    config = scrub_config(cfg)
    if _is_wandb(logger):
        with scrubbed_argv():
            run = logger.experiment  # starts the (offline) run now, with a clean sys.argv
        run.config.update(config, allow_val_change=True)
    else:
        logger.log_hyperparams(config)
    return logger


def _numeric(metrics: Mapping[str, Any]) -> dict[str, float]:
    out = {}
    for k, v in metrics.items():
        if isinstance(v, bool) or not (isinstance(v, int | float) or getattr(v, "size", 0) == 1):
            continue
        f = float(v)
        if math.isfinite(f):
            out[k] = f
    return out


def log_summary(logger: Any | None, metrics: Mapping[str, Any]) -> None:
    """Log final metrics: W&B run summary (+ one history step), CSV ``metrics.csv`` row."""
    if logger is None:
        return
    numeric = _numeric(metrics)
    if _is_wandb(logger):
        logger.experiment.summary.update(scrub(dict(metrics)))
    logger.log_metrics(numeric)
    logger.save()


def log_figure(logger: Any | None, key: str, png_path: str | Path) -> None:
    """Log a PNG figure under ``key`` (W&B image). Other loggers: nothing to do, the PNG is
    already in the run's output directory."""
    if logger is None or not _is_wandb(logger):
        return
    import wandb

    logger.experiment.log({key: wandb.Image(str(png_path))})


def log_table(
    logger: Any | None, key: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]
) -> None:
    """Log a table: a W&B Table, or ``<log_dir>/<key>.csv`` for the CSV logger."""
    if logger is None:
        return
    if _is_wandb(logger):
        import wandb

        logger.experiment.log(
            {key: wandb.Table(columns=list(columns), data=[list(r) for r in rows])}
        )
        return
    log_dir = getattr(logger, "log_dir", None)
    if log_dir is None:
        return
    path = Path(log_dir) / f"{key.replace('/', '_')}.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(columns)
        writer.writerows(rows)


def finish(logger: Any | None, *, exit_code: int = 0) -> None:
    """Close the run (W&B: finish the offline run so the next sweep job starts a new one)."""
    if logger is None:
        return
    if _is_wandb(logger):
        logger.experiment.finish(exit_code=exit_code)
    else:
        logger.save()
        logger.finalize("success" if exit_code == 0 else "failed")


def finish_any_wandb_run() -> None:
    """Finish a W&B run left open by someone else's code (keeps one run per sweep job)."""
    if "wandb" not in sys.modules:
        return
    import wandb

    if wandb.run is not None:
        log.info("finishing W&B run %s left open", wandb.run.id)
        wandb.finish()


class ScrubHydraOutputs(Callback):
    """Hydra callback: scrub secrets from the job's ``.hydra/{config,overrides,hydra}.yaml``.

    Hydra saves the composed config and the command-line overrides before the job starts; a
    secret typed on the command line (``logger.api_key=...``) would stay there in clear text.
    ``on_job_start`` (called right after Hydra saved them) rewrites them through :func:`scrub`.

    In a multirun the sweep's ``multirun.yaml`` (written by Hydra before the first job) holds
    the same overrides and is scrubbed too. Besides the ``key=value`` strings themselves, every
    occurrence of such a value is redacted (Hydra's ``override_dirname`` joins all overrides
    into one string).
    """

    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        subdir = OmegaConf.select(config, "hydra.output_subdir")
        out = OmegaConf.select(config, "hydra.runtime.output_dir")
        if not subdir or not out:
            return
        paths = [
            Path(str(out)) / str(subdir) / n
            for n in ("config.yaml", "overrides.yaml", "hydra.yaml")
        ]
        sweep_dir = OmegaConf.select(config, "hydra.sweep.dir")
        if str(OmegaConf.select(config, "hydra.mode")).endswith("MULTIRUN") and sweep_dir:
            paths.append(Path(str(sweep_dir)) / "multirun.yaml")
        task = OmegaConf.select(config, "hydra.overrides.task") or []
        typed = [v for v in override_secrets(task) if len(v) >= _MIN_ENV_SECRET_LEN]
        known = sorted({*secret_env_values(), *typed}, key=len, reverse=True)
        for path in paths:
            if not path.is_file():
                continue
            data = OmegaConf.to_container(OmegaConf.load(path), resolve=False)
            clean = scrub(scrub_overrides(data), secrets=known)
            if clean != data:
                tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
                tmp.write_text(OmegaConf.to_yaml(OmegaConf.create(clean)))
                os.replace(tmp, path)


def override_secrets(overrides: Sequence[str]) -> list[str]:
    """The values of ``key=value`` overrides whose key names a credential."""
    out = []
    for o in overrides:
        key, sep, value = str(o).partition("=")
        if sep and value and SECRET_KEY.search(key.split(".")[-1]):
            out.append(value)
    return out


def scrub_overrides(obj: Any) -> Any:
    """Redact ``key=value`` override strings whose key names a credential, also inside a
    comma-joined list of overrides (Hydra's ``override_dirname``)."""
    if isinstance(obj, list):
        return [scrub_overrides(x) for x in obj]
    if isinstance(obj, dict):
        return {k: scrub_overrides(v) for k, v in obj.items()}
    if isinstance(obj, str):
        if "," in obj:
            return ",".join(scrub_overrides(part) for part in obj.split(","))
        key, sep, value = obj.partition("=")
        if sep and value and SECRET_KEY.search(key.split(".")[-1]):
            return f"{key}={REDACTED}"
    return obj
