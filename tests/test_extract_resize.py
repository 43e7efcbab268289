"""``extract.resize_on=device``: workers send the used frames, the model's device resizes, cuts
and normalises. On a CPU that is the same kernel as the workers' path, so the store must be
byte-identical to it (and to the RGB float32 path it replaced), budgets included; the pieces
(4-channel ``bgr0`` resize, the tensor cut with random windows and flips, the batch of frames)
are checked against the numpy path they replace."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gifemo.backbones.c3d import C3DTransform
from gifemo.backbones.resize import resize_frames, resize_frames_tensor
from gifemo.backbones.transfer import (
    DeviceResize,
    FrameCrops,
    SharedCrops,
    channels_in_order,
    worker_read_kwargs,
)
from gifemo.data.clip_dataset import GifClipDataset
from gifemo.data.clips import AllClips, used_frames
from gifemo.data.gif import read_gif
from gifemo.features.accumulate import (
    collate_crops,
    collate_frames,
    gather_clips,
)
from gifemo.features.execution import resize_device, store_identity, worker_wire
from gifemo.features.extract import extract_features
from gifemo.features.forward import device_clips
from tests.gifmaker import moving_frames, pillow_gif
from tests.test_extract_fast import BACKBONES, make_gifs, same_files

SIZES = ((30, 40), (37, 53), (128, 171), (21, 200))  # odd sizes, one already at resize_hw


def gifs_of_sizes(folder, frames=(20, 1, 33, 16)) -> list:
    """GIFs of the odd SIZES (records with .id and .path)."""
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i, ((h, w), t) in enumerate(zip(SIZES, frames, strict=True)):
        path = pillow_gif(folder / f"s{i}.gif", moving_frames(t, h, w, seed=10 + i))
        out.append(type("Rec", (), {"id": f"s{i}", "path": path})())
    return out


@pytest.mark.parametrize(
    "workers", [0, pytest.param(1, marks=pytest.mark.slow)], ids=["in-process", "worker"]
)
@pytest.mark.parametrize("backbone", sorted(BACKBONES))
def test_device_resize_gives_the_worker_store_byte_for_byte(tmp_path, backbone, workers):
    recs = make_gifs(tmp_path / "gifs", frames=(16, 9, 12), bad=(1,))
    recs += gifs_of_sizes(tmp_path / "sizes")
    model = BACKBONES[backbone]()
    transform = model.preprocessing.transform(train=False)
    kw = dict(model=model, transform=transform, batch_clips=3, precision="32", device="cpu",
              progress=False, chunk_gifs=4, read_kwargs={"read_frames": 30}, max_clips=2)  # fmt: skip
    ref = extract_features(  # the path before: RGB frames, float32 clips from the workers
        recs, tmp_path / "ref", num_workers=0, clip_dtype="float32",
        **{**kw, "read_kwargs": {"read_frames": 30, "pixel_format": "rgb24"}},
    )  # fmt: skip
    assert ref.meta["last_run"]["pixel_format"] == "rgb24"
    stores = {}
    for name in ("worker", "device"):
        stores[name] = extract_features(
            recs, tmp_path / name, num_workers=workers, resize_on=name, **kw
        )
        run = stores[name].meta["last_run"]
        assert (run["resize_on"], run["pixel_format"]) == (name, "bgr0")
        same_files(tmp_path / "ref", tmp_path / name)
    # the fingerprint does not depend on where a CPU resizes (only the read_kwargs differ)
    assert stores["worker"].meta["fingerprint"] == stores["device"].meta["fingerprint"]
    assert "execution" not in stores["device"].meta
    store = stores["device"]
    assert len(store) == 6 and store.failures[0]["id"] == "g1"
    assert int(np.asarray(store.n_clips).max()) <= 2  # max_clips holds
    assert int(np.asarray(store.n_frames).max()) == 30  # read_frames holds (33-frame GIF)
    assert store.meta["last_run"]["device_cut_s"] > 0


def test_fingerprint_records_a_non_cpu_resize():
    model = BACKBONES["c3d_tiny"]()
    t = model.preprocessing.transform(train=False)
    kw = dict(dataset_name="d", model=model, transform=t, sampler=AllClips(), precision="32",
              read_kwargs=None, max_clips=None)  # fmt: skip
    base, _ = store_identity([], **kw)
    assert store_identity([], **kw, resize_device="cpu")[0] == base
    cuda, parts = store_identity([], **kw, resize_device="cuda")
    assert cuda != base and parts["execution"] == {"resize_on": "device (cuda)"}
    assert resize_device("device", t, "uint8", "cuda") == "cuda"
    assert resize_device("worker", t, "uint8", "cuda") is None
    assert resize_device("device", t, "uint8", "cpu") == "cpu"
    with pytest.raises(ValueError, match="resize_on"):
        resize_device("auto", t, "uint8", "cpu")


def test_mean_cube_and_float_clips_refuse_device_resize(tmp_path):
    recs = make_gifs(tmp_path / "gifs", frames=(16, 20), bad=())
    model = BACKBONES["c3d_tiny"]()
    np.save(tmp_path / "cube.npy", np.full((16, 128, 171, 3), 90.0, np.float32))
    cube = C3DTransform(mean_cube=str(tmp_path / "cube.npy"))
    kw = dict(model=model, num_workers=0, precision="32", device="cpu", progress=False)
    with pytest.raises(ValueError, match=r"resize_on=device .*mean cube"):
        extract_features(recs, tmp_path / "a", transform=cube, resize_on="device", **kw)
    with pytest.raises(ValueError, match=r"resize_on=device .*clip_dtype=uint8"):
        extract_features(recs, tmp_path / "b", clip_dtype="float32", resize_on="device", **kw)
    store = extract_features(recs, tmp_path / "c", transform=cube, **kw)  # default: worker
    assert store.meta["last_run"]["resize_on"] == "worker" and len(store) == 2


@pytest.mark.parametrize("order", ["RGB", "BGR"])
def test_bgr0_frames_resize_and_cut_like_rgb(tmp_path, order):
    """4-channel resize = 3-channel resize per channel; the numpy cut and the tensor cut of
    bgr0 frames equal the cut of RGB frames, with random windows and flips."""
    path = pillow_gif(tmp_path / "a.gif", moving_frames(40, 57, 101, seed=4))
    rgb, bgr0 = read_gif(path).frames, read_gif(path, pixel_format="bgr0").frames
    r3, r4 = resize_frames(rgb, (128, 171)), resize_frames(bgr0, (128, 171))
    assert np.array_equal(r4[..., 2::-1], r3)
    assert torch.equal(resize_frames_tensor(torch.from_numpy(bgr0)), torch.from_numpy(r4))
    model = BACKBONES["c3d_tiny" if order == "BGR" else "r2plus1d_tiny"]()
    assert model.preprocessing.channel_order == order
    t = model.preprocessing.transform(train=True, output="uint8")
    clips = AllClips()(len(rgb))
    used, local = used_frames(clips, len(rgb))
    ref = t.from_resized(r3[used], local, torch.Generator().manual_seed(5))
    assert torch.equal(t.from_resized(r4[used], local, torch.Generator().manual_seed(5)), ref)
    windows = t.windows(len(local.frames), torch.Generator().manual_seed(5))
    assert len({tuple(w) for w in windows.tolist()}) > 1 and windows[:, 2].any()
    args = (torch.from_numpy(r4[used]), torch.from_numpy(local.frames), torch.from_numpy(windows))
    assert torch.equal(t.cut_tensor(*args), ref)  # on a CPU: the numpy cut
    gathered = t.gather_tensor(*args)  # torch's indexing, the GPU path
    assert gathered.is_contiguous(memory_format=torch.channels_last_3d)
    assert torch.equal(gathered, ref)
    one = torch.from_numpy(t.windows(len(local.frames)))  # evaluation: one window, one gather
    assert torch.equal(t.gather_tensor(*args[:2], one), t.cut_tensor(*args[:2], one))
    rgb_args = (torch.from_numpy(r3[used]), *args[1:])
    assert torch.equal(t.gather_tensor(*rgb_args), ref)
    # and through the worker half, the batch of frames and the device half
    dr = DeviceResize(t)
    items = [
        {"index": 0, "id": "a", "path": str(path), "error": None, "n_frames": len(rgb),
         "mean_delay_ms": 40.0, "truncated": False, "note": None,
         "clips": dr(bgr0, clips, torch.Generator().manual_seed(5))},
        {"index": 1, "id": "b", "path": "b.gif", "error": "GifDecodeError: b.gif: bad",
         "clips": torch.zeros((0, 3, 16, 112, 112)), "n_frames": 0, "mean_delay_ms": np.nan,
         "truncated": False, "note": None},
    ]  # fmt: skip
    batch = collate_frames(items)
    assert batch["frames"].numel() == len(used) * 57 * 101 * 4
    assert batch["frame_shapes"].tolist() == [[len(used), 57, 101, 4], [0, 0, 0, 0]]
    assert batch["failures"][0]["id"] == "b" and batch["gif_index"].tolist() == [0] * len(ref)
    assert torch.equal(device_clips(batch, dr, torch.device("cpu")), ref)


def test_worker_sends_one_frames_tensor_through_shared_memory(tmp_path):
    recs = gifs_of_sizes(tmp_path / "g")
    wire = DeviceResize(C3DTransform(output="uint8"))
    ds = GifClipDataset(recs, sampler=AllClips(), transform=wire,
                        read_kwargs={"pixel_format": "bgr0"})  # fmt: skip
    loader = torch.utils.data.DataLoader(ds, batch_sampler=[[0, 1], [2, 3]],
                                         collate_fn=collate_frames, num_workers=1)  # fmt: skip
    transform = C3DTransform(output="uint8")
    for batch, pair in zip(loader, ([0, 1], [2, 3]), strict=True):
        assert batch["frames"].dtype == torch.uint8 and batch["frames"].ndim == 1
        ref = torch.cat([transform(read_gif(recs[i].path).frames,
                                   AllClips()(read_gif(recs[i].path).n_frames)) for i in pair])  # fmt: skip
        assert torch.equal(device_clips(batch, wire, torch.device("cpu")), ref)


def test_workers_decode_bgr0_only_for_transforms_that_take_it():
    t = C3DTransform(output="uint8")
    assert worker_read_kwargs({"read_frames": 3}, t) == {"read_frames": 3, "pixel_format": "bgr0"}
    assert worker_read_kwargs(None, DeviceResize(t)) == {"pixel_format": "bgr0"}
    assert worker_read_kwargs({"pixel_format": "rgb24"}, t) == {"pixel_format": "rgb24"}

    class OwnCut(C3DTransform):  # a subclass that cuts its own way may expect RGB
        def from_resized(self, resized, clips, generator=None, windows=None):
            return super().from_resized(resized, clips, generator, windows)

    assert worker_read_kwargs(None, OwnCut(output="uint8")) == {}
    assert worker_read_kwargs(None, lambda frames, clips, generator=None: frames) == {}


def test_resize_with_an_index_equals_resizing_the_gathered_frames():
    frames = np.random.default_rng(0).integers(0, 256, (70, 33, 47, 4), dtype=np.uint8)
    for index in (np.arange(70), np.arange(5, 69), np.array([0, 3, 3, 9, 40, 69]), np.arange(0)):
        for size in ((16, 20), (33, 47)):
            ref = resize_frames(np.ascontiguousarray(frames[index]), size)
            assert np.array_equal(resize_frames(frames, size, index=index), ref)
    with pytest.raises(ValueError, match="index reaches frame 70"):
        resize_frames(frames, (16, 20), index=np.array([1, 70]))


@pytest.mark.parametrize("backbone", sorted(BACKBONES))
def test_worker_crops_gathered_after_the_transfer_equal_the_clips(tmp_path, backbone):
    """resize_on=worker, evaluation: each used frame's crop once through one shared tensor
    per batch, clips gathered in the main process — the transform's clips byte for byte, in
    fewer bytes (clips overlap)."""
    recs = gifs_of_sizes(tmp_path / "g")
    transform = BACKBONES[backbone]().preprocessing.transform(train=False, output="uint8")
    wire = worker_wire(transform, "worker")
    assert isinstance(wire, SharedCrops) and worker_wire(transform, "device").transform is transform
    ds = GifClipDataset(recs, sampler=AllClips(), transform=wire,
                        read_kwargs=worker_read_kwargs(None, wire))  # fmt: skip
    loader = torch.utils.data.DataLoader(ds, batch_sampler=[[0, 1], [2, 3]],
                                         collate_fn=collate_crops, num_workers=1)  # fmt: skip
    for batch, pair in zip(loader, ([0, 1], [2, 3]), strict=True):
        ref = torch.cat([transform(g.frames, AllClips()(g.n_frames))
                         for g in (read_gif(recs[i].path) for i in pair)])  # fmt: skip
        assert batch["crops"].shape[1:] == (112, 112, 3)  # the model's three channels
        assert batch["crops"].numel() < ref.numel()
        assert torch.equal(gather_clips(batch, torch.device("cpu")), ref)
    train = BACKBONES[backbone]().preprocessing.transform(train=True, output="uint8")
    assert worker_wire(train, "worker") is train  # random windows: clips cut in the worker
    with pytest.raises(ValueError, match="evaluation uint8"):
        SharedCrops(train)


def _naive_bilinear(img: np.ndarray, h: int, w: int) -> np.ndarray:
    """Half-pixel bilinear (align_corners=False, no antialias, source clamped at 0 and the last
    row/column) in float64, one output pixel at a time: the formula torch and OpenCV document."""
    H, W = img.shape[:2]
    out = np.empty((h, w, img.shape[2]))
    for i in range(h):
        sy = max((i + 0.5) * H / h - 0.5, 0.0)
        y0 = int(sy)
        y1, ly = min(y0 + 1, H - 1), sy - y0
        for j in range(w):
            sx = max((j + 0.5) * W / w - 0.5, 0.0)
            x0 = int(sx)
            x1, lx = min(x0 + 1, W - 1), sx - x0
            top = (1 - lx) * img[y0, x0] + lx * img[y0, x1]
            bottom = (1 - lx) * img[y1, x0] + lx * img[y1, x1]
            out[i, j] = (1 - ly) * top + ly * bottom
    return out


def test_float_resize_route_rounds_the_exact_bilinear_and_stays_within_1_of_the_uint8_kernel():
    """The route CUDA takes (its bilinear kernel has no uint8): float32 interpolate, rounded."""
    from gifemo.backbones.resize import _resize_nhwc

    rng = np.random.default_rng(5)
    frames = rng.integers(0, 256, (2, 37, 53, 4), dtype=np.uint8)
    frames[1] = np.linspace(0, 255, 53, dtype=np.uint8)[None, :, None]  # smooth ramps too
    x = torch.from_numpy(frames)
    for h, w in ((16, 23), (112, 171)):  # shrink and enlarge
        route = _resize_nhwc(x, (h, w), uint8_kernel=False).numpy().astype(np.int64)
        kernel = _resize_nhwc(x, (h, w), uint8_kernel=True).numpy().astype(np.int64)
        assert np.array_equal(kernel, resize_frames(frames, (h, w)))
        exact = np.stack([_naive_bilinear(f, h, w) for f in frames])
        # the nearest integer to the exact value, up to float32 coordinates and weights (≤ 0.01)
        assert np.abs(route - exact).max() <= 0.51
        assert np.abs(route - kernel).max() <= 1


def test_crop_channels_are_put_in_the_models_order_by_the_collate():
    """FrameCrops keep the frames' own channels; channels_in_order (into a given buffer, as
    the collate writes shared memory) gives the model's three — checked against numpy's
    fancy indexing; a batch mixing crop sizes is refused."""
    rng = np.random.default_rng(9)
    crops = rng.integers(0, 256, (5, 7, 7, 4), dtype=np.uint8)
    for channels in ((0, 1, 2), (2, 1, 0)):
        got = channels_in_order(crops, channels)
        assert got.flags.c_contiguous and np.array_equal(got, crops[..., list(channels)])
        out = np.zeros((6, 7, 7, 3), np.uint8)
        assert channels_in_order(crops[:, ::-1], channels, out=out[1:]) is not None
        assert np.array_equal(out[1:], crops[:, ::-1][..., list(channels)]) and not out[0].any()
    rgb = np.ascontiguousarray(crops[..., :3])
    assert np.array_equal(channels_in_order(rgb, (0, 1, 2)), rgb)
    assert np.array_equal(channels_in_order(rgb, (2, 1, 0)), rgb[..., ::-1])
    clips = np.array([[0, 1, 1, 4]], np.int64)
    item = {"id": "a", "path": "a.gif", "index": 0, "n_frames": 5, "mean_delay_ms": 50.0,
            "truncated": False, "note": None}  # fmt: skip
    items = [{**item, "clips": FrameCrops(crops, clips, (2, 1, 0))},
             {**item, "index": 1, "clips": FrameCrops(crops[:, :3, :3], clips, (0, 1, 2))}]  # fmt: skip
    with pytest.raises(ValueError, match=r"mixes crops of \(3, 3\) and \(7, 7\)"):
        collate_crops(items)
    batch = collate_crops(
        [items[0], {**items[0], "index": 1, "clips": FrameCrops(crops, clips, (0, 1, 2))}]
    )
    ref = torch.from_numpy(np.concatenate([crops[..., [2, 1, 0]][clips], crops[..., :3][clips]]))
    assert torch.equal(gather_clips(batch, torch.device("cpu")), ref.permute(0, 4, 1, 2, 3))
