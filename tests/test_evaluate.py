"""The evaluation harness on a small gazetteer slice: labelled sets (JSONL, CSV), synthetic parts, peers, report."""

from __future__ import annotations

import csv
import gzip
import json
import random

import pytest

from sle import evaluate as ev
from sle import gazetteer as gz
from sle import index as idx
from sle import link
from sle.settings import Settings
from sle.text import corrupt


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    g_full = gz.load()
    tmp = tmp_path_factory.mktemp("eval")
    path = tmp / "slice.tsv"
    with open(path, "w", encoding="utf-8") as f:
        f.write("name\tcountry\n")
        for e in g_full.entries[::1000]:
            for c in e.countries:
                f.write(f"{e.name}\t{c}\n")
    s = Settings(data_dir=tmp / "var", gazetteer=path, upload_batch=500, models_dir=tmp / "models", synthetic_dir=tmp / "synthetic",
                 reranker_model="")  # fmt: skip
    assert "index ready" in idx.build(s=s, progress=False)
    g = gz.load(path)
    linker = link.Linker(s)
    yield s, g, linker
    linker.close()


def _utterances(g, n=40, seed=3):
    rng = random.Random(seed)
    return [(e, corrupt(e.name, rng), corrupt(e.name, rng)) for e in rng.sample(g.entries, n)]


def test_recall_from_ranks():
    assert ev.recall([1, 2, None, 11, 40]) == {"r@1": 0.2, "r@10": 0.4, "r@40": 0.8}
    assert ev.recall([]) == {"r@1": 0.0, "r@10": 0.0, "r@40": 0.0}
    assert ev.split_key("sparse@whisper:base@lang2") == ("sparse", "whisper:base@lang2")
    assert ev.split_key("dense-avg") == ("dense-avg", ev.BOTH)


def test_labels_jsonl_and_csv_read_alike(env, tmp_path):
    s, g, linker = env
    utts = _utterances(g, 10)
    jl = tmp_path / "labels.jsonl"
    with open(jl, "w", encoding="utf-8") as f:
        for i, (e, a, b) in enumerate(utts):  # the app's JSONL export: label id + transcripts object
            f.write(json.dumps({"uid": f"u{i}", "label_id": e.id, "label_name": e.name, "transcripts": {"r1": a, "r2": b}}) + "\n")
        f.write(json.dumps({"uid": "x", "label_kind": "none", "label_id": None, "label_name": "", "transcripts": {"r1": "noise"}}) + "\n")
    cv = tmp_path / "labels.csv"
    with open(cv, "w", encoding="utf-8", newline="") as f:  # the app's CSV export: transcript:<recogniser> columns, id as string
        w = csv.DictWriter(f, ["uid", "label_id", "label_name", "transcript:r1", "transcript:r2"])
        w.writeheader()
        for i, (e, a, b) in enumerate(utts):
            w.writerow({"uid": f"u{i}", "label_id": str(e.id), "label_name": e.name, "transcript:r1": a, "transcript:r2": b})
    q1, q2 = ev.label_queries(jl, g), ev.label_queries(cv, g)
    assert len(q1) == len(q2) == 10  # the "none" label is skipped
    assert [(q.target, q.transcripts) for q in q1] == [(q.target, q.transcripts) for q in q2]
    # one transcript per row, grouped by utterance, targets by name
    one = tmp_path / "one.csv"
    with open(one, "w", encoding="utf-8", newline="") as f:
        w = csv.DictWriter(f, ["uid", "name", "asr", "transcript"])
        w.writeheader()
        for i, (e, a, b) in enumerate(utts):
            w.writerow({"uid": f"u{i}", "name": e.name, "asr": "r1", "transcript": a})
            w.writerow({"uid": f"u{i}", "name": e.name, "asr": "r2", "transcript": b})
    q3 = ev.label_queries(one, g)
    assert sorted((q.target, tuple(sorted(q.transcripts.items()))) for q in q3) == sorted((q.target, tuple(sorted(q.transcripts.items()))) for q in q1)


def test_synthetic_parts_become_utterances(env):
    s, g, linker = env
    from sle import synth

    folder = s.synthetic_dir / "validation"
    folder.mkdir(parents=True, exist_ok=True)
    utts = _utterances(g, 12, seed=5)
    with gzip.open(folder / "part-00000.tsv.gz", "wt", encoding="utf-8") as f:
        f.write("\t".join(synth.COLUMNS) + "\n")
        for e, a, b in utts:
            for rec, text in (("r1", a), ("r2", b)):
                row = {c: "" for c in synth.COLUMNS} | {"name_id": str(e.id), "name": e.name, "split": "validation", "asr": rec, "transcript": text}
                f.write("\t".join(row[c] for c in synth.COLUMNS) + "\n")
        row = {c: "" for c in synth.COLUMNS} | {"name": utts[0][0].name, "asr": synth.TTS_ERROR}
        f.write("\t".join(row[c] for c in synth.COLUMNS) + "\n")
    qs = ev.synthetic_queries("validation", g, s=s)
    assert len(qs) == 12 and all(set(q.transcripts) == {"r1", "r2"} for q in qs)
    assert len(ev.synthetic_queries("validation", g, limit=5, s=s)) == 5


def test_harness_end_to_end_with_peers_and_report(env, tmp_path):
    s, g, linker = env
    utts = _utterances(g, 30, seed=7)
    jl = tmp_path / "labels.jsonl"
    with open(jl, "w", encoding="utf-8") as f:
        for i, (e, a, b) in enumerate(utts):
            f.write(json.dumps({"uid": f"u{i}", "label_id": e.id, "transcripts": {"r1": a, "r2": b}}) + "\n")
    result = ev.evaluate(labels=jl, peers=["ratio", "jaro-winkler", "cologne", "idf"], peer_limit=20, progress=False, s=s, gazetteer=g,
                         linker=linker, sweep=True)  # fmt: skip
    assert result["queries"] == 30 and result["recognisers"] == ["r1", "r2"]
    ranks = result["run"].ranks
    assert len(ranks["sparse@r1"]) == 30
    # the upper bound is never below either of its parts
    up = ev.recall(ranks["upper: sparse, either recogniser"])
    for r in ("r1", "r2"):
        part = ev.recall(ranks[f"sparse@{r}"])
        assert all(up[k] >= part[k] for k in up)
    # exact IDF scoring agrees with an exact match: a correctly spelled name is its own top hit
    peer = ev.ExactIdfPeer(g)
    assert peer.search(g.entries[3].name, 1) == [g.entries[3].id]
    assert ev.ColognePeer(g).search(g.entries[4].name, 5)[0] == g.entries[4].id
    assert ev.RapidFuzzPeer(g, "ratio").search(g.entries[5].name, 3)[0] == g.entries[5].id
    # peers ran on the subsample, with a speed
    assert {f"peer:rapidfuzz ratio@r1", "peer:kölner phonetik + spelling@r2"} <= set(result["peer_run"].ranks)
    assert all(len(v) == 20 for v in result["peer_run"].ranks.values())
    assert result["peer_run"].qps["peer:rapidfuzz ratio"] > 0
    assert result["sweep"] and all(0 <= row["r@1"] <= row["r@10"] <= row["r@40"] <= 1 for row in result["sweep"])
    # the table: one row per system, recogniser columns x R@k, and the markdown report with its plot
    table = result["table"]
    assert "| sparse |" in table and "r1 R@1" in table and "both R@40" in table
    out = ev.report(result, tmp_path / "docs" / "evaluation.md", command="test")
    text = out.read_text()
    assert "## Peers" in text and "rapidfuzz ratio" in text and "fusion sweep" in text
    assert (tmp_path / "docs" / "evaluation.png").stat().st_size > 1000
    assert json.dumps(ev.to_json(result))


def test_compare_recognisers_on_tts_clips(gazetteer_slice):
    """The command that chose the offline second recogniser: real TTS, real Whisper base, each alone and the pair."""
    g = gz.load(gazetteer_slice(100))
    specs = ["whisper:base", "whisper:base@en"]
    res = ev.compare_recognisers(specs, n=6, gazetteer=g, progress=False)
    assert res["n"] == 6 and len(res["examples"]) == 6
    alone = {r["recognisers"][0]: r for r in res["rows"] if len(r["recognisers"]) == 1}
    pair = [r for r in res["rows"] if len(r["recognisers"]) == 2]
    assert set(alone) == set(specs) and [r["recognisers"] for r in pair] == [specs]
    either = pair[0]["recall@10"]
    assert max(r["recall@10"] for r in alone.values()) <= either <= sum(r["recall@10"] for r in alone.values())
    assert either > 0  # 6 names among ~6,900: Whisper base finds at least one by spelling
    assert all(r["seconds_per_clip"] > 0 for r in alone.values())
    table = ev.recogniser_table(res)
    assert "`whisper:base` + `whisper:base@en`" in table
