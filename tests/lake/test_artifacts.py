"""lake/artifacts.py: a model folder is verified before anything in it is deserialized, and an archive that
holds a pickle is refused, so a tampered model never runs code on a driver or an executor."""

from __future__ import annotations

import io
import json
import pickle
import zipfile
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from lake import ArtifactIntegrityError
from lake.artifacts import (
    ITEM_EMBEDDINGS,
    META,
    MODEL_FILES,
    SCORER,
    ModelFiles,
    digests,
    load,
    read,
    save,
    verify_folder,
)
from lake.registry import ModelCard


class Encoder(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.items = torch.nn.Embedding(10, 4)

    def forward(self, items, behaviours, categories, gap_buckets):
        return self.items(items).sum(dim=1)


class WritesMarker:
    """A pickle payload: unpickling it creates the marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def model_folder(folder: Path) -> Path:
    torch.manual_seed(0)
    encoder = Encoder().eval()
    example = tuple(torch.randint(0, 10, (2, 5)) for _ in range(4))
    program = torch.export.export(encoder, example, dynamic_shapes=({0: torch.export.Dim("batch")},) * 4)
    save(folder, program, encoder.items.weight, encoder.state_dict())
    (folder / META).write_text(json.dumps({"max_len": 5, "item_vocab_size": 10}))
    return folder


def files_of(folder: Path, recorded: dict[str, str]) -> ModelFiles:
    card = ModelCard(name="seqrec", version="7", run_id="", meta={}, tags={"seqrec.sha256": json.dumps(recorded)})
    return ModelFiles(card, {name: (folder / name).read_bytes() for name in MODEL_FILES})


def rewrite_archive(path: Path, change) -> None:
    """Rebuild the zip at ``path`` with ``change(inner_name, data) -> data | None`` applied to each entry."""
    source = zipfile.ZipFile(io.BytesIO(path.read_bytes()))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_STORED) as target:
        for info in source.infolist():
            data = change(info.filename.split("/", 1)[1], source.read(info.filename))
            target.writestr(info.filename, data)
    path.write_bytes(out.getvalue())


def pickled_weight(marker: Path):
    """Weight 0 replaced by a pickle, flagged as one in the weights config: what torch.export.load unpickles."""
    def change(name: str, data: bytes) -> bytes:
        if name == "data/weights/model_weights_config.json":
            config = json.loads(data)
            first = next(iter(config["config"].values()))
            first["use_pickle"] = True
            return json.dumps(config).encode()
        if name == "data/weights/weight_0":
            return pickle.dumps(WritesMarker(marker))
        return data
    return change


def test_a_model_round_trips_and_scores_like_the_encoder(tmp_path: Path) -> None:
    folder = model_folder(tmp_path / "model")
    scorer = load(files_of(folder, digests(folder)))
    items = torch.tensor([[1, 2, 3, 4, 5], [0, 0, 9, 8, 7], [3, 3, 3, 3, 3]])
    zeros = torch.zeros_like(items)
    expected = Encoder().eval()
    expected.load_state_dict(load_file(folder / "weights.safetensors"))
    assert torch.allclose(scorer.encode(items, zeros, zeros, zeros), expected(items, zeros, zeros, zeros))
    assert scorer.item_embeddings.shape == (10, 4)


def test_an_archive_tampered_after_registration_is_refused_before_it_is_read(tmp_path: Path) -> None:
    folder = model_folder(tmp_path / "model")
    recorded = digests(folder)  # what registration stored
    marker = tmp_path / "pwned"
    rewrite_archive(folder / SCORER, pickled_weight(marker))

    with pytest.raises(ArtifactIntegrityError, match=r"scorer.pt2 does not match the sha256 recorded"):
        load(files_of(folder, recorded))
    assert not marker.exists()


def test_an_archive_with_a_pickled_entry_is_refused_even_when_its_digest_matches(tmp_path: Path) -> None:
    folder = model_folder(tmp_path / "model")
    marker = tmp_path / "pwned"
    rewrite_archive(folder / SCORER, pickled_weight(marker))

    with pytest.raises(ArtifactIntegrityError, match=r"holds pickled tensors \['items.weight'\]"):
        load(files_of(folder, digests(folder)))  # registered that way: the digest alone would let it through
    assert not marker.exists()
    # what torch.export.load does with it: unpickles the payload (which runs), then fails on the result
    with pytest.raises(RuntimeError):
        torch.export.load(io.BytesIO((folder / SCORER).read_bytes()))
    assert marker.exists()


def test_pickled_sample_inputs_and_unknown_entries_are_refused(tmp_path: Path) -> None:
    folder = model_folder(tmp_path / "model")
    marker = tmp_path / "pwned"
    rewrite_archive(folder / SCORER, lambda name, data: pickle.dumps(WritesMarker(marker))
                    if name.startswith("data/sample_inputs/") else data)
    with pytest.raises(ArtifactIntegrityError, match="pickled sample inputs"):
        load(files_of(folder, digests(folder)))

    folder = model_folder(tmp_path / "model2")
    with zipfile.ZipFile(folder / SCORER, "a") as archive:
        archive.writestr("archive/data/constants/custom_obj_0", pickle.dumps(WritesMarker(marker)))
    with pytest.raises(ArtifactIntegrityError, match="entry seqrec never writes: archive/data/constants/custom_obj_0"):
        load(files_of(folder, digests(folder)))
    assert not marker.exists()


def test_a_changed_embedding_file_and_a_version_without_digests_are_refused(tmp_path: Path) -> None:
    folder = model_folder(tmp_path / "model")
    recorded = digests(folder)
    data = bytearray((folder / ITEM_EMBEDDINGS).read_bytes())
    data[-1] ^= 0xFF
    (folder / ITEM_EMBEDDINGS).write_bytes(bytes(data))
    with pytest.raises(ArtifactIntegrityError, match="item_embeddings.safetensors does not match"):
        load(files_of(folder, recorded))
    with pytest.raises(ArtifactIntegrityError, match="no recorded file digests"):
        load(files_of(folder, {}))


def test_a_folder_missing_a_file_cannot_be_registered(tmp_path: Path) -> None:
    folder = model_folder(tmp_path / "model")
    (folder / "weights.safetensors").unlink()
    with pytest.raises(ArtifactIntegrityError, match=r"lacks \['weights.safetensors'\]"):
        digests(folder)


def test_a_folder_is_verified_in_place_and_read_under_a_prefix(tmp_path: Path) -> None:
    folder = model_folder(tmp_path / "model")
    recorded = digests(folder)
    verify_folder(folder, recorded, what="model version 7")
    (folder / META).write_text("{}")
    with pytest.raises(ArtifactIntegrityError, match="model version 7: meta.json does not match the sha256"):
        verify_folder(folder, recorded, what="model version 7")

    shipped = model_folder(tmp_path / "shipped")
    card = files_of(shipped, digests(shipped)).card
    for name in MODEL_FILES:
        (shipped / name).rename(shipped / f"job-1-{name}")
    assert load(read(card, shipped, prefix="job-1-")).item_embeddings.shape == (10, 4)
    (shipped / f"job-1-{SCORER}").unlink()
    with pytest.raises(ArtifactIntegrityError, match=r"lacks \['job-1-scorer.pt2'\]"):
        read(card, shipped, prefix="job-1-")
