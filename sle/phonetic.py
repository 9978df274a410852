"""Phonetic keys of names and transcripts (a feature of the reranker).

:func:`cologne` is the Kölner Phonetik (Postel 1969) in one pass over the characters: ~2x faster than the
regex-based ``cologne_phonetics`` package (12 vs 26 us a name), which matters when every candidate of a 200-name
pool needs its key inside the 50 ms retrieval budget. Each word is coded alone and the codes are concatenated (as
``cologne_phonetics`` does); umlauts and accented vowels are vowels.
"""

from __future__ import annotations

from functools import lru_cache

from .text import normalize

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
