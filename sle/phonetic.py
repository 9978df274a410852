"""Phonetic keys of names and transcripts: the Kölner Phonetik (a feature of the reranker) and the phoneme channel.

:func:`cologne` is the Kölner Phonetik (Postel 1969) in one pass over the characters: ~2x faster than the
regex-based ``cologne_phonetics`` package (12 vs 26 us a name), which matters when every candidate of a 200-name
pool needs its key inside the 50 ms retrieval budget. Each word is coded alone and the codes are concatenated (as
``cologne_phonetics`` does); umlauts and accented vowels are vowels.

The phoneme channel reads names and transcripts aloud on paper: espeak-ng G2P (:func:`phonemes`; a name in its
country's language, a transcript in Whisper's language and in German), light phone folding (:func:`simplify`) and
phone 1-3-grams as a sparse vector (:func:`encode_phonemes`, :func:`encode_phoneme_query`), hashed apart from the
character n-grams. ``python -m sle.phonetic measure`` scores it exactly against the gazetteer (docs/phonetic.md).
"""

from __future__ import annotations

import gzip
import logging
import re
import time
from collections import Counter
from functools import lru_cache
from pathlib import Path
from typing import Iterable, NamedTuple, Sequence

import mmh3
import numpy as np

from .sparse import BOS, EOS, ExactScorer, SparseVector  # noqa: F401  (ExactScorer: used here and by callers)
from .text import normalize

log = logging.getLogger(__name__)

_VOWELS = set("aeiouyjäöüåøéèêëáàâíìîóòôúùûæœ")
_SIMPLE = {"b": "1", "f": "3", "v": "3", "w": "3", "g": "4", "k": "4", "q": "4", "l": "5", "m": "6", "n": "6", "r": "7", "s": "8", "z": "8", "ß": "8"}
_C_START = set("ahkloqrux")
_C_BEFORE = set("ahkoqux")


@lru_cache(maxsize=300_000)
def cologne(text: str) -> str:
    """Kölner Phonetik code of ``text`` (normalised; spaces and non-letters ignored).

    >>> cologne("Müller-Lüdenscheidt")
    '65752682'
    >>> cologne("Salzhübelstraße"), cologne("Zaltzubel stasse")
    ('858158278', '85815828')
    """
    return "".join(_word(w) for w in normalize(text).split())


def _word(word: str) -> str:
    s = "".join(ch for ch in word if ch.isalpha())
    codes: list[str] = []
    n = len(s)
    for i, ch in enumerate(s):
        prev = s[i - 1] if i > 0 else ""
        nxt = s[i + 1] if i + 1 < n else ""
        if ch in _VOWELS:
            code = "0"
        elif ch == "h":
            code = ""
        elif ch == "p":
            code = "3" if nxt == "h" else "1"
        elif ch in "dt":
            code = "8" if nxt in ("c", "s", "z", "ß") else "2"
        elif ch == "c":
            if i == 0:
                code = "4" if nxt in _C_START else "8"
            elif prev in ("s", "z", "ß"):
                code = "8"
            else:
                code = "4" if nxt in _C_BEFORE else "8"
        elif ch == "x":
            code = "8" if prev in ("c", "k", "q") else "48"
        else:
            code = _SIMPLE.get(ch, "")
        codes.append(code)
    out: list[str] = []
    last = ""
    for code in codes:
        for c in code:
            if c != last:
                out.append(c)
            last = c
        if not code:
            continue  # h and unknown letters do not separate repeated codes
    if not out:
        return ""
    return out[0] + "".join(c for c in out[1:] if c != "0")


# --- the phoneme channel: espeak-ng G2P of names and transcripts, phoneme n-grams as a sparse vector ---------------
# Names are spelled by their own language's rules, transcripts by whatever language Whisper decoded; comparing the
# sounds instead of the letters lets "Zaltzubelstasse" meet "Salzhübelstraße" (docs/phonetic.md has the figures).

# sle language code -> espeak-ng voice (``EspeakBackend.supported_languages()``); anything else is read as German,
# the language of most gazetteer names.
ESPEAK_VOICES = {"de": "de", "nl": "nl", "sv": "sv", "fr": "fr-fr", "en": "en-us"}
DEFAULT_LANGUAGE = "de"
WORD_BREAK = "|"
PHONE_N_MAX = 3
PREFIX = "ph:"  # hashed with every phoneme n-gram, so its ids are not those of the character n-gram "a", "^ab", ...

_backends: dict[str, object] = {}
_quiet = logging.getLogger("sle.phonetic.espeak")
_quiet.setLevel(logging.ERROR)  # phonemizer warns about every language switch it removes


def espeak_voice(language: str) -> str:
    return ESPEAK_VOICES.get(language, ESPEAK_VOICES[DEFAULT_LANGUAGE])


def _backend(language: str):
    voice = espeak_voice(language)
    b = _backends.get(voice)
    if b is None:
        from phonemizer.backend import EspeakBackend  # imported late: loading libespeak-ng costs ~0.1 s

        # remove-flags: an English word inside a German name stays, only espeak's "(en)" markers go
        b = _backends[voice] = EspeakBackend(voice, with_stress=False, language_switch="remove-flags", logger=_quiet)
    return b


def phonemes(texts: Sequence[str], language: str) -> list[str]:
    """espeak-ng IPA of each text read in ``language`` (an sle code: de, nl, sv, fr, en; others read as German).

    Phones are separated by single spaces, words by ``|`` (``"Hauptstraße"`` -> ``"h aʊ p t s t ɾ ɑː s ə"``);
    no stress marks; an empty or unpronounceable text gives ``""``. The text is read as written: punctuation is
    dropped by phonemizer, digits are read as numbers.
    """
    from phonemizer.separator import Separator

    if not texts:
        return []
    # one text is one line for espeak: a newline inside a text would shift every later result
    lines = [" ".join(t.split()) for t in texts]
    out = _backend(language).phonemize(lines, separator=Separator(phone=" ", word=f" {WORD_BREAK} ", syllable=""), strip=True, njobs=1)
    return [_tidy(o) for o in out]


def _tidy(ph: str) -> str:
    toks = ph.split()
    while toks and toks[0] == WORD_BREAK:
        toks.pop(0)
    while toks and toks[-1] == WORD_BREAK:
        toks.pop()
    return " ".join(toks)


# Folding levels (docs/phonetic.md measures them). Word breaks are always dropped: they are not heard, and Whisper
# joins or splits words at will ("Salz Hübel Strasse").
#   0: phones as espeak writes them
#   1: no length marks or diacritics, one r, one schwa, ɡ = g, repeated phones once (geminates are not heard)
#   2: 1 + tense/lax vowel pairs folded (e/ɛ, i/ɪ, o/ɔ, u/ʊ, y/ʏ, ø/œ, a/ɑ)
#   3: 2 + voicing folded (b/p, d/t, g/k, v/f, z/s, ʒ/ʃ, ɣ/x)
_FOLD1 = {"ɾ": "r", "ʁ": "r", "ʀ": "r", "ɹ": "r", "ɻ": "r", "ɐ": "ə", "ɜ": "ə", "ᵻ": "ə", "ɘ": "ə", "ɚ": "ə", "ɡ": "g", "ɑ": "a"}
_FOLD2 = {"ɛ": "e", "ɪ": "i", "ɔ": "o", "ɒ": "o", "ʊ": "u", "ʉ": "u", "ɵ": "u", "ʏ": "y", "œ": "ø", "æ": "e", "ʌ": "a"}
_FOLD3 = {"b": "p", "d": "t", "g": "k", "v": "f", "z": "s", "ʒ": "ʃ", "ɣ": "x", "ʝ": "j"}
_MARKS = re.compile("[ːˑˈˌ\u0300-\u036f]")  # length, stress, combining diacritics (nasal tilde, syllabic mark)
_TABLES: list[dict[int, str]] = [{}, {}, {}, {}]
for _level, _extra in ((1, _FOLD1), (2, _FOLD2), (3, _FOLD3)):
    _TABLES[_level] = {**_TABLES[_level - 1], **{ord(k): v for k, v in _extra.items()}}
FOLD = 3  # chosen by measurement (docs/phonetic.md): 2 and 3 tie, 3 is the more forgiving of accents


def simplify(ph: str, fold: int = FOLD) -> list[str]:
    """Phone tokens of a :func:`phonemes` string, word breaks dropped, folded to ``fold`` (0-3, see above).

    >>> simplify("d eː ɛ ɾ | k ɔ ɾ n iː l s | v eː k", fold=1)
    ['d', 'e', 'ɛ', 'r', 'k', 'ɔ', 'r', 'n', 'i', 'l', 's', 'v', 'e', 'k']
    >>> simplify("d eː ɛ ɾ | k ɔ ɾ n iː l s | v eː k")
    ['t', 'e', 'r', 'k', 'o', 'r', 'n', 'i', 'l', 's', 'f', 'e', 'k']
    """
    toks = [t for t in ph.split() if t != WORD_BREAK]
    if fold <= 0:
        return toks
    table = _TABLES[min(fold, 3)]
    out: list[str] = []
    for t in toks:
        t = _MARKS.sub("", t).translate(table)
        if t and (not out or out[-1] != t):
            out.append(t)
    return out


def phone_ngrams(tokens: Sequence[str], n_max: int = PHONE_N_MAX, orders: Iterable[int] | None = None) -> list[str]:
    """Phone n-grams (n = 1..n_max, or only ``orders``) with ^/$ padding as :func:`sle.sparse.ngrams`; phones of a
    gram are joined by spaces.

    >>> phone_ngrams(["ts", "a"])
    ['ts', 'a', '^ ts', 'ts a', 'a $', '^ ^ ts', '^ ts a', 'ts a $', 'a $ $']
    """
    if not tokens:
        return []
    keep = set(orders) if orders is not None else set(range(1, n_max + 1))
    toks = list(tokens)
    grams = list(toks) if 1 in keep else []
    for n in range(2, max(keep) + 1):
        if n not in keep:
            continue
        padded = [BOS] * (n - 1) + toks + [EOS] * (n - 1)
        grams.extend(" ".join(padded[i : i + n]) for i in range(len(padded) - n + 1))
    return grams


def phone_term_id(gram: str) -> int:
    """uint32 index of a phone n-gram: MurmurHash3 (seed 0) of ``"ph:" + gram``."""
    return mmh3.hash(PREFIX + gram, signed=False)


_ids: dict[str, int] = {}


def _vector(grams: list[str]) -> SparseVector:
    acc: dict[int, float] = {}
    for gram, n in Counter(grams).items():
        i = _ids.get(gram)
        if i is None:
            i = _ids[gram] = phone_term_id(gram)
        acc[i] = acc.get(i, 0.0) + n  # two n-grams may share a hash; Qdrant wants unique indices
    indices = sorted(acc)
    return SparseVector(indices, [acc[i] for i in indices])


def encode_phonemes(ph: str, n_max: int = PHONE_N_MAX, fold: int = FOLD, orders: Iterable[int] | None = None) -> SparseVector:
    """Sparse vector of a :func:`phonemes` string: its phone n-grams (all orders 1..n_max for documents; a query
    may keep only some ``orders``), counts as values, indices sorted."""
    return _vector(phone_ngrams(simplify(ph, fold), n_max, orders))


QUERY_ORDERS = (3,)  # as sle.sparse: bigrams add ~0.5 points of R@10 for 3x the postings (docs/phonetic.md)
QUERY_LANGUAGES = "asr+de"  # a transcript is read in Whisper's language and in German (docs/phonetic.md)


def encode_phoneme_query(ph: str | Sequence[str], orders: tuple[int, ...] = QUERY_ORDERS, fold: int = FOLD) -> SparseVector:
    """Query vector: the phone n-grams of ``orders`` only (all 1..3 if those leave nothing). Several readings of
    one transcript (e.g. in two languages) give one vector of all their n-grams."""
    grams: list[str] = []
    for p in [ph] if isinstance(ph, str) else ph:
        toks = simplify(p, fold)
        grams += phone_ngrams(toks, max(orders), orders) or phone_ngrams(toks)
    return _vector(grams)


def name_language(name: str, countries: tuple[str, ...] | list[str] | str) -> str:
    """The language a name is read in: the one its TTS voice spoke (:func:`sle.tts.language_of`)."""
    from .tts import language_of

    return language_of(name, countries)


def name_phonemes(names: Sequence[str], languages: Sequence[str], batch: int = 4096, progress: bool = False) -> list[str]:
    """:func:`phonemes` of names, each in its own language, as the TTS reads them (``str.`` -> ``straße``)."""
    from .tts import speakable

    out: list[str] = [""] * len(names)
    by_lang: dict[str, list[int]] = {}
    for i, lang in enumerate(languages):
        by_lang.setdefault(lang, []).append(i)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(names), desc="G2P names", unit="name")
    for lang, rows in by_lang.items():
        for s in range(0, len(rows), batch):
            chunk = rows[s : s + batch]
            for i, ph in zip(chunk, phonemes([speakable(names[i], lang) for i in chunk], lang)):
                out[i] = ph
            if bar is not None:
                bar.update(len(chunk))
    if bar is not None:
        bar.close()
    return out


def transcript_phonemes(text: str, language: str = "", readings: str = QUERY_LANGUAGES) -> list[str]:
    """The readings of one transcript a query uses: ``readings`` is ``+``-joined sle codes, ``asr`` standing for
    ``language`` (the one Whisper decoded in; empty or unknown: German). Duplicate readings are read once.

    Whisper's second-best language is often wrong for the name (a German street decoded as Dutch or French), and
    most names are German: reading in both finds the name about as often as the target's own language would.
    """
    from .tts import speakable

    langs = []
    for r in readings.split("+"):
        lang = (language if r == "asr" else r) or DEFAULT_LANGUAGE
        langs.append(lang if lang in ESPEAK_VOICES else DEFAULT_LANGUAGE)
    return [phonemes([speakable(text, lang)], lang)[0] for lang in dict.fromkeys(langs)]


CACHE_VERSION = "ph1"  # bump when phonemes() or the name text it reads changes


def gazetteer_phonemes(g, cache: Path) -> list[str]:
    """:func:`phonemes` of every gazetteer name (in gazetteer order), cached under the directory ``cache`` in a gzip
    text file named by the gazetteer fingerprint (first line: the fingerprint and name count, then one line a name)."""
    cache = Path(cache)
    key = f"{g.fingerprint or 'nofp'}-{len(g)}"
    path = cache / f"names-{CACHE_VERSION}-{key[:16]}-{len(g)}.txt.gz"
    if path.exists():
        with gzip.open(path, "rt", encoding="utf-8") as f:
            lines = f.read().split("\n")
        if lines and lines[0] == key and len(lines) >= len(g) + 1:
            return lines[1 : len(g) + 1]
        log.warning("ignoring stale phoneme cache %s", path)
    t0 = time.perf_counter()
    out = name_phonemes([e.name for e in g.entries], [name_language(e.name, e.countries) for e in g.entries], progress=True)
    log.info("G2P of %d names: %.0f names/s", len(g), len(g) / max(time.perf_counter() - t0, 1e-9))
    cache.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    with gzip.open(tmp, "wt", encoding="utf-8") as f:
        f.write(key + "\n" + "\n".join(out) + "\n")
    tmp.replace(path)
    return out


# --- what the index and the linker use -----------------------------------------------------------------------------

# The phonetic slot of an index records this; a change rebuilds the index.
VERSION = f"phon-{CACHE_VERSION}-fold{FOLD}-n{PHONE_N_MAX}-q{''.join(map(str, QUERY_ORDERS))}"


def document_vector(ph: str) -> SparseVector:
    """The ``phonetic`` vector of a name, from its :func:`gazetteer_phonemes` string."""
    return encode_phonemes(ph)


def query_vector(text: str, language: str | None = None) -> SparseVector:
    """The ``phonetic`` query of a transcript that Whisper decoded in ``language`` (None: read as German only)."""
    return encode_phoneme_query(transcript_phonemes(text, language or ""))


# --- offline measurement (python -m sle.phonetic measure): exact scoring, no Qdrant --------------------------------


def top(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows and scores of the ``k`` best positive scores, best first (ties: lower row first)."""
    k = min(k, len(scores))
    rows = np.argpartition(-scores, k - 1)[:k]
    rows = rows[np.lexsort((rows, -scores[rows]))]
    rows = rows[scores[rows] > 0]
    return rows, scores[rows]


def rrf(lists: Sequence[np.ndarray], k: float = 2, weights: Sequence[float] | None = None) -> np.ndarray:
    """Qdrant's reciprocal rank fusion of row arrays (:func:`sle.link.fuse`, the linker's): rows, best first."""
    from .link import fuse

    ranked = [[_Row(r, 0.0) for r in rows.tolist()] for rows in lists]
    return np.array([r for r, _ in fuse(ranked, "rrf", k, weights)], dtype=np.int64)


class _Row(NamedTuple):
    id: int
    score: float


def dbsf(lists: Sequence[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    """Qdrant's distribution-based score fusion: each list's scores mapped from mean -/+ 3 sd to 0..1, summed."""
    acc: dict[int, float] = {}
    for rows, s in lists:
        if not len(s):
            continue
        mu, sd = float(np.mean(s)), float(np.std(s))
        lo, hi = mu - 3 * sd, mu + 3 * sd
        norm = (s - lo) / (hi - lo) if hi > lo else np.full(len(s), 0.5)
        for r, x in zip(rows.tolist(), np.clip(norm, 0, 1).tolist()):
            acc[r] = acc.get(r, 0.0) + x
    return _ranked(acc)


def score_sum(lists: Sequence[tuple[np.ndarray, np.ndarray]], weights: Sequence[float]) -> np.ndarray:
    """Weighted sum of the prefetched lists' raw scores (a point missing from a list adds 0), as a Qdrant formula
    query ``w0 * $score[0] + w1 * $score[1]`` would rank them."""
    acc: dict[int, float] = {}
    for (rows, s), w in zip(lists, weights):
        for r, x in zip(rows.tolist(), s.tolist()):
            acc[r] = acc.get(r, 0.0) + w * x
    return _ranked(acc)


def _ranked(acc: dict[int, float]) -> np.ndarray:
    return np.array(sorted(acc, key=lambda r: (-acc[r], r)), dtype=np.int64)


def _rank(rows: np.ndarray, target: int, depth: int) -> int | None:
    hit = np.flatnonzero(rows[:depth] == target)
    return int(hit[0]) + 1 if len(hit) else None


def _recall(ranks: Sequence[int | None], ks: Sequence[int]) -> list[float]:
    return [sum(r is not None and r <= k for r in ranks) / max(len(ranks), 1) for k in ks]


def _asr_languages(g, split: str) -> dict[tuple[int, str], str]:
    """(entry id, recogniser) -> the language Whisper decoded that utterance in."""
    from . import synth
    from .settings import settings

    out: dict[tuple[int, str], str] = {}
    for row in synth.read_rows(Path(settings.synthetic_dir), [split]):
        e = g.find(row.get("name") or "")
        if e is not None and row.get("asr"):
            out[(e.id, row["asr"])] = row.get("asr_language") or ""
    return out


def measure(
    split: str = "validation",
    limit: int | None = None,
    cache: Path = Path("var/phonetic"),
    folds: Sequence[int] = (0, 1, 2, 3),
    query_orders: Sequence[tuple[int, ...]] = ((3,), (2, 3), (1, 2, 3)),
    languages: Sequence[str] = ("asr", "de", "asr+de", "name"),
    normalise_transcripts: Sequence[bool] = (False, True),
    fold: int | None = None,
    orders: tuple[int, ...] | None = None,
    language: str | None = None,
    fuse_all: bool = False,
    depth: int = 100,
    ks: Sequence[int] = (1, 10, 40),
) -> str:
    """Recall@k of the character-trigram baseline, the phoneme channel's variants and their fusions on the
    synthetic ``split`` against the whole gazetteer; returns markdown tables (docs/phonetic.md).

    Phoneme variants vary one thing at a time from a base variant (``fold``, ``orders``, ``language``; default
    :data:`FOLD`, :data:`QUERY_ORDERS`, :data:`QUERY_LANGUAGES`; transcripts read as written); fusion fuses the
    base variant with the characters (with ``fuse_all``, RRF k=2 of every variant too).
    """
    from . import bench
    from . import evaluate as ev
    from . import gazetteer as gz
    from . import sparse
    from .text import normalize
    from .tts import speakable

    base = (FOLD if fold is None else fold, tuple(orders or QUERY_ORDERS), language or QUERY_LANGUAGES, False)
    lines: list[str] = []
    say = lines.append
    t0 = time.perf_counter()
    g = gz.load()
    qs = ev.synthetic_queries(split, g, limit=limit)
    recs = ev.recognisers_of(qs)
    asr_lang = _asr_languages(g, split)
    row_of = {e.id: r for r, e in enumerate(g.entries)}
    log.info("%d names, %d utterances (%.0f s)", len(g), len(qs), time.perf_counter() - t0)

    # G2P of the gazetteer (cached) and its cost
    t = time.perf_counter()
    cached = any(cache.glob(f"names-{CACHE_VERSION}-*-{len(g)}.txt.gz")) if cache.exists() else False
    name_ph = gazetteer_phonemes(g, cache)
    g2p_names_s = None if cached else len(g) / (time.perf_counter() - t)
    if g2p_names_s is None:  # cached: time a sample so the cost is still reported
        sample = g.entries[:: max(1, len(g) // 20000)]
        t = time.perf_counter()
        name_phonemes([e.name for e in sample], [name_language(e.name, e.countries) for e in sample])
        g2p_names_s = len(sample) / (time.perf_counter() - t)

    # transcripts: every language and text form a variant needs, in batches per language
    def transcript_langs(q, rec: str, how: str) -> list[str]:
        return list(dict.fromkeys(transcript_lang(q, rec, h) for h in how.split("+")))

    def transcript_lang(q, rec: str, how: str) -> str:
        if how == "asr":
            lang = asr_lang.get((q.target, rec), "")
            return lang if lang in ESPEAK_VOICES else DEFAULT_LANGUAGE
        if how == "name":
            e = g.get(q.target)
            return name_language(e.name, e.countries)
        return how

    def transcript_text(text: str, lang: str, norm: bool) -> str:
        return normalize(text) if norm else speakable(text, lang)

    need: dict[tuple[str, bool], set[str]] = {}
    for how in set(languages) | {"asr"}:
        for norm in set(normalise_transcripts) | {False}:
            for q in qs:
                for rec in recs:
                    for lang in transcript_langs(q, rec, how):
                        need.setdefault((lang, norm), set()).add(transcript_text(q.transcripts.get(rec, ""), lang, norm))
    tr_ph: dict[tuple[str, bool, str], str] = {}
    for (lang, norm), texts in need.items():
        texts_l = sorted(texts)
        for text, ph in zip(texts_l, phonemes(texts_l, lang)):
            tr_ph[(lang, norm, text)] = ph
    # G2P cost of one transcript at query time: one call per transcript, as the linker would make it
    sample_q = [q.transcripts.get(recs[0], "") for q in qs[:200]]
    phonemes(["warm-up"], DEFAULT_LANGUAGE)
    t = time.perf_counter()
    for text in sample_q:
        phonemes([text], DEFAULT_LANGUAGE)
    g2p_query_ms = (time.perf_counter() - t) / max(len(sample_q), 1) * 1e3

    def q_ph(q, rec: str, how: str = "asr", norm: bool = False) -> list[str]:
        text = q.transcripts.get(rec, "")
        return [tr_ph[(lang, norm, transcript_text(text, lang, norm))] for lang in transcript_langs(q, rec, how)]

    # character baseline, as sle queries it
    t = time.perf_counter()
    char = bench.ExactScorer(g)
    log.info("character scorer: %.0f s", time.perf_counter() - t)
    char_top: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {}
    cost: dict[str, list[tuple[int, int]]] = {}  # variant label -> (terms, postings) per query
    for rec in recs:
        vecs = [sparse.encode_query(q.transcripts.get(rec, "")) for q in qs]
        cost.setdefault("a", []).extend((len(v), char.postings(v)) for v in vecs)
        char_top[rec] = [top(char.scores(v), depth) for v in vecs]
    del char

    targets = [row_of[q.target] for q in qs]
    results: list[tuple[str, str, dict[str, list[int | None]], str]] = []  # (group, variant, rec -> ranks, cost key)

    def add(group: str, variant: str, lists: dict[str, list[np.ndarray]], cost_key: str = "") -> None:
        results.append((group, variant, {rec: [_rank(r, t_, max(ks)) for r, t_ in zip(lists[rec], targets)] for rec in recs}, cost_key))

    add("a. characters", "char 1-3-gram docs, trigram queries (sle sparse)", {rec: [r for r, _ in char_top[rec]] for rec in recs}, "a")

    # phoneme channel variants: one change at a time from the defaults
    B_f, B_o, B_l, _ = base
    variants: list[tuple[int, tuple[int, ...], str, bool]] = [base]
    variants += [(f, B_o, B_l, False) for f in folds]
    variants += [(B_f, tuple(o), B_l, False) for o in query_orders]
    variants += [(B_f, B_o, how, False) for how in languages]
    variants += [(B_f, B_o, B_l, norm) for norm in normalise_transcripts]
    variants = list(dict.fromkeys(variants))
    ph_top: dict[tuple, dict[str, list[tuple[np.ndarray, np.ndarray]]]] = {}
    for f in sorted({v[0] for v in variants}):
        t = time.perf_counter()
        scorer = ExactScorer((encode_phonemes(p, fold=f) for p in name_ph), len(g))
        log.info("phoneme scorer fold %d: %.0f s, %d terms", f, time.perf_counter() - t, len(scorer.col_of))
        for v in variants:
            if v[0] != f or v in ph_top:
                continue
            t = time.perf_counter()
            ph_top[v] = {}
            for rec in recs:
                vecs = [encode_phoneme_query(q_ph(q, rec, v[2], v[3]), v[1], f) for q in qs]
                cost.setdefault(str(v), []).extend((len(x), scorer.postings(x)) for x in vecs)
                ph_top[v][rec] = [top(scorer.scores(x), depth) for x in vecs]
            log.info("variant %s: %.0f s", v, time.perf_counter() - t)
        del scorer
    for v in variants:
        f, o, how, norm = v
        label = f"fold {f}, query orders {','.join(map(str, o))}, transcript read in {how}{', normalised' if norm else ''}"
        if v == base:
            label += " (base)"
        if how == "name":
            label += " (oracle: the target's language)"
        add("b. phonemes", label, {rec: [r for r, _ in ph_top[v][rec]] for rec in recs}, str(v))

    both = {rec: list(zip(char_top[rec], ph_top[base][rec])) for rec in recs}
    for k in (2, 10, 60):
        add("c. fusion", f"RRF k={k}, equal weights", {rec: [rrf([a[0], b[0]], k) for a, b in both[rec]] for rec in recs})
    for w in (0.5, 2.0):
        add("c. fusion", f"RRF k=2, phoneme weight {w}", {rec: [rrf([a[0], b[0]], 2, [1.0, w]) for a, b in both[rec]] for rec in recs})
    add("c. fusion", "DBSF", {rec: [dbsf([a, b]) for a, b in both[rec]] for rec in recs})
    for w in (0.5, 1.0, 2.0):
        add("c. fusion", f"score sum, chars + {w} x phonemes", {rec: [score_sum([a, b], [1.0, w]) for a, b in both[rec]] for rec in recs})

    if fuse_all:
        for v in variants[1:]:
            add("c. fusion", f"RRF k=2, equal weights, with fold {v[0]}, orders {','.join(map(str, v[1]))}, read in {v[2]}{', normalised' if v[3] else ''}",
                {rec: [rrf([a[0], b[0]], 2) for a, b in zip(char_top[rec], ph_top[v][rec])] for rec in recs})
    either = {}
    for rec in recs:
        either[rec] = [
            min([r for r in (_rank(a[0], t_, 10), _rank(b[0], t_, 10)) if r is not None], default=None) for (a, b), t_ in zip(both[rec], targets)
        ]
    results.append(("d. upper bound", "target in the character or the phoneme top 10 (R@10 only)", either, ""))

    # both recognisers at once, as sle's hybrid fuses one prefetch per recogniser
    def fuse_recs(parts: Sequence[str], k: float, weights: Sequence[float] | None = None) -> list[int | None]:
        out = []
        for i, t_ in enumerate(targets):
            rows = []
            for p in parts:
                for rec in recs:
                    rows.append(char_top[rec][i][0] if p == "c" else ph_top[base][rec][i][0])
            w = None if weights is None else [weights[j // len(recs)] for j in range(len(rows))]
            out.append(_rank(rrf(rows, k, w), t_, max(ks)))
        return out

    both_rows = [("characters, RRF k=2 (today's sparse-only hybrid)", fuse_recs("c", 2)), ("phonemes, RRF k=2", fuse_recs("p", 2))]
    both_rows += [(f"characters + phonemes, RRF k={k}", fuse_recs("cp", k)) for k in (2, 10)]
    both_rows += [("characters + phonemes, RRF k=2, phoneme weight 2", fuse_recs("cp", 2, [1.0, 2.0]))]

    # tables
    say(f"Utterances: {len(qs)} ({split}{f', seeded sample of {limit}' if limit else ''}); names: {len(g)}; ranks beyond {max(ks)} are misses; fused lists come from each channel's top {depth}.")
    say("")
    head = "| group | variant | " + " | ".join(f"{rec} R@{k}" for rec in recs for k in ks) + " | query terms | postings |"
    say(head)
    say("|" + "---|" * 2 + "---:|" * (len(recs) * len(ks) + 2))
    for group, variant, ranks, cost_key in results:
        cells = []
        for rec in recs:
            rs = _recall(ranks[rec], ks)
            cells += [f"{x:.3f}" if (group[0] != "d" or k == 10) else "" for x, k in zip(rs, ks)]
        c = np.array(cost.get(cost_key, [(0, 0)]), dtype=float).mean(axis=0) if cost_key else None
        cells += [f"{c[0]:.1f}", f"{c[1]:,.0f}"] if c is not None else ["", ""]
        say(f"| {group} | {variant} | " + " | ".join(cells) + " |")
    say("")
    say("Both recognisers' lists fused (4 lists with phonemes, 2 without):")
    say("")
    say("| lists | " + " | ".join(f"both R@{k}" for k in ks) + " |")
    say("|---|" + "---:|" * len(ks))
    for label, ranks in both_rows:
        say(f"| {label} | " + " | ".join(f"{x:.3f}" for x in _recall(ranks, ks)) + " |")
    say("")
    say("query terms, postings: mean non-zeros of a query vector and mean postings (names) its terms' lists hold, over both recognisers.")
    say(f"G2P cost: {g2p_names_s:,.0f} names/s over the gazetteer (batches of 4,096 per language); {g2p_query_ms:.2f} ms per transcript (one call per transcript).")
    say(f"Wall time: {time.perf_counter() - t0:.0f} s.")
    return "\n".join(lines)


def _main(argv: Sequence[str] | None = None) -> None:
    import argparse

    ap = argparse.ArgumentParser(prog="python -m sle.phonetic", description="measure the phoneme channel offline (docs/phonetic.md)")
    ap.add_argument("what", choices=["measure"])
    ap.add_argument("--split", default="validation")
    ap.add_argument("--limit", type=int, default=None, help="seeded sample of this many utterances")
    ap.add_argument("--cache", type=Path, default=Path("var/phonetic"))
    ap.add_argument("--folds", default="0,1,2,3")
    ap.add_argument("--orders", default="3;2,3;1,2,3", help="query n-gram orders to try, ';' between variants")
    ap.add_argument("--languages", default="asr,de,asr+de,name", help="transcript G2P language: asr (Whisper's), name (oracle), a code, or a+b (both readings)")
    ap.add_argument("--normalise", default="0,1", help="transcripts through sle.text.normalize before G2P: 0, 1 or both")
    ap.add_argument("--fold", type=int, default=None, help="base variant's folding level")
    ap.add_argument("--base-orders", default=None, help="base variant's query orders, e.g. 2,3")
    ap.add_argument("--language", default=None, help="base variant's transcript reading, e.g. asr+de")
    ap.add_argument("--fuse-all", action="store_true", help="also RRF-fuse every variant with the characters")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    print(
        measure(
            split=args.split,
            limit=args.limit,
            cache=args.cache,
            folds=[int(x) for x in args.folds.split(",") if x],
            query_orders=[tuple(int(x) for x in o.split(",")) for o in args.orders.split(";") if o],
            languages=[x for x in args.languages.split(",") if x],
            normalise_transcripts=[bool(int(x)) for x in args.normalise.split(",") if x],
            fold=args.fold,
            orders=tuple(int(x) for x in args.base_orders.split(",")) if args.base_orders else None,
            language=args.language,
            fuse_all=args.fuse_all,
        )
    )


if __name__ == "__main__":
    _main()
