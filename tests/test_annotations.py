"""The annotations store on real SQLite and real files: atomic audio, concurrent writers, kill -9, exports."""

from __future__ import annotations

import csv
import json
import multiprocessing
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
import zipfile

import numpy as np
import pytest
import soundfile as sf

from sle import annotations as an
from sle.settings import Settings

SYSTEMS = {
    "sparse@whisper:base": [{"rank": r, "name": f"Street {r}", "countries": ["DE"], "score": 1 / r, "id": 1000 + r} for r in range(1, 41)],
    "hybrid": [{"rank": r, "name": f"Street {r}", "countries": ["DE"], "score": 1 / r, "id": 2000 - r} for r in range(1, 41)],
}


@pytest.fixture(scope="module")
def clip(speech_wav) -> np.ndarray:
    audio, rate = sf.read(speech_wav, dtype="float32")
    assert rate == 16000
    return audio


@pytest.fixture(scope="module")
def shipped():
    from sle import gazetteer as gz

    return gz.load()


def _store(tmp_path) -> an.Store:
    return an.Store(Settings(data_dir=tmp_path / "var"))


def _add(store, clip, annotator="ann", label_id=1003, **kw) -> an.Item:
    label = an.Label("entry", label_id, f"Street {label_id}") if label_id else an.Label("none", None, an.NONE_LABEL)
    return store.add(annotator, clip, label, {"whisper:base": "hauptstrase"}, SYSTEMS, {"asr": 812.5}, **kw)


def test_add_list_update_delete_undo_progress(tmp_path, clip):
    store = _store(tmp_path)
    a = _add(store, clip, "alice", prompt_id=1003, prompt_name="Street 3")
    b = _add(store, clip, "alice", label_id=None)
    c = _add(store, clip, "bob", label_id=1990)
    assert a.ranks == {"sparse@whisper:base": 3, "hybrid": None}
    assert c.ranks == {"sparse@whisper:base": None, "hybrid": 10}
    assert b.ranks == {"sparse@whisper:base": None, "hybrid": None} and b.label_kind == "none"
    assert [i.id for i in store.list()] == [c.id, b.id, a.id]
    assert [i.id for i in store.list("alice")] == [b.id, a.id]
    back, rate = sf.read(a.audio, dtype="float32")
    assert rate == 16000 and len(back) == len(clip) and np.abs(back - clip).max() < 1e-3
    assert store.progress() == {"alice": {"items": 2, "prompted": 1, "none": 1}, "bob": {"items": 1, "prompted": 0, "none": 0}}

    fixed = store.update_label(b.id, an.Label("entry", 1001, "Street 1"))
    assert fixed.ranks == {"sparse@whisper:base": 1, "hybrid": None} and fixed.updated_at >= fixed.created_at
    rec = store.recall()
    assert rec["sparse@whisper:base"] == {"n": 3, "r@1": round(1 / 3, 4), "r@10": round(2 / 3, 4), "r@40": round(2 / 3, 4)}
    assert rec["hybrid"]["r@10"] == round(1 / 3, 4) and rec["hybrid"]["r@1"] == 0

    undone = store.undo_last("alice")
    assert undone.id == b.id and not os.path.exists(b.audio)
    assert store.undo_last("nobody") is None
    assert store.delete(c.id).id == c.id and store.get(c.id) is None and not os.path.exists(c.audio)
    assert [i.id for i in store.list()] == [a.id] and store.orphans() == []


def test_resolve_label_uses_the_gazetteer_normalisation(shipped):
    g = shipped
    e = g.entries[12345]
    assert an.resolve_label(e.name.upper(), g) == an.Label("entry", e.id, e.name)
    assert an.resolve_label(str(e.id), g) == an.Label("entry", e.id, e.name)
    assert an.resolve_label("None of these", g).kind == "none"
    assert an.resolve_label("Zzyzx Nowhere Lane 77", g) == an.Label("typed", None, "Zzyzx Nowhere Lane 77")
    with pytest.raises(ValueError):
        an.Label("entry", None, "x")


def test_failed_commit_leaves_no_audio_and_failed_audio_write_no_row(tmp_path, clip, monkeypatch):
    store = _store(tmp_path)
    with pytest.raises(ValueError):  # a timing that is not a number fails inside the transaction, after the audio
        store.add("ann", clip, an.Label("none"), {}, SYSTEMS, {"asr": "slow"})
    assert len(store) == 0 and list(store.audio_dir.iterdir()) == []

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(an.os, "replace", broken_replace)
    with pytest.raises(OSError):
        _add(store, clip)
    assert len(store) == 0 and list(store.audio_dir.iterdir()) == []  # no temp file left either


def test_schema_version_and_reopen(tmp_path, clip):
    store = _store(tmp_path)
    assert store.schema_version() == an.SCHEMA_VERSION
    item = _add(store, clip)
    store.close()
    again = _store(tmp_path)
    assert again.get(item.id) == item
    con = sqlite3.connect(again.path)
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    con.execute("UPDATE schema_version SET version = ?", (an.SCHEMA_VERSION + 1,))
    con.commit()
    con.close()
    with pytest.raises(RuntimeError, match="newer"):
        _store(tmp_path)


def _worker(args):
    data_dir, annotator, n = args
    store = an.Store(Settings(data_dir=data_dir))
    rng = np.random.default_rng(abs(hash(annotator)) % 2**32)
    ids = []
    for j in range(n):
        audio = (0.1 * rng.standard_normal(8000)).astype(np.float32)
        ids.append(_add(store, audio, annotator, label_id=1001 + j).id)
    return annotator, ids


def test_twenty_processes_labelling_at_once(tmp_path):
    data_dir = tmp_path / "var"
    an.Store(Settings(data_dir=data_dir))  # schema first, so the test measures labelling, not 20 racing migrations
    n = 5
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(20) as pool:
        results = pool.map(_worker, [(data_dir, f"p{i:02d}", n) for i in range(20)])
    store = an.Store(Settings(data_dir=data_dir))
    items = store.list()
    assert len(items) == 20 * n
    assert sorted(i.id for i in items) == sorted(x for _, ids in results for x in ids)
    assert len({i.uid for i in items}) == 20 * n
    assert {a: p["items"] for a, p in store.progress().items()} == {f"p{i:02d}": n for i in range(20)}
    assert all(os.path.getsize(i.audio) > 44 for i in items) and store.orphans() == []
    assert store._conn().execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_threads_share_one_store(tmp_path, clip):
    import concurrent.futures as cf

    store = _store(tmp_path)
    with cf.ThreadPoolExecutor(8) as ex:
        ids = list(ex.map(lambda i: _add(store, clip[: 4000 + i], f"t{i % 4}").id, range(24)))
    assert sorted(ids) == sorted(i.id for i in store.list()) and len(set(ids)) == 24


KILL_SCRIPT = textwrap.dedent(
    """
    import sys, numpy as np
    from sle import annotations as an
    from sle.settings import Settings
    store = an.Store(Settings(data_dir=sys.argv[1]))
    audio = (0.1 * np.random.default_rng(0).standard_normal(16000)).astype(np.float32)
    systems = {"hybrid": [{"rank": 1, "name": "A", "countries": ["DE"], "score": 1.0, "id": 7}]}
    while True:
        item = store.add("killed", audio, an.Label("entry", 7, "A"), {"w": "a"}, systems)
        print(item.id, item.uid, flush=True)  # printed only after the commit returned
    """
)


def test_kill_9_loses_no_committed_label(tmp_path):
    data_dir = tmp_path / "var"
    proc = subprocess.Popen([sys.executable, "-c", KILL_SCRIPT, str(data_dir)], stdout=subprocess.PIPE, text=True)
    committed = []
    deadline = time.time() + 120
    while len(committed) < 15 and time.time() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        committed.append(line.split())
    os.kill(proc.pid, signal.SIGKILL)  # mid-write: the loop never pauses between labels
    proc.wait()
    assert len(committed) >= 15, "the writer produced too few labels"
    store = an.Store(Settings(data_dir=data_dir))
    assert store._conn().execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    rows = {i.id: i for i in store.list()}
    for id_, uid in committed:
        assert rows[int(id_)].uid == uid
    # every row has its complete audio; a label killed before its commit may leave only an orphan file
    for item in rows.values():
        audio, rate = sf.read(item.audio)
        assert rate == 16000 and len(audio) == 16000
    assert len(store.orphans()) <= 1


def test_exports_parse_back(tmp_path, clip):
    store = _store(tmp_path)
    items = [_add(store, clip, "alice", prompt_id=1003, prompt_name="Street 3"), _add(store, clip, "bob", label_id=None)]
    out = tmp_path / "out"

    with open(store.export("csv", out), encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["uid"] for r in rows] == [i.uid for i in items]
    assert rows[0]["rank:sparse@whisper:base"] == "3" and rows[0]["label_id"] == "1003" and rows[1]["label_kind"] == "none"
    assert rows[0]["transcript:whisper:base"] == "hauptstrase"

    with open(store.export("jsonl", out, annotator="alice"), encoding="utf-8") as f:
        full = [json.loads(line) for line in f]
    assert len(full) == 1 and full[0]["systems"]["hybrid"][0]["id"] == 1999 and full[0]["label_id"] == 1003

    zpath = store.export("audiofolder", out)
    with zipfile.ZipFile(zpath) as z:
        meta = [json.loads(line) for line in z.read("metadata.jsonl").decode().splitlines()]
        assert [m["uid"] for m in meta] == [i.uid for i in items]
        assert all(set(m) == set(meta[0]) for m in meta)
        for m in meta:
            audio, rate = sf.read(z.open(m["file_name"]))
            assert rate == 16000 and len(audio) == len(clip)
        z.extractall(tmp_path / "hf")
    with pytest.raises(ValueError):
        store.export("xlsx", out)
    # the metadata must be one Arrow table (datasets reads it with pyarrow.json; mixed types in a column fail)
    pa_json = pytest.importorskip("pyarrow.json")
    table = pa_json.read_json(tmp_path / "hf" / "metadata.jsonl")
    assert table.num_rows == 2 and table.column("uid").to_pylist() == [i.uid for i in items]


def test_audiofolder_loads_with_datasets(tmp_path, clip):
    pytest.importorskip("torchcodec", reason="datasets needs torchcodec to load audio")
    datasets = pytest.importorskip("datasets")
    store = _store(tmp_path)
    items = [_add(store, clip, "alice"), _add(store, clip, "bob", label_id=None)]
    with zipfile.ZipFile(store.export("audiofolder", tmp_path / "out")) as z:
        z.extractall(tmp_path / "hf")
    ds = datasets.load_dataset("audiofolder", data_dir=str(tmp_path / "hf"), split="train")
    assert sorted(ds["uid"]) == sorted(i.uid for i in items)


def test_export_command(tmp_path, clip):
    store = _store(tmp_path)
    item = _add(store, clip, "alice")
    env = {**os.environ, "SLE_DATA_DIR": str(tmp_path / "var")}
    out = subprocess.run([sys.executable, "-m", "sle", "export", "--format", "jsonl", "--out", str(tmp_path / "x")],
                         env=env, capture_output=True, text=True, check=True)  # fmt: skip
    assert out.stdout.startswith("1 items -> ")
    path = out.stdout.strip().split(" -> ")[1]
    assert [json.loads(x)["uid"] for x in open(path, encoding="utf-8")] == [item.uid]
    rec = subprocess.run([sys.executable, "-m", "sle", "export", "--recall"], env=env, capture_output=True, text=True, check=True)
    assert json.loads(rec.stdout) == store.recall()


def test_prompts_from_countries_or_a_list(tmp_path, shipped):
    import random

    g = shipped
    rng = random.Random(3)
    for country in ("NL", "CH"):  # the two smallest: rejection sampling must still find them
        ids = {an.pick_prompt(g, rng, [country])[0] for _ in range(20)}
        assert all(country in g.get(i).countries for i in ids) and len(ids) > 10
    with pytest.raises(ValueError):
        an.pick_prompt(g, rng, ["XX"])

    (tmp_path / "one.txt").write_text("name\nhauptstrasse\nNowhere Road 99\n", encoding="utf-8")
    (tmp_path / "t.csv").write_text("id,name\n1,Hauptstraße\n2, Nowhere Road 99\n", encoding="utf-8")
    for f in ("one.txt", "t.csv"):
        names = an.read_prompt_list(tmp_path / f)
        assert [n.lower() for n in names] == ["hauptstrasse" if f == "one.txt" else "hauptstraße", "nowhere road 99"]
        picks = {an.pick_prompt(g, rng, names=names) for _ in range(30)}
        assert picks == {(g.find("Hauptstraße").id, "Hauptstraße"), (None, "Nowhere Road 99")}


def test_candidate_union_and_recall_plot():
    def c(rank, name):
        return {"rank": rank, "name": name, "countries": ["DE"], "score": 1.0, "id": rank}

    assert an.candidate_union({"a": [c(1, "Y"), c(2, "X")], "b": [c(1, "X"), c(2, "Z"), c(3, "Y")]}) == ["X", "Y", "Z"]
    fig = an.plot_recall({"hybrid": {"n": 3, "r@1": 0.3, "r@10": 0.6, "r@40": 1.0}, "sparse@w": {"n": 3, "r@1": 0.0, "r@10": 0.3, "r@40": 0.6}})
    heights = sorted(round(p.get_height(), 2) for p in fig.axes[0].patches)
    assert heights == [0.0, 0.3, 0.3, 0.6, 0.6, 1.0]
