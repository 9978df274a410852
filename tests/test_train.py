"""Dense training: the noise model, synthetic pairs, hard-negative mining, recall@k, and a tiny real training run."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from sle import encoder, gazetteer, train
from sle.settings import Settings
from sle.text import corrupt, normalize

NAMES = [
    "Hauptstraße", "Bahnhofstraße", "Salzhübelstraße", "Kungsgatan", "Drottninggatan", "Rue de la Paix",
    "Van Woustraat", "Kerkstraat", "Dr.-Cornils-Weg", "Schillerplatz", "Lindenallee", "Am Markt",
]  # fmt: skip


def _write_gazetteer(path: Path, names: list[str]) -> Path:
    with gzip.open(path, "wt", encoding="utf-8") as f:
        f.write("name\tcountry\n")
        for n in names:
            f.write(f"{n}\tDE\n")
    return path


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """A 400-name slice of the shipped gazetteer as its own file, and settings pointing every path at tmp."""
    d = tmp_path_factory.mktemp("dense")
    full = gazetteer.load(limit=400)
    path = _write_gazetteer(d / "streets.tsv.gz", [e.name for e in full.entries])
    s = Settings.from_env(data_dir=d / "var", models_dir=d / "models", gazetteer=path, synthetic_dir=d / "synthetic")
    return gazetteer.load(path, settings=s), s


def test_corrupt_is_deterministic_and_always_changes_the_name():
    for name in NAMES:
        variants = [corrupt(name, 0, v) for v in range(6)]
        assert variants == [corrupt(name, 0, v) for v in range(6)]
        assert all(v and v != normalize(name) for v in variants)
        assert len(set(variants)) >= 3  # varied, not one fixed misspelling
    assert corrupt("Hauptstraße", 1) == corrupt("Hauptstraße", 1)


def test_noise_pairs_point_at_their_entries(small):
    g, _ = small
    pairs = train.noise_pairs(g.entries, 50, seed=3, variants=2)
    assert len(pairs) == 100 and {p.source for p in pairs} == {train.NOISE}
    for p in pairs:
        assert g.get(p.name_id).name == p.name


def test_synthetic_pairs_read_parts_and_skip_failures(small, tmp_path):
    g, s = small
    part = tmp_path / "synthetic" / "validation" / "part-00000.tsv.gz"
    part.parent.mkdir(parents=True)
    e = g.entries[0]
    with gzip.open(part, "wt", encoding="utf-8") as f:
        f.write("name_id\tname\tsplit\tasr\ttranscript\n")
        f.write(f"{e.id}\t{e.name}\tvalidation\twhisper:base\t{e.name}.\n")
        f.write(f"{e.id}\t{e.name}\tvalidation\twhisper:base@en\tsomething\n")
        f.write(f"{e.id}\t{e.name}\tvalidation\ttts-error\t\n")
        f.write(f"{e.id}\t{e.name}\tvalidation\twhisper:base\t  \n")
        f.write("1\tNo Such Street Anywhere\tvalidation\twhisper:base\tno such\n")
    pairs = train.synthetic_pairs("validation", g, settings=Settings.from_env(synthetic_dir=tmp_path / "synthetic"))
    assert [(p.source, p.name_id) for p in pairs] == [("whisper:base", e.id), ("whisper:base@en", e.id)]


def test_mining_never_returns_the_positive_or_its_normalised_duplicate(small):
    g, _ = small
    miner = encoder.build_encoder("byt5-micro", seed=1)
    entries = g.entries[:60]
    pairs = [train.Pair(corrupt(e.name, 0, 0), e.name, e.id, train.NOISE) for e in entries]
    # a raw spelling that normalises to a corpus name: its normalised form must never be its own negative
    pairs.append(train.Pair("haupt strase", "HAUPT-Straße", 0, train.NOISE))
    corpus = [e.key for e in g.entries] + ["haupt strasse"]
    mined = train.mine(pairs, miner, corpus=corpus, num_negatives=3, relative_margin=0.0)
    neg_cols = [c for c in mined.column_names if c.startswith("negative")]
    assert len(neg_cols) == 3 and len(mined) > 0
    for row in mined:
        negs = {normalize(row[c]) for c in neg_cols}
        assert normalize(row["positive"]) not in negs
        assert len(negs) == 3
    with pytest.raises(ValueError):
        train.mine(pairs, miner, corpus=corpus + corpus[:1])


def test_mining_keeps_noisy_rows_the_margin_would_drop(small):
    """A transcript far from its name scores below many names; with a margin of 0.99 no candidate qualifies, yet
    every such row still gets a negative (mined again without the margin), never the positive or a respelling of it
    (a row whose only candidate is a respelling is dropped)."""
    g, _ = small
    miner = encoder.build_encoder("byt5-micro", seed=1)
    entries = g.entries[:40]
    pairs = [train.Pair("xq" + corrupt(e.name, 0, 1)[::-1], e.name, e.id, "whisper:base") for e in entries]
    corpus = [e.key for e in g.entries] + ["haupt strasse"]
    pairs.append(train.Pair("hauptstrase", "Hauptstraße", 0, "whisper:base"))
    mined = train.mine(pairs, miner, corpus=corpus, num_negatives=1, relative_margin=0.99)
    assert {normalize(p.anchor) for p in pairs[:-1]} <= set(mined["anchor"])  # every noisy row kept
    for row in mined:
        assert row["negative_1"].replace(" ", "") != row["positive"].replace(" ", "")


def test_recall_at_k_counts_ranks(small):
    g, s = small
    model = encoder.build_encoder("byt5-micro", seed=0)
    names = [e.name for e in g.entries[:30]]
    r = train.recall_at_k(names, [e.id for e in g.entries[:30]], model, gazetteer=g, settings=s)
    assert r["n"] == 30 and r["recall@1"] == 1.0  # a name is its own nearest neighbour
    r = train.recall_at_k(names, [-5] * 30, model, gazetteer=g, settings=s)  # targets not in the gazetteer
    assert r["recall@40"] == 0.0


def test_tiny_training_run_improves_recall_on_its_own_data(small):
    g, s = small
    cfg = train.TrainConfig(
        version="v0", backbone="byt5-micro", epochs=4, noise_names=300, noise_variants=1, batch_size=32,
        learning_rate=2e-3, eval_names=0, save_steps=1000, seed=7, out=str(s.models_dir / "dense-tiny"),
    )  # fmt: skip
    pairs = train.training_pairs(cfg, g, settings=s)
    queries, targets = [p.anchor for p in pairs], [p.name_id for p in pairs]
    before = train.recall_at_k(queries, targets, encoder.build_encoder("byt5-micro", seed=7), gazetteer=g, settings=s)
    info = train.train(cfg, settings=s)
    trained = encoder.load_encoder(cfg.out, settings=s)
    after = train.recall_at_k(queries, targets, trained, gazetteer=g, settings=s)
    assert after["recall@1"] >= before["recall@1"] + 0.05, (before, after)
    assert after["recall@10"] >= before["recall@10"]
    assert (Path(cfg.out) / "README.md").read_text().startswith("# sle dense-v0")
    assert info["pairs"] == len(pairs) and info["mined_rows"] > 0


def test_sparse_baseline_and_table_on_the_same_queries(small):
    g, s = small
    entries = g.entries[:40]
    queries = [corrupt(e.name, 0, 0) for e in entries]
    r = train.sparse_recall_at_k(queries, [e.id for e in entries], g, settings=s)
    assert r["n"] == 40 and 0.5 <= r["recall@1"] <= r["recall@10"] <= r["recall@40"] <= 1.0
    md = train.table({"sparse": {"noise": r}, "dense-v0": {"noise": r, "whisper:base": r}})
    lines = md.splitlines()
    assert lines[0].count("r@10") == 2 and len(lines) == 4 and "| noise (40) | 0.9" in md
    assert lines[3].startswith("| whisper:base (40) | - | - | - |")  # no sparse result for that source
