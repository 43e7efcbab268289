"""Extraction's fast paths: uint8 clips normalised on the device, several processes
(torch.distributed, gloo, a real ``torchrun``) with kill -9 + resume, and torch.compile.

Each is compared with the plain one-process float32 eager extraction: byte for byte where the
computation is the same, within a stated tolerance where it is not (compile).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from gifemo.backbones.c3d import C3DTransform, build_c3d
from gifemo.backbones.preprocessing import ClipTransform
from gifemo.backbones.r2plus1d import build_r2plus1d_18
from gifemo.data.clips import AllClips
from gifemo.data.gif import read_gif
from gifemo.features.distributed import Ranks
from gifemo.features.execution import wire_transform
from gifemo.features.extract import KILL_ENV, extract_features
from gifemo.features.store import COMPLETE, PARTIAL, FeatureStore
from tests.gifmaker import moving_frames, pillow_gif

REPO = Path(__file__).resolve().parents[1]
FRAMES = (1, 16, 20, 33, 9, 12, 24)  # 1, 1, 2, 4, 1, 1, 2 clips
STORE_FILES = (
    "visual.npy", "ids.jsonl", "failures.jsonl", "n_frames.npy", "n_clips.npy", "truncated.npy",
    "notes.jsonl", "mean_delay_ms.npy",
)  # fmt: skip


class Rec:
    def __init__(self, id: str, path: Path) -> None:
        self.id, self.path = id, path


def make_gifs(folder: Path, frames=FRAMES, bad=(4,)) -> list[Rec]:
    folder.mkdir(parents=True, exist_ok=True)
    recs = []
    for i, t in enumerate(frames):
        path = folder / f"g{i}.gif"
        if i in bad:
            path.write_bytes(b"GIF89a not a gif")
        else:
            pillow_gif(path, moving_frames(t, 30, 40, seed=i))
        recs.append(Rec(f"g{i}", path))
    return recs


def quiet(build, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # random weights
        return build(**kw)


BACKBONES = {
    "c3d_tiny": lambda: quiet(build_c3d, channels=(4, 8, 8, 16, 16), fc_dim=32),
    "r2plus1d_tiny": lambda: quiet(build_r2plus1d_18, widths=(4, 8, 8, 16), stem_mid=3),
}


def same_files(a: Path, b: Path) -> None:
    for name in STORE_FILES:
        assert (a / name).read_bytes() == (b / name).read_bytes(), name


@pytest.mark.parametrize("backbone", sorted(BACKBONES))
@pytest.mark.parametrize("channels_last", [True, False])
def test_uint8_clips_give_the_float32_store_byte_for_byte(tmp_path, backbone, channels_last):
    recs = make_gifs(tmp_path / "gifs")
    model = BACKBONES[backbone]()
    transform = model.preprocessing.transform(train=False)
    stores = {}
    for dtype in ("float32", "uint8"):
        stores[dtype] = extract_features(
            recs, tmp_path / dtype, model=model, transform=transform, batch_clips=3,
            num_workers=0, precision="32", device="cpu", progress=False, chunk_gifs=3,
            channels_last=channels_last, clip_dtype=dtype,
        )  # fmt: skip
        assert stores[dtype].meta["last_run"]["clip_dtype"] == dtype
    same_files(tmp_path / "float32", tmp_path / "uint8")
    assert stores["uint8"].meta["fingerprint"] == stores["float32"].meta["fingerprint"]
    assert len(stores["uint8"]) == 6 and stores["uint8"].failures[0]["id"] == "g4"


@pytest.mark.parametrize("backbone", sorted(BACKBONES))
def test_uint8_clips_normalised_on_device_equal_the_workers_float_clips(tmp_path, backbone):
    """The model input itself, clip by clip, also in channels_last_3d (the layout survives)."""
    model = BACKBONES[backbone]()
    transform = model.preprocessing.transform(train=False)
    wire = wire_transform(transform, "uint8")
    assert isinstance(wire, ClipTransform) and wire.output == "uint8"
    gif = read_gif(pillow_gif(tmp_path / "a.gif", moving_frames(40, 37, 53, seed=3)))
    clips = AllClips()(gif.n_frames)
    ref = transform(gif.frames, clips)  # (N, 3, 16, 112, 112) float32
    raw = wire(gif.frames, clips)
    assert raw.dtype == torch.uint8 and raw.shape == ref.shape
    fast = wire.preprocessing.normalize(raw.contiguous(memory_format=torch.channels_last_3d))
    assert fast.is_contiguous(memory_format=torch.channels_last_3d)
    assert torch.equal(fast, ref)


def test_mean_cube_and_float_requests_keep_the_float_path(tmp_path):
    cube = np.zeros((16, 128, 171, 3), np.float32)
    np.save(tmp_path / "cube.npy", cube)
    with_cube = C3DTransform(mean_cube=str(tmp_path / "cube.npy"))
    assert wire_transform(with_cube, "uint8") is with_cube
    plain = C3DTransform()
    assert wire_transform(plain, "float32") is plain
    with pytest.raises(ValueError, match="clip_dtype"):
        wire_transform(plain, "float16")


def test_ranks_split_chunks_disjointly():
    chunks = list(range(11))
    parts = [Ranks(r, 3).mine(chunks) for r in range(3)]
    assert sorted(c for p in parts for c in p) == chunks and parts[1] == [1, 4, 7, 10]
    assert Ranks().mine(chunks) == chunks and Ranks().sum([1.0, 2.0]) == [1.0, 2.0]


# ---- several processes: a real torchrun, gloo on CPU ----

RUNNER = textwrap.dedent(
    """
    import sys, torch
    from gifemo.features.distributed import init_from_env, shutdown
    from gifemo.features.extract import extract_features
    from tests.extract_runner import folder_records, tiny_c3d

    def main(folder, out):
        torch.set_num_threads(1)
        _, device = init_from_env("cpu")
        store = extract_features(folder_records(folder), out, model=tiny_c3d(), batch_clips=3,
                                 num_workers=1, precision="32", device=device, progress=False,
                                 chunk_gifs=2)
        w = store.meta["last_run"]["world_size"]
        sys.stdout.write(f"rows {len(store)} world {w}\\n")  # one write: lines do not interleave
        sys.stdout.flush()
        shutdown()

    if __name__ == "__main__":
        main(sys.argv[1], sys.argv[2])
    """
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_ranks(
    folder: Path, out: Path, nproc: int, kill_at: str = ""
) -> subprocess.CompletedProcess:
    script = folder.parent / "runner.py"
    script.write_text(RUNNER)
    env = {**os.environ, "PYTHONPATH": str(REPO), KILL_ENV: kill_at, "OMP_NUM_THREADS": "1"}
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc-per-node",
        str(nproc), "--master-addr", "127.0.0.1", "--master-port", str(_free_port()),
        str(script), str(folder), str(out),
    ]  # fmt: skip
    return subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_torchrun_two_ranks_byte_identical_also_after_kill_and_resume(tmp_path):
    gifs = tmp_path / "gifs"
    make_gifs(gifs)  # 7 GIFs, chunks of 2 → 4 chunks: rank 0 gets 0, 2; rank 1 gets 1, 3
    one = run_ranks(gifs, tmp_path / "one", 1)
    assert one.returncode == 0, one.stderr
    two = run_ranks(gifs, tmp_path / "two", 2)
    assert two.returncode == 0, two.stderr
    assert two.stdout.count("rows 6 world 2") == 2  # both ranks opened the finished store
    same_files(tmp_path / "one", tmp_path / "two")
    meta = FeatureStore.open(tmp_path / "two").meta["last_run"]
    assert meta["world_size"] == 2 and meta["chunks"] == 4
    # rank 1 is killed (SIGKILL) after its first shard; torchrun stops rank 0
    killed = run_ranks(gifs, tmp_path / "killed", 2, kill_at="shard:1@1")
    assert killed.returncode != 0
    assert "Signals.SIGKILL" in killed.stderr or "-9" in killed.stderr, killed.stderr[-2000:]
    out = tmp_path / "killed"
    assert not (out / COMPLETE).exists()
    assert (out / PARTIAL / "shard-000001.npz").is_file()  # rank 1's first chunk survived
    resumed = run_ranks(gifs, out, 2)
    assert resumed.returncode == 0, resumed.stderr
    same_files(tmp_path / "one", out)
    assert FeatureStore.open(out).meta["last_run"]["chunks"] < 4  # finished shards not redone
    # and a store begun by two ranks can be finished by one
    shutil.rmtree(out)
    assert run_ranks(gifs, out, 2, kill_at="shard:1@0").returncode != 0
    assert run_ranks(gifs, out, 1).returncode == 0
    same_files(tmp_path / "one", out)


# ---- torch.compile ----


def _compile_works() -> str | None:
    """None if torch.compile (inductor) runs here, else why not."""
    try:
        f = torch.compile(lambda x: torch.relu(x) * 2)
        f(torch.randn(4))
    except Exception as e:  # no C++ compiler, unsupported platform, …
        return f"torch.compile does not work here: {type(e).__name__}: {e}"
    return None


@pytest.mark.slow
def test_compile_matches_eager_within_tolerance(tmp_path):
    why = _compile_works()
    if why:
        pytest.skip(why)
    from torch._dynamo.utils import counters

    recs = make_gifs(tmp_path / "gifs", frames=(16, 33, 20))
    clips = sum(len(AllClips()(read_gif(r.path).n_frames).starts) for r in recs)
    assert clips % 4, "the last batch must be shorter than batch_clips"
    model = BACKBONES["c3d_tiny"]()
    kw = dict(batch_clips=4, num_workers=0, precision="32", device="cpu", progress=False)
    eager = extract_features(recs, tmp_path / "eager", model=model, **kw)
    torch._dynamo.reset()  # other tests' compiled graphs do not count against this one's
    before = counters["stats"]["unique_graphs"]
    compiled = extract_features(recs, tmp_path / "compiled", model=model, compile=True, **kw)
    # the shorter last batch is padded to batch_clips: one compile, not a second one there
    assert counters["stats"]["unique_graphs"] - before == 1
    cos = (np.asarray(eager.visual) * np.asarray(compiled.visual)).sum(1)
    assert cos.min() > 1 - 1e-5, cos
    np.testing.assert_allclose(compiled.visual, eager.visual, atol=1e-4)
    run = compiled.meta["last_run"]
    assert run["compile_warmup_s"] > 0 and compiled.meta["execution"] == {"compile": True}
    assert compiled.meta["fingerprint"] != eager.meta["fingerprint"]


# ---- the benches' new parts ----


def test_worker_profile_and_gpu_check_summary(tmp_path, capsys):
    from gifemo.bench import extract as bench_extract
    from gifemo.bench import gpu
    from gifemo.bench.worker_profile import worker_profile

    recs = bench_extract.make_gifs(tmp_path, 3, n_unique=2, hw=(36, 48), frames=(16, 24))
    prof = worker_profile(recs, C3DTransform(), seconds=0.2)
    st = prof["stage_ms_per_clip"]
    assert all(v > 0 for v in st.values()) and prof["clips"] >= 2
    for path in ("before", "decode_all", "worker", "device"):
        lo = prof[f"loader_{path}"]
        first = "kept" if path == "worker" else "decode"  # kept: decode keeping the used frames
        assert lo["clips_per_s_per_worker"] > 0 and set(lo["share"]) >= {first, "ipc_and_rest"}
        assert lo["share_of_decode_bound"] == pytest.approx(
            lo["clips_per_s_per_worker"] / prof["decode_only_clips_per_s"], rel=1e-2
        )
    assert "resize" not in prof["loader_device"]["share"]  # the device path's worker only decodes
    # before: 112x112x3x16 clips; now (worker): each used frame's crop once, fewer bytes as
    # clips overlap; device: the used frames (48x36, 4 bytes a pixel)
    assert prof["loader_before"]["bytes_per_clip"] == 16 * 112 * 112 * 3
    assert prof["loader_worker"]["bytes_per_clip"] < prof["loader_before"]["bytes_per_clip"]
    assert prof["loader_worker"]["bytes_per_clip"] == prof["loader_decode_all"]["bytes_per_clip"]
    assert prof["decode_only_clips_per_s"] == pytest.approx(1e3 / st["decode"], rel=1e-3)
    assert prof["decode_only_clips_per_s_before"] == pytest.approx(
        1e3 / st["decode_before"], rel=1e-3
    )
    # the summary reads the benches' JSON as they write it
    ex = {"gif_size_hw": [180, 240], "runs": {"ours bf16": {
        "clips_per_s": 1600.0, "data_wait_share": 0.2, "mfu": 0.12,
        "model_only_clips_per_s": 3000.0, "share_of_decode_bound": 0.9}}}  # fmt: skip
    ft = {"settings": {"cache": {"clips_per_s": 1250.0, "data_wait_share": 0.05, "mfu": 0.3,
                                 "model_clips_per_s": 1300.0}}}  # fmt: skip
    rows = gpu.summary_rows({"extract": {"report": ex}, "finetune": {"report": ft}})
    assert [r["what"] for r in rows] == ["extract (ours bf16, 240x180)", "finetune cache"]
    assert rows[0]["ceiling"] == 3000.0 and rows[1]["ceiling"] == 1300.0
    if not torch.cuda.is_available():  # without CUDA the full check refuses and says why
        assert gpu.main(["--out", str(tmp_path / "g.json")]) == 2
        assert "no CUDA device" in capsys.readouterr().out
