"""The phoneme channel: real espeak-ng G2P (no mocks), phone n-grams and their hashing; the Kölner Phonetik key."""

from __future__ import annotations

import shutil

import pytest

from sle import phonetic, sparse
from sle.gazetteer import Entry, Gazetteer, stable_id
from sle.text import normalize

pytest.importorskip("phonemizer")
if shutil.which("espeak-ng") is None and shutil.which("espeak") is None:
    pytest.skip("espeak-ng is not installed", allow_module_level=True)

IPA = set("aɑæɐbβçdðeəɛɜfɡɣhiɪjklmnŋoɔœøpɾrʁsʃtθuʊʉvwxyʏzʒː")


def test_cologne_key_unchanged():
    assert phonetic.cologne("Müller-Lüdenscheidt") == "65752682"
    assert (phonetic.cologne("Salzhübelstraße"), phonetic.cologne("Zaltzubel stasse")) == ("858158278", "85815828")


def test_german_names_give_deterministic_ipa():
    names = ["Salzhübelstraße", "Hauptstraße", "Dr.-Cornils-Weg"]
    first = phonetic.phonemes(names, "de")
    assert first == phonetic.phonemes(names, "de")
    for ph in first:
        assert ph and set(ph.replace(" ", "").replace(phonetic.WORD_BREAK, "")) & IPA
        assert not any(c.isupper() for c in ph) and "ˈ" not in ph  # IPA without stress marks
    assert first[1] == "h aʊ p t s t ɾ ɑː s ə"  # espeak misses the compound break: the TTS said it so too
    assert phonetic.WORD_BREAK in first[2]  # Dr. | Cornils | Weg


def test_languages_and_empty_input():
    assert phonetic.phonemes([], "de") == []
    assert phonetic.phonemes(["", "   "], "de") == ["", ""]
    assert phonetic.phonemes(["Storgatan"], "sv") != phonetic.phonemes(["Storgatan"], "fr")
    assert phonetic.espeak_voice("fr") == "fr-fr" and phonetic.espeak_voice("xx") == "de"
    assert phonetic.phonemes(["Kerkstraat"], "xx") == phonetic.phonemes(["Kerkstraat"], "de")
    assert phonetic.encode_phonemes("") == sparse.SparseVector([], [])
    assert len(phonetic.encode_phoneme_query("")) == 0
    assert phonetic.name_language("Rue de la Loi", ("BE",)) == "fr" and phonetic.name_language("Storgatan", ("SE",)) == "sv"


def test_simplify_drops_word_breaks_and_folds():
    ph = "d eː ɛ ɾ | k ɔ ɾ n iː l s | v eː k"
    assert phonetic.simplify(ph, 0) == ph.replace(" | ", " ").split()
    assert phonetic.simplify(ph, 1) == ["d", "e", "ɛ", "r", "k", "ɔ", "r", "n", "i", "l", "s", "v", "e", "k"]
    assert phonetic.simplify("ʃ t ɾ ɑː s s ə", 1) == ["ʃ", "t", "r", "a", "s", "ə"]  # geminates once
    assert phonetic.simplify("b ɛ ɾ k", 3) == ["p", "e", "r", "k"]


def _shared_trigrams(a: str, b: str) -> int:
    ga = set(phonetic.phone_ngrams(phonetic.simplify(a), orders=(3,)))
    gb = set(phonetic.phone_ngrams(phonetic.simplify(b), orders=(3,)))
    return len(ga & gb)


def test_misspelled_transcript_sounds_like_its_street():
    heard, target, other = phonetic.phonemes(["Zaltzubelstasse", "Salzhübelstraße", "Birkenweg"], "de")
    assert _shared_trigrams(heard, target) > _shared_trigrams(heard, other)
    # the exact scorer ranks the right street first among a few
    names = ["Salzhübelstraße", "Birkenweg", "Salzweg", "Hübelgasse", "Lindenstraße"]
    docs = [phonetic.encode_phonemes(p) for p in phonetic.phonemes(names, "de")]
    scorer = phonetic.ExactScorer(docs, len(docs))
    rows, _ = phonetic.top(scorer.scores(phonetic.encode_phoneme_query(heard)), 3)
    assert names[rows[0]] == "Salzhübelstraße"


def test_phone_ngrams_and_ids_differ_from_character_ngrams():
    assert phonetic.phone_ngrams(["ts", "a"]) == ["ts", "a", "^ ts", "ts a", "a $", "^ ^ ts", "^ ts a", "ts a $", "a $ $"]
    assert phonetic.phone_ngrams(["a", "b"], orders=(3,)) == ["^ ^ a", "^ a b", "a b $", "b $ $"]
    assert phonetic.phone_term_id("a") != sparse.term_id("a")
    names = ["Salzhübelstraße", "Kerkstraat", "Storgatan", "Rue de la Loi", "Am Markt 3", "Ölgasse"]
    char_ids = {i for n in names for i in sparse.encode(n).indices}
    phone_ids = {i for p in phonetic.phonemes(names, "de") for i in phonetic.encode_phonemes(p).indices}
    assert phone_ids and char_ids and not (char_ids & phone_ids)
    v = phonetic.encode_phonemes("a n a")  # a twice
    assert v.indices == sorted(v.indices) and dict(zip(v.indices, v.values))[phonetic.phone_term_id("a")] == 2


def test_fusion_helpers_follow_qdrant():
    import numpy as np

    a, b = np.array([1, 2, 3]), np.array([3, 4])
    assert phonetic.rrf([a, b], k=2).tolist()[0] == 3  # in both lists
    assert phonetic.rrf([a, b], k=2, weights=[1.0, 0.1]).tolist()[0] == 1
    assert phonetic.score_sum([(a, np.array([3.0, 2.0, 1.0])), (b, np.array([5.0, 1.0]))], [1.0, 1.0]).tolist() == [3, 1, 2, 4]
    assert set(phonetic.dbsf([(a, np.array([3.0, 2.0, 1.0])), (b, np.array([5.0, 1.0]))]).tolist()) == {1, 2, 3, 4}


def test_gazetteer_phonemes_cached_by_fingerprint(tmp_path):
    names = [("Salzhübelstraße", ("DE",)), ("Storgatan", ("SE",)), ("Rue de la Loi", ("BE",))]
    entries = [Entry(stable_id(normalize(n)), n, normalize(n), c) for n, c in names]
    g = Gazetteer(entries, fingerprint="f" * 64)
    first = phonetic.gazetteer_phonemes(g, tmp_path)
    assert len(first) == 3 and all(first)
    assert first[1] == phonetic.phonemes(["Storgatan"], "sv")[0]
    assert len(list(tmp_path.iterdir())) == 1
    assert phonetic.gazetteer_phonemes(g, tmp_path) == first  # read back from the cache
    g2 = Gazetteer(entries[:2], fingerprint="e" * 64)
    assert phonetic.gazetteer_phonemes(g2, tmp_path) == first[:2]
    assert len(list(tmp_path.iterdir())) == 2


def test_transcript_readings():
    fr, de = phonetic.phonemes(["Zaltzubelstasse"], "fr")[0], phonetic.phonemes(["Zaltzubelstasse"], "de")[0]
    assert phonetic.transcript_phonemes("Zaltzubelstasse", "fr") == [fr, de]  # Whisper's language, then German
    assert phonetic.transcript_phonemes("Zaltzubelstasse", "de") == [de]
    assert phonetic.transcript_phonemes("Zaltzubelstasse", "") == [de]
    assert phonetic.transcript_phonemes("Hauptstr.", "de") == phonetic.phonemes(["Hauptstraße"], "de")  # as the TTS read it
    both = phonetic.encode_phoneme_query([fr, de])
    assert set(phonetic.encode_phoneme_query(fr).indices) <= set(both.indices)


def test_docstring_examples():
    import doctest

    assert doctest.testmod(phonetic).failed == 0
