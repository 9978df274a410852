"""Evaluation harness (``python -m sle eval``): recall@k of every linking system and of peer methods.

Queries are utterances: a held-out street name spoken once and transcribed by every recogniser
(``data/synthetic/<split>``), or labelled recordings (``--labels``: the app's JSONL/CSV export, or any CSV/JSONL
with a target name and one or more transcripts). Targets are gazetteer entry ids; the corpus is always the whole
gazetteer (through the index for sle's systems, brute force for the peers).

- sle's systems come from :class:`sle.link.Linker` (``LinkResult.systems``), so the harness measures what serves;
- upper bounds: the target in either recogniser's list, in either system's list, in any list; the target in the
  reranker's pool (what a perfect reranker would put first);
- peers on the same queries: RapidFuzz brute force over all names (``fuzz.ratio``, Jaro-Winkler), Kölner Phonetik
  key + spelling re-rank, exact character 1-3-gram IDF scoring (scipy), each with its queries/s;
- the report: a markdown table (rows: systems; columns: recogniser x R@1/10/40) and a recall@k plot (PNG).
"""

from __future__ import annotations

import csv
import json
import logging
import random
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np
from tqdm.auto import tqdm

from .settings import Settings, settings as default_settings
from .text import normalize

log = logging.getLogger(__name__)

KS = (1, 10, 40)
DEPTH = 40  # ranks beyond this count as misses
NOTES_MARKER = "<!-- notes: kept when the report is regenerated -->"
BOTH = "both"  # the column of systems that use every recogniser's transcript at once
COMBINED_PREFIXES = ("dense-avg", "hybrid", "reranked", "sparse-sum", "phonetic-fused")


# --- queries -------------------------------------------------------------------------------------------------------


@dataclass
class Query:
    """One utterance: its target entry and what each recogniser heard."""

    target: int
    name: str
    transcripts: dict[str, str]  # recogniser -> text ("" when it heard nothing)
    country: str = ""
    languages: dict[str, str] = field(default_factory=dict)  # recogniser -> the language it decoded in


def synthetic_queries(split: str, gazetteer, limit: int | None = None, seed: int = 0, s: Settings | None = None,
                      first_part: int = 0) -> list[Query]:  # fmt: skip
    """Utterances of one split of the committed synthetic data (names missing from the gazetteer are skipped).

    With ``limit``, a seeded random sample of that many utterances (the parts are in hash order already);
    ``first_part`` skips the parts before it (e.g. those a dense model was trained on).
    """
    from . import synth

    s = s or default_settings
    by_id: dict[int, Query] = {}
    for row in synth.read_rows(Path(s.synthetic_dir), [split], first_part=first_part):
        if row.get("asr") in ("", synth.TTS_ERROR):
            continue
        e = gazetteer.find(row.get("name") or "")
        if e is None:
            continue
        q = by_id.setdefault(e.id, Query(e.id, e.name, {}, row.get("country", "")))
        q.transcripts[row["asr"]] = (row.get("transcript") or "").strip()
        if row.get("asr_language"):
            q.languages[row["asr"]] = row["asr_language"]
    queries = list(by_id.values())
    if limit and len(queries) > limit:
        queries = random.Random(seed).sample(queries, limit)
    return queries


def label_queries(path: str | Path, gazetteer) -> list[Query]:
    """Labelled utterances from a JSONL or CSV file.

    Accepted fields: the target as ``label_id``/``target_id`` (entry id) or ``label_name``/``name``/``target``
    (matched with ``normalize``); transcripts as a ``transcripts`` object, ``transcript:<recogniser>`` columns,
    or one ``transcript`` (recogniser ``asr``/``recognizer`` column, else "transcript"). Rows whose target is not
    in the gazetteer (labels "none" or typed names) are skipped with a count in the log.
    """
    path = Path(path)
    if path.suffix.lower() in (".jsonl", ".json", ".ndjson"):
        with open(path, encoding="utf-8") as f:
            rows = [json.loads(line) for line in f if line.strip()]
    else:
        with open(path, encoding="utf-8", newline="") as f:
            rows = list(csv.DictReader(f, delimiter="\t" if path.suffix.lower() == ".tsv" else ","))
    grouped: dict[tuple, Query] = {}
    skipped = 0
    for i, r in enumerate(rows):
        entry = None
        for key in ("label_id", "target_id"):
            if r.get(key) not in (None, ""):
                entry = gazetteer.get(int(r[key]))
                break
        if entry is None:
            for key in ("label_name", "name", "target"):
                if r.get(key):
                    entry = gazetteer.find(str(r[key]))
                    break
        if entry is None:
            skipped += 1
            continue
        if isinstance(r.get("transcripts"), dict):
            ts = {str(k): str(v or "") for k, v in r["transcripts"].items()}
        else:
            ts = {k.split(":", 1)[1]: str(v or "") for k, v in r.items() if k.startswith("transcript:")}
            if not ts and r.get("transcript") is not None:
                ts = {str(r.get("asr") or r.get("recognizer") or "transcript"): str(r["transcript"])}
        if not ts:
            skipped += 1
            continue
        # rows of one utterance split over recognisers (one transcript per row) share an utterance id
        uid = r.get("uid") or r.get("utterance") or r.get("audio") or f"row{i}"
        q = grouped.setdefault((uid, entry.id), Query(entry.id, entry.name, {}))
        q.transcripts.update(ts)
    if skipped:
        log.warning("%s: skipped %d rows without a gazetteer target or transcript", path, skipped)
    return list(grouped.values())


def recognisers_of(queries: Sequence[Query]) -> list[str]:
    seen: dict[str, int] = defaultdict(int)
    for q in queries:
        for r in q.transcripts:
            seen[r] += 1
    return sorted(seen, key=lambda r: (-seen[r], r))


# --- metrics -------------------------------------------------------------------------------------------------------


def recall(ranks: Sequence[int | None], ks: Sequence[int] = KS) -> dict[str, float]:
    """``{"r@1": ..., ...}`` from 1-based ranks (None: not found)."""
    r = np.array([np.inf if x is None else x for x in ranks], dtype=float)
    return {f"r@{k}": round(float(np.mean(r <= k)), 4) if len(r) else 0.0 for k in ks}


def curve(ranks: Sequence[int | None], depth: int = DEPTH) -> list[float]:
    r = np.array([np.inf if x is None else x for x in ranks], dtype=float)
    return [float(np.mean(r <= k)) if len(r) else 0.0 for k in range(1, depth + 1)]


def rank_in(ids: Sequence[int], target: int) -> int | None:
    for i, x in enumerate(ids, 1):
        if x == target:
            return i
    return None


def split_key(system: str) -> tuple[str, str]:
    """``"sparse@whisper:base"`` -> ``("sparse", "whisper:base")``; combined systems -> ``(system, "both")``."""
    if "@" in system:
        base, rec = system.split("@", 1)
        return base, rec
    return system, BOTH


@dataclass
class Run:
    """Ranks of every query's target per system key (``sparse@rec``, ``dense-avg``, ``peer:ratio@rec``, ...)."""

    ranks: dict[str, list[int | None]] = field(default_factory=lambda: defaultdict(list))
    qps: dict[str, float] = field(default_factory=dict)  # base system -> queries (transcripts) per second
    timings_ms: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    n: dict[str, int] = field(default_factory=dict)  # base system -> number of utterances measured

    def add_upper_bounds(self, recognisers: Sequence[str]) -> None:
        """Oracle rows from the per-query ranks already collected by the linker's systems."""
        upper: dict[str, list[int | None]] = {}
        n = len(next(iter(self.ranks.values()), []))

        def best(keys: list[str]) -> list[int | None] | None:
            keys = [k for k in keys if k in self.ranks and len(self.ranks[k]) == n]
            if not keys:
                return None
            out = []
            for i in range(n):
                found = [self.ranks[k][i] for k in keys if self.ranks[k][i] is not None]
                out.append(min(found) if found else None)
            return out

        for base in ("sparse", "dense"):
            b = best([f"{base}@{r}" for r in recognisers])
            if b is not None and len(recognisers) > 1:
                upper[f"upper: {base}, either recogniser"] = b
        for r in recognisers:
            b = best([f"sparse@{r}", f"dense@{r}"])
            if b is not None and f"dense@{r}" in self.ranks:
                upper[f"upper: sparse or dense@{r}"] = b
        linker_keys = [k for k in self.ranks if not k.startswith(("peer:", "upper:")) and k != "reranked"]
        b = best(linker_keys)
        if b is not None:
            upper["upper: any list's top-k"] = b
        self.ranks.update(upper)


# --- sle's systems ---------------------------------------------------------------------------------------------------


def run_linker(queries: Sequence[Query], linker=None, k: int = DEPTH, run: Run | None = None, progress: bool = True, s: Settings | None = None) -> Run:
    """Every system of the :class:`~sle.link.Linker` on every utterance; ranks and per-stage timings."""
    from . import link

    s = s or default_settings
    linker = linker or link.Linker(s)
    run = run or Run()
    keys: list[str] = []
    per_query_ms: list[float] = []
    pool_ranks: list[int | None] = []
    for qi, q in enumerate(tqdm(queries, desc="link", unit="utt", disable=not progress)):
        t0 = time.perf_counter()
        res = linker.link_texts(q.transcripts, k=k, languages=q.languages)
        per_query_ms.append((time.perf_counter() - t0) * 1e3)
        for key, v in res.timings_ms.items():
            run.timings_ms[key].append(v)
        for key, cands in res.systems.items():
            if key not in run.ranks:
                run.ranks[key] = [None] * qi  # a system that appeared late (should not happen)
                keys.append(key)
            run.ranks[key].append(rank_in([c.id for c in cands], q.target))
        for key in list(run.ranks):
            if not key.startswith(("peer:", "upper:")) and len(run.ranks[key]) == qi:
                run.ranks[key].append(None)  # the system had no transcript for this utterance
        if linker.reranker is not None:  # the reranker's ceiling: is the target in its pool at all?
            from .rerank import family, prefilter

            deep = linker.link_texts(q.transcripts, rerank=False, pool=True, languages=q.languages)
            lists = {key: v for key, v in deep.systems.items() if family(key) and v}
            if linker.s.rerank_pool:
                lists = prefilter(q.transcripts, lists, linker.s.rerank_pool, linker.s.rerank_depth)
            inside = any(c.id == q.target for v in lists.values() for c in v)
            pool_ranks.append(1 if inside else None)
    run.timings_ms["retrieval (all systems)"] = per_query_ms
    if pool_ranks:
        run.ranks["upper: target in the reranker's pool"] = pool_ranks
    # utterances/s of each system's own stages (the linker times stages, and systems share some of them)
    stages = {"sparse": ["sparse"], "phonetic": ["phonetic"], "dense": ["embed", "dense"], "dense-avg": ["embed", "dense"], "hybrid": ["embed", "hybrid"],
              "reranked": ["retrieval (all systems)"]}  # fmt: skip
    for base, parts in stages.items():
        ms = sum(float(np.mean(run.timings_ms[p])) for p in parts if run.timings_ms.get(p))
        if ms > 0 and any(split_key(key)[0] == base for key in run.ranks):
            run.qps[base] = round(1e3 / ms, 1)
    for key in run.ranks:
        run.n[split_key(key)[0]] = len(queries)
    return run


def sweep_configs(has_dense: bool, n_recs: int, has_phonetic: bool = False) -> list[dict]:
    """Hybrid fusion settings to compare: RRF k, DBSF, part weights, dense-averaged vs per-recogniser dense parts,
    with and without the phonetic parts."""
    out = []
    parts = ["avg+sparse", "each+sparse"] if has_dense else ["sparse"]
    if has_phonetic:
        parts += [p + "+phonetic" for p in parts] + (["avg+phonetic"] if has_dense else ["phonetic"])
    for pk in parts:
        for k in (1, 2, 5, 10, 60):
            out.append({"parts": pk, "fusion": "rrf", "rrf_k": k, "weights": None})
        out.append({"parts": pk, "fusion": "dbsf", "rrf_k": 2, "weights": None})
    if has_dense:
        for wd in (0.5, 2.0, 3.0):
            out.append({"parts": "avg+sparse", "fusion": "rrf", "rrf_k": 2, "weights": [wd] + [1.0] * n_recs})
            if has_phonetic:  # dense, then one sparse and one phonetic part per recogniser
                out.append({"parts": "avg+sparse+phonetic", "fusion": "rrf", "rrf_k": 2, "weights": [wd] + [1.0] * (2 * n_recs)})
        if has_phonetic:
            for wp in (0.5, 2.0):
                out.append({"parts": "avg+sparse+phonetic", "fusion": "rrf", "rrf_k": 2, "weights": [1.0] + [1.0] * n_recs + [wp] * n_recs})
    return out


def fusion_sweep(queries: Sequence[Query], linker, configs: Sequence[dict] | None = None, k: int = DEPTH, progress: bool = True) -> list[dict]:
    """Recall@k of hybrid fusion variants (Qdrant prefetch + fusion) on the same utterances."""
    from .link import average

    recs = recognisers_of(queries)
    configs = list(configs or sweep_configs(linker.has_dense, len(recs), linker.index.has_phonetic))
    ranks: list[list[int | None]] = [[] for _ in configs]
    ms = [0.0] * len(configs)
    for q in tqdm(queries, desc="fusion sweep", unit="utt", disable=not progress):
        texts = [q.transcripts[r] for r in recs if normalize(q.transcripts.get(r, ""))]
        if not texts:
            for rk in ranks:
                rk.append(None)
            continue
        used = [r for r in recs if normalize(q.transcripts.get(r, ""))]
        svecs = [linker.index.sparse_query(t) for t in texts]
        pvecs = [linker.index.phonetic_query(q.transcripts[r], q.languages.get(r)) for r in used] if linker.index.has_phonetic else []
        dvecs = linker.embed(texts) if linker.has_dense else None
        for ci, c in enumerate(configs):
            names = c["parts"].split("+")
            parts = []
            if "avg" in names:
                parts.append(("dense", average(dvecs)))
            elif "each" in names:
                parts += [("dense", v) for v in dvecs]
            if "sparse" in names:
                parts += [("sparse", v) for v in svecs]
            if "phonetic" in names:
                parts += [("phonetic", v) for v in pvecs]
            w = c["weights"] if c["weights"] is None or len(c["weights"]) == len(parts) else None
            t0 = time.perf_counter()
            hits = linker.index.hybrid(parts, k=k, fusion=c["fusion"], rrf_k=c["rrf_k"], depth=max(k, 40), weights=w)
            ms[ci] += time.perf_counter() - t0
            ranks[ci].append(rank_in([h.id for h in hits], q.target))
    out = []
    for c, rk, t in zip(configs, ranks, ms):
        out.append({**c, **recall(rk), "ms": round(t / max(len(queries), 1) * 1e3, 2)})
    return out


def sweep_table(rows: Sequence[dict]) -> str:
    lines = ["| parts | fusion | k | weights | R@1 | R@10 | R@40 | ms/utt |", "|---|---|---:|---|---:|---:|---:|---:|"]
    for r in rows:
        w = ",".join(f"{x:g}" for x in r["weights"]) if r["weights"] else "equal"
        kk = r["rrf_k"] if r["fusion"] == "rrf" else ""
        lines.append(f"| {r['parts']} | {r['fusion']} | {kk} | {w} | {r['r@1']:.3f} | {r['r@10']:.3f} | {r['r@40']:.3f} | {r['ms']} |")
    return "\n".join(lines)


# --- peers -----------------------------------------------------------------------------------------------------------


class Peer:
    """A brute-force method over every gazetteer name: ``search(text, k) -> [entry id, ...]``."""

    name = "peer"

    def search(self, text: str, k: int) -> list[int]:  # pragma: no cover - interface
        raise NotImplementedError


class RapidFuzzPeer(Peer):
    """``rapidfuzz.process.extract`` over all normalised names, one worker (as a library user would)."""

    def __init__(self, gazetteer, scorer: str = "ratio"):
        from rapidfuzz import fuzz
        from rapidfuzz.distance import JaroWinkler

        self.name = f"rapidfuzz {scorer}"
        self.scorer = {"ratio": fuzz.ratio, "jaro-winkler": JaroWinkler.normalized_similarity}[scorer]
        self.keys = [e.key for e in gazetteer.entries]
        self.ids = [e.id for e in gazetteer.entries]

    def search(self, text: str, k: int) -> list[int]:
        from rapidfuzz import process

        res = process.extract(normalize(text), self.keys, scorer=self.scorer, processor=None, limit=k)
        return [self.ids[i] for _, _, i in res]


def cologne_key(text: str) -> str:
    """Kölner Phonetik of a whole name: the codes of its words, concatenated (word breaks are not heard)."""
    import cologne_phonetics

    t = normalize(text)
    return "".join(code for _, code in cologne_phonetics.encode(t)) if t else ""


class ColognePeer(Peer):
    """Kölner Phonetik: names whose key is nearest the transcript's key (edit similarity of keys), ties by spelling."""

    name = "kölner phonetik + spelling"

    def __init__(self, gazetteer, key_pool: int = 200):
        keys = [cologne_key(e.key) for e in gazetteer.entries]
        by_key: dict[str, list[int]] = defaultdict(list)
        for i, kk in enumerate(keys):
            by_key[kk].append(i)
        self.ukeys = list(by_key)
        self.members = [by_key[kk] for kk in self.ukeys]
        self.names = [e.key for e in gazetteer.entries]
        self.ids = [e.id for e in gazetteer.entries]
        self.key_pool = key_pool

    def search(self, text: str, k: int) -> list[int]:
        from rapidfuzz import fuzz, process

        qk, qt = cologne_key(text), normalize(text)
        if not qk:
            return []
        best = process.extract(qk, self.ukeys, scorer=fuzz.ratio, processor=None, limit=self.key_pool)
        scored = []
        for _, ksim, ki in best:
            for row in self.members[ki]:
                scored.append((ksim, fuzz.ratio(qt, self.names[row]), row))
            if len(scored) >= 4 * k:
                break
        scored.sort(key=lambda x: (-x[0], -x[1]))
        return [self.ids[r] for _, _, r in scored[:k]]


class ExactIdfPeer(Peer):
    """Exact character n-gram IDF scoring of every name with scipy (sle.bench.ExactScorer), query 1-3-grams."""

    def __init__(self, gazetteer, orders: tuple[int, ...] = (1, 2, 3)):
        from .bench import ExactScorer

        self.name = f"exact char {min(orders)}-{max(orders)}-gram IDF"
        self.scorer = ExactScorer(gazetteer)
        self.orders = orders

    def search(self, text: str, k: int) -> list[int]:
        from . import sparse

        return self.scorer.top(sparse.encode_query(text, self.orders), k)


PEERS: dict[str, Callable] = {
    "ratio": lambda g: RapidFuzzPeer(g, "ratio"),
    "jaro-winkler": lambda g: RapidFuzzPeer(g, "jaro-winkler"),
    "cologne": ColognePeer,
    "idf": ExactIdfPeer,
}


def run_peers(
    queries: Sequence[Query], gazetteer, names: Iterable[str] = tuple(PEERS), k: int = DEPTH, run: Run | None = None, progress: bool = True
) -> Run:
    """Each peer on every transcript of ``queries``; ranks under ``peer:<name>@<recogniser>``."""
    run = run or Run()
    recs = recognisers_of(queries)
    for pname in names:
        t0 = time.perf_counter()
        peer = PEERS[pname](gazetteer)
        log.info("peer %s built in %.1f s", peer.name, time.perf_counter() - t0)
        n_texts, t_search = 0, 0.0
        for r in recs:
            ranks = []
            for q in tqdm(queries, desc=f"{pname}@{r}", unit="q", disable=not progress):
                text = q.transcripts.get(r, "")
                if not normalize(text):
                    ranks.append(None)
                    continue
                t0 = time.perf_counter()
                ids = peer.search(text, k)
                t_search += time.perf_counter() - t0
                n_texts += 1
                ranks.append(rank_in(ids, q.target))
            run.ranks[f"peer:{peer.name}@{r}"] = ranks
        run.qps[f"peer:{peer.name}"] = round(n_texts / t_search, 2) if t_search else float("nan")
        run.n[f"peer:{peer.name}"] = len(queries)
        del peer
    return run


def latency(queries: Sequence[Query], gazetteer, n: int = 20, linker=None, progress: bool = True, s: Settings | None = None) -> dict:
    """Audio to results, as ``python -m sle link`` runs it: ``n`` validation names spoken by the synthetic-data TTS
    (same voices and augmentation), each linked from its audio alone (both recognisers, every system).
    Returns p50/p95 per stage in ms, and the recall of each system on these clips (small n: a sanity check)."""
    from . import link, tts

    s = s or default_settings
    linker = linker or link.Linker(s)
    clips = []
    for q in queries[: n * 2]:
        e = gazetteer.get(q.target)
        try:
            audio, _ = tts.render(tts.choose(e.key, e.name, e.countries))
        except Exception as err:  # a voice the TTS cannot speak: skip the name
            log.warning("tts failed for %s: %s", e.name, err)
            continue
        clips.append((e.id, audio))
        if len(clips) == n:
            break
    linker.link_audio(clips[0][1], k=10)  # loads the recognisers (not timed)
    stages: dict[str, list[float]] = defaultdict(list)
    ranks: dict[str, list[int | None]] = defaultdict(list)
    for target, audio in tqdm(clips, desc="latency", unit="clip", disable=not progress):
        t0 = time.perf_counter()
        res = linker.link_audio(audio, k=10)
        stages["audio to results"].append((time.perf_counter() - t0) * 1e3)
        for key, v in res.timings_ms.items():
            stages[key].append(v)
        stages["retrieval (all systems)"].append(sum(v for key, v in res.timings_ms.items() if key not in ("load_audio", "asr", "redecode", "total")))
        for key, cands in res.systems.items():
            ranks[key].append(rank_in([c.id for c in cands], target))
    return {
        "clips": len(clips),
        "ms": {k: {"p50": round(float(np.percentile(v, 50)), 1), "p95": round(float(np.percentile(v, 95)), 1)} for k, v in stages.items()},
        "recall": {k: recall(v, (1, 10)) for k, v in ranks.items()},
    }


# --- report ----------------------------------------------------------------------------------------------------------


def table(run: Run, recognisers: Sequence[str], ks: Sequence[int] = KS) -> str:
    """Markdown: one row per system, columns recogniser x R@k (combined systems in the "both" column)."""
    rows: dict[str, dict[str, dict]] = defaultdict(dict)
    for key, ranks in run.ranks.items():
        base, rec = split_key(key)
        rows[base][rec] = recall(ranks, ks)
    cols = list(recognisers) + [BOTH]
    cols = [c for c in cols if any(c in r for r in rows.values())]
    head = "| system | n | " + " | ".join(f"{c} R@{k}" for c in cols for k in ks) + " | q/s |"
    rule = "|---|---:|" + "---:|" * (len(cols) * len(ks)) + "---:|"

    def order(base: str) -> tuple:
        group = 2 if base.startswith("upper:") else 1 if base.startswith("peer:") else 0
        return (group, base)

    lines = [head, rule]
    for base in sorted(rows, key=order):
        cells = [f"{rows[base][c][f'r@{k}']:.3f}" if c in rows[base] else "" for c in cols for k in ks]
        qps = run.qps.get(base, "")
        n = run.n.get(base, len(next(iter(run.ranks.values()))))
        label = base[5:] if base.startswith("peer:") else base
        lines.append(f"| {label} | {n} | " + " | ".join(cells) + f" | {qps} |")
    return "\n".join(lines)


def plot(run: Run, path: str | Path, title: str = "", depth: int = DEPTH) -> Path:
    """Recall@k for k = 1..depth, one line per system and recogniser (upper bounds dotted, peers thin)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    fig, ax = plt.subplots(figsize=(9, 6))
    ks = np.arange(1, depth + 1)
    for key in sorted(run.ranks):
        base, rec = split_key(key)
        if base.startswith("upper:") and "pool" not in base:
            continue
        style = ":" if base.startswith("upper:") else "-"
        lw = 1.0 if base.startswith("peer:") else 2.0
        ax.plot(ks, curve(run.ranks[key], depth), style, lw=lw, label=key.replace("peer:", ""))
    ax.set_xscale("log")
    ax.set_xticks([1, 2, 5, 10, 20, 40])
    ax.get_xaxis().set_major_formatter(matplotlib.ticker.ScalarFormatter())
    ax.set_xlabel("k")
    ax.set_ylabel("recall@k")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.set_title(title or "recall@k against the whole gazetteer")
    ax.legend(fontsize=7, loc="lower right", ncol=2)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def timing_summary(run: Run) -> dict[str, dict[str, float]]:
    out = {}
    for key, v in run.timings_ms.items():
        if v:
            out[key] = {"p50_ms": round(float(np.percentile(v, 50)), 2), "p95_ms": round(float(np.percentile(v, 95)), 2), "mean_ms": round(float(np.mean(v)), 2)}
    return out


# --- the command -----------------------------------------------------------------------------------------------------


def evaluate(
    split: str = "validation",
    limit: int | None = None,
    systems: Sequence[str] | None = None,
    peers: Sequence[str] = tuple(PEERS),
    peer_limit: int = 300,
    labels: str | Path | None = None,
    seed: int = 0,
    progress: bool = True,
    s: Settings | None = None,
    gazetteer=None,
    linker=None,
    sweep: bool = False,
    latency_clips: int = 0,
) -> dict:
    """Run the harness; returns ``{"queries", "recognisers", "table", "run", "timings", ...}``.

    ``systems``: keep only linker systems whose key starts with one of these (default: all). Peers run on the
    first ``peer_limit`` utterances of the (shuffled) queries; their table is separate so rows compare like with like.
    """
    from . import gazetteer as gz

    s = s or default_settings
    g = gazetteer if gazetteer is not None else gz.load(settings=s)
    if labels:
        queries = label_queries(labels, g)
        source = f"labels {Path(labels).name}"
    else:
        queries = synthetic_queries(split, g, limit=limit, seed=seed, s=s)
        source = f"synthetic {split}"
    if not queries:
        raise ValueError(f"no queries in {source} (is data/synthetic/{split} there?)")
    random.Random(seed).shuffle(queries)
    recs = recognisers_of(queries)
    from . import link

    linker = linker or link.Linker(s)
    run = run_linker(queries, linker=linker, progress=progress, s=s)
    if systems:
        for key in [k for k in run.ranks if not any(k.startswith(p) for p in systems)]:
            del run.ranks[key]
    run.add_upper_bounds(recs)
    out = {"source": source, "queries": len(queries), "recognisers": recs, "run": run, "table": table(run, recs), "timings": timing_summary(run)}
    if latency_clips:
        out["latency"] = latency(queries, g, latency_clips, linker=linker, progress=progress, s=s)
    if sweep:
        out["sweep"] = fusion_sweep(queries, linker, progress=progress)
        out["sweep_table"] = sweep_table(out["sweep"])
    if peers:
        sub = queries[:peer_limit]
        prun = run_peers(sub, g, peers, progress=progress)
        # the linker's rows on the same subsample, for a like-for-like comparison
        idx = {id(q): i for i, q in enumerate(queries)}
        for key in [k for k in run.ranks if not k.startswith("upper:")]:
            prun.ranks[key] = [run.ranks[key][idx[id(q)]] for q in sub]
            prun.n[split_key(key)[0]] = len(sub)
        prun.qps.update(run.qps)
        out["peers_queries"] = len(sub)
        out["peer_run"] = prun
        out["peer_table"] = table(prun, recs)
    return out


def report(result: dict, path: str | Path, command: str = "", plot_path: str | Path | None = None) -> Path:
    """Write the markdown report (and the plot next to it)."""
    path = Path(path)
    plot_path = Path(plot_path) if plot_path else path.with_suffix(".png")
    plot(result.get("peer_run") or result["run"], plot_path, title=f"recall@k, {result['source']}")
    t = result["timings"]
    lines = [
        "# Evaluation",
        "",
        f"Generated by `{command or 'python -m sle eval'}` on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}.",
        f"Queries: {result['queries']} utterances ({result['source']}), each transcribed by {', '.join(result['recognisers'])};",
        "targets: their gazetteer entries; corpus: the whole gazetteer (sle through the index, peers brute force).",
        "Columns: recall@k of each recogniser's transcript alone; `both`: systems that use every transcript at once.",
        "Upper bounds: the target in either list's top-k (a perfect chooser between those lists); `target in the reranker's",
        "pool`: the share a perfect reranker would put first (the same figure in every R@k column).",
        "",
        "## sle's systems",
        "",
        result["table"],
        "",
    ]
    if "peer_table" in result:
        lines += [
            f"## Peers, side by side (first {result['peers_queries']} utterances of the same shuffled queries)",
            "",
            "q/s: transcripts per second, one process, one thread, on this shared 2-core machine; sle's row is",
            "utterances per second through every system together.",
            "",
            result["peer_table"],
            "",
            f"![recall@k]({plot_path.name})",
            "",
        ]
    if "sweep_table" in result:
        lines += ["## Hybrid fusion sweep (same utterances; Qdrant prefetch depth 40, then fusion)", "", result["sweep_table"], ""]
    lines += ["## Speed (ms per utterance, all systems of the linker)", "", "| stage | p50 | p95 | mean |", "|---|---:|---:|---:|"]
    lines += [f"| {k} | {v['p50_ms']} | {v['p95_ms']} | {v['mean_ms']} |" for k, v in t.items()]
    lines.append("")
    if "latency" in result:
        lat = result["latency"]
        lines += [f"## Audio to results ({lat['clips']} TTS clips of validation names, `Linker.link_audio`, both recognisers)", "",
                  "| stage | p50 ms | p95 ms |", "|---|---:|---:|"]  # fmt: skip
        lines += [f"| {k} | {v['p50']} | {v['p95']} |" for k, v in lat["ms"].items()]
        lines += ["", f"Recall on these {lat['clips']} clips (a sanity check; the tables above are the measurement):", "",
                  "| system | R@1 | R@10 |", "|---|---:|---:|"]  # fmt: skip
        lines += [f"| {k} | {v['r@1']} | {v['r@10']} |" for k, v in sorted(lat["recall"].items())]
        lines.append("")
    path.parent.mkdir(parents=True, exist_ok=True)
    notes = ""
    if path.exists():  # hand-written notes below the marker survive regeneration
        old = path.read_text(encoding="utf-8")
        if NOTES_MARKER in old:
            notes = old[old.index(NOTES_MARKER) :]
    path.write_text("\n".join(lines) + ("\n" + notes if notes else ""), encoding="utf-8")
    return path


def to_json(result: dict) -> dict:
    """The figures of :func:`evaluate` as plain JSON (recall per system key, queries/s, timings)."""
    out = {k: v for k, v in result.items() if k in ("source", "queries", "recognisers", "timings", "peers_queries", "sweep", "latency")}
    out["recall"] = {k: recall(v) for k, v in result["run"].ranks.items()}
    out["qps"] = dict(result["run"].qps)
    if "peer_run" in result:
        out["peer_recall"] = {k: recall(v) for k, v in result["peer_run"].ranks.items()}
        out["qps"].update(result["peer_run"].qps)
    return out


# --- choosing recognisers --------------------------------------------------------------------------------------------


def compare_recognisers(
    specs: Sequence[str],
    n: int = 300,
    hint: bool = False,
    k: int = 10,
    gazetteer=None,
    progress: bool = True,
    s: Settings | None = None,
) -> dict:
    """Which recognisers make a good pair: recall@k of each alone and of every pair ("either"), on ``n`` validation names.

    Each name is spoken by TTS exactly as in the synthetic data (``sle.tts.choose``); every recogniser hears the same
    clip (Whisper recognisers share one encoder pass). Recall is the gazetteer-wide RapidFuzz ``fuzz.ratio`` top-k, so
    the choice does not depend on any trained model. With ``hint``, recognisers get the name's language as a hint.
    """
    from itertools import combinations

    from rapidfuzz import fuzz, process

    from . import asr, synth, tts
    from . import gazetteer as gz

    s = s or default_settings
    g = gazetteer if gazetteer is not None else gz.load(settings=s)
    items = synth.plan(g.entries, "validation")[:n]
    transcribers = [asr.get(spec, s) for spec in specs]
    keys = [e.key for e in g.entries]
    texts: dict[str, list[str]] = {spec: [] for spec in specs}
    seconds: dict[str, float] = defaultdict(float)
    batch = max(1, s.asr_batch_size)
    for b in tqdm(range(0, len(items), batch), disable=not progress, desc="transcribe", unit="batch"):
        chunk = items[b : b + batch]
        renditions = [tts.choose(it.key, it.name, it.countries) for it in chunk]
        audios = [tts.render(r)[0] for r in renditions]
        hints = [r.language for r in renditions] if hint else None
        for spec, ts in zip(specs, asr.transcribe_many(transcribers, audios, hints)):
            texts[spec] += [t.text for t in ts]
            seconds[spec] += sum(t.seconds for t in ts)
    hits: dict[str, np.ndarray] = {}
    exact: dict[str, float] = {}
    for spec in specs:
        queries = [normalize(t) for t in texts[spec]]
        found = []
        for it, q in zip(items, queries):
            top = process.extract(q, keys, scorer=fuzz.ratio, processor=None, limit=k) if q else []
            found.append(any(keys[i] == it.key for _, _, i in top))
        hits[spec] = np.array(found, dtype=bool)
        exact[spec] = float(np.mean([q == it.key for it, q in zip(items, queries)])) if items else 0.0
    rows = [{"recognisers": [spec], f"recall@{k}": float(hits[spec].mean()), "exact": exact[spec],
             "seconds_per_clip": seconds[spec] / max(len(items), 1)} for spec in specs]  # fmt: skip
    for a, b in combinations(specs, 2):
        rows.append({"recognisers": [a, b], f"recall@{k}": float((hits[a] | hits[b]).mean())})
    examples = [[it.name] + [texts[spec][i] for spec in specs] for i, it in enumerate(items[:20])]
    return {"n": len(items), "hint": hint, "k": k, "rows": rows, "examples": examples}


def recogniser_table(result: dict) -> str:
    """Markdown table of :func:`compare_recognisers`: each recogniser alone, then each pair."""
    k = result["k"]
    lines = [f"| recognisers | recall@{k} | exact match | s/clip |", "|---|---:|---:|---:|"]
    for r in result["rows"]:
        sec = f"{r['seconds_per_clip']:.3f}" if "seconds_per_clip" in r else ""
        ex = f"{r['exact']:.3f}" if "exact" in r else ""
        lines.append(f"| {' + '.join(f'`{x}`' for x in r['recognisers'])} | {r[f'recall@{k}']:.3f} | {ex} | {sec} |")
    return "\n".join(lines)
