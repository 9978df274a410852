"""Dense encoder: a byte-level ByT5 (T5 encoder) bi-encoder, mean-pooled and projected to 256 dimensions.

The model is a plain sentence-transformers pipeline ``Transformer -> Pooling(mean) -> Dense(256) -> Normalize``,
so ``SentenceTransformer(path)`` loads a saved one without sle. Names and transcripts both go through
:func:`sle.text.normalize` before encoding (that is what :func:`embed` does; callers using sentence-transformers
directly must do it themselves).

Backbones: a hub name such as ``google/byt5-small`` (only its encoder is used) where the Hugging Face hub is
reachable, or a size preset (``byt5-tiny``, ...) that builds a ByT5-architecture encoder from scratch offline.
Byte-level models need no vocabulary file: the ByT5 tokenizer maps UTF-8 bytes to ids.
"""

from __future__ import annotations

import logging
import tempfile
import time
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from .settings import Settings, settings as default_settings
from .text import normalize

log = logging.getLogger(__name__)

# Offline presets (layers, d_model, heads, d_ff), chosen by measured speed on 2 CPU cores (docs/dense.md).
# Street names are ~15 bytes on average, so attention is cheap and the cost is dominated by the
# per-layer feed-forward matmuls: width and depth decide the names/s.
PRESETS: dict[str, tuple[int, int, int, int]] = {
    "byt5-micro": (2, 128, 4, 256),
    "byt5-tiny": (2, 192, 4, 512),
    "byt5-mini": (4, 256, 4, 1024),  # the ~4.4M-param reference size: too slow on 2 cores (~800 names/s)
}
MAX_SEQ_LENGTH = 64  # bytes (+EOS); 99.9% of names are shorter; longer ones are truncated


def _t5_config(layers: int, d_model: int, heads: int, d_ff: int):
    from transformers import T5Config

    return T5Config(
        vocab_size=384,  # ByT5: 3 special ids + 256 bytes + 125 extra ids
        d_model=d_model,
        d_kv=d_model // heads,
        d_ff=d_ff,
        num_layers=layers,
        num_heads=heads,
        feed_forward_proj="gated-gelu",  # as ByT5
        dropout_rate=0.1,
        is_encoder_decoder=False,
        use_cache=False,
        pad_token_id=0,
        eos_token_id=1,
    )


def build_encoder(
    backbone: str = "byt5-tiny",
    dim: int | None = None,
    max_seq_length: int = MAX_SEQ_LENGTH,
    seed: int = 0,
    device: str | None = None,
    settings: Settings | None = None,
):
    """A fresh, untrained encoder: Transformer(T5 encoder, ByT5 tokenizer) + mean Pooling + Dense(dim) + Normalize.

    ``backbone`` is a preset name from :data:`PRESETS` (random init, works offline) or a hub name / local folder of a
    ByT5 model such as ``google/byt5-small`` (pretrained weights; needs the hub or a local copy).
    """
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Dense, Normalize, Pooling, Transformer

    s = settings or default_settings
    dim = dim or s.dense_dim
    torch.manual_seed(seed)
    if backbone in PRESETS:
        from transformers import ByT5Tokenizer, T5EncoderModel

        model = T5EncoderModel(_t5_config(*PRESETS[backbone]))
        # The Transformer module loads from a folder; a temporary one keeps us on its public API.
        with tempfile.TemporaryDirectory(prefix="sle-byt5-") as tmp:
            model.save_pretrained(tmp)
            ByT5Tokenizer().save_pretrained(tmp)
            transformer = Transformer(tmp, max_seq_length=max_seq_length)
    else:
        try:
            transformer = Transformer(backbone, max_seq_length=max_seq_length)
        except OSError as e:
            raise RuntimeError(
                f"cannot load backbone {backbone!r} (no hub access or no local copy?): {e}. "
                f"Offline, use a preset: {', '.join(PRESETS)}"
            ) from e
    width = transformer.get_embedding_dimension()
    pooling = Pooling(width, pooling_mode="mean")
    dense = Dense(width, dim, activation_function=torch.nn.Identity())
    return SentenceTransformer(modules=[transformer, pooling, dense, Normalize()], device=device)


def resolve_model_path(name_or_path: str | Path | None = None, settings: Settings | None = None) -> str:
    """A folder under ``models_dir`` (e.g. ``dense-v1``), an existing path, or else the string as a hub name."""
    s = settings or default_settings
    name = str(name_or_path or s.dense_model)
    for candidate in (Path(name).expanduser(), Path(s.models_dir) / name):
        if (candidate / "modules.json").exists():
            return str(candidate.resolve())
    return name


@lru_cache(maxsize=4)
def _load(path: str, device: str | None, threads: int | None, int8: bool):
    from sentence_transformers import SentenceTransformer

    if threads:
        torch.set_num_threads(threads)
    t = time.perf_counter()
    model = SentenceTransformer(path, device=device)
    model.eval()
    if int8:
        model = quantize_int8(model)
    log.info("loaded dense model %s%s in %.2fs", path, " (int8)" if int8 else "", time.perf_counter() - t)
    return model


def quantize_int8(model):
    """Dynamic int8 quantization of the Linear layers (torch, CPU): weights int8, activations quantized on the fly.

    Measured in docs/dense.md: ~2.4x the names/s of float32 on a busy 2-core CPU, with recall as listed there.
    """
    import warnings

    with warnings.catch_warnings():  # torch.ao is deprecated in favour of torchao, which is not installed here
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", UserWarning)
        return torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)


def load_encoder(
    name_or_path: str | Path | None = None,
    device: str | None = None,
    int8: bool | None = None,
    settings: Settings | None = None,
):
    """The sentence-transformers model ``name_or_path`` (default: ``settings.dense_model``), loaded once per process.

    ``int8`` (default ``settings.dense_int8``) applies :func:`quantize_int8` on CPU.
    """
    s = settings or default_settings
    int8 = s.dense_int8 if int8 is None else int8
    return _load(resolve_model_path(name_or_path, s), device, s.dense_threads or None, bool(int8) and device in (None, "cpu"))


def embed(
    texts: list[str] | str,
    model=None,
    batch_size: int | None = None,
    show_progress: bool = False,
    settings: Settings | None = None,
) -> np.ndarray:
    """L2-normalised float32 embeddings, shape ``(len(texts), dim)``, of normalised texts.

    ``model`` is a loaded SentenceTransformer, a name/path for :func:`load_encoder`, or None for the default model.
    Inputs are sorted by length inside sentence-transformers, so padding stays small.
    """
    s = settings or default_settings
    if isinstance(texts, str):
        texts = [texts]
    if model is None or isinstance(model, (str, Path)):
        model = load_encoder(model, settings=s)
    normed = [normalize(t) for t in texts]
    with torch.inference_mode():
        vectors = model.encode(
            normed,
            batch_size=batch_size or s.dense_batch_size,
            convert_to_numpy=True,
            normalize_embeddings=True,  # Normalize() is in the model; kept for backbones loaded without it
            show_progress_bar=show_progress,
        )
    return np.ascontiguousarray(vectors, dtype=np.float32)


def embed_gazetteer(
    model=None,
    gazetteer=None,
    cache: bool = True,
    batch_size: int | None = None,
    show_progress: bool = True,
    settings: Settings | None = None,
) -> np.ndarray:
    """Embeddings of all gazetteer names, row i = ``gazetteer.entries[i]``; cached under ``data_dir/dense/``.

    The cache key is the model folder's weights and the gazetteer fingerprint, so a retrained model or an edited
    gazetteer is re-embedded. Names are embedded by their normalised key (what every query is compared against).
    """
    from . import gazetteer as gz

    s = settings or default_settings
    g = gazetteer if gazetteer is not None else gz.load(settings=s)
    if model is None or isinstance(model, (str, Path)):
        model = load_encoder(model, settings=s)
    cache_file = _cache_file(model, g, s) if cache else None
    if cache_file is not None:
        if cache_file.exists():
            return np.load(cache_file)
    t = time.perf_counter()
    vectors = embed([e.key for e in g.entries], model=model, batch_size=batch_size, show_progress=show_progress, settings=s)
    log.info("embedded %d names in %.1fs (%.0f names/s)", len(g), time.perf_counter() - t, len(g) / (time.perf_counter() - t))
    if cache_file is not None:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache_file.with_suffix(".tmp.npy")
        np.save(tmp, vectors)
        tmp.replace(cache_file)  # never leave a half-written cache behind
    return vectors


def _cache_file(model, g, s: Settings) -> Path:
    import hashlib

    h = hashlib.sha256(g.fingerprint.encode() + str(len(g)).encode())
    for name, p in model.state_dict().items():
        h.update(name.encode())
        if isinstance(p, torch.Tensor) and not p.is_quantized:
            h.update(p.detach().cpu().float().numpy().tobytes()[:4096])
            h.update(str(tuple(p.shape)).encode())
        else:  # packed int8 weights: the model's float tensors (embeddings, norms) still tell models apart
            h.update(repr(type(p)).encode())
    return Path(s.data_dir) / "dense" / f"gazetteer-{h.hexdigest()[:16]}.npy"


def search_exact(queries: np.ndarray, corpus: np.ndarray, k: int = 10, chunk: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k by inner product (= cosine on normalised vectors): (indices, scores), each ``(n_queries, k)``.

    Chunked over queries so memory stays ~chunk x len(corpus) floats.
    """
    k = min(k, len(corpus))
    idx = np.empty((len(queries), k), dtype=np.int64)
    val = np.empty((len(queries), k), dtype=np.float32)
    corpus_t = torch.from_numpy(np.ascontiguousarray(corpus, dtype=np.float32))
    for i in range(0, len(queries), chunk):
        q = torch.from_numpy(np.ascontiguousarray(queries[i : i + chunk], dtype=np.float32))
        scores = q @ corpus_t.T
        top = torch.topk(scores, k, dim=1)
        idx[i : i + chunk] = top.indices.numpy()
        val[i : i + chunk] = top.values.numpy()
    return idx, val


def benchmark(model=None, n: int = 20000, queries: int = 200, batch_size: int | None = None, quantize: bool = False, settings: Settings | None = None) -> dict:
    """Embedding speed on ``n`` gazetteer names drawn at random (names/s) and single-query latency (p50/p95 ms).

    ``quantize`` applies torch dynamic int8 quantization to the Linear layers first (an option we measured).
    """
    import random

    from . import gazetteer as gz

    s = settings or default_settings
    if model is None or isinstance(model, (str, Path)):
        model = load_encoder(model, settings=s)
    if quantize:
        model = quantize_int8(model)
    keys = [e.key for e in gz.load(settings=s).entries]
    names = random.Random(0).sample(keys, min(n, len(keys)))
    embed(names[:512], model=model, batch_size=batch_size, settings=s)  # warm-up
    t = time.perf_counter()
    embed(names, model=model, batch_size=batch_size, settings=s)
    rate = len(names) / (time.perf_counter() - t)
    lat = []
    for q in names[:queries]:
        t0 = time.perf_counter()
        embed([q], model=model, settings=s)
        lat.append((time.perf_counter() - t0) * 1000)
    return {
        "names": len(names),
        "names_per_s": round(rate),
        "full_gazetteer_s_estimate": round(len(keys) / rate),
        "query_p50_ms": round(float(np.percentile(lat, 50)), 2),
        "query_p95_ms": round(float(np.percentile(lat, 95)), 2),
        "threads": torch.get_num_threads(),
        "quantized": quantize,
        "parameters": sum(p.numel() for p in model.parameters()),
    }
