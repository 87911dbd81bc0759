"""The `train:` config section as one frozen dataclass, read once and passed inward."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from lake import Config, ConfigError, typed_section
from lake.schemas import BEHAVIOURS

__all__ = ["DEFAULTS", "ModelType", "TrainSettings"]

DEFAULTS = Path(__file__).with_name("defaults.yaml")

# What validation computes each epoch, and so what early stopping may watch (training/validation.py).
VALID_METRICS = ("valid_ndcg@10", "valid_hr@10", "valid_sampled_ndcg@10", "valid_sampled_hr@10")

ModelType = Literal["sasrec", "gru", "lstm", "popularity"]
LossType = Literal["full_softmax", "sampled_softmax", "bce"]

# Keys that shape the network's weights: a checkpoint can only resume under the same values.
ARCHITECTURE_KEYS = (
    "model_type", "max_len", "hidden_size", "num_layers", "num_heads", "inner_size", "layer_norm",
    "use_behaviour", "use_category", "use_time_gap", "max_gap_bucket",
)


@dataclass(frozen=True)
class TrainSettings:
    model_type: ModelType
    max_len: int
    hidden_size: int
    num_layers: int
    num_heads: int
    inner_size: int
    dropout: float
    layer_norm: Literal["pre", "post"]
    use_behaviour: bool
    use_category: bool
    use_time_gap: bool
    max_gap_bucket: int
    loss: LossType
    negatives: int
    target_weights: dict
    epochs: int
    max_steps_per_epoch: int
    batch_size: int
    length_buckets: int
    learning_rate: float
    weight_decay: float
    grad_clip_norm: float
    patience: int
    early_stopping_metric: str
    valid_negatives: int
    valid_max_users: int
    seed: int
    reader_pool: Literal["dummy", "process"]
    reader_workers: int
    torch_threads: int
    num_proc: int
    hosts: str
    launcher: Literal["horovodrun", "spark"]
    ssh_port: int
    ssh_identity_file: str
    network_interfaces: str
    checkpoint_dir: str
    model_store: str

    def __post_init__(self) -> None:
        positive = ("max_len", "hidden_size", "num_layers", "num_heads", "inner_size", "negatives", "epochs",
                    "batch_size", "length_buckets", "num_proc", "reader_workers", "max_gap_bucket", "valid_negatives")
        for name in positive:
            if getattr(self, name) < 1:
                raise ConfigError(f"train.{name} must be at least 1, got {getattr(self, name)}")
        if self.model_type == "sasrec" and self.hidden_size % self.num_heads:
            raise ConfigError(
                f"train.hidden_size ({self.hidden_size}) must be divisible by train.num_heads ({self.num_heads})"
            )
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"train.dropout must be in [0, 1), got {self.dropout}")
        if self.early_stopping_metric not in VALID_METRICS:
            raise ConfigError(
                f"train.early_stopping_metric must be one of {', '.join(VALID_METRICS)}, "
                f"got {self.early_stopping_metric!r}"
            )
        unknown = sorted(set(self.target_weights) - set(BEHAVIOURS))
        if unknown or any(float(value) <= 0 for value in self.target_weights.values()):
            raise ConfigError(f"train.target_weights maps canonical behaviours {list(BEHAVIOURS)} to weights > 0, "
                              f"got {self.target_weights}")
        if self.max_steps_per_epoch < 0:
            raise ConfigError(f"train.max_steps_per_epoch must be 0 (a full pass) or more, "
                              f"got {self.max_steps_per_epoch}")
        if self.valid_max_users < 0:
            raise ConfigError(f"train.valid_max_users must be 0 (every user) or more, got {self.valid_max_users}")
        if self.learning_rate <= 0:
            raise ConfigError(f"train.learning_rate must be positive, got {self.learning_rate}")

    @classmethod
    def from_config(cls, config: Config) -> TrainSettings:
        return typed_section(cls, config, "train", DEFAULTS)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def architecture(self) -> dict[str, Any]:
        return {key: getattr(self, key) for key in ARCHITECTURE_KEYS}
