"""Horovod for this process: which worker it is, its device, and the collective operations training uses.

Horovod picks the transport: NCCL for CUDA tensors when it was built with NCCL (GPU hosts), gloo for host
tensors. A single process (`--np 1`) runs the same code with a world of one.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import horovod.torch as hvd
import torch

from training.data import Shard

__all__ = [
    "Workers", "broadcast_training_state", "distributed_optimizer", "start", "synchronized_step", "weights_digest",
]

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True)
class Workers:
    """This worker's place among all of them, and the device it trains on."""

    rank: int
    size: int
    local_size: int
    device: torch.device

    @property
    def is_chief(self) -> bool:
        """Rank 0 alone writes checkpoints, logs to MLflow and registers the model."""
        return self.rank == 0

    @property
    def shard(self) -> Shard:
        return Shard(self.rank, self.size)

    def autocast(self) -> contextlib.AbstractContextManager[Any]:
        """bf16 autocast on CUDA devices that support it; full precision on CPU."""
        if self.device.type == "cuda" and torch.cuda.is_bf16_supported():
            return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def average(self, value: float, name: str) -> float:
        """The mean of ``value`` over all workers."""
        return float(hvd.allreduce(torch.tensor(value, dtype=torch.float64), op=hvd.Average, name=name))

    def total(self, values: torch.Tensor, name: str) -> torch.Tensor:
        """Element-wise sum of ``values`` over all workers."""
        return hvd.allreduce(values, op=hvd.Sum, name=name)

    def from_chief(self, value: T, name: str) -> T:
        """Rank 0's ``value`` on every worker (any picklable object)."""
        return hvd.broadcast_object(value, root_rank=0, name=name)

    def gather(self, value: T, name: str) -> list[T]:
        """Every worker's ``value``, in rank order."""
        return hvd.allgather_object(value, name=name)


def start(seed: int, torch_threads: int = 0) -> Workers:
    """Join the Horovod job (or start a world of one) and set this worker's device, threads and seed.

    Args:
        seed: base seed; each worker offsets it by its rank so negative samples differ between workers
            (initial weights do not matter: rank 0's are broadcast).
        torch_threads: intra-op threads; 0 = this host's cores shared evenly by the workers on it.
    """
    hvd.init()
    if torch.cuda.is_available():
        torch.cuda.set_device(hvd.local_rank())
        device = torch.device("cuda", hvd.local_rank())
        if hvd.size() > 1 and not hvd.nccl_built():
            log.warning("CUDA is present but Horovod was built without NCCL; rebuild it with "
                        "HOROVOD_GPU_OPERATIONS=NCCL (scripts/setup.sh does on hosts with nvcc)")
    else:
        device = torch.device("cpu")
    torch.set_num_threads(torch_threads or max(1, (os.cpu_count() or 1) // hvd.local_size()))
    torch.manual_seed(seed + hvd.rank())
    return Workers(rank=hvd.rank(), size=hvd.size(), local_size=hvd.local_size(), device=device)


def distributed_optimizer(optimizer: torch.optim.Optimizer, model: torch.nn.Module) -> torch.optim.Optimizer:
    """Wrap ``optimizer`` so gradients are averaged over workers. Load a checkpoint's optimizer state into the
    wrapped optimizer (wrapping starts from the bare parameter groups), then ``broadcast_training_state``."""
    return hvd.DistributedOptimizer(optimizer, named_parameters=model.named_parameters())


def broadcast_training_state(model: torch.nn.Module, optimizer: torch.optim.Optimizer | None) -> None:
    """Rank 0's parameters, buffers and optimizer state on every worker."""
    hvd.broadcast_parameters(model.state_dict(), root_rank=0)
    if optimizer is not None:
        hvd.broadcast_optimizer_state(optimizer, root_rank=0)


@contextlib.contextmanager
def synchronized_step(optimizer: torch.optim.Optimizer) -> Iterator[None]:
    """Finish the gradient allreduce before the block (e.g. clipping the averaged gradients), then step once."""
    optimizer.synchronize()  # type: ignore[attr-defined]
    yield
    with optimizer.skip_synchronize():  # type: ignore[attr-defined]
        optimizer.step()


def weights_digest(model: torch.nn.Module) -> str:
    """sha256 over every parameter and buffer, to check that workers hold identical weights."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()
