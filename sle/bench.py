"""Benchmarks (``python -m sle bench index|query|dense|phonetic|all``): figures, not tests.

``index`` builds a fresh index of the gazetteer in a temporary data dir and times upload, optimisation and
reopening. ``query`` times sparse search in a separate process (so its RSS is the index's, not the
benchmark's) on corrupted gazetteer names, and checks it against an exact scipy scoring of the same vectors.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import random
import subprocess
import sys
import tempfile
import time
from typing import Iterable
from pathlib import Path

import numpy as np

from . import gazetteer as gz
from . import index as idx
from . import sparse
from .settings import Settings, settings as default_settings
from .text import corrupt


def _rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _du_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 2**20


def bench_index(limit: int | None, s: Settings) -> dict:
    with tempfile.TemporaryDirectory(prefix="sle-bench-") as tmp:
        bs = dataclasses.replace(s, data_dir=Path(tmp), qdrant_url="")
        g = gz.load(limit=limit, settings=bs)
        t0 = time.perf_counter()
        vecs = [sparse.encode(e.key) for e in g]
        t_encode = time.perf_counter() - t0
        engine = idx.make_engine(bs)
        engine.open(create=True)
        t0 = time.perf_counter()
        B = bs.upload_batch
        for i in range(0, len(g), B):
            engine.upsert([(e.id, {idx.SPARSE: v}, idx._payload(e)) for e, v in zip(g.entries[i : i + B], vecs[i : i + B])])
        engine.flush()
        t_upload = time.perf_counter() - t0
        t0 = time.perf_counter()
        engine.optimize()
        t_opt = time.perf_counter() - t0
        engine.close()
        t0 = time.perf_counter()
        engine = idx.make_engine(bs)
        engine.open()
        n = engine.count()
        t_reopen = time.perf_counter() - t0
        engine.close()
        return {
            "points": n,
            "encode_names_per_s": round(len(g) / t_encode),
            "upload_points_per_s": round(len(g) / t_upload),
            "encode_and_upload_points_per_s": round(len(g) / (t_encode + t_upload)),
            "optimize_s": round(t_opt, 2),
            "reopen_s": round(t_reopen, 3),
            "disk_mb": round(_du_mb(Path(tmp)), 1),
        }


def make_queries(g: gz.Gazetteer, n: int, seed: int = 0) -> tuple[list[str], list[int]]:
    """``n`` corrupted spellings of random gazetteer names, with the ids they should find."""
    rng = random.Random(seed)
    picks = rng.sample(range(len(g)), min(n, len(g)))
    return [corrupt(g.entries[i].name, rng) for i in picks], [g.entries[i].id for i in picks]


def _serve_queries(spec_path: str) -> None:
    """Child process: open the index, run the queries, report speed, RSS and result ids as JSON."""
    spec = json.loads(Path(spec_path).read_text())
    s = Settings.from_env(**spec.get("overrides", {}))
    t0 = time.perf_counter()
    index = idx.open_index(s)
    t_open = time.perf_counter() - t0
    rss_open = _rss_mb()
    out = {"reopen_s": round(t_open, 3), "rss_open_mb": round(rss_open, 1), "runs": {}}
    for name, run in spec["runs"].items():
        index.s = dataclasses.replace(s, sparse_query_max_df=run["max_df"], sparse_query_orders=run["orders"],
                                      sparse_query_max_postings=run.get("max_postings", 0))
        vecs = [index.sparse_query(q) for q in spec["queries"]]
        for v in vecs[:20]:
            index.search_sparse_vectors([v], 10)  # warm-up
        lat, ids = [], []
        t_all = time.perf_counter()
        for v in vecs:
            t = time.perf_counter()
            hits = index.search_sparse_vectors([v], 10)[0]
            lat.append(time.perf_counter() - t)
            ids.append([h.id for h in hits])
        wall = time.perf_counter() - t_all
        t = time.perf_counter()
        for i in range(0, len(vecs), 64):
            index.search_sparse_vectors(vecs[i : i + 64], 10)
        batch_wall = time.perf_counter() - t
        out["runs"][name] = {
            "qps": round(len(vecs) / wall, 1),
            "batch64_qps": round(len(vecs) / batch_wall, 1),
            "p50_ms": round(float(np.percentile(lat, 50)) * 1e3, 3),
            "p95_ms": round(float(np.percentile(lat, 95)) * 1e3, 3),
            "mean_terms": round(float(np.mean([len(v) for v in vecs])), 1),
            "ids": ids,
            "vectors": [[v.indices, v.values] for v in vecs],
        }
    out["rss_mb"] = round(_rss_mb(), 1)
    index.close()
    print(json.dumps(out))


class ExactScorer(sparse.ExactScorer):
    """Exact scoring of every gazetteer name's vector (character n-grams unless ``vectors`` are given, in
    gazetteer order) with scipy, IDF as Qdrant computes it."""

    def __init__(self, g: gz.Gazetteer, vectors: Iterable[sparse.SparseVector] | None = None):
        super().__init__(vectors if vectors is not None else (sparse.encode(e.key) for e in g), len(g))
        self.ids = np.array([e.id for e in g], dtype=np.int64)
        self.row_of = {int(i): r for r, i in enumerate(self.ids)}

    def top(self, v: sparse.SparseVector, k: int = 10, scores: np.ndarray | None = None) -> list[int]:
        """Ids of the exact top ``k`` with a positive score (``scores``: this vector's, if already computed)."""
        scores = self.scores(v) if scores is None else scores
        k = min(k, len(scores))
        top = np.argpartition(-scores, k - 1)[:k]
        top = top[np.argsort(-scores[top], kind="stable")]
        return [int(self.ids[t]) for t in top if scores[t] > 0]

    def agreement(self, v: sparse.SparseVector, found: list[int], k: int = 10, scores: np.ndarray | None = None) -> float:
        """Share of ``found`` that belongs to the exact top-k, counting ties at the k-th score as members."""
        scores = self.scores(v) if scores is None else scores
        kth = np.partition(-scores, k - 1)[k - 1] * -1
        ok = [scores[self.row_of[i]] >= kth - 1e-4 * max(1.0, abs(kth)) for i in found]
        return float(np.mean(ok)) if ok else 1.0


def bench_query(limit: int | None, n_queries: int, s: Settings) -> dict:
    manifest = idx.build_status(s)
    if manifest is None or not manifest.ready:
        raise idx.IndexNotReady("bench query needs a built index: run `python -m sle index` first")
    g = gz.load(limit=limit or manifest.n_points, settings=s)
    queries, targets = make_queries(g, n_queries)
    runs = {
        "full": {"max_df": 1.0, "orders": "1,2,3"},
        "bigrams_trigrams": {"max_df": 1.0, "orders": "2,3"},
        "trigrams": {"max_df": 1.0, "orders": "3"},
        "default": {"max_df": s.sparse_query_max_df, "orders": s.sparse_query_orders, "max_postings": s.sparse_query_max_postings},
        "trigrams_postings50k": {"max_df": 1.0, "orders": "3", "max_postings": 50_000},
        "trigrams_postings200k": {"max_df": 1.0, "orders": "3", "max_postings": 200_000},
    }
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump({"queries": queries, "runs": runs}, f)
    env = dict(os.environ)
    proc = subprocess.run([sys.executable, "-m", "sle.bench", f.name], capture_output=True, text=True, env=env, check=True)
    os.unlink(f.name)
    child = json.loads(proc.stdout)

    t0 = time.perf_counter()
    exact = ExactScorer(g)
    t_exact_build = time.perf_counter() - t0
    result = {
        "names": len(g),
        "queries": len(queries),
        "reopen_s": child["reopen_s"],
        "rss_open_mb": child["rss_open_mb"],
        "rss_mb": child["rss_mb"],
        "exact_build_s": round(t_exact_build, 1),
    }
    for name, run in child["runs"].items():
        vecs = [sparse.SparseVector(*v) for v in run["vectors"]]
        t0 = time.perf_counter()
        for v in vecs:
            exact.top(v, 10)
        exact_qps = len(vecs) / (time.perf_counter() - t0)
        agree = np.mean([exact.agreement(v, ids) for v, ids in zip(vecs, run["ids"])])
        recall10 = np.mean([t in ids for t, ids in zip(targets, run["ids"])])
        recall1 = np.mean([bool(ids) and ids[0] == t for t, ids in zip(targets, run["ids"])])
        prefix = "sparse" if name == "default" else f"sparse_{name}"
        result.update(
            {
                f"{prefix}_qps": run["qps"],
                f"{prefix}_batch64_qps": run["batch64_qps"],
                f"{prefix}_p50_ms": run["p50_ms"],
                f"{prefix}_p95_ms": run["p95_ms"],
                f"{prefix}_terms": run["mean_terms"],
                f"{prefix}_recall1": round(float(recall1), 4),
                f"{prefix}_recall10": round(float(recall10), 4),
                f"{prefix}_exact_qps": round(exact_qps, 1),
                f"{prefix}_top10_agreement": round(float(agree), 4),
            }
        )
    # the same query designs on real transcripts (synthetic validation speech), scored exactly: Qdrant agrees with
    # the exact scorer (above), so this is the recall the index gives on what recognisers write
    utts = _transcript_queries(g, s)
    if utts:
        df = exact.docfreq()
        result["transcripts"] = len(utts)
        for name, run in runs.items():
            orders = tuple(int(x) for x in run["orders"].split(","))
            tops = [exact.top(sparse.encode_query(text, orders, df, run["max_df"], run.get("max_postings", 0)), 10) for text, _ in utts]
            prefix = "sparse" if name == "default" else f"sparse_{name}"
            result[f"{prefix}_transcripts_recall1"] = round(float(np.mean([bool(top) and top[0] == t for top, (_, t) in zip(tops, utts)])), 4)
            result[f"{prefix}_transcripts_recall10"] = round(float(np.mean([t in top for top, (_, t) in zip(tops, utts)])), 4)
    result["exact_qps"] = result["sparse_exact_qps"]
    result["top10_agreement"] = result["sparse_top10_agreement"]
    return result


def _transcript_queries(g: gz.Gazetteer, s: Settings) -> list[tuple[str, int]]:
    """(transcript, target id) for every recogniser's transcript of the synthetic validation names, if present."""
    try:
        from .evaluate import synthetic_queries

        qs = synthetic_queries("validation", g, s=s)
    except (FileNotFoundError, ImportError):
        return []
    return [(text, q.target) for q in qs for text in q.transcripts.values() if text.strip()]


def bench_dense(n_queries: int, s: Settings, efs: tuple[int, ...] = (16, 32, 64, 128)) -> dict:
    """Query embedding latency, and HNSW search speed and agreement with exact search, per ``hnsw_ef``."""
    from . import encoder

    manifest = idx.build_status(s)
    if manifest is None or not manifest.ready or not manifest.dense_model or manifest.dense_done < manifest.n_points:
        raise idx.IndexNotReady("bench dense needs an index with dense vectors: put a model in models/ and run `python -m sle index`")
    g = gz.load(limit=manifest.n_points, settings=s)
    queries, targets = make_queries(g, n_queries)
    matrix = np.load(idx.dense_cache_path(s, manifest), mmap_mode="r")
    ids = np.array([e.id for e in g], dtype=np.int64)
    model = encoder.load_encoder(s.dense_model, settings=s)
    encoder.embed(queries[:20], model=model, settings=s)
    lat = []
    for q in queries[:300]:
        t = time.perf_counter()
        encoder.embed([q], model=model, settings=s)
        lat.append(time.perf_counter() - t)
    qv = encoder.embed(queries, model=model, settings=s)
    t0 = time.perf_counter()
    exact_top = []
    for i in range(0, len(qv), 256):
        scores = qv[i : i + 256] @ matrix.T
        top = np.argpartition(-scores, 9, axis=1)[:, :10]
        exact_top.extend(set(ids[row].tolist()) for row in top)
    exact_qps = len(qv) / (time.perf_counter() - t0)
    out = {
        "dense_queries": len(qv),
        "embed_query_p50_ms": round(float(np.percentile(lat, 50)) * 1e3, 2),
        "embed_query_p95_ms": round(float(np.percentile(lat, 95)) * 1e3, 2),
        "dense_exact_qps": round(exact_qps, 1),
        "dense_exact_recall10": round(float(np.mean([t in e for t, e in zip(targets, exact_top)])), 4),
    }
    for ef in efs:
        index = idx.open_index(dataclasses.replace(s, hnsw_ef=ef))
        try:
            index.search_dense(qv[:20], 10)
            found, lat = [], []
            for v in qv:
                t = time.perf_counter()
                found.append([h.id for h in index.search_dense(v[None, :], 10)[0]])
                lat.append(time.perf_counter() - t)
        finally:
            index.close()
        out[f"hnsw_ef{ef}_qps"] = round(len(qv) / sum(lat), 1)
        out[f"hnsw_ef{ef}_p50_ms"] = round(float(np.percentile(lat, 50)) * 1e3, 3)
        out[f"hnsw_ef{ef}_recall_vs_exact"] = round(float(np.mean([len(set(f) & e) / 10 for f, e in zip(found, exact_top)])), 4)
        out[f"hnsw_ef{ef}_recall10"] = round(float(np.mean([t in f for t, f in zip(targets, found)])), 4)
    return out


def bench_phonetic(s: Settings, budgets: tuple[int, ...] = (0, 400_000, 300_000, 200_000, 100_000), depth: int = 300) -> dict:
    """The phonetic channel's query postings budget: for each budget, Qdrant's speed at the linker's depth and
    recall on every real validation transcript, scored exactly (and Qdrant's top-10 agreement with it)."""
    from . import phonetic

    manifest = idx.build_status(s)
    if manifest is None or not manifest.ready or not manifest.phonetic:
        raise idx.IndexNotReady("bench phonetic needs an index with phonetic vectors: run `python -m sle index`")
    g = gz.load(limit=manifest.n_points, settings=s)
    docs = (phonetic.document_vector(p) for p in phonetic.gazetteer_phonemes(g, s.index_dir / "phonemes"))
    exact = ExactScorer(g, docs)
    df = exact.docfreq()
    from .evaluate import synthetic_queries

    utts = [(text, q.languages.get(r), q.target) for q in synthetic_queries("validation", g, s=s) for r, text in q.transcripts.items() if text.strip()]
    full = [phonetic.query_vector(text, lang) for text, lang, _ in utts]
    out: dict = {"phonetic_transcripts": len(utts), "phonetic_depth": depth}
    index = idx.open_index(s)
    try:
        for b in budgets:
            vecs = [sparse.prune(v, df, max_postings=b) for v in full]
            index.search_phonetic_vectors(vecs[:20], depth)  # warm-up
            lat, found = [], []
            for v in vecs:
                t = time.perf_counter()
                hits = index.search_phonetic_vectors([v], depth)[0]
                lat.append(time.perf_counter() - t)
                found.append([h.id for h in hits[:10]])
            ranks = []
            agree = []
            for v, (_, _, target), f in zip(vecs, utts, found):
                scores = exact.scores(v)
                top = exact.top(v, 100, scores)
                ranks.append(top.index(target) + 1 if target in top else None)
                agree.append(exact.agreement(v, f, 10, scores))
            key = f"phonetic_postings{b // 1000}k" if b else "phonetic_all"
            out.update(
                {
                    f"{key}_terms": round(float(np.mean([len(v.indices) for v in vecs])), 1),
                    f"{key}_qps": round(len(vecs) / sum(lat), 1),
                    f"{key}_p50_ms": round(float(np.percentile(lat, 50)) * 1e3, 2),
                    f"{key}_top10_agreement": round(float(np.mean(agree)), 4),
                    **{f"{key}_recall{k}": round(float(np.mean([r is not None and r <= k for r in ranks])), 4) for k in (1, 10, 40, 100)},
                }
            )
    finally:
        index.close()
    return out


def run(what: str, limit: int | None = None, n_queries: int = 2000, s: Settings | None = None) -> dict:
    s = s or default_settings
    out: dict = {}
    if what in ("index", "all"):
        out.update(bench_index(limit, s))
    if what in ("query", "all"):
        out.update(bench_query(limit, n_queries, s))
    if what == "dense":
        out.update(bench_dense(n_queries, s))
    if what == "phonetic":
        out.update(bench_phonetic(s))
    return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in out.items()}


if __name__ == "__main__":
    _serve_queries(sys.argv[1])
