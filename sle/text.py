"""One text normalisation for names, transcripts, n-grams, the encoder, evaluation and labels."""

from __future__ import annotations

import hashlib
import random
import re
import unicodedata
from typing import Iterable

_NON_WORD = re.compile(r"[\W_]+")


def normalize(text: str) -> str:
    """NFC, casefold (so ``ß`` -> ``ss``), punctuation to single spaces, trimmed.

    ``"Dr.-Cornils-Weg"`` and ``"dr cornils weg"`` normalise alike, as do names differing only by case;
    a trailing full stop that Whisper adds to a transcript disappears.
    """
    text = unicodedata.normalize("NFC", text).casefold()
    return _NON_WORD.sub(" ", text).strip()


def clean_display(text: str) -> str:
    """NFC, non-breaking spaces and runs of whitespace collapsed, stray quotes stripped."""
    text = unicodedata.normalize("NFC", text).replace("\u00a0", " ")
    return " ".join(text.split()).strip('"').strip()


# --- character noise: how ASR misspells street names -----------------------------------------------------------

# Spelling confusions seen in ASR output of street names (German, Dutch, Swedish, French): pattern -> replacements.
# Applied to normalised text (so "ß" is already "ss"). Longer patterns first so suffixes win over letters.
_CONFUSIONS: list[tuple[str, tuple[str, ...]]] = [
    ("strasse", ("strase", "stasse", "strasze", "strahse", "stras", " strasse", "str")),
    ("straat", ("strat", "straad", "street", " straat")),
    ("gatan", ("gata", "gaten", "jatan", " gatan")),
    ("vagen", ("vegen", "wagen", "vaegen", " vagen")),
    ("vägen", ("vegen", "vagen", "wegen")),
    ("gasse", ("gase", "gassen", "kasse", " gasse")),
    ("allee", ("alle", "ale", "allé")),
    ("laan", ("lan", "lahn", " laan")),
    ("platz", ("plats", "plaz", "blatz", " platz")),
    ("weg", ("veg", "wek", "weck", " weg")),
    ("rue ", ("ru ", "rü ", "roo ")),
    ("sch", ("sh", "ch", "s", "sj")),
    ("tsch", ("ch", "tch", "sch")),
    ("ch", ("sh", "k", "g", "h", "sch")),
    ("ck", ("k", "kk", "c")),
    ("tz", ("z", "ts", "s")),
    ("dt", ("t", "tt", "d")),
    ("th", ("t", "d")),
    ("ph", ("f",)),
    ("qu", ("kw", "kv", "q")),
    ("ei", ("ai", "ij", "ey", "i")),
    ("ij", ("ei", "y", "i")),
    ("ie", ("i", "ee", "ih")),
    ("eu", ("oi", "äu", "ö")),
    ("au", ("ou", "ao", "o")),
    ("oe", ("ö", "o", "u")),
    ("ae", ("ä", "e", "a")),
    ("ue", ("ü", "u", "ü")),
    ("oo", ("o", "u")),
    ("aa", ("a", "ah")),
    ("ss", ("s", "sz", "z")),
    ("ä", ("ae", "e", "a")),
    ("ö", ("oe", "o", "e")),
    ("ü", ("ue", "u", "i")),
    ("å", ("o", "a", "aa")),
    ("ø", ("o", "oe", "ö")),
    ("é", ("e", "ee")),
    ("è", ("e",)),
    ("v", ("f", "w")),
    ("w", ("v", "u")),
    ("f", ("v", "ph")),
    ("z", ("ts", "s", "tz", "c")),
    ("s", ("z", "ss")),
    ("c", ("k", "s", "z")),
    ("k", ("c", "ck", "g")),
    ("g", ("k", "ch", "j")),
    ("j", ("y", "i", "g")),
    ("y", ("i", "j")),
    ("x", ("ks", "cks")),
    ("d", ("t",)),
    ("t", ("d",)),
    ("b", ("p",)),
    ("p", ("b",)),
    ("h", ("",)),
    ("e", ("a", "i", "")),
    ("i", ("e", "y")),
    ("o", ("u", "a")),
    ("u", ("o", "ou")),
]
_VOWELS = set("aeiouyäöüåø")


def _rng(seed: int, key: str, i: int) -> random.Random:
    h = hashlib.blake2b(f"{seed}|{i}|{key}".encode(), digest_size=8).digest()
    return random.Random(int.from_bytes(h, "big"))


def corrupt(name: str, rng: random.Random | int = 0, variant: int = 0, strength: float = 1.0) -> str:
    """An ASR-like misspelling of ``name`` (normalised first), never the name itself unless nothing applies.

    1-4 edits (times ``strength``) drawn from phonetic confusions (ss/s, ä/ae/e, v/f/w, z/ts/s, ch/sh/k,
    straße/stasse/strase...), doubled or dropped letters, split or merged words and vowel swaps. ``rng`` is a
    ``random.Random`` (drawn from) or a seed: then the same (name, seed, variant) always gives the same result, so
    training pairs and benchmark queries are reproducible. The one noise model of sle (training, reranker, benchmarks).
    """
    original = text = normalize(name)
    if not isinstance(rng, random.Random):
        rng = _rng(int(rng), text, variant)
    for _ in range(3):  # a drawn edit may not apply; retry so a pair is never its own name
        text = _edit(original, rng, strength)
        if text != original:
            break
    return text


def _edit(text: str, rng: random.Random, strength: float = 1.0) -> str:
    original = text
    n_edits = rng.choices((1, 2, 3, 4), weights=(35, 35, 20, 10))[0]
    if strength != 1.0:
        n_edits = max(1, round(n_edits * strength))
    for _ in range(n_edits):
        op = rng.random()
        if op < 0.6:  # phonetic confusion at a random matching place
            options = [(i, pat, reps) for pat, reps in _CONFUSIONS for i in _find_all(text, pat)]
            if not options:
                continue
            i, pat, reps = rng.choice(options)
            text = text[:i] + rng.choice(reps) + text[i + len(pat) :]
        elif op < 0.72 and len(text) > 3:  # drop a letter (ASR swallows unstressed sounds)
            i = rng.randrange(len(text))
            text = text[:i] + text[i + 1 :]
        elif op < 0.82:  # double a consonant or undouble a pair
            doubles = [i for i in range(len(text) - 1) if text[i] == text[i + 1] and text[i].isalpha()]
            if doubles and rng.random() < 0.5:
                i = rng.choice(doubles)
                text = text[:i] + text[i + 1 :]
            else:
                cons = [i for i, c in enumerate(text) if c.isalpha() and c not in _VOWELS]
                if cons:
                    i = rng.choice(cons)
                    text = text[:i] + text[i] + text[i:]
        elif op < 0.92:  # split a long word or merge two words
            if " " in text and rng.random() < 0.5:
                spaces = [i for i, c in enumerate(text) if c == " "]
                i = rng.choice(spaces)
                text = text[:i] + text[i + 1 :]
            else:
                words = text.split(" ")
                j = max(range(len(words)), key=lambda w: len(words[w]))
                w = words[j]
                if len(w) >= 8:
                    cut = rng.randrange(3, len(w) - 3)
                    words[j] = w[:cut] + " " + w[cut:]
                    text = " ".join(words)
        else:  # vowel confusion
            vowels = [i for i, c in enumerate(text) if c in "aeiou"]
            if vowels:
                i = rng.choice(vowels)
                text = text[:i] + rng.choice([v for v in "aeiou" if v != text[i]]) + text[i + 1 :]
    text = " ".join(text.split())
    return text or original


def _find_all(text: str, pattern: str) -> Iterable[int]:
    i = text.find(pattern)
    while i != -1:
        yield i
        i = text.find(pattern, i + 1)
