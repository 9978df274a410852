"""The sparse baseline: a bag of character 1-3-grams with ``^``/``$`` padding, hashed to uint32 indices.

Documents keep every n-gram (counts as values; Qdrant applies IDF at query time). Queries use the trigrams
only by default: unigram and bigram posting lists are long (slow search) and they add more noise than
signal to the ranking; and of those trigrams, only the rarest ones within a budget of postings (measured in
docs/benchmarks.md).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import mmh3
import numpy as np

from .text import normalize

N_MAX = 3
BOS, EOS = "^", "$"


def ngrams(text: str, n_max: int = N_MAX) -> list[str]:
    """Character n-grams (n = 1..n_max) of ``normalize(text)``; n-grams of order n get n-1 pad marks.

    >>> ngrams("ab")
    ['a', 'b', '^a', 'ab', 'b$', '^^a', '^ab', 'ab$', 'b$$']
    """
    text = normalize(text)
    if not text:
        return []
    grams = list(text)
    for n in range(2, n_max + 1):
        padded = BOS * (n - 1) + text + EOS * (n - 1)
        grams.extend(padded[i : i + n] for i in range(len(padded) - n + 1))
    return grams


def term_id(gram: str) -> int:
    """uint32 index of an n-gram: MurmurHash3 (seed 0), as fastembed hashes its sparse tokens."""
    return mmh3.hash(gram, signed=False)


_ids: dict[str, int] = {}


def _term_id_cached(gram: str) -> int:
    i = _ids.get(gram)
    if i is None:
        i = _ids[gram] = term_id(gram)
    return i


@dataclass(frozen=True)
class SparseVector:
    indices: list[int]
    values: list[float]

    def __len__(self) -> int:
        return len(self.indices)


def _vector(grams: list[str]) -> SparseVector:
    acc: dict[int, float] = {}
    for g, n in Counter(grams).items():
        i = _term_id_cached(g)
        acc[i] = acc.get(i, 0.0) + n  # two n-grams may share a hash; Qdrant wants unique indices
    indices = sorted(acc)
    return SparseVector(indices, [acc[i] for i in indices])


def encode(text: str) -> SparseVector:
    """Document vector: every n-gram, its count as value, indices sorted."""
    return _vector(ngrams(text))


class DocFreq:
    """How many names contain each n-gram index; decides which query n-grams to drop."""

    def __init__(self, ids: np.ndarray, counts: np.ndarray, n_docs: int):
        order = np.argsort(ids)
        self.ids = ids[order].astype(np.uint32)
        self.counts = counts[order].astype(np.int64)
        self.n_docs = int(n_docs)

    @classmethod
    def from_vectors(cls, vectors: Iterable[SparseVector]) -> "DocFreq":
        df: Counter[int] = Counter()
        n = 0
        for v in vectors:
            df.update(v.indices)
            n += 1
        return cls.from_counter(df, n)

    @classmethod
    def from_counter(cls, df: Counter, n_docs: int) -> "DocFreq":
        ids = np.fromiter(df.keys(), dtype=np.uint32, count=len(df))
        counts = np.fromiter(df.values(), dtype=np.int64, count=len(df))
        return cls(ids, counts, n_docs)

    def fraction(self, indices: Iterable[int]) -> np.ndarray:
        """Fraction of names containing each index (0 for unseen indices)."""
        q = np.asarray(list(indices), dtype=np.uint32)
        pos = np.searchsorted(self.ids, q)
        pos = np.minimum(pos, len(self.ids) - 1)
        hit = self.ids[pos] == q if len(self.ids) else np.zeros(len(q), bool)
        return np.where(hit, self.counts[pos], 0) / max(self.n_docs, 1)

    def save(self, path: Path) -> None:
        tmp = path.with_suffix(".tmp.npz")
        np.savez(tmp, ids=self.ids, counts=self.counts, n_docs=self.n_docs)
        tmp.replace(path)

    @classmethod
    def load(cls, path: Path) -> "DocFreq":
        with np.load(path) as z:
            return cls(z["ids"], z["counts"], int(z["n_docs"]))


def encode_query(
    text: str,
    orders: tuple[int, ...] = (3,),
    df: DocFreq | None = None,
    max_df: float = 1.0,
    max_postings: int = 0,
    min_terms: int = 8,
) -> SparseVector:
    """Query vector over the n-gram ``orders`` kept (trigrams by default), optionally pruned with document frequencies.

    - ``max_postings``: keep the rarest n-grams while their posting lists add up to at most this many names (but
      always the ``min_terms`` rarest). Search time is proportional to postings touched, and the common n-grams
      (``str``, ``sse``, ``se$``) carry little IDF weight: the default budget of 200,000 postings makes trigram
      queries 1.65x faster and keeps recall@10 within a point of the full 1-3-gram baseline (docs/benchmarks.md).
    - ``max_df``: drop n-grams found in more than this fraction of names (the three rarest are always kept).

    Trigrams alone find the right name more often than all 1-3-grams (their unigrams and bigrams mostly add
    noise) and touch 13x fewer postings.
    """
    grams = [g for g in ngrams(text) if len(g) in orders] or ngrams(text)
    return prune(_vector(grams), df, max_df, max_postings, min_terms)


def prune(vec: SparseVector, df: DocFreq | None, max_df: float = 1.0, max_postings: int = 0, min_terms: int = 8) -> SparseVector:
    """``vec`` without its common terms: see :func:`encode_query` (the phonetic channel prunes its queries too)."""
    if df is None or not vec.indices or (max_df >= 1.0 and not max_postings):
        return vec
    frac = df.fraction(vec.indices)
    keep = np.ones(len(frac), dtype=bool)
    if max_df < 1.0:
        keep = frac <= max_df
        if not keep.any():
            keep = frac <= np.sort(frac)[min(2, len(frac) - 1)]
    if max_postings:
        postings = frac * df.n_docs
        budget_keep = np.zeros(len(frac), dtype=bool)
        total = 0.0
        for rank, j in enumerate(np.argsort(postings, kind="stable")):
            if rank >= min_terms and total + postings[j] > max_postings:
                break
            budget_keep[j] = True
            total += postings[j]
        keep &= budget_keep
    return SparseVector([i for i, k in zip(vec.indices, keep) if k], [v for v, k in zip(vec.values, keep) if k])


class ExactScorer:
    """Exact sparse scoring of document vectors, IDF as Qdrant computes it: ln(1 + (N - n + 0.5) / (n + 0.5)).

    The reference that checks Qdrant (:class:`sle.bench.ExactScorer`, character n-grams of a gazetteer) and the
    offline measurements of :mod:`sle.phonetic` use it for their vectors."""

    def __init__(self, vectors: Iterable[SparseVector], n_docs: int):
        from scipy import sparse as sp

        col_of: dict[int, int] = {}
        rows, cols, vals = [np.zeros(0, np.int64)], [np.zeros(0, np.int64)], [np.zeros(0, np.float32)]
        for r, v in enumerate(vectors):
            cols.append(np.fromiter((col_of.setdefault(i, len(col_of)) for i in v.indices), np.int64, len(v.indices)))
            vals.append(np.asarray(v.values, np.float32))
            rows.append(np.full(len(v.indices), r, np.int64))
        self.col_of = col_of
        X = sp.csc_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(n_docs, len(col_of)))
        X.sort_indices()
        self.X = X
        df = np.diff(X.indptr)
        self.idf = np.log(1.0 + (n_docs - df + 0.5) / (df + 0.5)).astype(np.float32)

    def docfreq(self) -> DocFreq:
        """The document frequencies of the scored vectors (what the build stores beside the index)."""
        return DocFreq(np.fromiter(self.col_of.keys(), np.uint32, len(self.col_of)), np.diff(self.X.indptr), self.X.shape[0])

    def postings(self, v: SparseVector) -> int:
        """Postings a search for ``v`` walks (what a sparse index pays per query)."""
        cols = np.array([self.col_of[i] for i in v.indices if i in self.col_of], np.int64)
        return int(np.sum(self.X.indptr[cols + 1] - self.X.indptr[cols]))

    def scores(self, v: SparseVector) -> np.ndarray:
        out = np.zeros(self.X.shape[0], np.float32)
        X = self.X
        for i, x in zip(v.indices, v.values):
            c = self.col_of.get(i)
            if c is None:
                continue
            a, b = X.indptr[c], X.indptr[c + 1]
            out[X.indices[a:b]] += X.data[a:b] * (x * self.idf[c])  # rows are unique within a column
        return out
