"""The app home: ``python -m gifemo`` lists the apps, ``python -m gifemo <app>`` runs one."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import gifemo.apps
from gifemo.__main__ import available_apps, main

ROOT = Path(__file__).resolve().parents[1]


def test_every_module_under_apps_is_listed_with_its_summary() -> None:
    apps = available_apps()
    on_disk = {
        p.stem if p.is_file() else p.name
        for p in Path(gifemo.apps.__path__[0]).iterdir()
        if not p.name.startswith("_")
        and ((p.is_file() and p.suffix == ".py") or (p / "__init__.py").is_file())
    }
    assert set(apps) == on_disk
    assert {"predict", "sweep", "stats"} <= set(apps)
    assert apps["sweep"].startswith("Summarise a finished sweep")


def test_python_m_gifemo_alone_lists_the_apps() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "gifemo"], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert "usage: python -m gifemo <app>" in out.stdout
    for name in ("predict", "stats", "sweep"):
        assert f"\n  {name} " in out.stdout


def test_dispatch_runs_the_apps_main(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["sweep", "--help"])
    assert exc.value.code == 0
    assert "python -m gifemo sweep" in capsys.readouterr().out
    # a sweep directory with one job: the app runs with the rest of the arguments
    job = tmp_path / "0"
    job.mkdir()
    metrics = {"cv/score": 0.5, "test/auc_mean": 0.3, "test/n_tilde_mean": 9000.0}
    (job / "metrics.json").write_text(json.dumps(metrics))
    (job / "run.json").write_text(json.dumps({"model": "lasso", "features": "visual"}))
    assert main(["sweep", str(tmp_path), "--metric", "cv/score"]) == 0
    assert "Lasso regression" in (tmp_path / "summary.md").read_text()


def test_unknown_app_names_the_choices(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["no-such-app"]) == 2
    err = capsys.readouterr().err
    assert "no-such-app" in err and "predict" in err
