"""Training step throughput on real train_examples: where the CPU time goes and what each change buys.

Reads the train split of --ds from the lake --config points at (e.g. the Amazon Games lake that
benchmarks/amazon_games.py builds), then times optimizer steps (forward, loss, backward, Adam) of one model in
this process, in the same run:

- baseline: the full softmax as ``F.cross_entropy`` over materialised ``[N, V]`` logits, batches as read;
- chunked: the trainer's full softmax (training/losses.py, the catalogue in chunks), batches as read;
- chunked + length buckets: the same, rows grouped by length as the trainer does (train.length_buckets);
- and the loss alone, reference against chunked, on the batches' real positions.

    .venv/bin/python benchmarks/train_step.py --config /tmp/amazon-bench/converted/seqrec.yaml --ds 2018-01-01
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import torch
import torch.nn.functional as F


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", type=Path, required=True, help="YAML naming the lake ($SEQREC_CONFIG).")
    parser.add_argument("--ds", required=True)
    parser.add_argument("--steps", type=int, default=60, help="Timed steps per variant (after 3 warm-up steps).")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="torch intra-op threads.")
    return parser.parse_args()


def reference_full_softmax(states: torch.Tensor, targets: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
    """The loss before the chunked one: every logit materialised, then ``F.cross_entropy``."""
    from lake.sequences import FIRST_ITEM_INDEX

    logits = (states @ items.T).float()  # [N, V]
    logits[:, :FIRST_ITEM_INDEX] = float("-inf")
    return F.cross_entropy(logits, targets, reduction="none")


def _seconds(work: Callable[[], object], repeats: int) -> float:
    work()
    started = time.perf_counter()
    for _ in range(repeats):
        work()
    return (time.perf_counter() - started) / repeats


def main() -> None:
    args = _arguments()
    os.environ["SEQREC_CONFIG"] = str(args.config.resolve())
    torch.set_num_threads(args.threads)
    from lake import Lake, load_config
    from lake.vocab import vocab_size
    from training import losses
    from training.data import ExampleSource, TrainExamples, batches
    from training.models import VocabSizes, build_model
    from training.settings import TrainSettings

    config = load_config()
    lake = Lake.from_config(config)
    settings = TrainSettings.from_config(config)
    items = vocab_size(lake, "item_vocab", version=lake.version("item_vocab"))
    source = ExampleSource.from_lake(lake, args.ds, version=lake.version("train_examples"), max_len=settings.max_len)
    needed = args.steps + 3

    def first_batches(length_buckets: int) -> list:
        stream: Iterator = batches(TrainExamples(source, "train", shuffle=True, seed=1), settings.batch_size,
                                   item_vocab_size=items, length_buckets=length_buckets, seed=1)
        return [batch for _, batch in zip(range(needed), stream, strict=False)]

    as_read, bucketed = first_batches(1), first_batches(settings.length_buckets)
    print(f"{items:,} items, batch {settings.batch_size}, hidden {settings.hidden_size}, {args.threads} threads; "
          f"mean batch length: as read {_mean_length(as_read):.1f}, "
          f"in buckets of {settings.length_buckets} batches {_mean_length(bucketed):.1f}")

    chunked_loss = losses.full_softmax
    rows = []
    for name, loss, data in (("baseline (F.cross_entropy, as read)", reference_full_softmax, as_read),
                             ("chunked softmax, as read", chunked_loss, as_read),
                             ("chunked softmax + length buckets", chunked_loss, bucketed)):
        losses.full_softmax = loss  # sequence_loss looks it up at call time
        torch.manual_seed(0)
        model = build_model(settings, VocabSizes(items=items, categories=2, gap_buckets=settings.max_gap_bucket + 1))
        optimizer = torch.optim.Adam(model.parameters(), lr=settings.learning_rate)
        model.train()

        def step(batch: object, model: torch.nn.Module = model, optimizer: torch.optim.Optimizer = optimizer) -> None:
            optimizer.zero_grad()
            model.calculate_loss(batch).backward()
            optimizer.step()

        for batch in data[:3]:
            step(batch)
        started = time.perf_counter()
        for batch in data[3:]:
            step(batch)
        rows.append((name, sum(len(b) for b in data[3:]) / (time.perf_counter() - started)))
    losses.full_softmax = chunked_loss

    baseline = rows[0][1]
    print(f"\n{'variant':<40} {'seq/s':>8} {'x baseline':>10}")
    for name, throughput in rows:
        print(f"{name:<40} {throughput:>8.0f} {throughput / baseline:>10.2f}")

    positions = sum(int((b.targets >= 2).sum()) for b in as_read[3:]) // args.steps
    generator = torch.Generator().manual_seed(0)
    states = torch.randn(positions, settings.hidden_size, generator=generator, requires_grad=True)
    table = torch.randn(items, settings.hidden_size, generator=generator, requires_grad=True)
    targets = torch.randint(2, items, (positions,), generator=generator)
    timings = {name: _seconds(lambda loss=loss: loss(states, targets, table).mean().backward(), 10)
               for name, loss in (("reference", reference_full_softmax), ("chunked", chunked_loss))}
    print(f"\nloss forward+backward alone, {positions} positions x {items:,} items: reference "
          f"{timings['reference'] * 1000:.0f} ms, chunked {timings['chunked'] * 1000:.0f} ms "
          f"({timings['reference'] / timings['chunked']:.2f}x)")


def _mean_length(data: list) -> float:
    return sum(batch.items.shape[1] for batch in data) / max(len(data), 1)


if __name__ == "__main__":
    main()
