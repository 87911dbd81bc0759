"""The training loop every worker runs: Horovod-synchronised steps, validation, early stopping, checkpoints.

Every worker takes the same number of steps per epoch (the global train rows over the global batch), drawing
from an endless stream of its own shard, so the gradient allreduce never waits on a worker that ran out.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch

from lake import EmptyInputError
from lake.user_sample import sample_share
from training.batch import Batch
from training.checkpoint import Checkpoints
from training.data import ExampleSource, TrainExamples, batches
from training.distributed import Workers, broadcast_training_state, distributed_optimizer, synchronized_step
from training.models import SequentialRecommender
from training.settings import TrainSettings
from training.validation import RankingTotals, ranking_totals, sampled_candidates

__all__ = ["Progress", "Trainer"]

log = logging.getLogger(__name__)

MetricsSink = Callable[[dict[str, float], int], None]


@dataclass
class Progress:
    """Where training stands after ``epoch`` epochs; what a checkpoint restores."""

    # train.early_stopping_metric; a checkpoint written before it was configurable watched valid_ndcg@10
    metric: str = "valid_ndcg@10"
    epoch: int = 0
    best_epoch: int = 0
    best_metrics: dict[str, float] = field(default_factory=dict)
    stale_epochs: int = 0
    best_weights: dict[str, torch.Tensor] | None = None

    @property
    def best_score(self) -> float:
        return self.best_metrics.get(self.metric, -math.inf)

    def finished(self, settings: TrainSettings, *, gradient_trained: bool = True) -> bool:
        if not gradient_trained:
            return self.epoch >= 1  # counting is exact after one pass
        return self.epoch >= settings.epochs or self.stale_epochs >= settings.patience

    def record(self, epoch: int, metrics: dict[str, float], model: torch.nn.Module) -> None:
        """Count epoch ``epoch`` done; keep the model's weights if it is the best so far."""
        self.epoch = epoch
        if metrics[self.metric] > self.best_score or self.best_weights is None:
            self.best_epoch, self.best_metrics, self.stale_epochs = epoch, dict(metrics), 0
            self.best_weights = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
        else:
            self.stale_epochs += 1

    def state(self) -> dict[str, Any]:
        return {"metric": self.metric, "epoch": self.epoch, "best_epoch": self.best_epoch,
                "best_metrics": self.best_metrics, "stale_epochs": self.stale_epochs, "best_weights": self.best_weights}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Progress:
        return cls(**state)


class Trainer:
    """Fits ``model`` on this worker's shard of ``source``.

    Args:
        model: on ``workers.device``.
        settings: the `train:` section.
        workers: this worker's Horovod context.
        source: the pinned train_examples snapshot.
        train_rows: train rows in the whole snapshot (sets the steps per epoch).
        valid_rows: valid rows (users) in the whole snapshot; above ``train.valid_max_users`` validation ranks
            a fixed sample of about that many (0 = unknown: every user).
        checkpoints: rank 0 only: where each epoch's checkpoint goes.
        log_metrics: rank 0 only: receives each epoch's metrics and the epoch number (MLflow).
        resume_from: rank 0 only: a checkpoint's state to continue from.
        item_vocab_size: the model's item vocabulary (data beyond it is refused).
    """

    def __init__(self, model: SequentialRecommender, settings: TrainSettings, workers: Workers,
                 source: ExampleSource, *, train_rows: int, item_vocab_size: int, valid_rows: int = 0,
                 checkpoints: Checkpoints | None = None, log_metrics: MetricsSink | None = None,
                 resume_from: dict[str, Any] | None = None, checkpoint_about: dict[str, Any] | None = None) -> None:
        self.model = model
        self.settings = settings
        self.workers = workers
        self.source = source
        self.train_rows = train_rows
        self.valid_share = sample_share(settings.valid_max_users, valid_rows)
        if self.valid_share < 1.0 and workers.is_chief:
            log.info("validation ranks a fixed sample of about %d of the %d users (train.valid_max_users)",
                     settings.valid_max_users, valid_rows)
        self.item_vocab_size = item_vocab_size
        self.checkpoints = checkpoints
        self.log_metrics = log_metrics
        self.resume_from = resume_from
        self.checkpoint_about = checkpoint_about or {}
        self._valid: list[Batch] | None = None
        # running total of the batches' loss weight, for the length-grouped batches' common denominator
        self._loss_mass, self._loss_batches = 0.0, 0

    def fit(self) -> Progress:
        """Train until ``epochs`` or early stopping, then load the best epoch's weights on every worker."""
        optimizer = self._optimizer() if self.model.gradient_trained else None
        progress = self._restore(optimizer)
        if progress.epoch:
            log.info("resuming after epoch %d (best %s %.4f at epoch %d)", progress.epoch,
                     progress.metric, progress.best_score, progress.best_epoch)
        stream = self._train_stream(progress.epoch) if optimizer is not None else None
        while not progress.finished(self.settings, gradient_trained=self.model.gradient_trained):
            epoch = progress.epoch + 1
            started = time.monotonic()
            if optimizer is not None and stream is not None:
                metrics = self._train_epoch(optimizer, stream)
            else:
                metrics = self._count_epoch()
            train_seconds = time.monotonic() - started
            metrics = {**metrics, **self._validate().metrics()}
            metrics["sequences_per_second"] = metrics.pop("sequences") / max(train_seconds, 1e-9)
            metrics["epoch_seconds"] = time.monotonic() - started
            progress.record(epoch, metrics, self.model)
            self._report(progress, metrics, optimizer)
        if progress.best_weights is not None:
            self.model.load_state_dict(progress.best_weights)
        return progress

    # -- setup --------------------------------------------------------------------------------------
    def _optimizer(self) -> torch.optim.Optimizer:
        # linear scaling: the global batch is batch_size x workers
        base = torch.optim.Adam(self.model.parameters(), lr=self.settings.learning_rate * self.workers.size,
                                weight_decay=self.settings.weight_decay)
        return distributed_optimizer(base, self.model)

    def _restore(self, optimizer: torch.optim.Optimizer | None) -> Progress:
        progress = Progress(metric=self.settings.early_stopping_metric)
        if self.resume_from is not None:
            self.model.load_state_dict(self.resume_from["model"])
            if optimizer is not None:
                optimizer.load_state_dict(self.resume_from["optimizer"])
            progress = Progress.from_state(self.resume_from["progress"])
            if progress.metric != self.settings.early_stopping_metric:
                # the best epoch so far stays; later epochs are compared with its value of the new metric
                log.warning("the checkpoint's run watched %s; from now on early stopping watches %s",
                            progress.metric, self.settings.early_stopping_metric)
                progress.metric = self.settings.early_stopping_metric
        broadcast_training_state(self.model, optimizer)
        return self.workers.from_chief(progress, "progress")

    def _train_stream(self, epochs_done: int) -> Iterator[Batch]:
        examples = TrainExamples(self.source, "train", self.workers.shard, passes=None, shuffle=True,
                                 seed=self.settings.seed + 1000 * epochs_done)
        return batches(examples, self.settings.batch_size, item_vocab_size=self.item_vocab_size,
                       length_buckets=self.settings.length_buckets, seed=self.settings.seed + epochs_done)

    # -- one epoch ----------------------------------------------------------------------------------
    def _train_epoch(self, optimizer: torch.optim.Optimizer, stream: Iterator[Batch]) -> dict[str, float]:
        steps = max(1, math.ceil(self.train_rows / (self.settings.batch_size * self.workers.size)))
        if self.settings.max_steps_per_epoch:
            steps = min(steps, self.settings.max_steps_per_epoch)
        self.model.train()
        loss_sum, mass_sum, sequences = 0.0, 0.0, 0
        for _ in range(steps):
            batch = next(stream).to(self.workers.device)
            mass = self.model.loss_mass(batch)
            denominator = self._denominator(mass)
            optimizer.zero_grad()
            with self.workers.autocast():
                loss = self.model.calculate_loss(batch, denominator=denominator)
            loss.backward()
            with synchronized_step(optimizer):
                if self.settings.grad_clip_norm > 0:
                    torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.settings.grad_clip_norm)
            loss_sum += float(loss.detach()) * (denominator or mass)
            mass_sum += mass
            sequences += len(batch)
        # the mean over the epoch's positions (weighted), however each batch was divided
        return {"train_loss": self.workers.average(loss_sum / max(mass_sum, 1e-9), "train_loss"),
                "sequences": float(self.workers.total(torch.tensor([float(sequences)]), "sequences"))}

    def _denominator(self, mass: float) -> float | None:
        """With length buckets, every batch's loss is divided by the mean loss weight (``mass``) of the batches
        so far, so a position weighs the same in a batch of short sequences as in one of long ones (as it
        does, on average, in batches of mixed lengths); without, None: each batch's own mean."""
        if self.settings.length_buckets <= 1:
            return None
        self._loss_mass += mass
        self._loss_batches += 1
        return max(self._loss_mass / self._loss_batches, 1.0)

    def _count_epoch(self) -> dict[str, float]:
        examples = TrainExamples(self.source, "train", self.workers.shard, passes=1)
        sequences = 0
        for batch in batches(examples, self.settings.batch_size, item_vocab_size=self.item_vocab_size):
            self.model.observe(batch.to(self.workers.device))
            sequences += len(batch)
        for name, buffer in self.model.named_buffers():
            buffer.copy_(self.workers.total(buffer, f"observed.{name}"))
        return {"sequences": float(self.workers.total(torch.tensor([float(sequences)]), "sequences"))}

    def _validate(self) -> RankingTotals:
        if self._valid is None:  # one row per (sampled) user: small enough to keep after the first read
            examples = TrainExamples(self.source, "valid", self.workers.shard, passes=1,
                                     user_share=self.valid_share, user_seed=self.settings.seed)
            self._valid = list(batches(examples, self.settings.batch_size, item_vocab_size=self.item_vocab_size))
        # The sampled candidates are drawn again each epoch from the same seed (the same candidates), one batch
        # at a time: each draw needs [B, V] scratch tensors, and keeping every batch's small result in between
        # them fragmented glibc's heap (+2.5 GB resident for 50,000 users x 30,000 items, measured).
        sampler = torch.Generator().manual_seed(self.settings.seed + self.workers.rank)
        candidates = (sampled_candidates(batch, self.settings.valid_negatives, self.item_vocab_size, sampler)
                      for batch in self._valid)
        mine = ranking_totals(self.model, self._valid, candidates, self.workers.device)
        totals = RankingTotals.from_tensor(self.workers.total(mine.as_tensor(), "valid_totals"))
        if totals.users == 0:
            raise EmptyInputError(
                f"train_examples ds={self.source.ds} (version {self.source.version}) has no 'valid' rows with a "
                f"known target item; early stopping needs them: rerun featurize for this ds"
            )
        return totals

    def _report(self, progress: Progress, metrics: dict[str, float], optimizer: torch.optim.Optimizer | None) -> None:
        if not self.workers.is_chief:
            return
        log.info(
            "epoch %d/%d: train_loss %s  valid_ndcg@10 %.4f  valid_hr@10 %.4f  sampled %.4f / %.4f | "
            "%.0f seq/s, %.1fs (best %s %.4f at epoch %d)",
            progress.epoch, self.settings.epochs, f"{metrics['train_loss']:.4f}" if "train_loss" in metrics else "-",
            metrics["valid_ndcg@10"], metrics["valid_hr@10"], metrics["valid_sampled_ndcg@10"],
            metrics["valid_sampled_hr@10"], metrics["sequences_per_second"], metrics["epoch_seconds"],
            progress.metric, progress.best_score, progress.best_epoch,
        )
        # checkpoint before logging: an epoch in the run's history is one a resume will not train again; the
        # manifest keeps the epoch's metrics so a resume can log them if the job died between the two
        if self.checkpoints is not None:
            state = {"model": self.model.state_dict(), "progress": progress.state(),
                     "optimizer": optimizer.state_dict() if optimizer is not None else {}}
            self.checkpoints.save(state, epoch=progress.epoch,
                                  about={**self.checkpoint_about, "metrics": {k: float(v) for k, v in metrics.items()}})
        if self.log_metrics is not None:
            self.log_metrics(metrics, progress.epoch)
