"""Linking: from transcripts (or audio) to ranked street candidates, per retrieval system."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Sequence

from . import index as idx
from .settings import Settings, settings as default_settings

SYSTEMS = ("sparse", "dense", "hybrid", "reranked")


@dataclass(frozen=True)
class Candidate:
    rank: int
    name: str
    countries: tuple[str, ...]
    score: float
    id: int = 0

    def to_dict(self) -> dict:
        d = asdict(self)
        d["countries"] = list(self.countries)
        return d


def candidates(hits: Sequence[idx.Hit]) -> list[Candidate]:
    return [Candidate(rank=r, name=h.name, countries=h.countries, score=round(h.score, 6), id=h.id) for r, h in enumerate(hits, 1)]


_indexes: dict[int, idx.Index] = {}


def open_index(s: Settings | None = None) -> idx.Index:
    """The index, opened once per settings object and reused (opening costs ~0.2 s)."""
    s = s or default_settings
    if id(s) not in _indexes:
        _indexes[id(s)] = idx.open_index(s)
    return _indexes[id(s)]


def search(texts: str | Sequence[str], system: str = "sparse", k: int = 10, s: Settings | None = None) -> list[Candidate]:
    """Top-k streets for one utterance given one or more transcripts of it.

    With several transcripts, ``sparse`` sums their n-gram vectors and ``dense`` averages their embeddings.
    """
    texts = [texts] if isinstance(texts, str) else list(texts)
    if system not in SYSTEMS:
        raise ValueError(f"unknown system {system!r}; choose one of {', '.join(SYSTEMS)}")
    index = open_index(s)
    if system == "sparse":
        return candidates(index.search_sparse_vectors([_sum_sparse([index.sparse_query(t) for t in texts])], k)[0])
    raise NotImplementedError(f"system {system!r} needs the dense model (not built yet)")


def _sum_sparse(vectors):
    from .sparse import SparseVector

    if len(vectors) == 1:
        return vectors[0]
    acc: dict[int, float] = {}
    for v in vectors:
        for i, x in zip(v.indices, v.values):
            acc[i] = acc.get(i, 0.0) + x
    keys = sorted(acc)
    return SparseVector(keys, [acc[i] for i in keys])
