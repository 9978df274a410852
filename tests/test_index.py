"""The street index on the real Qdrant engines: build, search, idempotence, resume, server path."""

from __future__ import annotations

import dataclasses
import json
import os
import random
import subprocess
import sys

import pytest

from sle import gazetteer as gz
from sle import index as idx
from sle import link
from sle.settings import Settings
from sle.text import corrupt


@pytest.fixture(scope="module")
def slice_tsv(gazetteer_slice):
    """Every 230th name of the shipped gazetteer (~3,000 names from all countries)."""
    return gazetteer_slice(230)


def _settings(tmp_path, slice_tsv, **kw) -> Settings:
    return Settings(data_dir=tmp_path / "var", gazetteer=slice_tsv, upload_batch=500, models_dir=tmp_path / "no-models", **kw)


@pytest.fixture(scope="module")
def built(tmp_path_factory, slice_tsv):
    s = _settings(tmp_path_factory.mktemp("idx"), slice_tsv)
    report = idx.build(s=s, progress=False)
    assert "index ready" in report
    return s


def test_corrupted_names_are_found(built, slice_tsv):
    g = gz.load(slice_tsv)
    rng = random.Random(1)
    picks = rng.sample(g.entries, 200)
    index = idx.open_index(built)
    try:
        results = index.search_sparse([corrupt(e.name, rng) for e in picks], k=10)
        recall10 = sum(e.id in [h.id for h in hits] for e, hits in zip(picks, results)) / len(picks)
        exact = index.search_sparse([e.name for e in picks[:50]], k=1)
        assert all(hits[0].id == e.id for e, hits in zip(picks[:50], exact))
    finally:
        index.close()
    assert recall10 >= 0.9, recall10


def test_hits_carry_payload_and_scores_descend(built):
    index = idx.open_index(built)
    try:
        hits = index.search_sparse(["Bahnhofstrase"], k=10)[0]
    finally:
        index.close()
    assert len(hits) == 10
    assert all(h.name and h.countries for h in hits)
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    assert all(h.id != idx.MANIFEST_ID for h in hits)


def test_phonetic_queries_keep_their_rarest_phone_ngrams(built, slice_tsv):
    # the build stores phoneme n-gram document frequencies beside the index; a budget prunes phonetic queries
    g = gz.load(slice_tsv)
    target = next(e for e in g.entries if "DE" in e.countries and len(e.name) > 12)
    full_s = dataclasses.replace(built, phonetic_query_max_postings=0)
    index = idx.open_index(full_s)
    try:
        assert index.phonetic_docfreq is not None and index.phonetic_docfreq.n_docs == len(g)
        full = index.phonetic_query(target.name, "de")
        index.s = dataclasses.replace(built, phonetic_query_max_postings=50)
        pruned = index.phonetic_query(target.name, "de")
        df = index.phonetic_docfreq
        assert 8 <= len(pruned.indices) < len(full.indices)
        kept_df = df.fraction(pruned.indices).max()
        dropped = [i for i in full.indices if i not in set(pruned.indices)]
        assert kept_df <= df.fraction(dropped).min()  # the rarest are kept
        hits = index.search_phonetic_vectors([pruned], 10)[0]
    finally:
        index.close()
    assert target.id in [h.id for h in hits]


def test_index_without_phonetic_docfreq_is_completed_by_build(tmp_path, slice_tsv):
    s = _settings(tmp_path, slice_tsv)
    idx.build(s=s, progress=False, dense=False)
    m = idx.build_status(s)
    pdfp = idx._phonetic_docfreq_path(s, m.gazetteer)
    pdfp.unlink()  # an index built before the phonetic budget existed
    index = idx.open_index(s)
    try:
        assert index.phonetic_docfreq is None
    finally:
        index.close()
    report = idx.build(s=s, progress=False, dense=False)
    assert report.startswith("index ready") and pdfp.exists()
    assert idx.build_status(s).points_done == m.points_done


def test_name_table_gives_the_payloads_names(built, slice_tsv):
    # searches read names from the in-memory table the build writes; they must be exactly the payloads' names
    index = idx.open_index(built)
    try:
        assert index.names is not None and len(index.names.names) == len(gz.load(slice_tsv))
        queries = ["Bahnhofstrase", "Kungsgatn", "Rue de la Pai", "Hauptstr"]
        with_table = index.search_sparse(queries, k=30)
        table, index.names = index.names, None  # payload path
        with_payload = index.search_sparse(queries, k=30)
        index.names = table
        with pytest.raises(KeyError):
            table.rows([123])
    finally:
        index.close()
    assert with_table == with_payload and all(h.name and h.countries for hits in with_table for h in hits)


def test_rebuilding_the_same_data_is_a_noop(built):
    before = idx.build_status(built)
    report = idx.build(s=built, progress=False)
    after = idx.build_status(built)
    assert report.startswith("index up to date")
    assert after.built_at == before.built_at and after.ready


def test_interrupted_build_is_not_used_and_resumes(tmp_path, slice_tsv):
    s = _settings(tmp_path, slice_tsv)

    def stop_after_two_batches(done, total, what):
        if done >= 1000:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        idx.build(s=s, progress=False, on_progress=stop_after_two_batches)
    status = idx.build_status(s)
    assert status is not None and not status.ready
    with pytest.raises(idx.IndexNotReady, match="still building"):
        idx.open_index(s)

    seen = []
    report = idx.build(s=s, progress=False, on_progress=lambda d, t, w: seen.append(d))
    assert "index ready" in report
    assert seen and seen[0] > 500  # continued after the checkpoint instead of starting over
    index = idx.open_index(s)
    try:
        n = len(gz.load(slice_tsv))
        assert index.engine.count() == n + 1  # + the manifest point
        assert index.search_sparse(["Kerkstraat"], k=1)[0]
    finally:
        index.close()


def test_other_gazetteer_rebuilds(tmp_path, slice_tsv):
    s = _settings(tmp_path, slice_tsv)
    idx.build(s=s, progress=False)
    other = tmp_path / "other.tsv"
    other.write_text("name\tcountry\nErfundene Straße\tDE\nKerkstraat\tNL\n", encoding="utf-8")
    s2 = dataclasses.replace(s, gazetteer=other)
    assert "index ready" in idx.build(s=s2, progress=False)
    index = idx.open_index(s2)
    try:
        assert len(index) == 2
        assert index.search_sparse(["erfundene strase"], k=1)[0][0].name == "Erfundene Straße"
    finally:
        index.close()


def test_server_engine_matches_edge(tmp_path, built, slice_tsv):
    """The qdrant-client path (local mode stands in for a server) ranks like the embedded engine."""
    s = _settings(tmp_path, slice_tsv, qdrant_url=f"path:{tmp_path / 'qdrant-local'}", upload_parallel=1)
    g = gz.load(slice_tsv, limit=400)
    small = tmp_path / "small.tsv"
    small.write_text("name\tcountry\n" + "".join(f"{e.name}\t{e.countries[0]}\n" for e in g), encoding="utf-8")
    s = dataclasses.replace(s, gazetteer=small)
    es = dataclasses.replace(s, qdrant_url="", data_dir=tmp_path / "edge")
    idx.build(s=s, progress=False)
    idx.build(s=es, progress=False)
    server, edge = idx.open_index(s), idx.open_index(es)
    try:
        queries = [corrupt(e.name, random.Random(i)) for i, e in enumerate(g.entries[:30])]
        a = server.search_sparse(queries, k=5)
        b = edge.search_sparse(queries, k=5)
        assert [[h.id for h in r][:1] for r in a] == [[h.id for h in r][:1] for r in b]
        assert all(abs(x.score - y.score) < 1e-3 * max(1, abs(y.score)) for r1, r2 in zip(a, b) for x, y in zip(r1, r2))
    finally:
        server.close()
        edge.close()


def test_search_cli_json(built):
    env = dict(os.environ, SLE_DATA_DIR=str(built.data_dir), SLE_GAZETTEER=str(built.gazetteer), SLE_MODELS_DIR=str(built.models_dir))
    out = subprocess.run(
        [sys.executable, "-m", "sle", "search", "Kerkstrat", "-k", "3", "--json"], capture_output=True, text=True, env=env, check=True
    )
    rows = json.loads(out.stdout)
    assert len(rows) == 3
    assert list(rows[0]) == ["rank", "name", "countries", "score", "id"]
    assert [r["rank"] for r in rows] == [1, 2, 3]
    assert isinstance(rows[0]["countries"], list) and rows[0]["score"] >= rows[1]["score"]


def test_search_without_index_says_what_to_do(tmp_path):
    s = Settings(data_dir=tmp_path / "empty")
    with pytest.raises(idx.IndexNotReady, match="python -m sle index"):
        idx.open_index(s)


def test_index_held_by_another_process_says_so(built):
    code = "import sys, time; from sle import index; from sle.settings import Settings; " \
        f"i = index.open_index(Settings(data_dir={str(built.data_dir)!r})); print('open', flush=True); time.sleep(30)"
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "open"
        with pytest.raises(idx.IndexInUse, match="another process"):
            idx.open_index(built)
        with pytest.raises(idx.IndexInUse):
            idx.build_status(built)
    finally:
        holder.kill()
        holder.wait()
    idx.open_index(built).close()  # free again once the holder is gone
