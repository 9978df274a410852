"""One text normalisation for names, transcripts, n-grams, the encoder, evaluation and labels."""

from __future__ import annotations

import re
import unicodedata

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


# Rough ASR-like confusions of German, Dutch and Swedish street names (spelling by ear).
_CONFUSIONS = [
    ("strasse", "stasse"), ("strasse", "strase"), ("strasse", "str"), ("ss", "s"), ("ß", "s"), ("ä", "e"), ("ä", "ae"),
    ("ö", "o"), ("ö", "oe"), ("ü", "u"), ("ü", "ue"), ("ei", "ai"), ("ie", "i"), ("eu", "oi"), ("v", "f"), ("w", "v"),
    ("z", "ts"), ("tz", "z"), ("ch", "sh"), ("ck", "k"), ("th", "t"), ("ph", "f"), ("dt", "t"), ("ij", "ei"), ("oo", "o"),
    ("aa", "a"), ("sj", "sh"), ("g", "ch"), ("b", "p"), ("d", "t"), ("weg", "veg"), ("gatan", "gata"), ("vägen", "vegen"),
]


def corrupt(text: str, rng, strength: float = 1.0) -> str:
    """A misheard spelling of ``text``: a few phonetic confusions, then random edits.

    Deterministic for a given ``random.Random`` state; used to test and benchmark retrieval without audio.
    """
    s = normalize(text)
    for a, b in rng.sample(_CONFUSIONS, len(_CONFUSIONS)):
        if a in s and rng.random() < 0.5 * strength:
            s = s.replace(a, b, 1)
    letters = "abcdefghijklmnopqrstuvwxyzäöü"
    for _ in range(rng.randint(0, max(1, round(len(s) / 8 * strength)))):
        if len(s) < 3:
            break
        i, op = rng.randrange(len(s)), rng.random()
        if op < 0.4:
            s = s[:i] + rng.choice(letters) + s[i + 1 :]
        elif op < 0.7:
            s = s[:i] + s[i + 1 :]
        elif op < 0.85:
            s = s[:i] + rng.choice(letters) + s[i:]
        else:
            s = s[:i] + " " + s[i:] if " " not in s[i - 1 : i + 1] else s.replace(" ", "", 1)
    return " ".join(s.split()) or normalize(text)
