"""FinetuneModule: a video backbone + a 17-way multi-task head trained end to end on GIFGIF+ (paper §5).

The module is handed its parts (``FinetuneModule(backbone, head, penalty, ...)``) and only does
the learning; data, decoding and logging backends live elsewhere.

Forward: clips (N, 3, 16, 112, 112) (uint8 ones normalised on the model's device by
``backbone.preprocessing.normalize``) → ``backbone.features`` (C3D: fc6 after ReLU; R(2+1)D: the
pooled layer4, (N, d)) →
dropout (training only) → ``head`` (N, t) logits. A GIF's logits are the mean of its clips'
logits, grouped by ``gif_index`` (N,) ∈ [0, B) with ``index_add_`` (GIFs have different clip
counts). Because the head is affine, the mean of the clip logits equals the head applied to the
mean features of the GIF — "average logits" and "average features" are the same thing here. Training
averages the ``num_clips`` random clips drawn per GIF; evaluation averages ALL clips (§3.3).

Loss, per optimiser step over the B GIFs of the (global) batch with labels y (B, t) ∈ {0, 1},
GIF logits z (B, t) and weights w (B,) (1; 0 for a GIF that failed to decode or a DDP padding
duplicate):

    L = (1 / (Σ_n w_n · t)) Σ_{n,e} w_n ℓ_{n,e} + Ω(W),
    ℓ_{n,e} = −[ p_e y_{n,e} log σ(z_{n,e}) + (1 − y_{n,e}) log(1 − σ(z_{n,e})) ]

with p_e the positive weight of emotion e (``pos_weight`` (t,), typically #neg/#pos on the
training set, :func:`positive_weights`) and Ω the head penalty (``penalty.value(head.W)``,
W (d, t), any of :mod:`gifemo.models.penalties`; ``None`` = no penalty). Ω is added to a *mean*
loss, so its ρ is on a per-sample scale (ρ_linear-model / n gives the same trade-off).

DDP equals one big batch. DDP averages the gradients of the W ranks, so rank r minimises

    L_r = (W / (Σ_all w_n · t)) Σ_{n ∈ rank r} Σ_e w_n ℓ_{n,e} + Ω(W),

whose rank average is exactly L above for the union of the ranks' batches (Σ_all w_n is one
all-reduce per step). A per-rank *mean* would weight a GIF by 1/(its rank's batch size), which
differs from the single-process mean whenever ranks hold different numbers of valid GIFs (the
last batch of an epoch, padding duplicates, decode failures). With the sampler's round-robin
sharding, step k of W ranks × B GIFs covers positions [kWB, (k+1)WB) of the epoch's permutation:
the batch of one process with W·B GIFs. Every random draw is keyed by the GIF, never by the rank
or the batch position: clips / crops / flips by (seed, epoch, index) (the dataset) and the feature
dropout mask of clip j of GIF ``index`` by (seed, epoch, index, j) (:func:`dropout_keep_mask`).
So W ranks × B GIFs train exactly like one process with W·B GIFs, up to float summation order.
(A backbone with BatchNorm — R(2+1)D — normalises by per-rank batch statistics while training;
the equality then needs ``backbone.freeze_batchnorm=true``, which also suits small batches.)

Freezing: for epochs < ``freeze_epochs`` the backbone runs under ``torch.no_grad`` (no backward
through the backbone, its parameters get no gradient and the optimiser skips them). Parameters keep
``requires_grad=True`` throughout, so DDP registers them all (with ``find_unused_parameters``).

Reproducibility and resume: all draws above depend on (seed, epoch, GIF, clip) only, so a run
resumed from a checkpoint draws the same clips and dropout masks as an uninterrupted one. The
checkpoint also carries ``history``, the decode ``failures`` and the running sums of the epoch's
training loss, so that a resumed ``fit`` reports what an uninterrupted one does (a ``test`` from
a checkpoint leaves them as they are).

Speed: ``training_step`` reads nothing back from the device and makes no tensor from host data
(dropout masks are hashed on the device, counts are ``index_add_``-ed, the normalisation
constants are cached per device, ``train/loss`` stays off the progress bar), so a GPU's queue
is never drained by the module; channels_last_3d (CUDA by default) and ``torch.compile`` of the
backbone's features are options; the first step and the mean of the next ``TIMED_STEPS`` are
timed (two syncs per run) into ``history`` (docs/finetune.md "Speed").
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gifemo.backbones import VideoBackbone
from gifemo.data.worker_batches import hand_back
from gifemo.eval.multilabel import (
    average_precision,
    best_f1_thresholds,
    precision_recall_f1,
    summarise,
)
from gifemo.finetune.dropout import dropout_keep_mask

log = logging.getLogger(__name__)


def positive_weights(labels: np.ndarray, *, max_weight: float = 100.0) -> Tensor:
    """pos_weight_e = #negatives_e / #positives_e on the training labels (n, t), clipped to [1/max, max].

    An emotion without a positive gets ``max_weight``.
    """
    labels = np.asarray(labels).astype(bool)
    pos = labels.sum(0).astype(np.float64)
    neg = labels.shape[0] - pos
    w = np.divide(neg, pos, out=np.full_like(pos, max_weight), where=pos > 0)
    return torch.as_tensor(np.clip(w, 1.0 / max_weight, max_weight), dtype=torch.float32)


def mean_by_gif(values: Tensor, gif_index: Tensor, n_gifs: int) -> tuple[Tensor, Tensor]:
    """Per-GIF mean of clip rows: values (N, k), gif_index (N,) in [0, n_gifs) → (n_gifs, k), counts (n_gifs,).

    GIFs with no clip (decode failures) get a zero row and count 0. Counts are an ``index_add_``
    of ones (``bincount`` would read its maximum back to the host: a device sync on a GPU).
    """
    if values.shape[0] != gif_index.shape[0]:
        raise ValueError(
            f"values {tuple(values.shape)} and gif_index {tuple(gif_index.shape)} differ in N"
        )
    sums = values.new_zeros(n_gifs, values.shape[1]).index_add_(0, gif_index, values)
    counts = gif_index.new_zeros(n_gifs).index_add_(0, gif_index, torch.ones_like(gif_index))
    return sums / counts.clamp(min=1).unsqueeze(1).to(values.dtype), counts


def gather_predictions(
    index: Tensor, scores: Tensor, labels: Tensor
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All ranks' (index (n,), scores (n, t), labels (n, t)) → every rank gets the union, deduplicated.

    Each dataset index is kept once (the first copy), so a padding DistributedSampler (which repeats
    samples to even out ranks) cannot count a GIF twice; rows are returned sorted by index.
    """
    local = (index.cpu().numpy(), scores.float().cpu().numpy(), labels.float().cpu().numpy())
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        parts: list[Any] = [None] * torch.distributed.get_world_size()
        torch.distributed.all_gather_object(parts, local)
    else:
        parts = [local]
    idx = np.concatenate([p[0] for p in parts])
    sc = np.concatenate([p[1] for p in parts])
    lab = np.concatenate([p[2] for p in parts])
    _, first = np.unique(idx, return_index=True)  # sorted unique indices, first occurrence
    return idx[first], sc[first], lab[first].astype(bool)


class FinetuneModule(L.LightningModule):
    """Video backbone + multi-task head, BCE with positive weights, optional head penalty.

    Args:
        backbone: a built :class:`gifemo.backbones.VideoBackbone` (C3D, R(2+1)D-18, ...); its
            ``drop_classifier()`` removes the layers ``features`` does not use (C3D's fc7/fc8,
            R(2+1)D's fc) so that DDP sees no unused parameters, and its ``preprocessing``
            normalises uint8 clips.
        head: a :class:`gifemo.models.heads.MultiTaskHead` with W (d, t), b (t,); d = backbone.feature_dim.
        penalty: a penalty object with a differentiable ``value(W)``, or None.
        optimizer: ``functools.partial`` of a torch optimiser (Hydra ``_partial_: true``), called
            with two parameter groups (backbone at ``lr``, head at ``head_lr``).
        scheduler: optional partial of a torch LR scheduler, stepped per epoch.
        pos_weight: (t,) positive weights of the BCE, or None for 1.
        freeze_epochs: epochs during which the backbone gets no gradient.
        feature_dropout: dropout on the features while training (C3D's own fc6 dropout rate is 0.5).
        eval_chunk: clips per backbone call at evaluation (bounds memory for long GIFs).
        seed: keys the dropout masks.
        channels_last: channels_last_3d memory format for the backbone's weights and the input
            clips; None (default) = on CUDA only (see docs/finetune.md "Speed"). Applied in
            ``setup`` (before the strategy moves and wraps the model) from the trainer's device.
        compile: ``torch.compile`` the backbone's ``features`` (:meth:`compile_features`).
    """

    pos_weight: Tensor
    val_thresholds: Tensor
    backbone: Any
    head: Any

    def __init__(
        self,
        backbone: VideoBackbone,
        head: nn.Module,
        penalty: Any | None = None,
        *,
        optimizer: Callable[..., torch.optim.Optimizer],
        scheduler: Callable[..., Any] | None = None,
        lr: float = 1e-4,
        head_lr: float | None = 1e-3,
        pos_weight: Tensor | None = None,
        freeze_epochs: int = 0,
        feature_dropout: float = 0.5,
        eval_chunk: int = 64,
        seed: int = 0,
        channels_last: bool | None = None,
        compile: bool = False,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["backbone", "head", "penalty", "optimizer", "scheduler"])
        backbone.drop_classifier()
        d, t = tuple(head.W.shape)  # type: ignore[arg-type]
        if d != backbone.feature_dim:
            raise ValueError(
                f"head.W is ({d}, {t}) but the backbone gives {backbone.feature_dim} features"
            )
        self.backbone, self.head, self.penalty = backbone, head, penalty
        self.optimizer_factory, self.scheduler_factory = optimizer, scheduler
        self.lr, self.head_lr = lr, head_lr if head_lr is not None else lr
        self.freeze_epochs, self.feature_dropout = int(freeze_epochs), float(feature_dropout)
        self.eval_chunk, self.seed = int(eval_chunk), int(seed)
        self.channels_last = channels_last
        self._memory_format = torch.contiguous_format
        self._features: Callable[[Tensor], Tensor] = backbone.features
        self.compiled = False
        if compile:
            self.compile_features()
        self._step_clock: dict[str, float] = {}
        self.first_step_s: float | None = None  # wall time of this process's first step
        self.step_s: float | None = None  # mean wall time of the next TIMED_STEPS steps
        pw = (
            torch.ones(t)
            if pos_weight is None
            else torch.as_tensor(pos_weight, dtype=torch.float32)
        )
        if pw.shape != (t,):
            raise ValueError(f"pos_weight must have shape ({t},), got {tuple(pw.shape)}")
        self.register_buffer("pos_weight", pw)
        self.register_buffer("val_thresholds", torch.zeros(t))  # chosen on validation data (max F1)
        self._outputs: dict[str, list[tuple[Tensor, Tensor, Tensor]]] = {"val": [], "test": []}
        self.failures: list[dict[str, Any]] = []
        self.last_metrics: dict[str, dict[str, float]] = {}
        self.history: list[dict[str, float]] = []  # per epoch: train loss (all ranks), val mAP
        self._epoch_loss: Tensor | None = None  # [Σ per-GIF loss, Σ GIFs] over all ranks

    # -- execution: memory format, compile, step timing ------------------------------------
    TIMED_STEPS = 10  # steps after the first one whose mean time is ``step_s``

    def compile_features(self, **kwargs: Any) -> None:
        """Run the backbone's ``features`` through ``torch.compile(**kwargs)`` from now on.

        Its first call compiles (the warm-up: ``first_step_s`` − ``step_s`` of training); a new
        input shape or grad mode (the frozen epochs) compiles again once."""
        self._features = torch.compile(self.backbone.features, **kwargs)
        self.compiled = True

    def use_channels_last(self, device: torch.device | str) -> bool:
        """Whether channels_last_3d is used on ``device`` (``channels_last``; None: CUDA only)."""
        if self.channels_last is not None:
            return bool(self.channels_last)
        return torch.device(device).type == "cuda"

    def set_memory_format(self, device: torch.device | str) -> None:
        """Backbone weights (and from now on the input clips) in channels_last_3d if
        :meth:`use_channels_last` says so for ``device``, else contiguous."""
        fmt = torch.channels_last_3d if self.use_channels_last(device) else torch.contiguous_format
        if fmt != self._memory_format:
            self.backbone.to(memory_format=fmt)
            self._memory_format = fmt

    def setup(self, stage: str) -> None:
        self.set_memory_format(self.trainer.strategy.root_device)

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        if self._step_clock.get("state") is None:  # this process's first step
            self._step_clock = {"state": 0.0, "start": time.perf_counter()}

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        """Times the first step (compile warm-up, cudnn autotuning) and the mean of the next
        ``TIMED_STEPS`` (dropped if an epoch ends among them): two device syncs in a run.
        The batch's shared buffer goes back to its loader worker (the step is done with it)."""
        hand_back(batch)
        clock = self._step_clock
        if clock.get("state", -1.0) < 0:  # done (or not started)
            return
        clock["state"] += 1
        if clock["state"] == 1:
            self._sync()
            now = time.perf_counter()
            self.first_step_s, clock["t1"] = now - clock["start"], now
            self._history_row()["first_step_s"] = self.first_step_s
            log.info("first training step: %.2f s%s", self.first_step_s,
                     " (includes torch.compile)" if self.compiled else "")  # fmt: skip
        elif clock["state"] == 1 + self.TIMED_STEPS:
            self._sync()
            self.step_s = (time.perf_counter() - clock["t1"]) / self.TIMED_STEPS
            self._history_row()["step_s"] = self.step_s
            log.info(
                "training step: %.4f s (mean of steps 2–%d)", self.step_s, 1 + self.TIMED_STEPS
            )
            clock["state"] = -1.0

    def _stop_step_clock(self) -> None:
        """Validation or an epoch end in the timed window: no ``step_s`` (it would include them)."""
        if self._step_clock.get("state", -1.0) >= 0:
            self._step_clock["state"] = -1.0

    # -- forward -----------------------------------------------------------------------------
    @property
    def backbone_frozen(self) -> bool:
        return self.training and self.current_epoch < self.freeze_epochs

    def _dropout(self, h: Tensor, batch: dict[str, Any] | None) -> Tensor:
        p = self.feature_dropout
        if not self.training or p == 0.0:
            return h
        if batch is None:
            raise ValueError(
                "training-mode dropout needs the batch (its GIF indices key the masks)"
            )
        keep = dropout_keep_mask(
            self.seed, self.current_epoch, batch["index"], batch["gif_index"], h.shape[1], p
        )
        return h * keep.to(h.dtype) * (1.0 / (1.0 - p))  # keep is already on h's device

    def clip_logits(self, clips: Tensor, batch: dict[str, Any] | None = None) -> Tensor:
        """(N, 3, 16, 112, 112) → (N, t) logits (``batch`` keys the dropout masks when training).

        uint8 clips (a transform with ``output="uint8"``) are normalised here, on the model's
        device, by ``backbone.preprocessing.normalize``; float clips are used as given.
        """
        clips = self.backbone.preprocessing.normalize(
            clips.contiguous(memory_format=self._memory_format)
        )
        if self.backbone_frozen:
            with torch.no_grad():
                h = self._features(clips)  # (N, d)
        else:
            h = self._features(clips)  # (N, d)
        return self.head(self._dropout(h, batch))  # (N, t)

    def gif_logits(self, batch: dict[str, Any]) -> tuple[Tensor, Tensor]:
        """Per-GIF mean logits (B, t) and clip counts (B,) from a ``collate_clips`` batch."""
        clips, gif_index = batch["clips"], batch["gif_index"]
        n_gifs = len(batch["index"])
        t = self.head.W.shape[1]
        if len(clips) == 0:  # every GIF failed: zero logits, still connected to the head
            z = clips.new_zeros(0, t) + 0.0 * self.head.W.sum()
        elif self.training:
            z = self.clip_logits(clips, batch)
        else:
            z = torch.cat([self.clip_logits(c) for c in clips.split(self.eval_chunk)])
        return mean_by_gif(z.float(), gif_index, n_gifs)

    def forward(self, clips: Tensor) -> Tensor:
        """Clip logits (N, t) (no averaging, no sigmoid)."""
        return self.clip_logits(clips)

    # -- training ----------------------------------------------------------------------------
    def bce_sums(self, logits: Tensor, labels: Tensor) -> Tensor:
        """Σ_e ℓ_{n,e} per GIF: logits, labels (B, t) → (B,) positive-weighted BCE sums."""
        bce = F.binary_cross_entropy_with_logits(
            logits, labels.float(), pos_weight=self.pos_weight, reduction="none"
        )
        return bce.sum(1)

    def loss(self, logits: Tensor, labels: Tensor) -> Tensor:
        """Mean positive-weighted BCE over (GIF, emotion), + Ω(W)."""
        bce = F.binary_cross_entropy_with_logits(logits, labels.float(), pos_weight=self.pos_weight)
        return bce + self.regulariser()

    def regulariser(self) -> Tensor:
        """Ω(W) of the head (0 without a penalty)."""
        if self.penalty is None:
            return self.head.W.new_zeros(())
        return self.penalty.value(self.head.W)

    def _world_size(self) -> int:
        return int(self._trainer.world_size) if self._trainer is not None else 1

    def _all_sum(self, x: Tensor) -> Tensor:
        """Σ over ranks (identity in one process)."""
        if self._world_size() == 1:
            return x
        return self.trainer.strategy.reduce(x.clone(), reduce_op="sum")

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> Tensor:
        """Rank loss L_r of the module notes (its rank average is the global-batch loss)."""
        self.failures.extend(batch.get("failures", []))
        logits, counts = self.gif_logits(batch)
        weight = (counts > 0).to(logits.dtype)  # (B,): 0 for a GIF without clips
        if batch.get("weight") is not None:
            weight = weight * batch["weight"].to(logits)
        labels = batch["labels"].to(logits)
        bce = (weight * self.bce_sums(logits, labels)).sum()
        t, world = logits.shape[1], self._world_size()
        total = self._all_sum(torch.stack([weight.sum(), bce.detach()]))  # [Σ w, Σ w·ℓ] global
        n = total[0].clamp(min=1.0)
        reg = self.regulariser()
        loss = world * bce / (n * t) + reg
        sums = torch.stack([total[1] / t + reg.detach() * total[0], total[0]])  # no host sync
        # (.to: sums restored from a checkpoint are on the CPU; a no-op afterwards)
        self._epoch_loss = sums if self._epoch_loss is None else self._epoch_loss.to(sums) + sums
        # not in the progress bar: Lightning turns progress-bar values into Python floats after
        # every step (a device sync); logged values reach the logger every log_every_n_steps
        self.log("train/loss", total[1] / (n * t) + reg.detach(), on_step=True, on_epoch=True,
                 prog_bar=False, batch_size=len(counts))  # fmt: skip
        return loss

    # -- evaluation --------------------------------------------------------------------------
    def _eval_step(self, stage: str, batch: dict[str, Any]) -> None:
        self.failures.extend(batch.get("failures", []))
        logits, counts = self.gif_logits(batch)
        ok = counts > 0
        self._outputs[stage].append(
            (batch["index"][ok].detach(), logits[ok].detach(), batch["labels"][ok].detach())
        )

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._eval_step("val", batch)
        hand_back(batch)

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._eval_step("test", batch)
        hand_back(batch)

    def _collect(self, stage: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        outs, self._outputs[stage] = self._outputs[stage], []
        t = self.head.W.shape[1]
        if outs:
            index, scores, labels = (torch.cat(x) for x in zip(*outs))
        else:
            index, scores, labels = (
                torch.zeros(0, dtype=torch.long),
                torch.zeros(0, t),
                torch.zeros(0, t),
            )
        return gather_predictions(index, scores, labels)

    def _epoch_metrics(self, stage: str, thresholds: np.ndarray | None) -> dict[str, float]:
        index, scores, labels = self._collect(stage)
        if index.size == 0:
            return {}
        if thresholds is None:
            thresholds = best_f1_thresholds(scores, labels)
            self.val_thresholds.copy_(torch.as_tensor(thresholds, dtype=torch.float32))
        with torch.no_grad():
            loss = self.loss(
                torch.as_tensor(scores).to(self.pos_weight),
                torch.as_tensor(labels).to(self.pos_weight),
            )
        per_emotion: dict[str, np.ndarray] = {"ap": average_precision(scores, labels)}
        per_emotion.update(precision_recall_f1(scores >= thresholds, labels))
        per_emotion["threshold"] = thresholds
        metrics = summarise(per_emotion, prefix=f"{stage}/")
        metrics[f"{stage}/mAP"] = metrics.pop(f"{stage}/ap_mean")
        metrics[f"{stage}/n_gifs"] = float(index.size)
        metrics[f"{stage}/loss"] = float(loss)
        # every rank holds the same gathered numbers, so no further sync is needed
        loggable = {k: v for k, v in metrics.items() if np.isfinite(v) and "threshold" not in k}
        self.log_dict(loggable, sync_dist=False, rank_zero_only=False)
        self.last_metrics[stage] = metrics
        return metrics

    def on_validation_epoch_end(self) -> None:
        metrics = self._epoch_metrics("val", None)
        if not self.trainer.sanity_checking and self.trainer.state.fn == "fit":
            self._history_row()["val/mAP"] = metrics.get("val/mAP", float("nan"))

    def _history_row(self) -> dict[str, float]:
        """This epoch's row of ``history`` (created on demand: a resumed epoch has no start hook)."""
        if not self.history or self.history[-1]["epoch"] != self.current_epoch:
            self.history.append({"epoch": float(self.current_epoch)})
        return self.history[-1]

    def on_train_epoch_start(self) -> None:
        self._epoch_loss = None
        self._history_row()

    def on_validation_start(self) -> None:
        self._stop_step_clock()

    def on_train_epoch_end(self) -> None:
        self._stop_step_clock()
        if self._epoch_loss is None:  # no training step ran in this (resumed) epoch
            return
        total, count = self._epoch_loss.tolist()  # over all ranks' GIFs: the same on every rank
        self._history_row()["train/loss"] = total / max(count, 1.0)

    def on_test_epoch_end(self) -> None:
        self._epoch_metrics("test", self.val_thresholds.cpu().numpy().astype(np.float64))

    # -- checkpoint -------------------------------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """What a resumed fit needs to report like an uninterrupted one (module notes)."""
        loss = None if self._epoch_loss is None else self._epoch_loss.detach().cpu()
        checkpoint["finetune_progress"] = {
            "history": [dict(row) for row in self.history],
            "failures": list(self.failures),
            "epoch_loss": loss,
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        state = checkpoint.get("finetune_progress")
        if state is None or self._trainer is None or self.trainer.state.fn != "fit":
            return  # a test / predict from a checkpoint keeps this run's own records
        self.history = [dict(row) for row in state["history"]]
        self.failures = list(state["failures"])
        self._epoch_loss = state["epoch_loss"]

    # -- optimisation ------------------------------------------------------------------------
    def parameter_groups(self) -> list[dict[str, Any]]:
        def params(m: nn.Module) -> Iterable[nn.Parameter]:
            return [p for p in m.parameters() if p.requires_grad]

        return [
            {"params": params(self.backbone), "lr": self.lr, "name": "backbone"},
            {"params": params(self.head), "lr": self.head_lr, "name": "head"},
        ]

    def configure_optimizers(self) -> Any:
        optimizer = self.optimizer_factory(self.parameter_groups())
        if self.scheduler_factory is None:
            return optimizer
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": self.scheduler_factory(optimizer), "interval": "epoch"},
        }
