"""The street index in Qdrant: one schema, two engines.

- embedded (default): qdrant-edge, Qdrant's own engine in-process, persisted under ``settings.index_dir``;
- server or cluster: qdrant-client against ``settings.qdrant_url`` (``:memory:`` or ``path:<dir>`` select
  qdrant-client's local mode, which is only a test double for the server path: far too slow to serve).

Schema: named dense vector ``dense`` (cosine, HNSW), named sparse vectors ``sparse`` (character n-grams) and
``phonetic`` (phoneme n-grams of the name read by espeak-ng in its country's language), both with the IDF
modifier; payload ``{"name", "countries", "id"}``. Point 0 carries the build manifest, so an index describes itself and a
half-built index is never used silently.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
from tqdm.auto import tqdm

from . import gazetteer as gz
from . import sparse
from .settings import Settings, settings as default_settings

log = logging.getLogger(__name__)

SCHEMA_VERSION = 2  # 2: the phonetic sparse vector
SPARSE_VERSION = "char1-3-pad-mmh3-v1"
MANIFEST_ID = 0  # stable_id() never yields 0 in practice (2^-63)
DENSE, SPARSE, PHONETIC = "dense", "sparse", "phonetic"
SPARSE_KINDS = (SPARSE, PHONETIC)


class IndexNotReady(RuntimeError):
    """The index is missing, still building, or was built from other data. The message says which."""


class IndexInUse(IndexNotReady):
    """Another process holds the embedded index (qdrant-edge opens a shard in one process at a time)."""


@dataclass(frozen=True)
class Hit:
    id: int
    score: float
    name: str
    countries: tuple[str, ...]


@dataclass
class Manifest:
    schema: int = SCHEMA_VERSION
    gazetteer: str = ""  # fingerprint of the gazetteer (file hash + limit + column)
    sparse: str = SPARSE_VERSION
    n_points: int = 0
    state: str = "building"  # building | ready
    points_done: int = 0
    phonetic: str = ""  # version of the phoneme encoding in the phonetic slot ("" = none)
    dense_model: str = ""  # fingerprint of the model whose vectors fill the dense slot ("" = none)
    dense_done: int = 0
    built_at: float = 0.0
    extra: dict = field(default_factory=dict)

    @property
    def ready(self) -> bool:
        return self.state == "ready"


# --- engines -------------------------------------------------------------------------------------------


class EdgeEngine:
    """qdrant-edge shard in a local folder."""

    kind = "edge"

    def __init__(self, path: Path, dim: int, s: Settings):
        import qdrant_edge as qe

        self.qe, self.path, self.dim, self.s = qe, Path(path), dim, s
        self.shard = None

    def _config(self):
        qe, s = self.qe, self.s
        return qe.EdgeConfig(
            vectors={
                DENSE: qe.EdgeVectorParams(
                    size=self.dim,
                    distance=qe.Distance.Cosine,
                    hnsw_config=qe.HnswIndexConfig(m=s.hnsw_m, ef_construct=s.hnsw_ef_construct, full_scan_threshold=10000),
                )
            },
            sparse_vectors={k: qe.EdgeSparseVectorParams(modifier=qe.Modifier.Idf) for k in SPARSE_KINDS},
            payload_memory=qe.Memory.Cold,
        )

    def exists(self) -> bool:
        return self.path.exists() and any(self.path.iterdir())

    def open(self, create: bool = False) -> None:
        if self.shard is not None:
            return
        if self.exists():
            try:
                self.shard = self.qe.EdgeShard.load(str(self.path))
            except Exception as e:  # qdrant-edge raises a bare Exception; its WAL lock says WouldBlock
                if "WouldBlock" in str(e):
                    raise IndexInUse(
                        f"the embedded index at {self.path} is open in another process (the app? an eval?); "
                        "qdrant-edge serves one process at a time: stop that process, or share a Qdrant server (SLE_QDRANT_URL)"
                    ) from None
                raise
        elif create:
            self.path.mkdir(parents=True, exist_ok=True)
            self.shard = self.qe.EdgeShard.create(str(self.path), self._config())
        else:
            raise IndexNotReady(f"no index at {self.path}: run `python -m sle index`")

    def drop(self) -> None:
        self.close()
        shutil.rmtree(self.path, ignore_errors=True)

    def close(self) -> None:
        if self.shard is not None:
            self.shard.close()
            self.shard = None

    def _point(self, id: int, vectors: dict, payload: dict | None):
        qe = self.qe
        vec = {}
        for k, v in vectors.items():
            vec[k] = qe.SparseVector(v.indices, v.values) if isinstance(v, sparse.SparseVector) else list(map(float, v))
        return qe.Point(id, vec, payload)

    def upsert(self, points: list[tuple[int, dict, dict | None]]) -> None:
        self.shard.update(self.qe.UpdateOperation.upsert_points([self._point(*p) for p in points]))

    def set_dense(self, ids: Sequence[int], vectors: np.ndarray) -> None:
        qe = self.qe
        pv = [qe.PointVectors(int(i), {DENSE: v}) for i, v in zip(ids, vectors.tolist())]
        self.shard.update(qe.UpdateOperation.update_vectors(pv))

    def flush(self) -> None:
        self.shard.flush()

    def optimize(self) -> None:
        self.shard.optimize()

    def count(self) -> int:
        return self.shard.info().points_count

    def get_payload(self, id: int) -> dict | None:
        recs = self.shard.retrieve([id], with_payload=True, with_vector=False)
        return recs[0].payload if recs else None

    def set_payload(self, id: int, payload: dict) -> None:
        self.shard.update(self.qe.UpdateOperation.upsert_points([self.qe.Point(id, {}, payload)]))

    def _request(self, q):
        qe = self.qe
        kind, vec, limit = q["kind"], q.get("vector"), q["limit"]
        params = qe.SearchParams(hnsw_ef=self.s.hnsw_ef) if kind == DENSE else None
        if kind in SPARSE_KINDS:
            query = qe.Query.Nearest(qe.SparseVector(vec.indices, vec.values), using=kind)
            return qe.QueryRequest(limit=limit, query=query, with_payload=q["payload"], params=params)
        if kind == DENSE:
            query = qe.Query.Nearest([float(x) for x in vec], using=DENSE)
            return qe.QueryRequest(limit=limit, query=query, with_payload=q["payload"], params=params)
        # hybrid: q["parts"] are (kind, vector) pairs fused server-side
        prefetches = []
        for part_kind, part_vec in q["parts"]:
            if part_kind in SPARSE_KINDS:
                pq = qe.Query.Nearest(qe.SparseVector(part_vec.indices, part_vec.values), using=part_kind)
                prefetches.append(qe.Prefetch(limit=q["depth"], query=pq))
            else:
                pq = qe.Query.Nearest([float(x) for x in part_vec], using=DENSE)
                prefetches.append(qe.Prefetch(limit=q["depth"], query=pq, params=qe.SearchParams(hnsw_ef=self.s.hnsw_ef)))
        fusion = qe.Fusion.Dbsf() if q["fusion"] == "dbsf" else qe.Fusion.Rrf(k=q["rrf_k"], weights=q.get("weights"))
        return qe.QueryRequest(limit=limit, query=fusion, prefetches=prefetches, with_payload=q["payload"])

    def query_batch(self, queries: list[dict]) -> list[list[Hit]]:
        reqs = [self._request(q) for q in queries]
        if len(reqs) == 1:
            results = [self.shard.query(reqs[0])]
        else:
            results = self.shard.query_batch(self.qe.QueryBatchRequest(reqs))
        return [[_hit(p.id, p.score, p.payload) for p in res] for res in results]


class ServerEngine:
    """A Qdrant server or cluster through qdrant-client (``:memory:``/``path:`` = local test double)."""

    kind = "server"

    def __init__(self, url: str, collection: str, dim: int, s: Settings):
        from qdrant_client import QdrantClient, models

        self.models, self.collection, self.dim, self.s = models, collection, dim, s
        if url == ":memory:":
            self.client = QdrantClient(location=":memory:")
        elif url.startswith("path:"):
            self.client = QdrantClient(path=url[5:])
        else:
            self.client = QdrantClient(url=url, api_key=s.qdrant_api_key or None, timeout=120)

    def exists(self) -> bool:
        return self.client.collection_exists(self.collection)

    def open(self, create: bool = False) -> None:
        if self.exists():
            return
        if not create:
            raise IndexNotReady(f"no collection {self.collection!r} on {self.s.qdrant_url}: run `python -m sle index`")
        m, s = self.models, self.s
        self.client.create_collection(
            self.collection,
            vectors_config={
                DENSE: m.VectorParams(
                    size=self.dim,
                    distance=m.Distance.COSINE,
                    hnsw_config=m.HnswConfigDiff(m=s.hnsw_m, ef_construct=s.hnsw_ef_construct),
                )
            },
            sparse_vectors_config={k: m.SparseVectorParams(modifier=m.Modifier.IDF) for k in SPARSE_KINDS},
            shard_number=s.shard_number,
            replication_factor=s.replication_factor,
            on_disk_payload=True,
        )

    def drop(self) -> None:
        if self.exists():
            self.client.delete_collection(self.collection)

    def close(self) -> None:
        self.client.close()

    def _point(self, id: int, vectors: dict, payload: dict | None):
        m = self.models
        vec = {}
        for k, v in vectors.items():
            vec[k] = m.SparseVector(indices=v.indices, values=v.values) if isinstance(v, sparse.SparseVector) else list(map(float, v))
        return m.PointStruct(id=id, vector=vec, payload=payload or {})

    def upsert(self, points: list[tuple[int, dict, dict | None]]) -> None:
        self.client.upload_points(
            self.collection,
            [self._point(*p) for p in points],
            batch_size=min(len(points), 512),
            parallel=self.s.upload_parallel,
            wait=True,
        )

    def set_dense(self, ids: Sequence[int], vectors: np.ndarray) -> None:
        m = self.models
        pv = [m.PointVectors(id=int(i), vector={DENSE: v}) for i, v in zip(ids, vectors.tolist())]
        self.client.update_vectors(self.collection, pv, wait=True)

    def flush(self) -> None:
        pass  # the server persists on its own (WAL)

    def optimize(self) -> None:
        pass  # the server's optimizers run in the background

    def count(self) -> int:
        return self.client.count(self.collection, exact=True).count

    def get_payload(self, id: int) -> dict | None:
        recs = self.client.retrieve(self.collection, [id], with_payload=True)
        return recs[0].payload if recs else None

    def set_payload(self, id: int, payload: dict) -> None:
        self.client.upsert(self.collection, [self.models.PointStruct(id=id, vector={}, payload=payload)], wait=True)

    def _request(self, q):
        m = self.models
        kind, vec, limit = q["kind"], q.get("vector"), q["limit"]
        if kind in SPARSE_KINDS:
            return m.QueryRequest(query=m.SparseVector(indices=vec.indices, values=vec.values), using=kind, limit=limit, with_payload=q["payload"])
        if kind == DENSE:
            return m.QueryRequest(
                query=[float(x) for x in vec], using=DENSE, limit=limit, with_payload=q["payload"], params=m.SearchParams(hnsw_ef=self.s.hnsw_ef)
            )
        prefetch = []
        for part_kind, part_vec in q["parts"]:
            if part_kind in SPARSE_KINDS:
                prefetch.append(m.Prefetch(query=m.SparseVector(indices=part_vec.indices, values=part_vec.values), using=part_kind, limit=q["depth"]))
            else:
                prefetch.append(m.Prefetch(query=[float(x) for x in part_vec], using=DENSE, limit=q["depth"]))
        if q["fusion"] == "dbsf":
            query = m.FusionQuery(fusion=m.Fusion.DBSF)
        else:
            query = m.RrfQuery(rrf=m.Rrf(k=q["rrf_k"], weights=q.get("weights")))
        return m.QueryRequest(prefetch=prefetch, query=query, limit=limit, with_payload=q["payload"])

    def query_batch(self, queries: list[dict]) -> list[list[Hit]]:
        res = self.client.query_batch_points(self.collection, [self._request(q) for q in queries])
        return [[_hit(p.id, p.score, p.payload) for p in r.points] for r in res]


def _hit(id, score, payload) -> Hit:
    payload = payload or {}
    return Hit(id=int(id), score=float(score), name=payload.get("name", ""), countries=tuple(payload.get("countries", ())))


class NameTable:
    """Every point's name and countries in RAM, so that searches skip Qdrant's payload reads: a 300-deep sparse
    list takes 2.3 ms without payloads and 9 ms with them when the payload pages are not in the page cache
    (docs/evaluation.md, latency). ~60 MB for 685k names; written by the build beside the index."""

    def __init__(self, ids: np.ndarray, names: list[str], countries: list[tuple[str, ...]]):
        self.ids = np.asarray(ids, dtype=np.int64)
        self.names, self.countries = names, countries
        self._order = np.argsort(self.ids, kind="stable")
        self._sorted = self.ids[self._order]

    @classmethod
    def from_gazetteer(cls, g: gz.Gazetteer) -> "NameTable":
        return cls(np.array([e.id for e in g], dtype=np.int64), [e.name for e in g], [tuple(e.countries) for e in g])

    def rows(self, ids: Sequence[int]) -> list[int]:
        """Table rows of point ids (KeyError for an id the table does not hold)."""
        q = np.asarray(ids, dtype=np.int64)
        j = np.minimum(np.searchsorted(self._sorted, q), len(self._sorted) - 1)
        if len(q) and not (self._sorted[j] == q).all():
            raise KeyError("a point is not in the name table: rebuild the index (`python -m sle index`)")
        return self._order[j].tolist()

    def hits(self, hits: Sequence[Hit]) -> list[Hit]:
        """``hits`` with their names and countries filled in."""
        return [Hit(h.id, h.score, self.names[r], self.countries[r]) for h, r in zip(hits, self.rows([h.id for h in hits]))]

    def save(self, path: Path) -> None:
        tmp = path.with_suffix(".tmp.npz")
        np.savez(
            tmp,
            ids=self.ids,
            names=np.frombuffer("\n".join(self.names).encode(), dtype=np.uint8),
            countries=np.frombuffer("\n".join(",".join(c) for c in self.countries).encode(), dtype=np.uint8),
        )
        tmp.replace(path)

    @classmethod
    def load(cls, path: Path) -> "NameTable":
        with np.load(path) as z:
            names = z["names"].tobytes().decode().split("\n")
            interned: dict[str, tuple[str, ...]] = {}
            countries = [interned.setdefault(c, tuple(x for x in c.split(",") if x)) for c in z["countries"].tobytes().decode().split("\n")]
            return cls(z["ids"], names, countries)


# --- the index ------------------------------------------------------------------------------------------


class Index:
    """Open with :func:`open_index`; search with :meth:`search_sparse`, :meth:`search_dense`, :meth:`hybrid`."""

    def __init__(
        self,
        engine,
        manifest: Manifest,
        docfreq: sparse.DocFreq | None,
        s: Settings,
        phonetic_docfreq: sparse.DocFreq | None = None,
        names: NameTable | None = None,
    ):
        self.engine, self.manifest, self.docfreq, self.s = engine, manifest, docfreq, s
        self.phonetic_docfreq, self.names = phonetic_docfreq, names

    def _query(self, queries: list[dict]) -> list[list[Hit]]:
        """Qdrant's answers; names and countries from the in-memory table when there is one, else from payloads."""
        for q in queries:
            q["payload"] = self.names is None
        results = self.engine.query_batch(queries)
        if self.names is None:
            return results
        return [self.names.hits(hits) for hits in results]

    @property
    def has_dense(self) -> bool:
        return bool(self.manifest.dense_model) and self.manifest.dense_done >= self.manifest.n_points

    def __len__(self) -> int:
        return self.manifest.n_points

    def sparse_query(self, text: str) -> sparse.SparseVector:
        return sparse.encode_query(text, self.s.query_orders, self.docfreq, self.s.sparse_query_max_df, self.s.sparse_query_max_postings)

    def search_sparse(self, texts: Sequence[str], k: int = 10) -> list[list[Hit]]:
        """Sparse n-gram search for each text."""
        return self._query([{"kind": SPARSE, "vector": self.sparse_query(t), "limit": k} for t in texts])

    def search_sparse_vectors(self, vectors: Sequence[sparse.SparseVector], k: int = 10) -> list[list[Hit]]:
        return self._query([{"kind": SPARSE, "vector": v, "limit": k} for v in vectors])

    @property
    def has_phonetic(self) -> bool:
        return bool(self.manifest.phonetic)

    def phonetic_query(self, text: str, language: str | None = None) -> sparse.SparseVector:
        from . import phonetic

        return sparse.prune(phonetic.query_vector(text, language), self.phonetic_docfreq, max_postings=self.s.phonetic_query_max_postings)

    def search_phonetic_vectors(self, vectors: Sequence[sparse.SparseVector], k: int = 10) -> list[list[Hit]]:
        """Phoneme n-gram search (see :mod:`sle.phonetic`) for each query vector."""
        if not self.has_phonetic:
            raise IndexNotReady("the index has no phonetic vectors: rebuild it with `python -m sle index`")
        return self._query([{"kind": PHONETIC, "vector": v, "limit": k} for v in vectors])

    def search_dense(self, vectors: np.ndarray, k: int = 10) -> list[list[Hit]]:
        """Dense search for each (normalised) row of ``vectors``."""
        if not self.has_dense:
            raise IndexNotReady("the index has no dense vectors yet: train or install a dense model, then `python -m sle index`")
        return self._query([{"kind": DENSE, "vector": v, "limit": k} for v in np.atleast_2d(vectors)])

    def hybrid(
        self,
        parts: list[tuple[str, object]],
        k: int = 10,
        fusion: str = "rrf",
        rrf_k: int = 2,
        depth: int = 40,
        weights: list[float] | None = None,
    ) -> list[Hit]:
        """Fuse several searches inside Qdrant (prefetch + RRF or DBSF). ``parts``: ("sparse" or "phonetic",
        SparseVector) or ("dense", vector) pairs."""
        q = {"kind": "hybrid", "parts": parts, "limit": k, "fusion": fusion, "rrf_k": rrf_k, "depth": depth, "weights": weights}
        return self._query([q])[0]

    def close(self) -> None:
        self.engine.close()


def make_engine(s: Settings | None = None, dim: int | None = None):
    s = s or default_settings
    dim = dim or s.dense_dim
    if s.qdrant_url:
        return ServerEngine(s.qdrant_url, s.collection, dim, s)
    return EdgeEngine(s.index_dir / s.collection, dim, s)


def _read_manifest(engine) -> Manifest | None:
    payload = engine.get_payload(MANIFEST_ID)
    if not payload or "manifest" not in payload:
        return None
    data = json.loads(payload["manifest"])
    known = {k: v for k, v in data.items() if k in Manifest.__dataclass_fields__}
    return Manifest(**known)


def _write_manifest(engine, m: Manifest) -> None:
    engine.set_payload(MANIFEST_ID, {"manifest": json.dumps(m.__dict__)})


def _docfreq_path(s: Settings, fingerprint: str) -> Path:
    return s.index_dir / f"docfreq-{fingerprint[:16]}.npz"


def _names_path(s: Settings, fingerprint: str) -> Path:
    return s.index_dir / f"names-{fingerprint[:16]}.npz"


def _phonetic_docfreq_path(s: Settings, fingerprint: str) -> Path:
    from . import phonetic

    return s.index_dir / f"docfreq-{phonetic.VERSION}-{fingerprint[:16]}.npz"


def open_index(s: Settings | None = None, require_ready: bool = True) -> Index:
    """Open the built index. Raises :class:`IndexNotReady` (with the build progress) if it is not usable."""
    s = s or default_settings
    engine = make_engine(s)
    engine.open(create=False)
    m = _read_manifest(engine)
    if m is None:
        engine.close()
        raise IndexNotReady("the index has no manifest (interrupted at creation?): run `python -m sle index`")
    if require_ready and not m.ready:
        engine.close()
        raise IndexNotReady(f"the index is still building: {m.points_done:,}/{m.n_points:,} names; run `python -m sle index` to finish it")
    dfp = _docfreq_path(s, m.gazetteer)
    docfreq = sparse.DocFreq.load(dfp) if dfp.exists() else None
    if docfreq is None and (s.sparse_query_max_df < 1.0 or s.sparse_query_max_postings):
        log.warning("no n-gram document frequencies at %s: sparse queries are not pruned (slower)", dfp)
    pdfp = _phonetic_docfreq_path(s, m.gazetteer)
    phonetic_docfreq = sparse.DocFreq.load(pdfp) if m.phonetic and pdfp.exists() else None
    if m.phonetic and phonetic_docfreq is None and s.phonetic_query_max_postings:
        log.warning("no phoneme n-gram document frequencies at %s: phonetic queries are not pruned (slower); "
                    "`python -m sle index` adds them", pdfp)
    np_ = _names_path(s, m.gazetteer)
    names = NameTable.load(np_) if np_.exists() else None
    return Index(engine, m, docfreq, s, phonetic_docfreq, names)


def build_status(s: Settings | None = None) -> Manifest | None:
    """The manifest of the index as it is on disk (None if there is none); never raises for a half-built one,
    only :class:`IndexInUse` when another process holds the embedded index."""
    s = s or default_settings
    engine = make_engine(s)
    try:
        engine.open(create=False)
        return _read_manifest(engine)
    except IndexInUse:
        raise
    except IndexNotReady:
        return None
    finally:
        engine.close()


def gazetteer_fingerprint(g: gz.Gazetteer, limit: int | None, column: str | None) -> str:
    h = hashlib.sha256(f"{g.fingerprint}|{limit}|{column}|{SPARSE_VERSION}|{len(g)}".encode())
    return h.hexdigest()


def dense_cache_path(s: Settings, m: Manifest) -> Path:
    """Where the build keeps the dense vectors of all names (float32, gazetteer order)."""
    return s.index_dir / f"dense-{m.gazetteer[:12]}-{m.dense_model[:12]}.npy"


def dense_model_path(s: Settings) -> Path | None:
    """The local folder of the dense model named by ``settings.dense_model``, or None if there is none."""
    p = Path(s.dense_model)
    if not p.is_absolute():
        p = s.models_dir / s.dense_model
    return p if (p / "modules.json").exists() else None


def _folder_fingerprint(path: Path) -> str:
    h = hashlib.sha256()
    for f in sorted(path.rglob("*")):
        if f.is_file() and f.suffix != ".md":
            h.update(f.relative_to(path).as_posix().encode())
            h.update(gz.file_sha256(f).encode())
    return h.hexdigest()


def _encode_batch(items: list[tuple[str, str]]) -> list[tuple[sparse.SparseVector, sparse.SparseVector]]:
    """(character vector, phoneme vector) of each (normalised name, phoneme string)."""
    from . import phonetic

    return [(sparse.encode(k), phonetic.document_vector(ph)) for k, ph in items]


def _encoded_batches(batches: list[list[tuple[str, str]]]):
    """Sparse vectors batch by batch; on big builds a second process encodes the next batches while this one
    uploads (encoding is pure Python and would otherwise halve the upload rate)."""
    if sum(map(len, batches)) < 50_000:
        yield from map(_encode_batch, batches)
        return
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(max_workers=1, mp_context=mp.get_context("spawn")) as pool:
        yield from pool.map(_encode_batch, batches, chunksize=4)


def _payload(e: gz.Entry) -> dict:
    return {"name": e.name, "countries": list(e.countries), "id": e.id}


def build(
    gazetteer_path: str | Path | None = None,
    column: str | None = None,
    limit: int | None = None,
    rebuild: bool = False,
    dense: bool = True,
    s: Settings | None = None,
    progress: bool = True,
    on_progress=None,
) -> str:
    """Build or refresh the index; idempotent (same gazetteer and model: nothing to do) and resumable.

    ``on_progress(done, total, what)`` is called after each batch (the app shows it). Returns a summary line.
    """
    from . import phonetic

    s = s or default_settings
    t0 = time.perf_counter()
    g = gz.load(gazetteer_path, column=column, limit=limit, settings=s)
    fp = gazetteer_fingerprint(g, limit, column)
    model = None
    dense_fp = ""
    if dense:
        model = dense_model_path(s)
        dense_fp = _folder_fingerprint(model) if model else ""

    engine = make_engine(s)
    try:
        if rebuild:
            engine.drop()
        engine.open(create=True)
        m = _read_manifest(engine)
        if m is not None and (m.gazetteer != fp or m.schema != SCHEMA_VERSION or m.sparse != SPARSE_VERSION or m.phonetic != phonetic.VERSION):
            log.warning("index was built from other data: rebuilding")
            engine.drop()
            engine.open(create=True)
            m = None
        dense_complete = m is not None and m.dense_model == dense_fp and m.dense_done >= m.n_points
        dfp, pdfp = _docfreq_path(s, fp), _phonetic_docfreq_path(s, fp)
        need_df = not (dfp.exists() and pdfp.exists())
        names_path = _names_path(s, fp)
        if not names_path.exists():
            names_path.parent.mkdir(parents=True, exist_ok=True)
            NameTable.from_gazetteer(g).save(names_path)
        if m is not None and m.ready and not need_df and (dense_complete or not dense or model is None):
            return f"index up to date: {m.n_points:,} names, dense={'yes' if m.dense_model else 'no'} ({engine.kind})"
        if m is None:
            m = Manifest(gazetteer=fp, n_points=len(g), phonetic=phonetic.VERSION)
            _write_manifest(engine, m)

        entries = g.entries
        B = s.upload_batch
        if m.points_done < len(entries) or need_df:
            # character and phone n-gram document frequencies, counted only when a file is missing
            df_counts: tuple[Counter[int], Counter[int]] | None = (Counter(), Counter()) if need_df else None
            bar = tqdm(total=len(entries), initial=m.points_done, desc="sparse", unit="name", disable=not progress)
            # Document frequencies need every name; names already uploaded are re-encoded (cheap) but not re-sent.
            start = 0 if need_df else m.points_done
            starts = list(range(start, len(entries), B))
            phonemes = phonetic.gazetteer_phonemes(g, s.index_dir / "phonemes")
            items = [[(e.key, phonemes[j]) for j, e in enumerate(entries[b : b + B], b)] for b in starts]
            for i, pairs in zip(starts, _encoded_batches(items)):
                batch = entries[i : i + B]
                if df_counts is not None:
                    for v, ph in pairs:
                        df_counts[0].update(v.indices)
                        df_counts[1].update(ph.indices)
                if i + len(batch) <= m.points_done:
                    continue
                engine.upsert([(e.id, {SPARSE: v, PHONETIC: ph}, _payload(e)) for e, (v, ph) in zip(batch, pairs)])
                m.points_done = i + len(batch)
                bar.update(len(batch))
                if on_progress:
                    on_progress(m.points_done, len(entries), "sparse")
                _write_manifest(engine, m)  # the WAL orders it after the batch, so a crash can't overstate progress
                if (i // B) % 20 == 19:
                    engine.flush()
            bar.close()
            engine.flush()
            _write_manifest(engine, m)
            if df_counts is not None:
                dfp.parent.mkdir(parents=True, exist_ok=True)
                sparse.DocFreq.from_counter(df_counts[0], len(entries)).save(dfp)
                sparse.DocFreq.from_counter(df_counts[1], len(entries)).save(pdfp)

        if model is not None and (m.dense_model != dense_fp or m.dense_done < len(entries)):
            from . import encoder

            if m.dense_model != dense_fp:
                m.dense_model, m.dense_done = dense_fp, 0
            enc = encoder.load_encoder(str(model), settings=s)
            # The same vectors, in gazetteer order, kept beside the index: the exact reference for HNSW
            # benchmarks and evaluation, without re-embedding 685k names.
            cache = dense_cache_path(s, m)
            mode = "r+" if cache.exists() and m.dense_done else "w+"
            matrix = np.lib.format.open_memmap(cache, mode=mode, dtype=np.float32, shape=(len(entries), s.dense_dim))
            bar = tqdm(total=len(entries), initial=m.dense_done, desc="dense", unit="name", disable=not progress)
            DB = max(B, 4096)
            for i in range(m.dense_done, len(entries), DB):
                batch = entries[i : i + DB]
                vecs = encoder.embed([e.key for e in batch], model=enc, settings=s)
                matrix[i : i + len(batch)] = vecs
                matrix.flush()
                engine.set_dense([e.id for e in batch], vecs)
                m.dense_done = i + len(batch)
                bar.update(len(batch))
                if on_progress:
                    on_progress(m.dense_done, len(entries), "dense")
                engine.flush()
                _write_manifest(engine, m)
            bar.close()

        engine.optimize()
        m.state, m.built_at = "ready", time.time()
        _write_manifest(engine, m)
        engine.flush()
        return f"index ready: {m.n_points:,} names, dense={'yes' if m.dense_model else 'no'} ({engine.kind}) in {time.perf_counter() - t0:.1f} s"
    finally:
        engine.close()
