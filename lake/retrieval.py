"""Approximate retrieval for large catalogues (``serve.retrieval: ivf``), shared by scoring and evaluation.

Exact serving multiplies every user vector with every item embedding; at a million items that is the whole
night on a few cores (docs/benchmarks.md, "Large catalogues"). With ``ivf`` a faiss inverted-file index over
the servable items' embeddings (inner product, the model's own score) proposes ``ivf_candidates`` items per
user from the ``ivf_probe`` nearest of ``ivf_lists`` clusters, and the candidates go through the same rules as
exact ranking (:func:`lake.serving.served_top_of_candidates`). A user whose candidates leave fewer than
``top_n`` items after the rules is ranked exactly, so retrieval never shortens a list. Scores are the model's
exact inner products; only which items are looked at is approximate (recall@N against exact is measured by
``benchmarks/large_catalogue.py``).

The index is built from the model's embeddings where it is used (each scoring executor process, and the
evaluation run), with a fixed seed: k-means on a seeded sample, so every process builds the same index.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch

    from lake.serving import ServingRules

__all__ = ["ItemIndex", "ivf_lists_for"]

# faiss recommends 30 to 256 training points per list; more only slows k-means down
TRAINING_POINTS_PER_LIST = 64


def ivf_lists_for(items: int, configured: int) -> int:
    """The clusters an index over ``items`` vectors gets: ``configured``, or 4 x sqrt(items) when 0 (faiss's
    rule of thumb); never so many that a cluster has fewer than TRAINING_POINTS_PER_LIST items to learn from
    (a small catalogue is one cluster: searched exhaustively)."""
    lists = configured or int(4 * math.sqrt(items))
    return max(1, min(lists, items // TRAINING_POINTS_PER_LIST))


@dataclass
class ItemIndex:
    """A faiss IVF index over the servable items, searched by inner product."""

    index: object  # faiss.IndexIVFFlat
    items: int

    @classmethod
    def build(cls, item_embeddings: np.ndarray, servable: np.ndarray, *, lists: int, probe: int,
              seed: int = 0, threads: int = 0) -> ItemIndex:
        """Index the rows of ``item_embeddings`` ``[V, H]`` where ``servable`` ``[V]`` is true (blocked items:
        padding, unknown, holes, deny-listed, are never candidates).

        Args:
            lists: clusters (0 = ``ivf_lists_for``'s default); probe: clusters searched per user.
            threads: faiss's OpenMP threads (0 = its default, every core).
        """
        import faiss

        if threads:
            faiss.omp_set_num_threads(threads)
        ids = np.flatnonzero(servable).astype(np.int64)
        vectors = np.ascontiguousarray(item_embeddings[ids], dtype=np.float32)
        dim = vectors.shape[1]
        lists = ivf_lists_for(len(ids), lists)
        quantizer = faiss.IndexFlatIP(dim)
        index = faiss.IndexIVFFlat(quantizer, dim, lists, faiss.METRIC_INNER_PRODUCT)
        index.cp.seed = seed
        sample = min(len(ids), TRAINING_POINTS_PER_LIST * lists)
        chosen = np.sort(np.random.default_rng(seed).choice(len(ids), size=sample, replace=False))
        index.train(vectors[chosen])
        index.add_with_ids(vectors, ids)
        index.nprobe = min(probe, lists)
        return cls(index, len(ids))

    @classmethod
    def for_catalogue(cls, item_embeddings: np.ndarray, blocked: np.ndarray, rules: ServingRules, *,
                      threads: int = 0) -> ItemIndex:
        """The index ``serve.retrieval: ivf`` serves from: every item of the catalogue but the ``blocked``
        indexes, with the rules' ``ivf_lists`` and ``ivf_probe`` (scoring and evaluation build the same)."""
        servable = np.ones(len(item_embeddings), dtype=bool)
        servable[blocked] = False
        return cls.build(item_embeddings, servable, lists=rules.ivf_lists, probe=rules.ivf_probe, threads=threads)

    def search(self, users: torch.Tensor, candidates: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Each user vector's best ``candidates`` items: (scores ``[B, C]`` float32, item indexes ``[B, C]``
        int64, -1 where the probed clusters held fewer items), on the users' device."""
        import torch

        queries = np.ascontiguousarray(users.detach().to("cpu", torch.float32).numpy())
        scores, items = self.index.search(queries, min(candidates, self.items))
        return (torch.from_numpy(scores).to(users.device), torch.from_numpy(items).to(users.device))
