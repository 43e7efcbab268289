"""train.py (gifemo.runners) end to end on the tiny generated dataset with a tiny C3D; tracking; sweeps.

Every run here uses ``data.synthetic_size=tiny`` and ``backbone=c3d_tiny`` (a few seconds to
generate and extract once per session) and ``trainer.fast_dev_run=true`` (the closed-form
models' smoke switch: the first grid point, 2 CV folds) unless a test needs more.
"""

from __future__ import annotations

import dataclasses
import json
import math
import runpy
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import OmegaConf

from gifemo.emotions import EMOTIONS
from gifemo.runners import tracking
from gifemo.runners.train import objective, train

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"
EXPERIMENTS = sorted(
    p.relative_to(CONF / "experiment").with_suffix("").as_posix()
    for p in (CONF / "experiment").rglob("*.yaml")
)
# Fast suite: table2/cmtl (the default method); the rest (the 7-job table2 multirun, the
# other methods, fine-tuning, k=auto) take more than a few seconds each: slow suite.
SLOW_EXPERIMENTS = set(EXPERIMENTS) - {"table2/cmtl"}


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One data dir per test session, shared with tests/test_configs.py (generated once)."""
    path = tmp_path_factory.getbasetemp() / "gifemo-e2-data"
    path.mkdir(exist_ok=True)
    return path


def small(data_dir: Path) -> list[str]:
    return [
        f"paths.data_dir={data_dir}",
        "data.synthetic_size=tiny",
        "backbone=c3d_tiny",
        "extract.num_workers=0",
        "extract.progress=false",
        "trainer.fast_dev_run=true",
    ]


def compose_cfg(overrides: list[str], out_dir: Path) -> Any:
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose("train", overrides=[*overrides, f"paths.output_dir={out_dir}"])


def run_hydra_main(argv: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """`python train.py ARGV` in this process (the real @hydra.main entry, callbacks included)."""
    monkeypatch.setattr(sys, "argv", ["train.py", *argv])
    try:
        runpy.run_path(str(ROOT / "train.py"), run_name="__main__")
    finally:
        GlobalHydra.instance().clear()


@pytest.fixture(scope="module")
def trained(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("cmtl-run")
    cfg = compose_cfg([*small(data_dir), "model=cmtl", "logger=csv"], out)
    metrics, objects = train(cfg)
    return {"cfg": cfg, "metrics": metrics, "objects": objects, "out": out}


def test_metrics_json_has_the_required_keys_and_consistent_means(trained: dict[str, Any]) -> None:
    saved = json.loads((trained["out"] / "metrics.json").read_text())
    for key in ("cv/score", "test/auc_mean", "test/n_tilde_mean", "test/positive_rate_mean"):
        assert key in saved
    aucs = np.array([saved[f"test/auc/{e}"] for e in EMOTIONS], dtype=float)
    n_tilde = np.array([saved[f"test/n_tilde/{e}"] for e in EMOTIONS], dtype=float)
    assert np.isfinite(aucs).sum() >= 10  # the tiny data leaves a few emotions without positives
    assert math.isclose(saved["test/auc_mean"], np.nanmean(aucs), rel_tol=1e-12)
    assert math.isclose(saved["test/n_tilde_emotion_mean"], np.nanmean(n_tilde), rel_tol=1e-12)
    par = np.array([saved[f"test/precision_at_recall/{e}"] for e in EMOTIONS], dtype=float)
    assert math.isclose(saved["test/n_tilde_mean"], 3000 / np.nanmean(par), rel_tol=1e-12)
    report = trained["objects"]["report"]
    np.testing.assert_array_equal(aucs, report.auc)
    # what was written is what train() returned, and what the sweep objective reads
    assert saved["cv/score"] == trained["metrics"]["cv/score"]
    assert objective(saved, "cv/score") == saved["cv/score"]
    run = json.loads((trained["out"] / "run.json").read_text())
    assert (run["model"], run["features"]) == ("cmtl", "visual+tag")
    assert set(run["params"]) == {"rho1", "rho2", "k"}


def test_csv_logger_gets_metrics_config_and_tables(trained: dict[str, Any]) -> None:
    import csv

    csv_dir = trained["out"] / "csv"
    rows = list(csv.DictReader((csv_dir / "metrics.csv").open()))
    assert float(rows[-1]["cv/score"]) == pytest.approx(trained["metrics"]["cv/score"])
    hparams = OmegaConf.load(csv_dir / "hparams.yaml")
    assert hparams.model.name == "cmtl"
    per_emotion = list(csv.DictReader((csv_dir / "test_per_emotion.csv").open()))
    assert [r["emotion"] for r in per_emotion] == list(EMOTIONS)
    assert sorted(p.name for p in (trained["out"] / "figures").glob("*.png")) == [
        "fig10_overlap.png", "fig6_silhouette.png", "fig7_pr_mean.png",
        "fig7_pr_per_emotion.png", "fig8_correlation.png", "fig9_timing.png"]  # fmt: skip


def test_saved_model_reloads_and_scores_new_gifs_identically(
    trained: dict[str, Any], data_dir: Path, tmp_path: Path
) -> None:
    from hydra.utils import instantiate

    from gifemo.features.datamodule import feature_blocks
    from gifemo.models.saved import load_model, score_dataset
    from gifemo.runners.extract import extract

    objects = trained["objects"]
    model = load_model(trained["out"] / "model")
    # new GIFs: a few of the generated unlabelled candidates in a folder of their own,
    # extracted with the same backbone
    from gifemo.data.synthetic import generate

    synthetic = generate(data_dir / "synthetic", seed=0, size="tiny", parts=("candidates",))
    pool = sorted((synthetic / "candidates" / "gifs").glob("*.gif"))
    new = tmp_path / "new_gifs"
    new.mkdir()
    for gif in pool[:5]:
        shutil.copy(gif, new / gif.name)
    cfg = compose_cfg([*small(data_dir), "data=folder", f"data.root={new}"], tmp_path)
    candidates = instantiate(cfg.data)
    assert len(candidates) == 5
    store = extract(cfg)
    keep, scores = score_dataset(model, candidates, store)
    assert len(keep) == len(candidates) and scores.shape == (len(keep), len(EMOTIONS))
    data = objects["data"]
    rows = [store.row_of(candidates.records[i].id) for i in keep]
    tags = [candidates.records[i].tags for i in keep]
    raw, _ = feature_blocks(data.features, np.asarray(store.visual[rows]), tags, data.dictionary)
    in_memory = objects["estimator"].predict(data.normaliser.transform(raw))
    np.testing.assert_array_equal(scores, in_memory)
    assert np.ptp(scores) > 0  # a real ranking, not constant
    # and the training rows score as they did during the run
    np.testing.assert_array_equal(
        model.estimator.predict(data.X), np.asarray(objects["scores"], dtype=np.float64)
    )


@pytest.mark.slow  # extracts the tiny candidate pool
def test_predict_app_extracts_new_gifs_like_the_training_features(
    trained: dict[str, Any], data_dir: Path, tmp_path: Path
) -> None:
    """`python -m gifemo predict` without --store: the extraction config is composed with Hydra's
    compose API and carries the model's backbone; the ranked scores are the model's scores."""
    import csv

    from gifemo.apps.predict import extraction_config, main
    from gifemo.data.metadata import read_dataset
    from gifemo.data.synthetic import generate
    from gifemo.features.store import FeatureStore
    from gifemo.models.saved import load_model, score_dataset, store_identity

    root = generate(data_dir / "synthetic", seed=0, size="tiny", parts=("candidates",))
    root = root / "candidates"
    model = load_model(trained["out"] / "model")
    cfg = extraction_config(model, root, tmp_path / "store")
    assert OmegaConf.to_container(cfg.backbone) == trained["cfg"].backbone
    assert cfg.data.root == str(root) and cfg.extract.out_dir == str(tmp_path / "store")
    argv = ["--model", str(model.path), "--data", str(root), "--out", str(tmp_path), "--top", "2"]
    assert main(argv) == 0
    store = FeatureStore.open(tmp_path / "features")
    assert store_identity(store) == model.meta["store"]  # same backbone, weights, preprocessing
    keep, scores = score_dataset(model, read_dataset(root), store)
    ranked = list(csv.DictReader(open(tmp_path / "ranked.csv")))
    assert len(ranked) == 2 * len(EMOTIONS)
    ids = [read_dataset(root).records[i].id for i in keep]
    for row in ranked:
        j = EMOTIONS.index(row["emotion"])
        assert float(row["score"]) == pytest.approx(scores[ids.index(row["id"]), j], rel=1e-12)
    with pytest.raises(ValueError, match="no backbone section"):
        extraction_config(
            dataclasses.replace(model, meta={**model.meta, "config": None}), root, tmp_path
        )


def test_logger_none_and_the_unsorted_baseline(data_dir: Path, tmp_path: Path) -> None:
    cfg = compose_cfg(
        [*small(data_dir), "model=unsorted", "logger=none", "figures=false", "save_model=false"],
        tmp_path,
    )
    assert cfg.logger is None
    metrics, objects = train(cfg)
    assert objects["logger"] is None
    assert not (tmp_path / "wandb").exists() and not (tmp_path / "csv").exists()
    # constant scores tie every GIF: precision = the positives' rate exactly, AUC = rate, Ñ = N_p/rate
    defined = [e for e in EMOTIONS if metrics[f"test/positive_rate/{e}"] > 0]
    assert len(defined) >= 10
    for e in defined:
        rate = metrics[f"test/positive_rate/{e}"]
        assert metrics[f"test/auc/{e}"] == pytest.approx(rate, abs=1e-12)
        assert metrics[f"test/n_tilde/{e}"] == pytest.approx(3000 / rate)


SECRET = "0123456789abcdef0123456789abcdef01234567"  # looks like a W&B API key


def test_scrub_redacts_keys_values_and_env_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MY_SERVICE_TOKEN", "hunter2-long-value")
    cfg = {
        "logger": {"api_key": "abc", "project": "gifemo"},
        "nested": [{"password": "pw"}, "sk-" + "x" * 30, SECRET],
        "cmd": "curl -H 'auth: hunter2-long-value'",
        "tokenizer": "bpe",
        "author": "me",
        "hf_token": None,
    }
    out = tracking.scrub(cfg)
    assert out["logger"] == {"api_key": tracking.REDACTED, "project": "gifemo"}
    assert out["nested"] == [{"password": tracking.REDACTED}, tracking.REDACTED, tracking.REDACTED]
    assert "hunter2" not in out["cmd"] and tracking.REDACTED in out["cmd"]
    assert out["tokenizer"] == "bpe" and out["author"] == "me" and out["hf_token"] is None


def test_wandb_offline_run_never_sees_a_secret(
    data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WANDB_API_KEY", SECRET)
    monkeypatch.setattr(sys, "argv", ["train.py", f"+logger.api_token={SECRET}", "model=cmtl"])
    cfg = compose_cfg(
        [f"paths.data_dir={data_dir}", f"+credentials.password=pw-{SECRET}",
         "+key_from_env=${oc.env:WANDB_API_KEY}"],
        tmp_path,
    )  # fmt: skip
    logger = tracking.build_logger(cfg, name="secret-check")
    tracking.log_summary(logger, {"cv/score": 0.5, "note": f"token {SECRET}"})
    tracking.finish(logger)
    runs = list((tmp_path / "wandb").glob("offline-run-*"))
    assert len(runs) == 1
    blobs = [p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()]
    assert any(b"key_from_env" in b for b in blobs)  # the config did reach W&B ...
    wandb_file = b""
    for _ in range(50):  # W&B's core process may still be flushing the run file
        wandb_file = next(runs[0].glob("*.wandb")).read_bytes()
        if b"model=cmtl" in wandb_file:
            break
        time.sleep(0.2)
    assert b"+logger.api_token=<redacted>" in wandb_file, wandb_file[:600]  # ... the command line
    assert not any(SECRET.encode() in b for b in blobs)  # ... but never the secret
    for var in ("WANDB_DIR", "WANDB_CACHE_DIR", "WANDB_CONFIG_DIR", "WANDB_DATA_DIR"):
        assert Path(tracking.os.environ[var]).resolve().is_relative_to(tmp_path.resolve())


def test_secret_on_the_command_line_stays_out_of_the_output_dir(
    data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_hydra_main(
        [*small(data_dir), "model=unsorted", "logger=csv", "figures=false", "save_model=false",
         f"+service.api_key={SECRET}", f"hydra.run.dir={tmp_path}"],
        monkeypatch,
    )  # fmt: skip
    assert "+service.api_key=<redacted>" in (tmp_path / ".hydra" / "overrides.yaml").read_text()
    assert (tmp_path / "metrics.json").exists() and (tmp_path / "csv" / "hparams.yaml").exists()
    leaks = [p for p in tmp_path.rglob("*") if p.is_file() and SECRET.encode() in p.read_bytes()]
    assert not leaks


def test_secret_stays_out_of_override_dirname_and_multirun_yaml(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # no API-key look: only its key says it is a secret. "+aaa=1" sorts before it, so Hydra's
    # override_dirname ("+aaa=1,+service.api_key=…,…") does not start with it; in a multirun
    # Hydra also writes the sweep's multirun.yaml. The job fails at once (no data.root).
    secret = "hunter2-long-value-xyz"
    sweep = tmp_path / "sweep"
    with pytest.raises(SystemExit):
        run_hydra_main(
            ["-m", "data=gifgif", f"data.root={tmp_path / 'missing'}", "logger=none", "+aaa=1",
             f"+service.api_key={secret}", f"hydra.sweep.dir={sweep}"],
            monkeypatch,
        )  # fmt: skip
    assert (sweep / "multirun.yaml").is_file() and (sweep / "0" / ".hydra" / "hydra.yaml").is_file()
    leaks = [p for p in sweep.rglob("*") if p.is_file() and secret.encode() in p.read_bytes()]
    assert not leaks
    assert "+service.api_key=<redacted>" in (sweep / "multirun.yaml").read_text()


@pytest.mark.slow  # three W&B runs: ~10-20 s on 2 cores
def test_multirun_of_three_jobs_makes_three_wandb_runs_and_a_summary(
    data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    sweep = tmp_path / "sweep"
    run_hydra_main(
        ["-m", *small(data_dir), "model=unsorted,lasso,cmtl", "figures=false", "save_model=false",
         f"hydra.sweep.dir={sweep}"],
        monkeypatch,
    )  # fmt: skip
    runs = sorted(sweep.glob("*/wandb/offline-run-*"))
    assert [r.parents[1].name for r in runs] == ["0", "1", "2"]
    for r in runs:  # grouped by the sweep directory's name
        assert sweep.name.encode() in next(r.glob("*.wandb")).read_bytes()
    summary = json.loads((sweep / "summary.json").read_text())
    assert [row["model"] for row in summary["table"]] == ["unsorted", "lasso", "cmtl"]
    for row in summary["table"]:
        job = json.loads((Path(row["job_dir"]) / "metrics.json").read_text())
        assert row["auc"] == job["test/auc_mean"] and row["cv_score"] == job["cv/score"]
    assert "Clustered multi-task regression" in capsys.readouterr().out


@pytest.mark.parametrize(
    "experiment",
    [
        pytest.param(e, marks=[pytest.mark.slow] if e in SLOW_EXPERIMENTS else [])
        for e in EXPERIMENTS
    ],
)
def test_every_experiment_runs_one_fast_step(
    experiment: str, data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An experiment on real data (finetune_gifgif_plus: data=gifgif_plus, which needs data.root)
    runs on the generated part of its kind instead (data=synthetic data.kind=KIND)."""
    args = [*small(data_dir), f"experiment={experiment}", "logger=none", "figures=false"]
    data = compose_cfg(args, tmp_path / "composed").data
    if not data.generate and data.root is None:
        args += ["data=synthetic", f"data.kind={data.kind}"]
    args += [f"hydra.run.dir={tmp_path / 'run'}", f"hydra.sweep.dir={tmp_path / 'sweep'}"]
    run_hydra_main(args, monkeypatch)
    written = sorted(tmp_path.rglob("metrics.json"))
    n_jobs = 7 if experiment == "table2" else 1
    assert len(written) == n_jobs, written
    if experiment == "table2":
        text = (tmp_path / "sweep" / "summary.md").read_text()
        for label in ("Unsorted", "Visual features only", "Tag features only", "Gaussian process"):
            assert label in text


@pytest.mark.slow
def test_optuna_search_runs_and_summarises(
    data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sweep = tmp_path / "optuna"
    run_hydra_main(
        ["-m", "hparams_search=cmtl_optuna", *small(data_dir), "hydra.sweeper.n_trials=3",
         "logger=none", "figures=false", "save_model=false", f"hydra.sweep.dir={sweep}"],
        monkeypatch,
    )  # fmt: skip
    jobs = sorted(sweep.glob("*/metrics.json"))
    assert len(jobs) == 3
    scores = [json.loads(p.read_text())["cv/score"] for p in jobs]
    best = json.loads((sweep / "summary.json").read_text())["table"][0]
    assert best["cv_score"] == max(scores)
    assert (sweep / "optimization_results.yaml").exists()  # the Optuna sweeper's own report
