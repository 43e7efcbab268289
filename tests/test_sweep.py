"""The multirun summary (gifemo.runners.sweep, ``python -m gifemo sweep``): best configuration
per method by CV score, Table 2."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from gifemo.apps.sweep import main
from gifemo.runners.sweep import best_per_method, collect, format_table, summarize, table_rows


def _job(
    root: Path,
    num: int,
    model: str,
    features: str,
    cv: float,
    auc: float,
    nt: float,
    overrides: list[str] | None = None,
) -> Path:
    d = root / str(num)
    d.mkdir(parents=True)
    metrics = {
        "cv/score": cv,
        "test/auc_mean": auc,
        "test/n_tilde_mean": nt,
        "test/positive_rate_mean": 0.25,
    }
    (d / "metrics.json").write_text(json.dumps(metrics))
    run = {
        "model": model,
        "features": features,
        "overrides": overrides or [f"model={model}"],
        "params": {"rho": cv},
    }
    (d / "run.json").write_text(json.dumps(run))
    return d


def test_best_configuration_is_chosen_by_cv_score_not_by_test(tmp_path: Path) -> None:
    # lasso job 1 has the better CV score but the worse test AUC: CV must win.
    _job(tmp_path, 0, "lasso", "visual+tag", cv=0.40, auc=0.60, nt=5000)
    _job(tmp_path, 1, "lasso", "visual+tag", cv=0.45, auc=0.50, nt=6000)
    _job(tmp_path, 2, "cmtl", "visual+tag", cv=0.50, auc=0.55, nt=4000)
    _job(tmp_path, 3, "lasso", "tag", cv=float("nan"), auc=0.70, nt=3000)
    _job(tmp_path, 4, "lasso", "tag", cv=0.30, auc=0.40, nt=8000)
    _job(tmp_path, 5, "unsorted", "visual+tag", cv=0.20, auc=0.25, nt=12000)
    results = collect(tmp_path)
    assert len(results) == 6
    best = best_per_method(results, "cv/score")
    assert best["lasso", "visual+tag"].job_dir.name == "1"
    assert best["cmtl", "visual+tag"].job_dir.name == "2"
    assert best["lasso", "tag"].job_dir.name == "4"  # NaN CV never beats a number
    assert best["unsorted", "-"].job_dir.name == "5"
    rows = table_rows(best, "cv/score")
    # Table 2's order: unsorted, tag-only, then visual+tag lasso before cmtl
    assert [(r["model"], r["features"]) for r in rows] == [
        ("unsorted", "-"),
        ("lasso", "tag"),
        ("lasso", "visual+tag"),
        ("cmtl", "visual+tag"),
    ]
    assert rows[2]["auc"] == 0.50 and rows[2]["n_tilde"] == 6000


def test_summarize_writes_and_prints_table(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    _job(tmp_path, 0, "unsorted", "visual+tag", cv=0.2, auc=0.25, nt=11996)
    _job(tmp_path, 1, "lasso", "visual", cv=0.3, auc=0.336, nt=7196)
    _job(
        tmp_path,
        2,
        "cmtl",
        "visual+tag",
        cv=0.5,
        auc=0.555,
        nt=4033,
        overrides=["model=cmtl", "model.rho=3"],
    )
    summary = summarize(tmp_path)
    out = capsys.readouterr().out
    text = (tmp_path / "summary.md").read_text()
    assert text.strip() in out
    lines = text.splitlines()
    cmtl = next(line for line in lines if line.strip().startswith("Clustered"))
    assert "0.555" in cmtl and "4,033" in cmtl and "model.rho=3" in cmtl
    assert lines.index(
        next(x for x in lines if x.startswith("Visual features only"))
    ) < lines.index(next(x for x in lines if x.startswith("Visual + tag features")))
    data = json.loads((tmp_path / "summary.json").read_text())
    assert len(data["jobs"]) == 3 and len(data["table"]) == 3
    assert summary["table"][0]["label"] == "Unsorted"


def test_format_table_marks_missing_values() -> None:
    row = {
        "model": "gp",
        "features": "visual+tag",
        "label": "GP",
        "auc": math.nan,
        "n_tilde": math.nan,
        "cv_score": math.nan,
        "overrides": [],
        "params": {},
    }
    line = format_table([row]).splitlines()[-1]
    assert line.split()[1:4] == ["-", "-", "-"]


def test_bad_metrics_file_names_the_file(tmp_path: Path) -> None:
    (tmp_path / "0").mkdir()
    (tmp_path / "0" / "metrics.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"0/metrics.json"):
        collect(tmp_path)


def test_cli_on_empty_dir(tmp_path: Path) -> None:
    assert main([str(tmp_path)]) == 0
    assert not (tmp_path / "summary.md").exists()


def _curve(job: Path, label: str, level: float) -> None:
    grid = [i / 100 for i in range(101)]
    curve = {"label": label, "recall_grid": grid, "mean_curve": [level] * 101,
             "auc_mean": level, "n_tilde_mean": 3000 / level, "recall": 0.06}  # fmt: skip
    (job / "pr_curve.json").write_text(json.dumps(curve))


def test_summary_draws_fig7_of_all_methods_and_sweeps_side_by_side(
    tmp_path: Path, capsys, monkeypatch
) -> None:
    import numpy as np
    from PIL import Image

    from gifemo.eval import figures as F

    drawn = {}
    real = F.pr_curves_figure

    def spy(curves, path):
        drawn.update(curves)
        return real(curves, path)

    a, b = tmp_path / "s0", tmp_path / "s1"
    for root, shift in ((a, 0.0), (b, 0.02)):
        _curve(_job(root, 0, "unsorted", "visual+tag", math.nan, 0.25 + shift, 12000), "U", 0.25)
        _curve(
            _job(root, 1, "cmtl", "visual+tag", 0.5, 0.55 + shift, 4000 - 1000 * shift * 50),
            "C",
            0.5 + shift,
        )
    monkeypatch.setattr(F, "pr_curves_figure", spy)
    s = summarize(b, echo=False)
    with Image.open(s["fig7"]) as im:
        assert im.format == "PNG"
    assert list(drawn) == ["Unsorted", "Clustered multi-task regression (visual+tag)"]
    np.testing.assert_allclose(
        drawn["Clustered multi-task regression (visual+tag)"].mean_curve, 0.52
    )
    assert main([str(a), str(b)]) == 0
    out = capsys.readouterr().out
    cmtl = next(line for line in out.splitlines() if "Clustered" in line)
    assert "0.560 ± 0.014" in cmtl and "3,500 ± 707" in cmtl and "0.550/4,000, 0.570/3,000" in cmtl
    assert "-" in cmtl.split("707")[1].split("0.550")[0]  # no lasso (visual+tag): no paired Δ
    unsorted = next(line for line in out.splitlines() if line.startswith("Unsorted"))
    assert "0.260 ± 0.014" in unsorted
    # the paired difference to a reference method present in both sweeps (cmtl − unsorted)
    from gifemo.runners.sweep import across_sweeps

    table = across_sweeps([a, b], reference=("unsorted", "-"))
    cmtl = next(line for line in table.splitlines() if "Clustered" in line)
    assert "+0.300 ± 0.000" in cmtl
    with pytest.raises(SystemExit):
        main([str(a), str(tmp_path / "empty")])


def test_cli_refuses_a_metric_no_job_has(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """--metric with a key no job's metrics.json has (a typo: cv/scroe) is an error naming the
    key and the keys there are, not a table of each method's first job 'chosen' by it."""
    _job(tmp_path, 0, "lasso", "visual+tag", cv=0.40, auc=0.60, nt=5000)
    _job(tmp_path, 1, "lasso", "visual+tag", cv=0.45, auc=0.50, nt=6000)
    for argv in ([str(tmp_path)], [str(tmp_path), str(tmp_path)]):
        with pytest.raises(SystemExit) as ei:
            main([*argv, "--metric", "cv/scroe"])
        err = capsys.readouterr().err
        assert ei.value.code == 2 and "'cv/scroe'" in err and "cv/score" in err
    assert not (tmp_path / "summary.md").exists()
    assert main([str(tmp_path), "--metric", "cv/score"]) == 0
    assert json.loads((tmp_path / "summary.json").read_text())["table"][0]["cv_score"] == 0.45
