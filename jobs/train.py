"""Entry point: train and register a model for one ds. `seqrec train ...` or `spark-submit jobs/train.py ...`."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated, Any

import typer

from jobs._common import ConfigOption, DsOption, console, run_stage
from lake import Config

if TYPE_CHECKING:
    from lake.registry import ModelCard


def run(config: Config, ds: str, *, resume: bool = False, run_key: str | None = None) -> ModelCard:
    """The train stage as a plain function of (config, ds): the registered model's card."""
    from training.launch import launch

    return launch(config, ds, resume=resume, run_key=run_key)


def command(
    ds: DsOption,
    config: ConfigOption = None,
    num_proc: Annotated[int | None, typer.Option("--np", help="Horovod workers (train.num_proc).", min=1)] = None,
    hosts: Annotated[str | None, typer.Option("-H", "--hosts", help="horovodrun hosts, e.g. a:4,b:4.")] = None,
    launcher: Annotated[str | None, typer.Option("--launcher", help="horovodrun (default) or spark.")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue from the last checkpoint of this ds.")] = False,
    model_type: Annotated[str | None, typer.Option("--model-type", help="sasrec, gru, lstm or popularity.")] = None,
    epochs: Annotated[int | None, typer.Option("--epochs", help="Most epochs (early stopping may end sooner).")] = None,
    batch_size: Annotated[int | None, typer.Option("--batch-size", help="Sequences per step per worker.")] = None,
    learning_rate: Annotated[float | None, typer.Option("--lr", help="Per-worker learning rate.")] = None,
    loss: Annotated[str | None, typer.Option("--loss", help="full_softmax, sampled_softmax or bce.")] = None,
    num_layers: Annotated[int | None, typer.Option("--num-layers", help="Transformer blocks or RNN layers.")] = None,
    run_key: Annotated[str | None, typer.Option(
        "--run-key", help="The scheduler's run id: a retry with this key reuses the version it registered.")] = None,
) -> None:
    """Train a model on train_examples for DS with Horovod, register it (not promoted) and print
    {"model_version": "N", ...} as the last stdout line (JSON). Settings: training/defaults.yaml (`train:`),
    overridden by flags."""
    flags: dict[str, Any] = {
        "num_proc": num_proc, "hosts": hosts, "launcher": launcher, "model_type": model_type, "epochs": epochs,
        "batch_size": batch_size, "learning_rate": learning_rate, "loss": loss, "num_layers": num_layers,
    }
    overrides = {key: value for key, value in flags.items() if value is not None}
    card = run_stage("train", ds, config,
                     lambda cfg: run(cfg.with_overrides({"train": overrides}), ds, resume=resume, run_key=run_key))
    meta = card.meta
    console.print(f"registered {card.name} version {card.version}: {meta['model_type']}, valid NDCG@10 "
                  f"{meta['valid_ndcg@10']:.4f}, HR@10 {meta['valid_hr@10']:.4f}; sampled NDCG@10 "
                  f"{meta['valid_sampled_ndcg@10']:.4f}, HR@10 {meta['valid_sampled_hr@10']:.4f} (best of "
                  f"{meta['epochs_trained']} epochs: {meta['best_epoch']}, by {meta['early_stopping_metric']})")
    typer.echo(json.dumps({"model_version": card.version, "trained_ds": ds, "run_key": run_key}))


if __name__ == "__main__":
    typer.run(command)
