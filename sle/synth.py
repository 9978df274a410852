"""Synthetic (name, transcript) pairs: gazetteer name -> TTS clip -> every recogniser of a profile -> TSV rows.

Splits are by normalised name (``blake2b(key) % 1000``: < 5 validation, < 10 test, else train), so spellings
that normalise alike always land in one split. Training names never use :data:`sle.tts.UNSEEN_VOICES`.

Output: ``<synthetic_dir>/<split>/part-NNNNN.tsv.gz``, one row per clip and recogniser (columns
:data:`COLUMNS`). Parts are written atomically every ``part_size`` names; a restart reads them and skips done
names, so the command resumes. Rows with ``asr == "tts-error"`` record names the TTS could not speak.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import logging
import multiprocessing as mp
import os
import sys
import time
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Sequence

from .settings import Settings, settings as default_settings

log = logging.getLogger(__name__)

SPLITS = ("validation", "train", "test")
COLUMNS = (
    "name_id", "name", "country", "split", "language", "voice", "speed", "pitch", "augmentation",
    "asr", "transcript", "asr_language", "seconds", "audio_seconds", "tts_seconds",
)  # fmt: skip
TTS_ERROR = "tts-error"


def _hash(key: str) -> int:
    return int.from_bytes(hashlib.blake2b(key.encode("utf-8"), digest_size=8).digest(), "big")


def split_of(key: str) -> str:
    """Deterministic split of a normalised name."""
    bucket = _hash(key) % 1000
    return "validation" if bucket < 5 else "test" if bucket < 10 else "train"


@dataclass(frozen=True)
class Item:
    name_id: int
    name: str
    key: str
    countries: tuple[str, ...]
    split: str


def plan(entries: Iterable, split: str = "all") -> list[Item]:
    """Names to synthesise, in run order: all validation names, then train in hash order, then test."""
    by_split: dict[str, list[Item]] = defaultdict(list)
    for e in entries:
        s = split_of(e.key)
        by_split[s].append(Item(e.id, e.name, e.key, tuple(e.countries), s))
    wanted = SPLITS if split == "all" else (split,)
    out: list[Item] = []
    for s in wanted:
        out.extend(sorted(by_split[s], key=lambda it: _hash(it.key)))
    return out


# --- parts -------------------------------------------------------------------------------------------------


def part_paths(root: Path, split: str) -> list[Path]:
    return sorted((root / split).glob("part-*.tsv.gz"))


def read_rows(root: Path, splits: Sequence[str] = SPLITS) -> Iterator[dict]:
    """All rows of the committed parts (a damaged part is skipped with a warning)."""
    for split in splits:
        for path in part_paths(root, split):
            try:
                with gzip.open(path, "rt", encoding="utf-8", newline="") as f:
                    rows = list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
            except (OSError, EOFError, csv.Error) as e:
                log.warning("skipping unreadable part %s: %s", path, e)
                continue
            yield from rows


def done_ids(root: Path, splits: Sequence[str] = SPLITS) -> set[int]:
    return {int(r["name_id"]) for r in read_rows(root, splits)}


def _clean(v) -> str:
    # the TSV has no quoting: tabs/newlines inside a field would break rows
    return str(v).replace("\t", " ").replace("\n", " ").replace("\r", " ")


def write_part(root: Path, split: str, rows: list[dict]) -> Path:
    """Write rows as the next part of a split, atomically (tmp file + rename)."""
    d = root / split
    d.mkdir(parents=True, exist_ok=True)
    existing = part_paths(root, split)
    n = int(existing[-1].name[5:10]) + 1 if existing else 0
    path = d / f"part-{n:05d}.tsv.gz"
    tmp = path.with_suffix(".tmp")
    buf = io.StringIO()
    w = csv.writer(buf, delimiter="\t", quoting=csv.QUOTE_NONE, escapechar=None, lineterminator="\n")
    w.writerow(COLUMNS)
    for r in rows:
        w.writerow([_clean(r[c]) for c in COLUMNS])
    # mtime=0: the same rows give byte-identical files
    with open(tmp, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0, filename="") as f:
        f.write(buf.getvalue().encode("utf-8"))
    os.replace(tmp, path)
    return path


# --- work ----------------------------------------------------------------------------------------------------

_WORKER: dict = {}


def _init_worker(profile_name: str, cpu_threads: int) -> None:
    from . import asr
    from .settings import Settings

    s = Settings.from_env(asr_cpu_threads=cpu_threads)
    try:
        _WORKER["profile"] = asr.load_profile(profile_name, s)
    except Exception as e:  # a failing pool initializer would be retried forever: report it from process()
        _WORKER["error"] = e
        return
    if _WORKER["profile"].fallback_reason:
        log.warning("synth worker: %s", _WORKER["profile"].fallback_reason)


def process(items: Sequence[Item], profile=None) -> list[dict]:
    """TTS then every recogniser on a batch of names: the rows for them."""
    from . import asr, tts

    if profile is None and "error" in _WORKER:
        raise _WORKER["error"]
    profile = profile or _WORKER["profile"]
    rows, audios, metas = [], [], []
    for it in items:
        unseen_ok = it.split != "train"
        r = tts.choose(it.key, it.name, it.countries, allow_unseen=unseen_ok)
        base = {
            "name_id": it.name_id, "name": it.name, "country": ",".join(it.countries), "split": it.split,
            "language": r.language, "voice": r.voice, "speed": r.speed, "pitch": r.pitch,
            "augmentation": r.augmentation,
        }  # fmt: skip
        t0 = time.perf_counter()
        try:
            audio = tts.render(r)
        except Exception as e:  # one unspeakable name must not stop a long run
            log.warning("tts failed for %r: %s", it.name, e)
            rows.append({**base, "asr": TTS_ERROR, "transcript": "", "asr_language": "", "seconds": 0, "audio_seconds": 0, "tts_seconds": 0})
            continue
        audios.append(audio)
        metas.append((base, round(time.perf_counter() - t0, 4)))
    if audios:
        per_rec = asr.transcribe_many(profile.transcribers, audios)
        for j, (base, tts_s) in enumerate(metas):
            for ts in per_rec:
                t = ts[j]
                rows.append({**base, "asr": t.recognizer, "transcript": t.text, "asr_language": t.language,
                             "seconds": t.seconds, "audio_seconds": t.audio_seconds, "tts_seconds": tts_s})  # fmt: skip
    return rows


def _chunks(items: Sequence[Item], size: int) -> Iterator[list[Item]]:
    for i in range(0, len(items), size):
        yield list(items[i : i + size])


def run(
    split: str = "all",
    limit: int | None = None,
    workers: int = 2,
    profile: str | None = None,
    part_size: int = 500,
    root: Path | None = None,
    gazetteer_path: str | None = None,
    s: Settings = default_settings,
    progress: bool = True,
) -> dict:
    """Generate (resuming) the synthetic data; ``limit`` caps the names per split in this plan. Returns counts."""
    from tqdm import tqdm

    from . import gazetteer

    root = Path(root or s.synthetic_dir)
    profile_name = (profile or s.asr_profile).strip()
    g = gazetteer.load(gazetteer_path) if gazetteer_path else gazetteer.load()
    items = plan(g.entries, split)
    if limit is not None:
        per: Counter = Counter()
        kept = []
        for it in items:
            if per[it.split] < limit:
                per[it.split] += 1
                kept.append(it)
        items = kept
    done = done_ids(root)
    todo = [it for it in items if it.name_id not in done]
    log.info("synth: %d names planned, %d already done, %d to do", len(items), len(items) - len(todo), len(todo))
    written: Counter = Counter()
    if not todo:
        return {"planned": len(items), "done_before": len(items), "written": {}}
    batch = 16
    pending: dict[str, list[dict]] = defaultdict(list)
    pending_names: Counter = Counter()
    t_start = time.time()
    # in a log file (nohup) a bar line every 30 s is plenty
    bar = tqdm(total=len(todo), unit="name", disable=not progress, smoothing=0.05, mininterval=1 if sys.stderr.isatty() else 30)

    def collect(rows: list[dict]) -> None:
        names_by_split: dict[str, set] = defaultdict(set)
        for r in rows:
            pending[r["split"]].append(r)
            names_by_split[r["split"]].add(r["name_id"])
        for sp, ids in names_by_split.items():
            pending_names[sp] += len(ids)
            bar.update(len(ids))
            if pending_names[sp] >= part_size:
                flush(sp)

    def flush(sp: str) -> None:
        if pending[sp]:
            path = write_part(root, sp, pending[sp])
            written[sp] += pending_names[sp]
            el = time.time() - t_start
            log.info("wrote %s (%d names; %.2f names/s this run)", path, pending_names[sp], sum(written.values()) / max(el, 1e-9))
            pending[sp], pending_names[sp] = [], 0

    # keep each batch inside one split so parts never mix splits
    chunks = [c for sp in SPLITS for c in _chunks([it for it in todo if it.split == sp], batch)]
    try:
        if workers <= 1:
            _init_worker(profile_name, s.asr_cpu_threads)
            for c in chunks:
                collect(process(c))
        else:
            ctx = mp.get_context("spawn")  # workers load their own models; nothing heavy is inherited
            with ctx.Pool(workers, initializer=_init_worker, initargs=(profile_name, 1)) as pool:
                for rows in pool.imap(process, chunks):
                    collect(rows)
    finally:
        for sp in list(pending):
            flush(sp)
        bar.close()
    el = time.time() - t_start
    return {
        "planned": len(items),
        "done_before": len(items) - len(todo),
        "written": dict(written),
        "seconds": round(el, 1),
        "names_per_second": round(sum(written.values()) / max(el, 1e-9), 3),
    }
