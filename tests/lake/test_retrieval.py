"""Approximate retrieval (serve.retrieval: ivf): the same rules over an index's candidates, never a short list."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lake import ConfigError, load_config
from lake.retrieval import ItemIndex, ivf_lists_for
from lake.serving import ServingRules, served_top_of_candidates, served_top_of_users

ITEMS, DIM, CATEGORIES = 3000, 16, 40


def rules(**serve: object) -> ServingRules:
    defaults = {"top_n": 10, "exclude_behaviours": ("purchase",), "exclude_window_days": 90,
                "honour_deny_list": True, "max_per_category": 0, "retrieval": "ivf"}
    return ServingRules(**{**defaults, **serve})


@pytest.fixture(scope="module")
def catalogue() -> dict[str, torch.Tensor]:
    """Clustered item embeddings (items of a kind point the same way), users near some cluster, blocked items
    (padding, unknown, a deny list), exclusions and categories."""
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((CATEGORIES, DIM))
    kinds = rng.integers(0, CATEGORIES, ITEMS)
    items = (centres[kinds] + 0.5 * rng.standard_normal((ITEMS, DIM))).astype(np.float32)
    users = (centres[rng.integers(0, CATEGORIES, 200)] + 0.5 * rng.standard_normal((200, DIM))).astype(np.float32)
    blocked = np.unique(np.concatenate([[0, 1], rng.choice(np.arange(2, ITEMS), 100, replace=False)]))
    excluded_rows = np.repeat(np.arange(200), 5)
    excluded_items = rng.integers(2, ITEMS, len(excluded_rows))
    return {"items": torch.from_numpy(items), "users": torch.from_numpy(users),
            "blocked": torch.from_numpy(blocked), "categories": torch.from_numpy(kinds),
            "excluded_rows": torch.from_numpy(excluded_rows), "excluded_items": torch.from_numpy(excluded_items)}


def index_of(catalogue: dict[str, torch.Tensor], *, lists: int, probe: int, threads: int = 0) -> ItemIndex:
    servable = np.ones(ITEMS, dtype=bool)
    servable[catalogue["blocked"].numpy()] = False
    return ItemIndex.build(catalogue["items"].numpy(), servable, lists=lists, probe=probe, threads=threads)


def serve(catalogue: dict[str, torch.Tensor], serve_rules: ServingRules,
          index: ItemIndex | None) -> tuple[torch.Tensor, torch.Tensor]:
    categories = catalogue["categories"] if serve_rules.max_per_category else None
    return served_top_of_users(catalogue["users"], catalogue["items"], catalogue["blocked"],
                               catalogue["excluded_rows"], catalogue["excluded_items"], rules=serve_rules,
                               categories=categories, index=index)


@pytest.mark.parametrize("max_per_category", [0, 2])
def test_probing_every_cluster_serves_exactly_the_exact_lists(catalogue: dict, max_per_category: int):
    serve_rules = rules(max_per_category=max_per_category)
    exact_values, exact_items = serve(catalogue, serve_rules, None)
    values, items = serve(catalogue, serve_rules, index_of(catalogue, lists=16, probe=16))
    assert torch.equal(items, exact_items)
    assert torch.allclose(values, exact_values)
    assert not torch.isin(items, catalogue["blocked"]).any()


def test_probing_a_few_clusters_keeps_most_of_the_exact_list(catalogue: dict):
    exact_items = serve(catalogue, rules(), None)[1]
    items = serve(catalogue, rules(), index_of(catalogue, lists=32, probe=4))[1]
    found = sum(len(set(a.tolist()) & set(b.tolist())) for a, b in zip(items, exact_items, strict=True))
    assert 0.8 < found / exact_items.numel() < 1.0, "approximate: most, not all, of the exact items"


def test_a_user_whose_candidates_the_rules_remove_is_ranked_exactly(catalogue: dict):
    index = index_of(catalogue, lists=16, probe=16)
    user = catalogue["users"][:1]
    _, best = index.search(user, 10)
    # exclude the user's ten best items: ten candidates then leave nothing, the exact list goes on past them
    values, _ = served_top_of_candidates(*index.search(user, 10), torch.zeros(10, dtype=torch.int64), best[0],
                                             size=ITEMS, top_n=10)
    assert (values == float("-inf")).all()
    serve_rules = rules(ivf_candidates=10)
    served_values, served_items = served_top_of_users(
        user, catalogue["items"], catalogue["blocked"], torch.zeros(10, dtype=torch.int64), best[0],
        rules=serve_rules, index=index)
    exact = served_top_of_users(user, catalogue["items"], catalogue["blocked"], torch.zeros(10, dtype=torch.int64),
                                best[0], rules=serve_rules, index=None)
    assert torch.isfinite(served_values).all() and torch.equal(served_items, exact[1])
    assert not torch.isin(served_items, best).any()


def test_the_index_is_the_same_every_build_and_holds_only_servable_items(catalogue: dict):
    first = index_of(catalogue, lists=32, probe=4).search(catalogue["users"], 50)
    second = index_of(catalogue, lists=32, probe=4).search(catalogue["users"], 50)
    assert torch.equal(first[1], second[1]), "every executor builds the same index"
    assert not torch.isin(first[1], catalogue["blocked"]).any()
    assert ivf_lists_for(100, 0) == 1, "a small catalogue is one cluster, searched whole"
    assert ivf_lists_for(1_000_000, 0) == 4000 and ivf_lists_for(1_000_000, 1000) == 1000


def test_the_index_does_not_depend_on_how_many_threads_build_and_search_it(catalogue: dict):
    # scoring's executors build with the task's cores, evaluation with faiss's default: the same index
    import faiss

    default = faiss.omp_get_max_threads()
    try:
        centroids, found = {}, {}
        for threads in (1, 2, 3):  # build then search, both under `threads` (faiss's setting is global)
            index = index_of(catalogue, lists=32, probe=4, threads=threads)
            centroids[threads] = index.index.quantizer.reconstruct_n(0, 32)
            found[threads] = index.search(catalogue["users"], 50)
    finally:
        faiss.omp_set_num_threads(default)
    assert all(np.array_equal(centroids[1], centroids[threads]) for threads in (2, 3))
    assert all(torch.equal(found[1][1], found[threads][1]) and torch.equal(found[1][0], found[threads][0])
               for threads in (2, 3))


def test_impossible_retrieval_settings_are_refused():
    with pytest.raises(ConfigError, match="ivf_candidates"):
        ServingRules.from_config(load_config(environ={}).with_overrides({"serve": {"ivf_candidates": 5}}))
    with pytest.raises(ConfigError, match="must be one of"):
        ServingRules.from_config(load_config(environ={}).with_overrides({"serve": {"retrieval": "hnsw"}}))
