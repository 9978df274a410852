"""Human control data: labelled recordings in SQLite (WAL) with their audio files next to it.

Every label is one row written in one transaction, after its audio file is safely on disk (temporary file,
fsync, atomic rename), so a crash at any point loses nothing committed and never leaves a row without audio
(at worst an orphan audio file, which :meth:`Store.orphans` lists). Many annotators may write at once,
from threads or processes: SQLite serialises the writers, ``busy_timeout`` makes them wait instead of failing.

A row keeps what the person heard and said and what every retrieval system answered then: the prompt (if the
app asked for a street), the label (a gazetteer entry, "none of these", or a typed name), both transcripts,
each system's top-k and the label's rank in it, and timings. Recall@k per system is computed from these
stored lists, so results stay comparable even after the index or models change.
"""

from __future__ import annotations

import csv
import io
import json
import os
import sqlite3
import threading
import time
import uuid
import weakref
import zipfile
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import soundfile as sf

from .settings import Settings, settings as default_settings

SAMPLE_RATE = 16000
RECALL_KS = (1, 10, 40)
LABEL_KINDS = ("entry", "none", "typed")  # a gazetteer entry, "none of these", a name typed that the gazetteer lacks
NONE_LABEL = "none of these"

# Each migration takes the schema from version i to i+1. Append, never edit: databases in the field ran them.
MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE items (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        uid TEXT NOT NULL UNIQUE,
        annotator TEXT NOT NULL,
        audio TEXT NOT NULL,              -- path relative to the annotations folder
        duration_s REAL NOT NULL,
        prompt_id INTEGER,                -- gazetteer entry the app asked for (NULL: free recording)
        prompt_name TEXT NOT NULL DEFAULT '',
        label_kind TEXT NOT NULL CHECK (label_kind IN ('entry', 'none', 'typed')),
        label_id INTEGER,                 -- gazetteer entry id when label_kind = 'entry'
        label_name TEXT NOT NULL DEFAULT '',
        transcripts TEXT NOT NULL,        -- JSON {recogniser: text}
        systems TEXT NOT NULL,            -- JSON {system: [candidate, ...]} (top-k as shown)
        ranks TEXT NOT NULL,              -- JSON {system: rank or null} of the label
        timings TEXT NOT NULL,            -- JSON {step: ms}
        profile TEXT NOT NULL DEFAULT '', -- recogniser profile, and why it fell back if it did
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL
    );
    CREATE INDEX items_annotator ON items (annotator, id);
    """,
)
SCHEMA_VERSION = len(MIGRATIONS)


@dataclass
class Item:
    """One labelled recording."""

    id: int
    uid: str
    annotator: str
    audio: str  # absolute path of the WAV file
    duration_s: float
    prompt_id: int | None
    prompt_name: str
    label_kind: str
    label_id: int | None
    label_name: str
    transcripts: dict[str, str]
    systems: dict[str, list[dict]]
    ranks: dict[str, int | None]
    timings: dict[str, float]
    profile: str
    created_at: float
    updated_at: float

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Label:
    """What the annotator said the recording is."""

    kind: str  # one of LABEL_KINDS
    id: int | None = None
    name: str = ""

    def __post_init__(self) -> None:
        if self.kind not in LABEL_KINDS:
            raise ValueError(f"label kind must be one of {LABEL_KINDS}, not {self.kind!r}")
        if self.kind == "entry" and self.id is None:
            raise ValueError("an 'entry' label needs the gazetteer id")
        if self.kind == "typed" and not self.name.strip():
            raise ValueError("a typed label needs a name")


def resolve_label(text: str | int | None, gazetteer=None) -> Label:
    """A label from what a person picked or typed: an entry id, a name (matched with ``normalize``), or "none"."""
    if text is None or (isinstance(text, str) and text.strip().casefold() in ("", NONE_LABEL, "none")):
        return Label("none", None, NONE_LABEL)
    if gazetteer is None:
        from . import gazetteer as gz

        gazetteer = gz.load()
    if isinstance(text, int) or (isinstance(text, str) and text.strip().isdigit()):
        e = gazetteer.get(int(text))
        if e is not None:
            return Label("entry", e.id, e.name)
    e = gazetteer.find(str(text))
    if e is not None:
        return Label("entry", e.id, e.name)
    return Label("typed", None, str(text).strip())


def ranks_of(systems: dict[str, list[dict]], label_id: int | None) -> dict[str, int | None]:
    """Rank of the labelled entry in each system's stored list (None: absent, or no entry label)."""
    return {k: (next((c["rank"] for c in v if int(c["id"]) == label_id), None) if label_id is not None else None) for k, v in systems.items()}


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_wav_atomic(path: Path, audio: np.ndarray, rate: int = SAMPLE_RATE) -> None:
    """Write a 16-bit WAV so that ``path`` is either absent or complete: temp file, fsync, rename, fsync folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}-{threading.get_ident()}")
    try:
        with open(tmp, "wb") as f:
            sf.write(f, np.asarray(audio, dtype=np.float32), rate, format="WAV", subtype="PCM_16")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def _systems_dict(systems) -> dict[str, list[dict]]:
    """Candidate lists as plain dicts (accepts a LinkResult's ``systems`` or already-plain dicts)."""
    return {k: [c if isinstance(c, dict) else c.to_dict() for c in v] for k, v in systems.items()}


# A forked child must never close a connection it inherited: closing any descriptor of the database file drops
# every POSIX lock this process holds on it, so the child's own writes would run unlocked and be lost. After a fork
# the inherited connections are parked here for good and each Store opens a fresh one.
_open_stores: "weakref.WeakSet[Store]" = weakref.WeakSet()
_inherited: list[sqlite3.Connection] = []


def _park_inherited_connections() -> None:
    for store in list(_open_stores):
        c = getattr(store._local, "conn", None)
        if c is not None:
            _inherited.append(c)
            store._local.conn = None


os.register_at_fork(after_in_child=_park_inherited_connections)


class Store:
    """The annotations database and audio folder of one data dir (or an explicit database path)."""

    def __init__(self, s: Settings | None = None, path: str | Path | None = None):
        self.s = s or default_settings
        self.path = Path(path or self.s.annotations_db or Path(self.s.data_dir) / "annotations" / "annotations.sqlite")
        self.root = self.path.parent
        self.audio_dir = self.root / "audio"
        self.audio_dir.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        _open_stores.add(self)
        self._migrate()

    # --- connection and schema ---------------------------------------------------------------------------
    def _conn(self) -> sqlite3.Connection:
        # one connection per thread and process (sqlite3 connections must not cross either)
        c = getattr(self._local, "conn", None)
        if c is None or getattr(self._local, "pid", None) != os.getpid():
            c = sqlite3.connect(self.path, timeout=self.s.sqlite_busy_ms / 1000, isolation_level=None)
            c.row_factory = sqlite3.Row
            c.execute(f"PRAGMA busy_timeout = {int(self.s.sqlite_busy_ms)}")
            c.execute("PRAGMA journal_mode = WAL")
            c.execute("PRAGMA synchronous = FULL")  # WAL + FULL: a commit survives power loss, not just a crash
            self._local.conn, self._local.pid = c, os.getpid()
        return c

    @contextmanager
    def _tx(self):
        """``with self._tx() as c:`` one write transaction, taking the write lock up front (no upgrade deadlocks)."""
        c = self._conn()
        c.execute("BEGIN IMMEDIATE")
        try:
            yield c
        except BaseException:
            c.execute("ROLLBACK")
            raise
        c.execute("COMMIT")

    def _migrate(self) -> None:
        with self._tx() as c:
            c.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            row = c.execute("SELECT version FROM schema_version").fetchone()
            version = row[0] if row else 0
            if version > SCHEMA_VERSION:
                raise RuntimeError(f"{self.path} has schema version {version}, newer than this sle ({SCHEMA_VERSION}); upgrade sle")
            for sql in MIGRATIONS[version:]:
                for stmt in (x.strip() for x in sql.split(";")):
                    if stmt:
                        c.execute(stmt)
            if row is None:
                c.execute("INSERT INTO schema_version (version) VALUES (?)", (SCHEMA_VERSION,))
            elif version != SCHEMA_VERSION:
                c.execute("UPDATE schema_version SET version = ?", (SCHEMA_VERSION,))

    def schema_version(self) -> int:
        return self._conn().execute("SELECT version FROM schema_version").fetchone()[0]

    def close(self) -> None:
        c = getattr(self._local, "conn", None)
        if c is not None:
            c.close()
            self._local.conn = None

    # --- rows ----------------------------------------------------------------------------------------------
    def _item(self, r: sqlite3.Row) -> Item:
        return Item(
            id=r["id"], uid=r["uid"], annotator=r["annotator"], audio=str(self.root / r["audio"]), duration_s=r["duration_s"],
            prompt_id=r["prompt_id"], prompt_name=r["prompt_name"], label_kind=r["label_kind"], label_id=r["label_id"],
            label_name=r["label_name"], transcripts=json.loads(r["transcripts"]), systems=json.loads(r["systems"]),
            ranks=json.loads(r["ranks"]), timings=json.loads(r["timings"]), profile=r["profile"],
            created_at=r["created_at"], updated_at=r["updated_at"],
        )  # fmt: skip

    def add(
        self,
        annotator: str,
        audio: np.ndarray | str | os.PathLike | bytes,
        label: Label,
        transcripts: dict[str, str],
        systems: dict,
        timings: dict[str, float] | None = None,
        prompt_id: int | None = None,
        prompt_name: str = "",
        profile: str = "",
    ) -> Item:
        """Store one labelled recording (audio: 16 kHz mono samples, or a file/bytes to decode) and return it."""
        annotator = annotator.strip()
        if not annotator:
            raise ValueError("an annotator name is needed")
        if not isinstance(audio, np.ndarray):
            from .audio import load_audio

            audio = load_audio(audio, s=self.s)
        uid = uuid.uuid4().hex
        rel = f"audio/{uid}.wav"
        write_wav_atomic(self.root / rel, audio)  # on disk before the row that points at it commits
        plain = _systems_dict(systems)
        now = time.time()
        try:
            with self._tx() as c:
                cur = c.execute(
                    "INSERT INTO items (uid, annotator, audio, duration_s, prompt_id, prompt_name, label_kind, label_id, label_name,"
                    " transcripts, systems, ranks, timings, profile, created_at, updated_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                    (uid, annotator, rel, round(len(audio) / SAMPLE_RATE, 3), prompt_id, prompt_name, label.kind, label.id, label.name,
                     json.dumps(transcripts, ensure_ascii=False), json.dumps(plain, ensure_ascii=False),
                     json.dumps(ranks_of(plain, label.id)), json.dumps({k: round(float(v), 2) for k, v in (timings or {}).items()}),
                     profile, now, now),
                )  # fmt: skip
                row = c.execute("SELECT * FROM items WHERE id = ?", (cur.lastrowid,)).fetchone()
        except BaseException:
            (self.root / rel).unlink(missing_ok=True)
            raise
        return self._item(row)

    def get(self, item_id: int) -> Item | None:
        r = self._conn().execute("SELECT * FROM items WHERE id = ?", (int(item_id),)).fetchone()
        return self._item(r) if r else None

    def list(self, annotator: str | None = None, limit: int | None = None) -> list[Item]:
        """Items, newest first, optionally of one annotator."""
        sql, args = "SELECT * FROM items", []
        if annotator:
            sql += " WHERE annotator = ?"
            args.append(annotator)
        sql += " ORDER BY id DESC"
        if limit:
            sql += f" LIMIT {int(limit)}"
        return [self._item(r) for r in self._conn().execute(sql, args)]

    def __len__(self) -> int:
        return self._conn().execute("SELECT COUNT(*) FROM items").fetchone()[0]

    def annotators(self) -> list[str]:
        return [r[0] for r in self._conn().execute("SELECT DISTINCT annotator FROM items ORDER BY annotator")]

    def update_label(self, item_id: int, label: Label) -> Item:
        """Fix a label; the ranks are recomputed from the stored candidate lists."""
        with self._tx() as c:
            r = c.execute("SELECT systems FROM items WHERE id = ?", (int(item_id),)).fetchone()
            if r is None:
                raise KeyError(f"no item {item_id}")
            ranks = ranks_of(json.loads(r["systems"]), label.id)
            c.execute(
                "UPDATE items SET label_kind = ?, label_id = ?, label_name = ?, ranks = ?, updated_at = ? WHERE id = ?",
                (label.kind, label.id, label.name, json.dumps(ranks), time.time(), int(item_id)),
            )
            row = c.execute("SELECT * FROM items WHERE id = ?", (int(item_id),)).fetchone()
        return self._item(row)

    def delete(self, item_id: int) -> Item | None:
        """Delete an item and then its audio (a crash in between leaves an orphan file, never a dangling row)."""
        with self._tx() as c:
            r = c.execute("SELECT * FROM items WHERE id = ?", (int(item_id),)).fetchone()
            if r is None:
                return None
            c.execute("DELETE FROM items WHERE id = ?", (int(item_id),))
        item = self._item(r)
        Path(item.audio).unlink(missing_ok=True)
        return item

    def undo_last(self, annotator: str) -> Item | None:
        """Delete the annotator's most recent item (None if they have none)."""
        r = self._conn().execute("SELECT id FROM items WHERE annotator = ? ORDER BY id DESC LIMIT 1", (annotator.strip(),)).fetchone()
        return self.delete(r[0]) if r else None

    def progress(self) -> dict[str, dict[str, int]]:
        """Per annotator: items, prompted items, and items labelled "none of these"."""
        rows = self._conn().execute(
            "SELECT annotator, COUNT(*), SUM(prompt_id IS NOT NULL), SUM(label_kind = 'none') FROM items GROUP BY annotator ORDER BY annotator"
        )
        return {r[0]: {"items": r[1], "prompted": r[2] or 0, "none": r[3] or 0} for r in rows}

    def orphans(self) -> list[Path]:
        """Audio files no row points at (left by a crash between the file and the commit, or by a delete)."""
        known = {r[0] for r in self._conn().execute("SELECT audio FROM items")}
        return [p for p in self.audio_dir.glob("*.wav") if f"audio/{p.name}" not in known]

    # --- evaluation ----------------------------------------------------------------------------------------
    def recall(self, ks: Sequence[int] = RECALL_KS, annotator: str | None = None) -> dict[str, dict[str, float]]:
        """Recall@k per system over items labelled with a gazetteer entry: {system: {"n": .., "r@1": .., ...}}.

        A system's recall@k counts the item as found when the label is within the first k of its stored list;
        lists are stored with ``settings.annotations_k`` candidates, so k beyond that is not measurable.
        """
        out: dict[str, dict[str, float]] = {}
        for item in self.list(annotator):
            if item.label_kind != "entry":
                continue
            for system, rank in item.ranks.items():
                acc = out.setdefault(system, {"n": 0, **{f"r@{k}": 0 for k in ks}})
                acc["n"] += 1
                for k in ks:
                    acc[f"r@{k}"] += rank is not None and rank <= k
        for acc in out.values():
            for k in ks:
                acc[f"r@{k}"] = round(acc[f"r@{k}"] / acc["n"], 4)
        return dict(sorted(out.items()))

    # --- export --------------------------------------------------------------------------------------------
    @staticmethod
    def flat_row(item: Item) -> dict:
        """One item as flat columns (CSV, and the audiofolder metadata): transcripts and ranks as one column each."""
        row = {
            "id": item.id, "uid": item.uid, "annotator": item.annotator, "duration_s": item.duration_s,
            "prompt_id": None if item.prompt_id is None else str(item.prompt_id), "prompt_name": item.prompt_name,
            "label_kind": item.label_kind, "label_id": None if item.label_id is None else str(item.label_id),
            "label_name": item.label_name, "profile": item.profile,
            "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(item.created_at)),
        }  # fmt: skip
        # ids as strings: 63-bit ints lose digits in JavaScript and spreadsheets
        row.update({f"transcript:{k}": v for k, v in item.transcripts.items()})
        row.update({f"rank:{k}": v for k, v in item.ranks.items()})  # None: not found (empty in CSV)
        return row

    def export_jsonl(self, path: str | Path, annotator: str | None = None) -> Path:
        """Every item in full (including each system's candidate list), one JSON object a line."""
        path = Path(path)
        with open(path, "w", encoding="utf-8") as f:
            for item in reversed(self.list(annotator)):
                d = item.to_dict()
                d["audio"] = os.path.relpath(item.audio, self.root)
                f.write(json.dumps(d, ensure_ascii=False) + "\n")
        return path

    def export_csv(self, path: str | Path, annotator: str | None = None) -> Path:
        """Flat table, one row per item (columns for every recogniser's transcript and every system's rank)."""
        path = Path(path)
        rows = [self.flat_row(i) for i in reversed(self.list(annotator))]
        columns = _columns(rows)
        with open(path, "w", encoding="utf-8", newline="") as f:
            w = csv.DictWriter(f, fieldnames=columns, restval="")
            w.writeheader()
            w.writerows(rows)
        return path

    def export_audiofolder(self, path: str | Path, annotator: str | None = None) -> Path:
        """A zip loadable with ``datasets.load_dataset("audiofolder", data_dir=<unzipped>)``.

        Layout: ``metadata.jsonl`` (``file_name`` plus the flat columns, every row with every column) and ``audio/*.wav``.
        """
        path = Path(path)
        items = list(reversed(self.list(annotator)))
        rows = [{"file_name": f"audio/{i.uid}.wav", **self.flat_row(i)} for i in items]
        columns = _columns(rows)
        tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as z:
            # audiofolder wants the same columns in every row (Arrow schema): missing ones become null
            z.writestr("metadata.jsonl", "".join(json.dumps({c: r.get(c) for c in columns}, ensure_ascii=False) + "\n" for r in rows))
            for i in items:
                z.write(i.audio, f"audio/{i.uid}.wav", compress_type=zipfile.ZIP_STORED)
        os.replace(tmp, path)
        return path

    def export(self, kind: str, folder: str | Path, annotator: str | None = None) -> Path:
        """Export to ``folder`` as ``audiofolder`` (zip), ``csv`` or ``jsonl``; returns the file written."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        stamp = time.strftime("%Y%m%d-%H%M%S") + "-" + uuid.uuid4().hex[:6]  # two exports in one second differ
        if kind == "audiofolder":
            return self.export_audiofolder(folder / f"sle-annotations-{stamp}.zip", annotator)
        if kind == "csv":
            return self.export_csv(folder / f"sle-annotations-{stamp}.csv", annotator)
        if kind == "jsonl":
            return self.export_jsonl(folder / f"sle-annotations-{stamp}.jsonl", annotator)
        raise ValueError(f"export kind must be audiofolder, csv or jsonl, not {kind!r}")


# --- collecting -------------------------------------------------------------------------------------------


def read_prompt_list(path: str | Path) -> list[str]:
    """Street names to prompt, from a text file (one a line) or a CSV/TSV with a ``name`` column."""
    text = Path(path).read_text(encoding="utf-8-sig")
    lines = [x for x in text.splitlines() if x.strip()]
    if not lines:
        return []
    head = lines[0]
    delim = "\t" if "\t" in head else ("," if "," in head else None)
    if delim and "name" in [h.strip().casefold() for h in head.split(delim)]:
        return [r["name"].strip() for r in csv.DictReader(io.StringIO(text), delimiter=delim, skipinitialspace=True) if (r.get("name") or "").strip()]
    names = [x.strip() for x in lines]
    return names[1:] if names[0].casefold() == "name" else names  # a one-column file with a header


def pick_prompt(gazetteer, rng, countries: Sequence[str] = (), names: Sequence[str] = ()) -> tuple[int | None, str]:
    """A street to read aloud: (entry id, name). From ``names`` if given (names the gazetteer lacks keep id None),
    else a random gazetteer entry, optionally of the given countries."""
    if names:
        name = names[rng.randrange(len(names))]
        e = gazetteer.find(name)
        return (e.id, e.name) if e else (None, name)
    entries = gazetteer.entries
    if countries:
        wanted = set(countries)
        for _ in range(200):  # rejection sampling: fast for any country with a fair share of the names
            e = entries[rng.randrange(len(entries))]
            if wanted.intersection(e.countries):
                return e.id, e.name
        entries = [e for e in entries if wanted.intersection(e.countries)]
        if not entries:
            raise ValueError(f"no streets in {', '.join(countries)}")
    e = entries[rng.randrange(len(entries))]
    return e.id, e.name


def candidate_union(systems: dict[str, list]) -> list[str]:
    """Names in any system's list, best rank first (the choices for "which street was it?")."""
    best: dict[str, int] = {}
    for cands in systems.values():
        for c in cands:
            c = c if isinstance(c, dict) else c.to_dict()
            best[c["name"]] = min(best.get(c["name"], 10**9), c["rank"])
    return sorted(best, key=lambda n: (best[n], n))


def plot_recall(recall: dict[str, dict[str, float]]):
    """Grouped bars of recall@k per system (a matplotlib Figure)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 3.2), dpi=100)
    systems = list(recall)
    ks = [c for c in (next(iter(recall.values())) if recall else {}) if c.startswith("r@")]
    width = 0.8 / max(1, len(ks))
    for j, k in enumerate(ks):
        ax.bar([i + j * width for i in range(len(systems))], [recall[x][k] for x in systems], width, label=f"recall@{k[2:]}")
    ax.set_xticks([i + width * (len(ks) - 1) / 2 for i in range(len(systems))], [f"{x}\n(n={recall[x]['n']})" for x in systems], fontsize=8)
    ax.set_ylim(0, 1)
    ax.set_ylabel("recall")
    ax.set_title("Human control data" if systems else "No labelled items yet")
    if ks:
        ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    return fig


def _columns(rows: Iterable[dict]) -> list[str]:
    columns: list[str] = []
    for r in rows:
        columns.extend(c for c in r if c not in columns)
    return columns or ["id"]


_stores: dict[tuple[int, str], Store] = {}
_stores_lock = threading.Lock()


def get_store(s: Settings | None = None) -> Store:
    """One :class:`Store` per settings object and process."""
    s = s or default_settings
    with _stores_lock:
        key = (id(s), str(s.annotations_db))
        if key not in _stores:
            _stores[key] = Store(s)
        return _stores[key]
