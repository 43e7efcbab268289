"""Feature extraction: clip-mean + L2 against a naive loop, failures, kill -9 + resume, reuse."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir

from gifemo.backbones.c3d import C3DTransform, build_c3d
from gifemo.data.clips import AllClips
from gifemo.data.gif import read_gif
from gifemo.features.execution import resolve_precision
from gifemo.features.extract import KILL_ENV, extract_features
from gifemo.features.store import COMPLETE, PARTIAL, FeatureStore, StoreError
from gifemo.runners.extract import extract
from tests.gifmaker import moving_frames, pillow_gif

REPO = Path(__file__).resolve().parents[1]
TINY = {"channels": (4, 8, 8, 16, 16), "fc_dim": 32}
FRAMES = (1, 7, 16, 20, 33, 9, 12)  # 1, 1, 1, 2, 4, 1, 1 clips


class Rec:
    def __init__(self, id: str, path: Path) -> None:
        self.id, self.path = id, path


def make_gifs(folder: Path, frames=FRAMES, bad=()) -> list[Rec]:
    folder.mkdir(parents=True, exist_ok=True)
    recs = []
    for i, t in enumerate(frames):
        if i in bad:
            path = folder / f"g{i}.gif"
            path.write_bytes(b"GIF89a this is not a gif" if i % 2 else b"")
        else:
            path = pillow_gif(folder / f"g{i}.gif", moving_frames(t, 24, 32, seed=i))
        recs.append(Rec(f"g{i}", path))
    return recs


def tiny_model():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return build_c3d(**TINY)


def test_features_are_l2_normalised_clip_means(tmp_path):
    recs = make_gifs(tmp_path / "gifs")
    model, transform = tiny_model(), C3DTransform(train=False)
    store = extract_features(
        recs, tmp_path / "store", model=model, transform=transform, batch_clips=3,
        num_workers=0, precision="32", device="cpu", progress=False, chunk_gifs=3,
    )  # fmt: skip
    # naive reference: one GIF at a time, one clip at a time
    ref = []
    for r in recs:
        gif = read_gif(r.path)
        x = transform(gif.frames, AllClips()(gif.n_frames))
        with torch.no_grad():
            per_clip = [model.features(x[c : c + 1])[0].double() for c in range(len(x))]
        mean = torch.stack(per_clip).mean(0)
        ref.append((mean / mean.norm()).numpy())
    assert isinstance(store.visual, np.memmap) and store.visual.dtype == np.float32
    assert store.visual.shape == (len(recs), 32)
    np.testing.assert_allclose(store.visual, np.stack(ref), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(store.visual, axis=1), 1.0, rtol=1e-6)
    assert store.ids == [r.id for r in recs] and store.row_of("g3") == 3
    assert store.n_frames.tolist() == list(FRAMES)
    meta = store.meta
    assert meta["weights_id"] == "random:0"
    assert meta["counts"] == {
        "records": 7, "features": 7, "failures": 0, "dim": 32, "unlisted": 0, "truncated": 0,
        "noted": 0,
    }  # fmt: skip
    assert store.n_clips.tolist() == [1, 1, 1, 2, 4, 1, 1] and not store.truncated.any()
    assert meta["last_run"]["clips"] == 11 and meta["clip_rule"]["stride"] == 8
    assert meta["preprocessing"]["crop"] == 112 and "torch" in meta["versions"]
    assert not (tmp_path / "store" / PARTIAL).exists()


def test_undecodable_files_end_in_failures_jsonl(tmp_path):
    recs = make_gifs(tmp_path / "gifs", bad=(1, 2, 4))
    recs.append(Rec("missing", tmp_path / "gifs" / "nope.gif"))
    store = extract_features(
        recs, tmp_path / "store", model=tiny_model(), transform=C3DTransform(), batch_clips=4,
        num_workers=1, precision="32", device="cpu", progress=False, chunk_gifs=2,
    )  # fmt: skip
    assert store.ids == ["g0", "g3", "g5", "g6"]
    lines = (tmp_path / "store" / "failures.jsonl").read_text().splitlines()
    failures = [json.loads(x) for x in lines]
    assert [f["id"] for f in failures] == ["g1", "g2", "g4", "missing"]
    for f in failures:
        assert set(f) == {"index", "id", "path", "reason"} and f["reason"]
        assert f["path"].endswith(".gif")
    assert store.meta["counts"]["failures"] == 4
    np.testing.assert_allclose(np.linalg.norm(store.visual, axis=1), 1.0, rtol=1e-6)


RUNNER = textwrap.dedent(
    """
    import sys, torch
    from gifemo.features.extract import extract_features
    from gifemo.backbones.c3d import C3DTransform
    from tests.extract_runner import folder_records, tiny_c3d

    def main(folder, out, batch_clips=3):
        torch.set_num_threads(1)
        extract_features(folder_records(folder), out, model=tiny_c3d(), transform=C3DTransform(),
                         batch_clips=int(batch_clips), num_workers=1, precision="32",
                         device="cpu", progress=False, chunk_gifs=2)

    if __name__ == "__main__":
        main(*sys.argv[1:])
    """
)


def run_extraction(folder: Path, out: Path, kill_at: str, batch_clips: int = 3) -> int:
    env = {**os.environ, "PYTHONPATH": str(REPO), KILL_ENV: kill_at}
    cmd = [sys.executable, "-c", RUNNER, str(folder), str(out), str(batch_clips)]
    return subprocess.run(cmd, env=env, cwd=REPO, timeout=300).returncode


@pytest.fixture(scope="module")
def clean_run(tmp_path_factory):
    """GIFs (one undecodable) and their store from an uninterrupted run, in this process."""
    root = tmp_path_factory.mktemp("resume")
    make_gifs(root / "gifs", bad=(5,))
    namespace: dict = {}
    exec(RUNNER, namespace)  # the same code as the subprocesses, minus the kill
    threads = torch.get_num_threads()
    try:
        namespace["main"](root / "gifs", root / "clean")
    finally:
        torch.set_num_threads(threads)
    return root


@pytest.mark.parametrize(
    "kill_at", ["shard:2", pytest.param("finalise:visual", marks=pytest.mark.slow)]
)
def test_kill_9_then_rerun_is_bit_identical(clean_run, tmp_path, kill_at):
    gifs, clean, out = clean_run / "gifs", clean_run / "clean", tmp_path / "killed"
    assert run_extraction(gifs, out, kill_at=kill_at) == -9  # died of SIGKILL
    assert not (out / COMPLETE).exists()
    with pytest.raises(StoreError, match="not a complete feature store"):
        FeatureStore.open(out)
    shards = sorted((out / PARTIAL).glob("shard-*.npz"))
    assert len(shards) == (2 if kill_at == "shard:2" else 4)
    assert run_extraction(gifs, out, kill_at="") == 0
    resumed = FeatureStore.open(out).meta["last_run"]["chunks"]
    assert resumed == (2 if kill_at == "shard:2" else 0)  # finished shards were not redone
    for name in (
        "visual.npy", "ids.jsonl", "failures.jsonl", "n_frames.npy", "n_clips.npy",
        "truncated.npy", "notes.jsonl", "mean_delay_ms.npy",
    ):  # fmt: skip
        assert (out / name).read_bytes() == (clean / name).read_bytes(), name
    assert FeatureStore.open(out).failures[0]["id"] == "g5"


def test_resume_with_another_batch_size_redoes_the_shards(clean_run, tmp_path, caplog):
    """Another batch_clips sums the clips in another order (the bytes differ): a resume with it
    discards the finished shards, saying why, instead of mixing two runs in one store."""
    gifs, out = clean_run / "gifs", tmp_path / "killed"
    assert run_extraction(gifs, out, kill_at="shard:2", batch_clips=3) == -9
    namespace: dict = {}
    exec(RUNNER, namespace)
    threads = torch.get_num_threads()
    try:
        namespace["main"](gifs, tmp_path / "clean2", 2)
        with caplog.at_level("WARNING", logger="gifemo.features.store"):
            namespace["main"](gifs, out, 2)
    finally:
        torch.set_num_threads(threads)
    assert FeatureStore.open(out).meta["last_run"]["chunks"] == 4  # all redone
    assert "discarding 2 finished chunk(s)" in caplog.text and "batch_clips" in caplog.text
    for name in ("visual.npy", "ids.jsonl", "n_clips.npy"):
        assert (out / name).read_bytes() == (tmp_path / "clean2" / name).read_bytes(), name


def compose_cfg(overrides):
    with initialize_config_dir(str(REPO / "conf"), version_base="1.3"):
        return compose("extract", overrides=overrides)


def test_extract_reuses_matching_store_and_reextracts_on_change(tmp_path, monkeypatch):
    make_gifs(tmp_path / "gifs", frames=(3, 18, 9))
    base = [
        "data=folder", f"data.root={tmp_path / 'gifs'}", "backbone=c3d_tiny",
        f"paths.data_dir={tmp_path / 'data'}", "extract.num_workers=0", "extract.precision=32",
        "extract.progress=false", "extract.device=cpu",
    ]  # fmt: skip
    first = extract(compose_cfg(base))
    assert first.path.parent == tmp_path / "data" / "features"
    assert first.path.name.startswith("gifs-") and len(first) == 3
    calls = []
    import gifemo.runners.extract as ex

    real = ex.extract_features
    monkeypatch.setattr(ex, "extract_features", lambda *a, **k: calls.append(1) or real(*a, **k))
    again = extract(compose_cfg([*base, "extract.batch_clips=5"]))  # batching: same features
    assert calls == [] and again.path == first.path
    reseeded = extract(compose_cfg([*base, "backbone.init_seed=1"]))
    bf16 = extract(compose_cfg([*base, "extract.precision=bf16"]))
    assert len(calls) == 2 and len({first.path, reseeded.path, bf16.path}) == 3
    assert not np.allclose(reseeded.visual, first.visual)
    np.testing.assert_allclose(bf16.visual, first.visual, atol=0.05)
    # an explicit out_dir whose store was made otherwise is re-extracted in place
    fixed = [*base, f"extract.out_dir={tmp_path / 'fixed'}"]
    a = extract(compose_cfg(fixed)).meta["fingerprint"]
    b = extract(compose_cfg([*fixed, "backbone.pool5=padded"])).meta["fingerprint"]
    assert a != b and json.loads((tmp_path / "fixed" / COMPLETE).read_text())["fingerprint"] == b
    assert len(calls) == 4


@pytest.mark.slow
def test_extract_py_command_line(tmp_path):
    make_gifs(tmp_path / "gifs", frames=(5, 17))
    cmd = [
        sys.executable, "extract.py", "data=folder", f"data.root={tmp_path / 'gifs'}",
        "backbone=c3d_tiny", f"extract.out_dir={tmp_path / 'store'}", "extract.num_workers=0",
        f"hydra.run.dir={tmp_path / 'run'}",
    ]  # fmt: skip
    out = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "2 GIFs x 32" in out.stdout and "random:0" in out.stdout
    expected = resolve_precision("auto", torch.device("cpu"))
    assert FeatureStore.open(tmp_path / "store").meta["precision"] == expected
