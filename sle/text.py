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
