"""The fine-tuning step measured alone: :class:`~gifemo.finetune.module.FinetuneModule`'s
training step inside a real Lightning Trainer against a bare step of the same network, on the
same device-resident batch, in blocks that alternate within one ``fit`` (:func:`step_bench`,
part of ``python -m gifemo.bench finetune --step on|only``; the bench's notes say what each
figure means)."""

from __future__ import annotations

import functools
import time
import warnings
from typing import Any

import numpy as np
import torch


class SameBatch(torch.utils.data.Dataset):
    """``n`` times the same (device-resident) batch: a loader that costs nothing."""

    def __init__(self, batch: dict[str, Any], n: int) -> None:
        self.batch, self.n = batch, n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> dict[str, Any]:
        return self.batch


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class _Interleaved:
    """Lightning callback alternating blocks inside ONE ``fit``: before each block of ``steps``
    module steps it runs and times ``steps`` bare steps, then times the module's block (wall
    time from the block's first batch start to its last batch end, synchronised there only, so
    the steps in between overlap as in a real run). The first ``warmup`` batches are untimed."""

    def __init__(self, bare_block: Any, *, steps: int, warmup: int, device: torch.device) -> None:
        self.bare_block, self.steps, self.warmup, self.device = bare_block, steps, warmup, device
        self.bare: list[float] = []
        self.module: list[float] = []
        self.first_step_s = 0.0
        self.t0 = 0.0

    def callback(self) -> Any:
        from lightning.pytorch.callbacks import Callback

        me = self

        class Interleaved(Callback):
            def on_train_batch_start(
                self, trainer: Any, pl_module: Any, batch: Any, i: int
            ) -> None:
                k = i - me.warmup
                if k >= 0 and k % me.steps == 0:
                    me.bare.append(me.bare_block())
                if i == 0 or (k >= 0 and k % me.steps == 0):
                    _sync(me.device)
                    me.t0 = time.perf_counter()

            def on_train_batch_end(
                self, trainer: Any, pl_module: Any, out: Any, batch: Any, i: int
            ) -> None:
                k = i - me.warmup
                if i == 0:
                    _sync(me.device)
                    me.first_step_s = time.perf_counter() - me.t0
                elif k >= 0 and k % me.steps == me.steps - 1:
                    _sync(me.device)
                    me.module.append(time.perf_counter() - me.t0)

        return Interleaved()


def step_bench(
    *, device: torch.device, tiny: bool, gifs: int, clips_per_gif: int, steps: int, rounds: int,
    warmup: int = 2, compile: bool = False, channels_last: bool | None = None, seed: int = 0,
    progress: bool = True,
) -> dict[str, Any]:  # fmt: skip
    """The module's training step inside a real Lightning Trainer against a bare step of the
    same network, on the same device-resident uint8 batch (no loader), alternating rounds.

    Bare step: ``preprocessing.normalize`` + ``backbone.features`` + ``F.dropout`` + head + BCE
    (positive weights) + backward + SGD step (``zero_grad(set_to_none=True)``), bf16 autocast on
    CUDA, channels_last_3d model and clips when ``channels_last`` (None: on CUDA only).
    Module step: ``Trainer.fit`` of a :class:`FinetuneModule` (same init, SGD, feature dropout
    0.5, no penalty) on a loader yielding that batch, bf16-mixed on CUDA, progress bar on and
    ``log_every_n_steps=10`` as in ``conf/trainer/default.yaml``, no logger / checkpoints / val.
    One ``fit`` of ``warmup + rounds × steps`` batches; a callback runs a block of ``steps`` bare
    steps before each block of ``steps`` module steps and times both (wall time of the block,
    synchronised only at its ends), so a noisy shared machine hits both sides alike. Returns
    clips/s per block, best and median of each side, and the ratios module / bare.
    """
    import lightning as L
    import torch.nn.functional as F

    from gifemo.backbones.c3d import build_c3d
    from gifemo.finetune.module import FinetuneModule
    from gifemo.models.heads import MultiTaskHead

    gpu = device.type == "cuda"
    cl = gpu if channels_last is None else bool(channels_last)
    fmt = torch.channels_last_3d if cl else torch.contiguous_format
    channels = (4, 8, 8, 16, 16) if tiny else (64, 128, 256, 512, 512)
    fc_dim, t, p, lr = (32 if tiny else 4096), 17, 0.5, 1e-3

    def parts() -> tuple[Any, Any]:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            bb = build_c3d(channels=channels, fc_dim=fc_dim, drop_fc8=True, init_seed=seed)
        head = MultiTaskHead(fc_dim, t)
        torch.nn.init.normal_(head.W, std=0.01, generator=torch.Generator().manual_seed(seed))
        return bb, head

    g = torch.Generator().manual_seed(seed)
    n = gifs * clips_per_gif
    tensors = {
        "clips": torch.randint(0, 256, (n, 3, 16, 112, 112), generator=g, dtype=torch.uint8),
        "gif_index": torch.arange(gifs).repeat_interleave(clips_per_gif),
        "index": torch.arange(gifs),
        "labels": (torch.rand(gifs, t, generator=g) < 0.2).float(),
        "weight": torch.ones(gifs),
    }
    batch: dict[str, Any] = {k: v.to(device) for k, v in tensors.items()}
    batch["clips"] = batch["clips"].contiguous(memory_format=fmt)
    batch["failures"] = []

    # (a) the bare step
    bb, head = parts()
    bb.drop_classifier()
    bb, head = bb.to(device).train(), head.to(device).train()
    if cl:
        bb = bb.to(memory_format=fmt)
    features = torch.compile(bb.features) if compile else bb.features
    opt = torch.optim.SGD([*bb.parameters(), *head.parameters()], lr=lr)
    pos_weight = torch.ones(t, device=device)
    normalize = bb.preprocessing.normalize

    def bare_step() -> None:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=gpu):
            h = features(normalize(batch["clips"]))
            z = head(F.dropout(h, p, training=True))
            z = torch.zeros(gifs, t, device=device, dtype=z.dtype).index_add_(
                0, batch["gif_index"], z
            )
            loss = F.binary_cross_entropy_with_logits(
                z.float() / clips_per_gif, batch["labels"], pos_weight=pos_weight
            )
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    def bare_block() -> float:
        _sync(device)
        t0 = time.perf_counter()
        for _ in range(steps):
            bare_step()
        _sync(device)
        return time.perf_counter() - t0

    _sync(device)
    t0 = time.perf_counter()
    bare_step()
    _sync(device)
    first = {"bare": time.perf_counter() - t0}
    for _ in range(warmup - 1):
        bare_step()

    # (b) the module's step under Lightning, its blocks alternating with blocks of bare steps
    mbb, mhead = parts()
    kw: dict[str, Any] = {}
    if channels_last is not None:
        kw["channels_last"] = channels_last
    module = FinetuneModule(mbb, mhead, optimizer=functools.partial(torch.optim.SGD), lr=lr,
                            head_lr=lr, feature_dropout=p, freeze_epochs=0, seed=seed, **kw)  # fmt: skip
    if compile:
        module.compile_features()
    loader = torch.utils.data.DataLoader(
        SameBatch(batch, warmup + rounds * steps), batch_size=None, collate_fn=lambda b: b
    )
    timer = _Interleaved(bare_block, steps=steps, warmup=warmup, device=device)
    trainer = L.Trainer(
        accelerator="gpu" if gpu else "cpu", devices=1,
        precision="bf16-mixed" if gpu else "32-true", max_epochs=1, logger=False,
        enable_checkpointing=False, enable_model_summary=False, enable_progress_bar=progress,
        num_sanity_val_steps=0, limit_val_batches=0, log_every_n_steps=10,
        callbacks=[timer.callback()],
    )  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit(module, train_dataloaders=loader)
    first["module"] = timer.first_step_s
    bare = [n * steps / s for s in timer.bare]
    mod = [n * steps / s for s in timer.module]
    med_b, med_m = float(np.median(bare)), float(np.median(mod))
    return {
        "clips_per_step": n, "gifs_per_step": gifs, "steps_per_round": steps, "rounds": rounds,
        "warmup_steps": warmup, "compile": compile, "channels_last_3d": cl,
        "bare_clips_per_s": bare, "module_clips_per_s": mod,
        "bare_best": max(bare), "module_best": max(mod), "bare_median": med_b,
        "module_median": med_m, "ratio_best": max(mod) / max(bare), "ratio_median": med_m / med_b,
        "first_step_s": first,
        # the process's first compiled step compiles (the bare one runs first; the module's
        # features share its compiled graph): that step minus a steady bare step
        "compile_warmup_s": first["bare"] - n / med_b if compile else None,
    }  # fmt: skip
