"""Linking: from audio or transcripts to ranked street candidates, per retrieval system.

Systems (keys of :attr:`LinkResult.systems`), those whose parts exist:

- ``sparse@<recogniser>``: character-trigram search of one transcript;
- ``phonetic@<recogniser>``: phoneme n-gram search of one transcript read by espeak-ng (:mod:`sle.phonetic`);
- ``dense@<recogniser>``: the dense encoder on one transcript;
- ``dense-avg``: the mean of all transcripts' embeddings, renormalised (one query from both recognisers);
- ``hybrid``: Qdrant fuses the dense-averaged, every sparse and every phonetic search (prefetch + RRF;
  ``settings.fusion``, ``rrf_k``, ``fusion_weights``);
- ``reranked``: a learned model (:mod:`sle.rerank`, ``models/reranker-v1``) re-orders the union of the other
  systems' top ``rerank_depth`` candidates.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from . import index as idx
from . import sparse
from .settings import Settings, settings as default_settings

CLI_SYSTEMS = ("sparse", "phonetic", "dense", "hybrid", "reranked")


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


@dataclass
class LinkResult:
    transcripts: dict[str, str]  # recogniser spec -> text
    systems: dict[str, list[Candidate]]
    timings_ms: dict[str, float] = field(default_factory=dict)
    audio: str | None = None
    profile: str = ""
    fallback_reason: str = ""

    def to_dict(self) -> dict:
        return {
            "audio": self.audio,
            "transcripts": dict(self.transcripts),
            "systems": {k: [c.to_dict() for c in v] for k, v in self.systems.items()},
            "timings_ms": {k: round(v, 2) for k, v in self.timings_ms.items()},
            "profile": self.profile,
            "fallback_reason": self.fallback_reason,
        }

    def rank_of(self, entry_id: int) -> dict[str, int | None]:
        """Rank of a known target in every system (None: not in that system's list)."""
        return {k: next((c.rank for c in v if c.id == entry_id), None) for k, v in self.systems.items()}


def candidates(hits: Sequence[idx.Hit]) -> list[Candidate]:
    return [Candidate(rank=r, name=h.name, countries=h.countries, score=round(h.score, 6), id=h.id) for r, h in enumerate(hits, 1)]


def sum_sparse(vectors: Sequence[sparse.SparseVector]) -> sparse.SparseVector:
    """One sparse query from several transcripts: their n-gram counts added."""
    if len(vectors) == 1:
        return vectors[0]
    acc: dict[int, float] = {}
    for v in vectors:
        for i, x in zip(v.indices, v.values):
            acc[i] = acc.get(i, 0.0) + x
    keys = sorted(acc)
    return sparse.SparseVector(keys, [acc[i] for i in keys])


def fuse(lists: Sequence[Sequence], fusion: str = "dbsf", rrf_k: int = 2, weights: Sequence[float] | None = None) -> list[tuple[int, float]]:
    """Qdrant's fusion of ranked lists (objects with ``id`` and ``score``) as ``(id, score)``, best first: ``dbsf``
    maps each list's scores from mean -/+ 3 sample sd to 0..1 and sums them (no weights); ``rrf`` sums
    1 / ((rank + 1) / w + k - 1), Qdrant's weighted RRF. The linker fuses the lists it already holds instead of
    asking Qdrant to search them all again (11 ms of the 50 ms budget); a test checks it against Qdrant's own
    prefetch + fusion. Points tied at a list's cut may differ from Qdrant's choice among them."""
    weights = list(weights) if weights else [1.0] * len(lists)
    acc: dict[int, float] = {}
    for hits, w in zip(lists, weights):
        if not hits:
            continue
        if fusion == "dbsf":
            s = np.array([h.score for h in hits], dtype=np.float64)
            if len(s) == 1:
                norm = np.array([0.5])
            else:
                sd = float(np.std(s, ddof=1))
                lo, hi = float(s.mean()) - 3 * sd, float(s.mean()) + 3 * sd
                norm = (s - lo) / (hi - lo) if hi > lo else np.full(len(s), 0.5)
            for h, x in zip(hits, norm.tolist()):  # unweighted, as sle asks Qdrant for DBSF
                acc[h.id] = acc.get(h.id, 0.0) + x
        else:
            for p, h in enumerate(hits):
                acc[h.id] = acc.get(h.id, 0.0) + 1.0 / ((p + 1) / w + rrf_k - 1)
    return sorted(acc.items(), key=lambda kv: (-kv[1], kv[0]))


def average(vectors: np.ndarray) -> np.ndarray:
    """Mean of L2-normalised rows, renormalised (the design's dense query from both recognisers)."""
    v = np.asarray(vectors, dtype=np.float32).mean(axis=0)
    n = float(np.linalg.norm(v))
    return v / n if n > 0 else v


class Linker:
    """Loads the index (and the dense model and recognisers on first use) once; links many queries."""

    def __init__(self, s: Settings | None = None, profile: str | None = None):
        self.s = s or default_settings
        self.profile_name = profile
        self.index = idx.open_index(self.s)
        self._encoder = None
        self._reranker = None

    # --- parts ------------------------------------------------------------------------------------------
    @property
    def has_dense(self) -> bool:
        return self.index.has_dense and idx.dense_model_path(self.s) is not None

    def encoder(self):
        if self._encoder is None:
            from . import encoder

            self._encoder = encoder.load_encoder(self.s.dense_model, settings=self.s)
        return self._encoder

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        from . import encoder

        return encoder.embed(list(texts), model=self.encoder(), settings=self.s)

    @property
    def reranker(self):
        """The learned reranker (None when ``settings.reranker_model`` names no model)."""
        if self._reranker is None:
            from . import rerank

            path = rerank.model_path(self.s)
            self._reranker = rerank.Reranker.load(path) if path else False
        return self._reranker or None

    def fusion_params(self) -> dict:
        w = [float(x) for x in self.s.fusion_weights.split(",") if x.strip()] or None
        return {"fusion": self.s.fusion, "rrf_k": self.s.rrf_k, "weights": w}

    def profile(self):
        from . import asr

        return asr.profile(self.profile_name, self.s)

    # --- linking ----------------------------------------------------------------------------------------
    def link_texts(
        self,
        transcripts: dict[str, str],
        k: int | None = None,
        rerank: bool = True,
        pool: bool = False,
        languages: dict[str, str] | None = None,
    ) -> LinkResult:
        """Every available system on the given transcripts (recogniser -> text; empty texts are ignored).

        ``languages`` (recogniser -> the language it decoded in) tells the phonetic channel how to read each
        transcript; without it, transcripts are read as German.

        With a reranker (or ``pool=True``, which returns the untruncated lists the reranker would see), sparse
        lists are fetched ``rerank_sparse_depth`` deep and the others ``rerank_depth`` deep; every list returned
        is cut to ``k`` unless ``pool``.
        """
        k_out = k or self.s.top_k
        reranker = self.reranker if rerank else None
        deep = pool or reranker is not None
        k = max(k_out, self.s.rerank_depth)  # the hybrid fuses lists this deep (cut to k_out at the end)
        k_sparse = max(k, self.s.rerank_sparse_depth) if deep else k
        texts = {r: t for r, t in transcripts.items() if t and t.strip()}
        result = LinkResult(transcripts=dict(transcripts), systems={})
        if not texts:
            return result
        t0 = time.perf_counter()
        svecs = {r: self.index.sparse_query(t) for r, t in texts.items()}
        raw: dict[str, list[idx.Hit]] = {}  # unrounded scores, for the fusion
        hits = self.index.search_sparse_vectors(list(svecs.values()), k_sparse)
        for r, h in zip(svecs, hits):
            raw[f"sparse@{r}"] = h
            result.systems[f"sparse@{r}"] = candidates(h)
        result.timings_ms["sparse"] = (time.perf_counter() - t0) * 1e3
        pvecs = {}
        if self.index.has_phonetic:
            t0 = time.perf_counter()
            pvecs = {r: self.index.phonetic_query(t, (languages or {}).get(r)) for r, t in texts.items()}
            hits = self.index.search_phonetic_vectors(list(pvecs.values()), k_sparse)
            for r, h in zip(pvecs, hits):
                raw[f"phonetic@{r}"] = h
                result.systems[f"phonetic@{r}"] = candidates(h)
            result.timings_ms["phonetic"] = (time.perf_counter() - t0) * 1e3
        if self.has_dense:
            t0 = time.perf_counter()
            dvecs = self.embed(list(texts.values()))
            result.timings_ms["embed"] = (time.perf_counter() - t0) * 1e3
            t0 = time.perf_counter()
            avg = average(dvecs)
            hits = self.index.search_dense(np.vstack([dvecs, avg[None, :]]), k)
            for r, h in zip(texts, hits):
                result.systems[f"dense@{r}"] = candidates(h)
            result.systems["dense-avg"] = candidates(hits[-1])
            result.timings_ms["dense"] = (time.perf_counter() - t0) * 1e3
            t0 = time.perf_counter()
            # Qdrant's hybrid (prefetch dense-avg, sparse and phonetic, then fuse), from the lists already fetched
            parts = [hits[-1]] + [raw[f"sparse@{r}"][:k] for r in svecs] + [raw[f"phonetic@{r}"][:k] for r in pvecs]
            fused = fuse(parts, **self._weights(len(parts)))[:k]
            by_id = {c.id: c for p in parts for c in p}
            result.systems["hybrid"] = [
                Candidate(rank, by_id[i].name, by_id[i].countries, round(score, 6), i) for rank, (i, score) in enumerate(fused, 1)
            ]
            result.timings_ms["hybrid"] = (time.perf_counter() - t0) * 1e3
        if reranker:
            t0 = time.perf_counter()
            ranked = reranker.rerank(texts, result.systems, k=k_out, max_pool=self.s.rerank_pool)
            result.systems["reranked"] = [Candidate(r, name, countries, round(p, 6), id) for r, (id, name, countries, p) in enumerate(ranked, 1)]
            result.timings_ms["rerank"] = (time.perf_counter() - t0) * 1e3
        if not pool:
            result.systems = {key: v[:k_out] for key, v in result.systems.items()}
        return result

    def _weights(self, n_parts: int) -> dict:
        p = self.fusion_params()
        if p["weights"] is not None and len(p["weights"]) != n_parts:
            p["weights"] = None  # weights are for dense + one sparse and one phonetic part per recogniser; others: equal
        return p

    def link_audio(self, audio, k: int | None = None, language: str | None = None) -> LinkResult:
        """Decode and check ``audio`` (path, bytes or 16 kHz float32 array), run both recognisers, link.

        Raises :class:`sle.audio.AudioError` with a human message for bad audio.
        """
        from . import asr
        from . import audio as au

        t0 = time.perf_counter()
        samples = audio if isinstance(audio, np.ndarray) else au.load_audio(audio, s=self.s)
        t_load = (time.perf_counter() - t0) * 1e3
        p = self.profile()
        t0 = time.perf_counter()
        transcripts = [ts[0] for ts in asr.transcribe_many(p.transcribers, [samples], [language])]
        t_asr = (time.perf_counter() - t0) * 1e3
        result = self.link_texts({t.recognizer: t.text for t in transcripts}, k, languages={t.recognizer: t.language for t in transcripts})
        if self.s.redecode_candidates and transcripts and transcripts[0].text:
            t0 = time.perf_counter()
            self._redecode(result, samples, p.transcribers[0], transcripts[0].language)
            result.timings_ms["redecode"] = (time.perf_counter() - t0) * 1e3
        result.audio = str(audio) if isinstance(audio, (str, Path)) else None
        result.profile, result.fallback_reason = p.name, p.fallback_reason
        result.timings_ms = {"load_audio": t_load, "asr": t_asr, **result.timings_ms}
        result.timings_ms["total"] = sum(result.timings_ms.values())
        return result

    def _redecode(self, result: LinkResult, samples: np.ndarray, transcriber, language: str) -> None:
        """Biased re-decoding: the first recogniser decodes the clip again with the best system's top candidates as
        hotwords; the system ``redecoded`` is those candidates re-ordered by spelling similarity to the new
        transcript (its key in ``transcripts``: ``<recogniser>+hotwords``)."""
        from rapidfuzz import fuzz

        from . import asr
        from .text import normalize

        best = next((result.systems[k] for k in ("reranked", "hybrid", f"sparse@{transcriber.spec}") if result.systems.get(k)), [])
        top = best[: self.s.redecode_candidates]
        if not top:
            return
        # alphabetical, so that the prompt does not tell Whisper which candidate the linker preferred
        text = asr.redecode(samples, transcriber, language, sorted({c.name for c in top}))
        result.transcripts[f"{transcriber.spec}+hotwords"] = text
        sim = {c.id: fuzz.ratio(normalize(text), normalize(c.name)) / 100 for c in top}
        order = sorted(range(len(top)), key=lambda i: -sim[top[i].id])  # stable: the best system's order breaks ties
        result.systems["redecoded"] = [Candidate(r, top[i].name, top[i].countries, round(sim[top[i].id], 6), top[i].id) for r, i in enumerate(order, 1)]

    def search(self, texts: Sequence[str], system: str = "sparse", k: int = 10) -> list[Candidate]:
        """One ranked list for one utterance given one or more transcripts of it (the CLI's ``search``)."""
        if system not in CLI_SYSTEMS:
            raise ValueError(f"unknown system {system!r}; choose one of {', '.join(CLI_SYSTEMS)}")
        if system == "reranked":
            if self.reranker is None:
                raise FileNotFoundError(f"no reranker model ({self.s.reranker_model!r} under {self.s.models_dir})")
            return self.link_texts({f"t{i}": t for i, t in enumerate(texts)}, k).systems.get("reranked", [])
        svec = sum_sparse([self.index.sparse_query(t) for t in texts])
        if system == "sparse":
            return candidates(self.index.search_sparse_vectors([svec], k)[0])
        pvec = sum_sparse([self.index.phonetic_query(t) for t in texts]) if self.index.has_phonetic and system != "dense" else None
        if system == "phonetic":
            return candidates(self.index.search_phonetic_vectors([pvec], k)[0])
        if not self.has_dense:
            raise idx.IndexNotReady(f"system {system!r} needs dense vectors: the index has none (no model at models/{self.s.dense_model})")
        avg = average(self.embed(texts))
        if system == "dense":
            return candidates(self.index.search_dense(avg[None, :], k)[0])
        parts = [("dense", avg), ("sparse", svec)] + ([("phonetic", pvec)] if pvec is not None else [])
        return candidates(self.index.hybrid(parts, k=k, depth=max(k, self.s.rerank_depth), **self._weights(len(parts))))

    def close(self) -> None:
        self.index.close()


_linkers: dict[int, Linker] = {}


def get_linker(s: Settings | None = None) -> Linker:
    """A process-wide :class:`Linker` per settings object (models and index load once)."""
    s = s or default_settings
    if id(s) not in _linkers:
        _linkers[id(s)] = Linker(s)
    return _linkers[id(s)]


def search(texts: str | Sequence[str], system: str = "sparse", k: int = 10, s: Settings | None = None) -> list[Candidate]:
    """Top-k streets for one utterance given one or more transcripts of it."""
    texts = [texts] if isinstance(texts, str) else list(texts)
    return get_linker(s).search(texts, system, k)
