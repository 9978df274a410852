"""The street gazetteer: names to retrieve, each a stable id, its spellings and its countries.

Rows whose names normalise alike (same name in several countries, or differing only by case or
punctuation) are one retrieval target. Malformed rows are reported and skipped, never fatal.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import logging
from dataclasses import dataclass, field
from pathlib import Path

from .settings import Settings, settings as default_settings
from .text import clean_display, normalize

log = logging.getLogger(__name__)

MAX_NAME_CHARS = 200


@dataclass(frozen=True)
class Entry:
    id: int  # stable: derived from the normalised name, so it survives reordering and new rows
    name: str  # display spelling (the first seen)
    key: str  # normalised name
    countries: tuple[str, ...]
    variants: tuple[str, ...] = ()  # other spellings merged into this target


@dataclass
class Gazetteer:
    entries: list[Entry]
    skipped: list[tuple[int, str]] = field(default_factory=list)  # (line number, reason)
    source: str = ""
    fingerprint: str = ""  # sha256 of the source file, for index idempotence

    def __len__(self) -> int:
        return len(self.entries)

    def __iter__(self):
        return iter(self.entries)

    def __post_init__(self) -> None:
        self._by_id = {e.id: e for e in self.entries}
        self._by_key = {e.key: e for e in self.entries}

    def get(self, id: int) -> Entry | None:
        return self._by_id.get(id)

    def find(self, name: str) -> Entry | None:
        """The entry whose normalised name equals ``normalize(name)``."""
        return self._by_key.get(normalize(name))

    def names(self) -> list[str]:
        return [e.name for e in self.entries]


def stable_id(key: str) -> int:
    """63-bit id of a normalised name (Qdrant point ids are unsigned 64-bit; 63 bits keep SQLite happy)."""
    return int.from_bytes(hashlib.blake2b(key.encode("utf-8"), digest_size=8).digest(), "big") >> 1


def _open_text(path: Path) -> io.TextIOBase:
    if path.suffix == ".gz":
        return gzip.open(path, "rt", encoding="utf-8", newline="")
    return open(path, encoding="utf-8", newline="")


def _delimiter(path: Path) -> str:
    name = path.name.removesuffix(".gz")
    return "," if name.endswith(".csv") else "\t"


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def load(
    path: str | Path | None = None,
    column: str | None = None,
    country_column: str | None = None,
    limit: int | None = None,
    settings: Settings | None = None,
) -> Gazetteer:
    """Read a TSV or CSV (optionally gzipped) with a header row into a :class:`Gazetteer`.

    ``column`` names the street-name column, ``country_column`` an optional country column.
    ``limit`` keeps only the first N targets (tests and quick runs).
    """
    s = settings or default_settings
    path = Path(path or s.gazetteer)
    column = column or s.gazetteer_column
    country_column = country_column or s.gazetteer_country_column
    if not path.exists():
        raise FileNotFoundError(f"gazetteer not found: {path}")

    merged: dict[str, list] = {}  # key -> [name, countries list, variants list]
    skipped: list[tuple[int, str]] = []
    with _open_text(path) as f:
        reader = csv.reader(f, delimiter=_delimiter(path), quoting=csv.QUOTE_NONE if _delimiter(path) == "\t" else csv.QUOTE_MINIMAL)
        try:
            header = next(reader)
        except StopIteration:
            raise ValueError(f"gazetteer {path} is empty (no header row)") from None
        except (csv.Error, UnicodeDecodeError) as e:
            raise ValueError(f"gazetteer {path}: unreadable header: {e}") from None
        header = [h.strip().lstrip("\ufeff") for h in header]
        if column not in header:
            raise ValueError(f"gazetteer {path}: no column {column!r} in header {header}")
        name_i = header.index(column)
        country_i = header.index(country_column) if country_column in header else None
        line = 1
        while True:
            line += 1
            try:
                row = next(reader)
            except StopIteration:
                break
            except (csv.Error, UnicodeDecodeError) as e:
                skipped.append((line, f"unparseable row: {e}"))
                continue
            if not row or (len(row) == 1 and not row[0].strip()):
                continue  # blank line
            if len(row) != len(header):
                skipped.append((line, f"expected {len(header)} fields, got {len(row)}"))
                continue
            name = clean_display(row[name_i])
            country = row[country_i].strip().upper() if country_i is not None else ""
            if len(name) < 2:
                skipped.append((line, "name shorter than 2 characters"))
                continue
            if len(name) > MAX_NAME_CHARS:
                skipped.append((line, f"name longer than {MAX_NAME_CHARS} characters"))
                continue
            if not any(c.isalpha() for c in name):
                skipped.append((line, "name has no letter"))
                continue
            key = normalize(name)
            target = merged.get(key)
            if target is None:
                if limit is not None and len(merged) >= limit:
                    continue
                merged[key] = [name, [country] if country else [], []]
            else:
                if country and country not in target[1]:
                    target[1].append(country)
                if name != target[0] and name not in target[2]:
                    target[2].append(name)

    if skipped:
        log.warning("gazetteer %s: skipped %d malformed rows (first: line %d: %s)", path, len(skipped), *skipped[0])
    entries = [
        Entry(id=stable_id(key), name=v[0], key=key, countries=tuple(v[1]), variants=tuple(v[2]))
        for key, v in merged.items()
    ]
    return Gazetteer(entries=entries, skipped=skipped, source=str(path), fingerprint=file_sha256(path))
