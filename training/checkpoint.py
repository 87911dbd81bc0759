"""Checkpoints that a killed run resumes from: written atomically by rank 0, verified when read.

A folder holds ``epoch-NNNN.pt`` files and ``latest.json`` naming the newest with its sha256. Each file is
written to a temporary name and renamed into place, and ``latest.json`` moves only after its checkpoint is
complete, so a crash at any moment leaves the previous checkpoint readable.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from lake import Config, ConfigError, InputError

__all__ = ["Checkpoints", "local_folder"]

MANIFEST = "latest.json"


def local_folder(configured: str, config: Config, default_name: str) -> Path:
    """``configured``, or ``<lake.root>/<default_name>`` when it is empty (lake.root must then be local)."""
    if configured:
        return Path(configured)
    root = config.lake.root
    if "://" in root:
        raise ConfigError(
            f"lake.root {root} is not a local path; set train.checkpoint_dir and train.model_store to a local or "
            f"mounted shared folder"
        )
    return Path(root) / default_name


class Checkpoints:
    """The checkpoints of one training job (one ds and model type).

    Args:
        folder: where they live; created on the first save.
        keep: how many recent checkpoint files to keep.
    """

    def __init__(self, folder: Path, *, keep: int = 2) -> None:
        self.folder = folder
        self.keep = keep

    def save(self, state: dict[str, Any], *, epoch: int, about: dict[str, Any] | None = None) -> Path:
        """Write ``state`` (tensors and plain values) as epoch ``epoch``'s checkpoint and make it the latest.

        ``about`` (plain values) goes into ``latest.json`` so launchers can read it without torch.
        """
        self.folder.mkdir(parents=True, exist_ok=True)
        buffer = io.BytesIO()
        torch.save(state, buffer)
        payload = buffer.getvalue()
        path = self.folder / f"epoch-{epoch:04d}.pt"
        _write_atomically(path, payload)
        manifest = {"file": path.name, "epoch": epoch, "sha256": hashlib.sha256(payload).hexdigest(),
                    **(about or {})}
        _write_atomically(self.folder / MANIFEST, json.dumps(manifest, indent=2).encode())
        for stale in sorted(self.folder.glob("epoch-*.pt"))[: -self.keep]:
            stale.unlink(missing_ok=True)
        return path

    def latest(self) -> dict[str, Any] | None:
        """The newest checkpoint's manifest (file, epoch, sha256 and ``about``), or None if there is none."""
        manifest = self.folder / MANIFEST
        if not manifest.exists():
            return None
        try:
            return json.loads(manifest.read_text())
        except json.JSONDecodeError as exc:
            raise self._corrupt(f"{manifest} is not valid JSON ({exc})") from exc

    def load(self) -> dict[str, Any] | None:
        """The newest checkpoint's state (on CPU), or None if there is none; raises InputError if corrupt."""
        manifest = self.latest()
        if manifest is None:
            return None
        path = self.folder / manifest["file"]
        try:
            payload = path.read_bytes()
        except FileNotFoundError:
            raise self._corrupt(f"{MANIFEST} names {path.name}, which is missing") from None
        if hashlib.sha256(payload).hexdigest() != manifest["sha256"]:
            raise self._corrupt(f"{path} does not match the sha256 recorded in {MANIFEST}")
        try:
            return torch.load(io.BytesIO(payload), map_location="cpu", weights_only=True)
        except Exception as exc:  # torch raises several types for undecodable files
            raise self._corrupt(f"{path} cannot be read ({exc})") from exc

    def clear(self) -> None:
        """Forget earlier checkpoints (a fresh run without --resume)."""
        for path in [*self.folder.glob("epoch-*.pt"), self.folder / MANIFEST]:
            path.unlink(missing_ok=True)

    def _corrupt(self, what: str) -> InputError:
        return InputError(
            f"checkpoint in {self.folder} is corrupt: {what}. Delete that folder to start over, or rerun "
            f"without --resume"
        )


def _write_atomically(path: Path, payload: bytes) -> None:
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(payload)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
