"""The model artifact contract: the files of a registered version, and how they are fetched, verified and
loaded. Training writes them (their digests are recorded at registration); evaluation, the gate and scoring
load them through :func:`lake.registry.fetch` and :func:`load`; nothing else knows the file names.

A version is four files of plain data, none of which can run code when loaded:

- ``scorer.pt2``: a ``torch.export`` archive mapping left-padded int64 sequences ``items, behaviours,
  categories, gap_buckets`` ``[B, L]`` to user vectors ``[B, H]``: the graph as JSON, tensors as raw bytes.
  torch can also store pickled entries in such an archive (weights, constants, custom objects, sample
  inputs) and unpickles them while loading, so :func:`check_export_archive` refuses any archive that holds
  one, before torch reads it;
- ``item_embeddings.safetensors``: one float32 tensor ``item_embeddings`` ``[V, H]`` (row = item index);
  scores are ``user @ items.T``;
- ``weights.safetensors``: the model's state dict, to rebuild it in Python (fine-tuning, debugging);
- ``meta.json``: model type, max_len, item_vocab_size, vocab_fingerprint, trained_ds, the table versions it
  trained on, validation metrics.

Trust: the sha256 of each file is recorded when the version is registered (the registry tag
``seqrec.sha256`` and the ``models`` table). Every load compares the bytes it holds with those digests
before deserializing anything, so a file changed in the artifact store after registration is refused with
:class:`~lake.errors.ArtifactIntegrityError`, on the driver and again in each executor.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lake.errors import ArtifactIntegrityError

if TYPE_CHECKING:
    import torch

    from lake.registry import ModelCard

__all__ = [
    "EMBEDDINGS_KEY",
    "ITEM_EMBEDDINGS",
    "META",
    "MODEL_FILES",
    "SCORER",
    "WEIGHTS",
    "ModelFiles",
    "Scorer",
    "check_export_archive",
    "digests",
    "load",
    "read",
    "save",
    "verify",
    "verify_folder",
]

SCORER = "scorer.pt2"
ITEM_EMBEDDINGS = "item_embeddings.safetensors"
WEIGHTS = "weights.safetensors"
META = "meta.json"
MODEL_FILES = (SCORER, ITEM_EMBEDDINGS, WEIGHTS, META)
EMBEDDINGS_KEY = "item_embeddings"

# What torch.export.save writes for one program without pickled payloads, below the archive's top folder.
_ARCHIVE_ENTRIES = re.compile(
    r"(archive_format|archive_version|byteorder|\.data/version|\.data/serialization_id"
    r"|models/\w+\.json|data/weights/\w+_weights_config\.json|data/weights/weight_\d+"
    r"|data/constants/\w+_constants_config\.json|data/constants/tensor_\d+|data/sample_inputs/\w+\.pt)"
)


@dataclass(frozen=True)
class ModelFiles:
    """A registered version's files as bytes, as read by the process that loads them."""

    card: ModelCard
    contents: Mapping[str, bytes]

    @property
    def meta(self) -> dict[str, Any]:
        return json.loads(self.contents[META])

    @property
    def item_vocab_size(self) -> int:
        return int(self.meta["item_vocab_size"])

    @property
    def max_len(self) -> int:
        return int(self.meta["max_len"])


@dataclass
class Scorer:
    """A loaded model: ``encode`` sequences to user vectors and rank against ``item_embeddings``."""

    card: ModelCard
    program: Any
    item_embeddings: torch.Tensor  # [V, H]
    meta: dict[str, Any] = field(default_factory=dict)

    def encode(self, items: torch.Tensor, behaviours: torch.Tensor, categories: torch.Tensor,
               gap_buckets: torch.Tensor) -> torch.Tensor:
        """Left-padded int64 ``[B, L]`` inputs -> user vectors ``[B, H]``."""
        return self.program(items, behaviours, categories, gap_buckets)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _file_sha256(path: Path) -> str:
    with path.open("rb") as file:
        return hashlib.file_digest(file, "sha256").hexdigest()


def _paths(folder: Path, prefix: str = "") -> dict[str, Path]:
    """{file name: path} of a model folder whose files are named ``<prefix><file name>``; refuses a folder
    that lacks one of them."""
    paths = {name: folder / f"{prefix}{name}" for name in MODEL_FILES}
    missing = [path.name for path in paths.values() if not path.is_file()]
    if missing:
        raise ArtifactIntegrityError(f"model folder {folder} lacks {missing}; it must hold {list(MODEL_FILES)}")
    return paths


def digests(folder: Path) -> dict[str, str]:
    """{file name: sha256} of a model folder's files, read in chunks; refuses a folder that lacks one."""
    return {name: _file_sha256(path) for name, path in _paths(folder).items()}


def read(card: ModelCard, folder: Path, *, prefix: str = "") -> ModelFiles:
    """The files of ``card`` from a local folder where each is named ``<prefix><file name>`` (a download, or
    the copies Spark ships to an executor); not verified yet: :func:`load` verifies what it loads."""
    return ModelFiles(card, {name: path.read_bytes() for name, path in _paths(folder, prefix).items()})


def verify_folder(folder: Path, expected: Mapping[str, str], *, what: str) -> None:
    """Refuse a model folder unless every file matches its recorded sha256, reading each in chunks (the
    scoring driver checks what it ships without holding the model in memory)."""
    _compare(digests(folder), expected, what=what)


def verify(contents: Mapping[str, bytes], expected: Mapping[str, str], *, what: str) -> None:
    """Refuse ``contents`` unless every model file is there and matches its recorded sha256."""
    _compare({name: sha256(data) for name, data in contents.items()}, expected, what=what)


def _compare(found: Mapping[str, str], expected: Mapping[str, str], *, what: str) -> None:
    if not expected:
        raise ArtifactIntegrityError(
            f"{what} has no recorded file digests (registered before seqrec recorded them, or by hand); "
            f"retrain it, or name a version registered by `seqrec train` with --model")
    for name in MODEL_FILES:
        if name not in found:
            raise ArtifactIntegrityError(f"{what}: {name} is missing from the artifact store")
        if name not in expected:
            raise ArtifactIntegrityError(f"{what}: no digest was recorded for {name}")
        if found[name] != expected[name]:
            raise ArtifactIntegrityError(
                f"{what}: {name} does not match the sha256 recorded at registration (recorded "
                f"{expected[name][:12]}..., found {found[name][:12]}...): the file changed after it was "
                f"registered. Nothing was loaded; restore the artifact or retrain")


def check_export_archive(data: bytes, *, what: str) -> None:
    """Refuse a torch.export archive that holds anything torch would unpickle or that we did not write."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        names = archive.namelist()
    except zipfile.BadZipFile as exc:
        raise ArtifactIntegrityError(f"{what}: {SCORER} is not a torch.export archive ({exc})") from None
    for name in names:
        inner = name.split("/", 1)[1] if "/" in name else name
        if not _ARCHIVE_ENTRIES.fullmatch(inner):
            raise ArtifactIntegrityError(f"{what}: {SCORER} holds an entry seqrec never writes: {name}")
        if inner.startswith("data/sample_inputs/") and archive.getinfo(name).file_size:
            raise ArtifactIntegrityError(f"{what}: {SCORER} holds pickled sample inputs ({name})")
        if inner.endswith("_config.json"):
            config = json.loads(archive.read(name)).get("config", {})
            pickled = sorted(key for key, payload in config.items() if payload.get("use_pickle", True))
            if pickled:
                raise ArtifactIntegrityError(f"{what}: {SCORER} holds pickled tensors {pickled} ({name})")


def save(folder: Path, program: Any, item_embeddings: torch.Tensor, weights: Mapping[str, torch.Tensor]) -> None:
    """Write a torch.export ``program``, the ``[V, H]`` item embeddings and the model's state dict as a
    model folder (meta.json is written at registration)."""
    import torch
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    save_file({EMBEDDINGS_KEY: item_embeddings.detach().float().contiguous().clone()}, str(folder / ITEM_EMBEDDINGS))
    # safetensors refuses tensors that share memory (tied embeddings): store each once, contiguous
    save_file({key: value.detach().contiguous().clone() for key, value in weights.items()}, str(folder / WEIGHTS))
    program.example_inputs = None  # torch.export.save would pickle them, and load() refuses pickles
    torch.export.save(program, folder / SCORER)
    check_export_archive((folder / SCORER).read_bytes(), what=f"the model written to {folder}")


def load(files: ModelFiles, device: str = "cpu") -> Scorer:
    """Verify ``files`` (again: executors check what they were sent) and load them as a :class:`Scorer`."""
    import torch
    from safetensors.torch import load as load_safetensors

    what = f"model version {files.card.version}"
    verify(files.contents, files.card.sha256, what=what)
    check_export_archive(files.contents[SCORER], what=what)
    program = torch.export.load(io.BytesIO(files.contents[SCORER])).module().to(device)
    item_embeddings = load_safetensors(files.contents[ITEM_EMBEDDINGS])[EMBEDDINGS_KEY].to(device)
    return Scorer(card=files.card, program=program, item_embeddings=item_embeddings.float(), meta=files.meta)
