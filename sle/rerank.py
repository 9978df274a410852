"""The ``reranked`` system: a learned scorer over the union of every system's top candidates.

Each candidate of an utterance gets features that do not depend on which recogniser said what (so one model
serves any recogniser pair): its best rank, score and number of lists in each retrieval family (sparse, phonetic,
dense per recogniser, dense-averaged, hybrid), spelling similarities to the transcripts (RapidFuzz: ratio, Jaro-Winkler,
token sort, prefix/suffix, with and without spaces, max and mean over transcripts), Kölner Phonetik agreement,
length difference and the number of countries that have the name. A gradient-boosted tree model
(scikit-learn's ``HistGradientBoostingClassifier``, trained on the candidate lists of TRAINING utterances; see
:func:`train`) gives each candidate a probability of being the target; candidates are sorted by it.

The trees are stored as plain arrays (``model.npz``, no pickle) with ``meta.json``, and evaluated with numpy, so
serving needs neither scikit-learn nor a matching version of it.
"""

from __future__ import annotations

import json
import logging
import math
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from .phonetic import cologne
from .settings import Settings, settings as default_settings
from .text import normalize

log = logging.getLogger(__name__)

FAMILIES = ("sparse", "phonetic", "dense", "dense-avg", "hybrid")
STRING_FEATURES = ("ratio", "jaro_winkler", "token_sort", "ratio_nospace", "prefix", "suffix", "cologne", "len_diff")
FORMAT = "sle-reranker-hgb-v1"


def feature_names() -> list[str]:
    names = []
    for fam in FAMILIES:
        names += [f"{fam}_inv_rank", f"{fam}_score", f"{fam}_score_rel", f"{fam}_lists"]
    for f in STRING_FEATURES:
        names += [f"{f}_max", f"{f}_mean"]
    names += ["lists_share", "n_countries", "name_len", "n_words_diff", "transcripts_agree", "n_transcripts"]
    return names


FEATURES = feature_names()


def family(system: str) -> str | None:
    base = system.split("@", 1)[0]
    return base if base in FAMILIES else None


@dataclass
class Pool:
    """An utterance's candidates (union of the systems' lists) and their feature matrix."""

    ids: list[int]
    names: list[str]
    countries: list[tuple[str, ...]]
    X: np.ndarray


def prefilter(transcripts: dict[str, str], lists: dict, max_pool: int, keep_top: int = 40) -> dict:
    """Cut a large union of lists to at most ~``max_pool`` + the lists' top ``keep_top``: candidates are kept when
    they are in some list's top ``keep_top`` or among the ``max_pool`` best by RapidFuzz ratio to a transcript
    (spelling similarity finds what a deep sparse list holds far down, at ~1 us a comparison)."""
    from rapidfuzz import fuzz, process

    union: dict[int, str] = {}
    for v in lists.values():
        for c in v:
            union.setdefault(c.id, c.name)
    if len(union) <= max_pool:
        return lists
    texts = [t for t in (normalize(x) for x in transcripts.values()) if t]
    keep = {c.id for v in lists.values() for c in v[:keep_top]}
    if texts:
        ids = list(union)
        sim = process.cdist(texts, [normalize(union[i]) for i in ids], scorer=fuzz.ratio, dtype=np.float32).max(axis=0)
        keep.update(ids[j] for j in np.argsort(-sim, kind="stable")[:max_pool])
    return {k: [c for c in v if c.id in keep] for k, v in lists.items()}


def pool(transcripts: dict[str, str], systems: dict, depth: int | None = None, max_pool: int | None = None) -> Pool:
    """Candidates of every system (its whole list, or its top ``depth``) with their features. ``systems``: key ->
    list of objects with ``id``, ``name``, ``countries``, ``score`` in rank order (``Candidate`` or ``Hit``).
    With ``max_pool``, a large union is cut first (:func:`prefilter`)."""
    from rapidfuzz import fuzz, process
    from rapidfuzz.distance import JaroWinkler, Postfix, Prefix

    ids: list[int] = []
    row: dict[int, int] = {}
    names, countries = [], []
    lists = {k: v[:depth] if depth else v for k, v in systems.items() if family(k) and v}
    if max_pool:
        lists = prefilter(transcripts, lists, max_pool, depth or 40)
    for cands in lists.values():
        for c in cands:
            if c.id not in row:
                row[c.id] = len(ids)
                ids.append(c.id)
                names.append(c.name)
                countries.append(tuple(c.countries))
    n = len(ids)
    X = np.full((n, len(FEATURES)), np.nan, dtype=np.float32)
    if n == 0:
        return Pool(ids, names, countries, X)
    col = {f: i for i, f in enumerate(FEATURES)}

    # retrieval features per family: best (max) over the family's lists
    for fam in FAMILIES:
        fam_lists = [v for k, v in lists.items() if family(k) == fam]
        if not fam_lists:
            continue
        inv = np.zeros(n, np.float32)  # absent from every list of the family: 0 (NaN only when the family is absent)
        score = np.full(n, -np.inf, np.float32)
        rel = np.zeros(n, np.float32)
        count = np.zeros(n, np.float32)
        for cands in fam_lists:
            top = cands[0].score if cands[0].score else 1.0
            for r, c in enumerate(cands, 1):
                i = row[c.id]
                inv[i] = max(inv[i], 1.0 / r)
                score[i] = max(score[i], c.score)
                rel[i] = max(rel[i], c.score / top if top else 0.0)
                count[i] += 1
        X[:, col[f"{fam}_inv_rank"]] = inv
        low = min((c.score for v in fam_lists for c in v), default=0.0)
        X[:, col[f"{fam}_score"]] = np.where(np.isfinite(score), score, min(low, 0.0))  # absent: the family's floor
        X[:, col[f"{fam}_score_rel"]] = rel
        X[:, col[f"{fam}_lists"]] = count / len(fam_lists)
    in_lists = np.zeros(n, np.float32)
    for cands in lists.values():
        in_lists[[row[c.id] for c in cands]] += 1
    X[:, col["lists_share"]] = in_lists / max(len(lists), 1)

    # spelling features against each transcript
    texts = [t for t in (normalize(x) for x in transcripts.values()) if t]
    keys = [normalize(x) for x in names]
    if texts:
        nospace_t = [t.replace(" ", "") for t in texts]
        nospace_k = [k.replace(" ", "") for k in keys]
        sims = {
            "ratio": process.cdist(texts, keys, scorer=fuzz.ratio, dtype=np.float32) / 100,
            "jaro_winkler": process.cdist(texts, keys, scorer=JaroWinkler.normalized_similarity, dtype=np.float32),
            "token_sort": process.cdist(texts, keys, scorer=fuzz.token_sort_ratio, dtype=np.float32) / 100,
            "ratio_nospace": process.cdist(nospace_t, nospace_k, scorer=fuzz.ratio, dtype=np.float32) / 100,
            "prefix": process.cdist(nospace_t, nospace_k, scorer=Prefix.normalized_similarity, dtype=np.float32),
            "suffix": process.cdist(nospace_t, nospace_k, scorer=Postfix.normalized_similarity, dtype=np.float32),
            "cologne": process.cdist([cologne(t) for t in texts], [cologne(k) for k in keys], scorer=fuzz.ratio, dtype=np.float32) / 100,
        }
        lt = np.array([len(t) for t in nospace_t], np.float32)[:, None]
        lk = np.array([len(k) for k in nospace_k], np.float32)[None, :]
        sims["len_diff"] = np.abs(lt - lk) / np.maximum(lk, 1)
        for f, m in sims.items():
            X[:, col[f"{f}_max"]] = m.max(axis=0) if f != "len_diff" else m.min(axis=0)
            X[:, col[f"{f}_mean"]] = m.mean(axis=0)
        wt = np.array([len(t.split()) for t in texts], np.float32)[:, None]
        wk = np.array([len(k.split()) for k in keys], np.float32)[None, :]
        X[:, col["n_words_diff"]] = np.abs(wt - wk).min(axis=0)
        if len(texts) > 1:
            X[:, col["transcripts_agree"]] = float(np.mean([fuzz.ratio(a, b) / 100 for i, a in enumerate(texts) for b in texts[i + 1 :]]))
    X[:, col["n_transcripts"]] = len(texts)
    X[:, col["n_countries"]] = [len(c) for c in countries]
    X[:, col["name_len"]] = [len(k) for k in keys]
    return Pool(ids, names, countries, X)


# --- the model ------------------------------------------------------------------------------------------------------


class TreeModel:
    """A binary HistGradientBoostingClassifier as arrays: ``predict(X)`` returns log-odds."""

    FIELDS = ("value", "feature_idx", "num_threshold", "missing_go_to_left", "left", "right", "is_leaf")

    def __init__(self, trees: list[dict[str, np.ndarray]], baseline: float, features: list[str]):
        self.trees, self.baseline, self.features = trees, float(baseline), list(features)
        # all trees as one node table, so prediction walks every tree of every row at once
        offsets = np.cumsum([0] + [len(t["value"]) for t in trees])[:-1]
        cat = {f: np.concatenate([t[f] for t in trees]) if trees else np.zeros(0) for f in self.FIELDS}
        self._roots = offsets.astype(np.int64)
        self._feature = cat["feature_idx"].astype(np.int64)
        self._threshold = cat["num_threshold"].astype(np.float64)
        self._missing_left = cat["missing_go_to_left"].astype(bool)
        self._leaf = cat["is_leaf"].astype(bool)
        self._value = cat["value"].astype(np.float64)
        shift = np.repeat(offsets, [len(t["value"]) for t in trees]).astype(np.int64)
        self._left = np.where(self._leaf, 0, cat["left"].astype(np.int64) + shift)
        self._right = np.where(self._leaf, 0, cat["right"].astype(np.int64) + shift)

    @classmethod
    def from_sklearn(cls, clf, features: Sequence[str]) -> "TreeModel":
        trees = []
        for (pred,) in clf._predictors:
            nodes = pred.nodes
            if nodes["is_categorical"].any():
                raise ValueError("categorical splits are not supported")
            trees.append({f: np.asarray(nodes[f]) for f in cls.FIELDS})
        return cls(trees, float(np.ravel(clf._baseline_prediction)[0]), list(features))

    def predict(self, X: np.ndarray) -> np.ndarray:
        X = np.asarray(X, dtype=np.float64)
        if not self.trees or not len(X):
            return np.full(len(X), self.baseline)
        # every (row, tree) walk at once, dropping the walks that reached a leaf (most end early: it halves the work)
        node = np.tile(self._roots, len(X))
        row = np.repeat(np.arange(len(X)), len(self._roots))
        active = np.arange(len(node))
        while len(active):
            active = active[~self._leaf[node[active]]]
            n = node[active]
            x = X[row[active], self._feature[n]]
            go_left = np.where(np.isnan(x), self._missing_left[n], x <= self._threshold[n])
            node[active] = np.where(go_left, self._left[n], self._right[n])
        return self.baseline + self._value[node].reshape(len(X), len(self._roots)).sum(axis=1)

    def save(self, folder: Path, meta: dict) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        arrays = {f"t{i}_{f}": a for i, t in enumerate(self.trees) for f, a in t.items()}
        np.savez_compressed(folder / "model.npz", baseline=np.array([self.baseline]), n_trees=np.array([len(self.trees)]), **arrays)
        (folder / "meta.json").write_text(json.dumps({"format": FORMAT, "features": self.features, **meta}, indent=1) + "\n")

    @classmethod
    def load(cls, folder: Path) -> "TreeModel":
        meta = json.loads((folder / "meta.json").read_text())
        if meta.get("format") != FORMAT:
            raise ValueError(f"{folder}: not an sle reranker ({meta.get('format')!r})")
        z = np.load(folder / "model.npz", allow_pickle=False)
        trees = [{f: z[f"t{i}_{f}"] for f in cls.FIELDS} for i in range(int(z["n_trees"][0]))]
        return cls(trees, float(z["baseline"][0]), meta["features"])


def model_path(s: Settings | None = None) -> Path | None:
    s = s or default_settings
    if not s.reranker_model:
        return None
    p = Path(s.reranker_model)
    p = p if p.is_absolute() or p.exists() else Path(s.models_dir) / s.reranker_model
    return p if (p / "meta.json").exists() else None


class Reranker:
    def __init__(self, model: TreeModel):
        if model.features != FEATURES:
            raise ValueError("the reranker was trained on other features: retrain it (python -m sle eval --train-reranker)")
        self.model = model

    @classmethod
    def load(cls, folder: Path) -> "Reranker":
        return cls(TreeModel.load(Path(folder)))

    def rerank(self, transcripts: dict[str, str], systems: dict, k: int = 10, depth: int | None = None, max_pool: int | None = None):
        """The candidates of ``systems`` in the model's order: a list of ``(id, name, countries, probability)``."""
        p = pool(transcripts, systems, depth, max_pool)
        if not p.ids:
            return []
        logit = self.model.predict(p.X)
        order = np.argsort(-logit, kind="stable")[:k]
        prob = 1.0 / (1.0 + np.exp(-logit[order]))
        return [(p.ids[i], p.names[i], p.countries[i], float(pr)) for i, pr in zip(order, prob)]


# --- training -------------------------------------------------------------------------------------------------------


def noisy_queries(entries: Sequence, n: int, seed: int = 0, level: float = 1.0) -> list:
    """Two independent ASR-like misspellings of each of ``n`` names (character noise), as utterances heard by two
    pseudo-recognisers. ``level`` 1: one or two seeded passes of ``sle.text.corrupt``, sometimes a drawn one
    on top; higher levels add passes (real Whisper transcripts of synthetic speech are far noisier than level 1).
    Used while few synthetic training transcripts exist."""
    from .evaluate import Query
    from .text import corrupt

    rng = random.Random(seed)
    chosen = rng.sample(list(entries), min(n, len(entries)))
    out = []
    for e in chosen:
        ts = {}
        for j, rec in enumerate(("noise-a", "noise-b")):
            passes = rng.randint(1, max(1, round(1 + level)))
            t = e.name
            for p in range(passes):
                t = corrupt(t, seed + p, j)
            if rng.random() < min(0.25 * level, 0.9):
                t = corrupt(t, rng, strength=0.75 * level)
            ts[rec] = t
        out.append(Query(e.id, e.name, ts))
    return out


def training_queries(gazetteer, n_noise: int = 3000, max_synthetic: int | None = None, seed: int = 0, s: Settings | None = None,
                     noise_level: float = 1.0, first_part: int = 0) -> tuple[list, dict]:  # fmt: skip
    """TRAIN-split utterances only: synthetic transcripts where they exist, plus corrupted train-split names.

    ``first_part``: use only train parts from this one on, to keep out names the dense model was trained on: its
    scores on its own training pairs are better than on new names and would teach the reranker to over-trust it."""
    from .evaluate import synthetic_queries
    from .synth import split_of

    s = s or default_settings
    synthetic = synthetic_queries("train", gazetteer, limit=max_synthetic, seed=seed, s=s, first_part=first_part)
    train_entries = [e for e in gazetteer.entries if split_of(e.key) == "train"]
    noise = noisy_queries(train_entries, n_noise, seed=seed, level=noise_level) if n_noise else []
    return synthetic + noise, {"synthetic_train_utterances": len(synthetic), "first_part": first_part, "noise_utterances": len(noise),
                               "noise_level": noise_level}  # fmt: skip


def collect(queries: Sequence, linker, progress: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict]:
    """Feature rows, labels and group (utterance) ids of the candidate pools of ``queries``."""
    from tqdm.auto import tqdm

    Xs, ys, gs = [], [], []
    found = 0
    for qi, q in enumerate(tqdm(queries, desc="pools", unit="utt", disable=not progress)):
        res = linker.link_texts(q.transcripts, rerank=False, pool=True, languages=q.languages)
        p = pool(q.transcripts, res.systems, max_pool=linker.s.rerank_pool)
        if not p.ids:
            continue
        y = np.array([i == q.target for i in p.ids], dtype=np.int8)
        found += int(y.any())
        Xs.append(p.X)
        ys.append(y)
        gs.append(np.full(len(y), qi, dtype=np.int32))
    info = {"utterances": len(queries), "target_in_pool": round(found / max(len(queries), 1), 4)}
    return np.vstack(Xs), np.concatenate(ys), np.concatenate(gs), info


def fit(X: np.ndarray, y: np.ndarray, seed: int = 0, **params):
    from sklearn.ensemble import HistGradientBoostingClassifier

    kw = dict(max_iter=300, learning_rate=0.08, max_leaf_nodes=31, min_samples_leaf=40, l2_regularization=1.0, early_stopping=True,
              validation_fraction=0.1, n_iter_no_change=20, random_state=seed)  # fmt: skip
    kw.update(params)
    clf = HistGradientBoostingClassifier(**kw)
    X = X.copy()
    X[:, np.isnan(X).all(axis=0)] = -1.0  # a family absent in training (no dense model yet): constant, never split on
    clf.fit(X, y)
    return clf


def train(
    out: str | Path | None = None,
    n_noise: int = 3000,
    max_synthetic: int | None = None,
    seed: int = 0,
    linker=None,
    gazetteer=None,
    progress: bool = True,
    s: Settings | None = None,
    noise_level: float = 1.0,
    first_part: int = 0,
) -> dict:
    """Train the reranker on training utterances' candidate pools; write ``model.npz``, ``meta.json``, card."""
    from . import gazetteer as gz
    from . import link

    s = s or default_settings
    g = gazetteer if gazetteer is not None else gz.load(settings=s)
    linker = linker or link.Linker(s)
    queries, data_info = training_queries(g, n_noise, max_synthetic, seed, s, noise_level, first_part)
    if not queries:
        raise ValueError("no training utterances (no train-split transcripts and n_noise=0)")
    t0 = time.perf_counter()
    X, y, groups, pool_info = collect(queries, linker, progress)
    t_collect = time.perf_counter() - t0
    t0 = time.perf_counter()
    clf = fit(X, y, seed)
    t_fit = time.perf_counter() - t0
    model = TreeModel.from_sklearn(clf, FEATURES)
    # the exported trees must agree with scikit-learn
    check = X[: min(len(X), 5000)]
    diff = float(np.max(np.abs(model.predict(check) - clf.decision_function(check))))
    if diff > 1e-6:
        raise RuntimeError(f"exported trees disagree with scikit-learn by {diff}")
    import sklearn

    folder = Path(out) if out else Path(s.models_dir) / (s.reranker_model or "reranker-v1")
    meta = {
        "trained_at": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "data": data_info | pool_info,
        "candidates": int(len(y)),
        "positives": int(y.sum()),
        "depth": s.rerank_depth,
        "sparse_depth": s.rerank_sparse_depth,
        "max_pool": s.rerank_pool,
        "dense_model": s.dense_model if linker.has_dense else "",
        "trees": len(model.trees),
        "sklearn": sklearn.__version__,
        "params": {k: v for k, v in clf.get_params().items() if isinstance(v, (int, float, str, bool, type(None)))},
        "seconds": {"pools": round(t_collect, 1), "fit": round(t_fit, 1)},
        "seed": seed,
    }
    model.save(folder, meta)
    (folder / "README.md").write_text(card(meta), encoding="utf-8")
    return {"out": str(folder), **meta}


def card(meta: dict) -> str:
    """The model card of a trained reranker."""
    d = meta["data"]
    return f"""# {FORMAT}: the `reranked` system's model

A binary gradient-boosted tree model (scikit-learn {meta['sklearn']} `HistGradientBoostingClassifier`, {meta['trees']} trees,
exported to plain arrays in `model.npz`; `meta.json` lists the {len(FEATURES)} features in order) that scores each candidate
of an utterance's pool: the union of every retrieval list of `sle.link.Linker` (sparse and phonetic lists {meta.get('sparse_depth', meta['depth'])} deep,
dense / dense-avg / hybrid lists {meta['depth']} deep), cut to every list's top 40 plus the {meta.get('max_pool') or 'all'} candidates closest in
spelling (RapidFuzz ratio) to a transcript. The candidates are sorted by the predicted probability that they are
the street that was said; the probability is the `score` of the `reranked` system.

- **Features** (recogniser-agnostic: max / mean over transcripts and lists): per retrieval family (sparse, phonetic,
  dense, dense-avg, hybrid) best 1/rank, best score, best score relative to the list's top, share of the family's lists
  holding the candidate; RapidFuzz ratio, Jaro-Winkler, token-sort ratio, ratio without spaces, common prefix and
  suffix, Kölner Phonetik key similarity, length difference; number of countries, name length, word-count
  difference, agreement between the transcripts. See `sle/rerank.py`.
- **Training data** (TRAIN split only, never validation/test): {d['synthetic_train_utterances']} synthetic train-split utterances
  (TTS -> Whisper transcripts) and {d['noise_utterances']} train-split names each misspelled twice by the character-noise model
  (`sle.rerank.noisy_queries`: `sle.text.corrupt`, seeded, once or twice, sometimes a drawn pass on top). The target
  was in the pool for {d['target_in_pool']:.1%} of the training utterances; {meta['candidates']:,} candidates, {meta['positives']:,} positive.
- **Dense model seen in training**: {meta['dense_model'] or 'none (the index had no dense vectors: dense features were constant and unused; retrain once it has them)'}.
- **Hyperparameters**: learning rate {meta['params'].get('learning_rate')}, up to {meta['params'].get('max_iter')} iterations with early stopping on a
  10% hold-out, {meta['params'].get('max_leaf_nodes')} leaves, min {meta['params'].get('min_samples_leaf')} samples per leaf, L2 {meta['params'].get('l2_regularization')}, seed {meta['seed']}.
- **Cost**: pools {meta['seconds']['pools']} s, fit {meta['seconds']['fit']} s on the shared 2-core CPU ({meta['trained_at']}).
- **Metrics**: `docs/evaluation.md` (validation utterances, against the whole gazetteer).
- **Reproduce**: `python -m sle eval --train-reranker --noise {d['noise_utterances']} --noise-level {d['noise_level']:g} --rerank-utterances {d['synthetic_train_utterances']} --rerank-first-part {d.get('first_part', 0)}`
  (trains, then evaluates; `--rerank-first-part`: only train parts from this number on, to keep out names the dense
  model was trained on; dense-v1 of session 3 trained on all parts, so its dense features are optimistic here).
"""
