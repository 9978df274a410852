"""The sparse n-gram encoder: exact n-gram sets, stable hashing, query n-gram selection."""

from __future__ import annotations

import subprocess
import sys

import mmh3

from sle import sparse


def test_ngram_sets_of_known_names():
    assert sparse.ngrams("ab") == ["a", "b", "^a", "ab", "b$", "^^a", "^ab", "ab$", "b$$"]
    grams = sparse.ngrams("Weg")
    assert set(grams) == {"w", "e", "g", "^w", "we", "eg", "g$", "^^w", "^we", "weg", "eg$", "g$$"}
    # n-grams of a name of length L: L unigrams, L+1 bigrams, L+2 trigrams
    name = "Salzhübelstraße"
    L = len("salzhübelstrasse")
    grams = sparse.ngrams(name)
    assert len(grams) == 3 * L + 3
    assert "ss" in grams and "ß" not in "".join(grams)
    assert sparse.ngrams("  ...  ") == []


def test_hashing_is_murmur3_uint32_and_stable_across_processes():
    for gram in ["^^s", "sal", "e$$", "ß", "ö"]:
        assert sparse.term_id(gram) == mmh3.hash(gram, 0, signed=False)
        assert 0 <= sparse.term_id(gram) < 2**32
    # Fixed values: an index built today must still match queries hashed by a later release.
    assert sparse.term_id("^^s") == 919336252
    assert sparse.term_id("sal") == 3230787373
    code = "from sle.sparse import term_id; print(term_id('^^s'))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env={"PYTHONHASHSEED": "99"})
    assert int(out.stdout) == 919336252


def test_document_vector_counts_repeated_ngrams():
    v = sparse.encode("Anna")  # a, n twice each; "nn" once
    counts = dict(zip(v.indices, v.values))
    assert counts[sparse.term_id("a")] == 2.0
    assert counts[sparse.term_id("n")] == 2.0
    assert counts[sparse.term_id("nn")] == 1.0
    assert v.indices == sorted(v.indices)
    assert len(set(v.indices)) == len(v.indices)
    assert sparse.encode("ANNA") == v


def test_query_uses_trigrams_by_default_and_can_use_all():
    q = sparse.encode_query("Weg")
    assert set(q.indices) == {sparse.term_id(g) for g in ["^^w", "^we", "weg", "eg$", "g$$"]}
    full = sparse.encode_query("Weg", orders=(1, 2, 3))
    assert full == sparse.encode("Weg")


def test_query_df_pruning_drops_common_ngrams_but_never_everything():
    docs = [sparse.encode(n) for n in ["Bahnhofstraße", "Hauptstraße", "Gartenstraße", "Kirchweg", "Am Markt"]]
    df = sparse.DocFreq.from_vectors(docs)
    assert df.n_docs == 5
    q = sparse.encode_query("Lindenstraße", df=df, max_df=0.5)
    kept = set(q.indices)
    assert sparse.term_id("sse") not in kept  # in 3 of 5 names
    assert sparse.term_id("lin") in kept  # unseen: df 0
    only_common = sparse.encode_query("strasse", df=df, max_df=0.1)
    assert 1 <= len(only_common) <= 3


def test_query_postings_budget_keeps_the_rarest_ngrams():
    docs = [sparse.encode(n) for n in ["Lindenstraße", "Hauptstraße", "Bahnhofstraße", "Schulstraße", "Lindenweg", "Zugspitzstraße"]]
    df = sparse.DocFreq.from_vectors(docs)
    full = sparse.encode_query("Lindenstraße")
    post = dict(zip(full.indices, df.fraction(full.indices) * df.n_docs))
    q = sparse.encode_query("Lindenstraße", df=df, max_postings=10, min_terms=3)
    kept = [post[i] for i in q.indices]
    dropped = [post[i] for i in full.indices if i not in set(q.indices)]
    assert len(q) >= 3 and dropped  # the budget bites, but never below min_terms
    assert max(kept) <= min(dropped)  # rarest first
    assert sum(sorted(kept)[3:]) <= 10 or len(q) == 3
    # a budget larger than every posting list together changes nothing
    assert sparse.encode_query("Lindenstraße", df=df, max_postings=10**9) == full
    assert sparse.encode_query("Lindenstraße", df=None, max_postings=10) == full


def test_docfreq_roundtrip(tmp_path):
    df = sparse.DocFreq.from_vectors([sparse.encode("Weg"), sparse.encode("Steg")])
    df.save(tmp_path / "df.npz")
    df2 = sparse.DocFreq.load(tmp_path / "df.npz")
    ids = [sparse.term_id("eg$"), sparse.term_id("^st"), 12345]
    assert list(df2.fraction(ids)) == [1.0, 0.5, 0.0]
