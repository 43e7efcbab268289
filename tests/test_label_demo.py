"""The offline end-to-end demo: collect → extract → rank → label (scripted labellers through a real
server, the queue re-ranked by gifemo.active) → assemble → ``train.py model=svm`` on the assembled GIFGIF+ folder."""

from __future__ import annotations

import json
import sqlite3

import pytest

from gifemo.apps.label.demo import demo
from gifemo.data.metadata import read_dataset


@pytest.mark.slow
def test_demo_from_collection_to_training_on_the_assembled_dataset(tmp_path):
    out = tmp_path / "demo"
    dataset = demo(out, size="tiny", error=0.05, n_p=3, strategy="active")
    ds = read_dataset(dataset, kind="gifgif_plus")
    assert len(ds) > 0 and ds.binary_labels().any(0).sum() >= 10  # most emotions have positives
    truth = {json.loads(x)["id"]: set(json.loads(x)["emotions"])
             for x in (out / "data" / "synthetic" / "candidates" / "truth.jsonl").read_text().splitlines()}  # fmt: skip
    rows = [json.loads(x) for x in (dataset / "metadata.jsonl").read_text().splitlines()]
    # with 5 % errors per answer, consensus labels are mostly the hidden ones
    hits = sum(set(r["emotions"]) <= truth[r["giphy_ids"][0].removesuffix("Dup")] for r in rows)
    assert hits >= 0.7 * len(rows)
    assert "Powered by GIPHY" in (dataset / "README.md").read_text()
    # gifemo.active re-ranked the queues while the scripted labellers worked
    db = sqlite3.connect(out / "project" / "label.sqlite")
    versions = dict(
        db.execute("SELECT ranking_version, count(*) FROM events WHERE kind='label' GROUP BY 1")
    )
    db.close()
    assert max(versions) >= 1 and versions[0] < sum(versions.values())
    metrics = json.loads((out / "svm" / "metrics.json").read_text())
    assert 0.0 <= metrics["test/ap_mean"] <= 1.0
