"""All settings in one place. Each field can be overridden by an environment variable ``SLE_<FIELD>``.

Nothing else in sle reads the environment: modules take a :class:`Settings` (or use :data:`settings`).
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path

REPO_DIR = Path(__file__).resolve().parent.parent


def _default_data_dir() -> Path:
    return REPO_DIR / "var"


@dataclass
class Settings:
    # --- files -----------------------------------------------------------------------------------------
    data_dir: Path = field(default_factory=_default_data_dir)  # index, annotations, caches (not in git)
    gazetteer: Path = REPO_DIR / "data" / "streets.tsv.gz"  # shipped street list (TSV/CSV, gz or plain)
    gazetteer_column: str = "name"  # column holding the street name in a user gazetteer
    gazetteer_country_column: str = "country"  # optional; rows without it get country ""
    models_dir: Path = REPO_DIR / "models"
    synthetic_dir: Path = REPO_DIR / "data" / "synthetic"

    # --- vector store ----------------------------------------------------------------------------------
    qdrant_url: str = ""  # empty: embedded qdrant-edge under data_dir; else a Qdrant server/cluster URL
    qdrant_api_key: str = ""
    collection: str = "streets"
    shard_number: int = 1  # server/cluster only
    replication_factor: int = 1  # server/cluster only
    upload_batch: int = 2048
    upload_parallel: int = 2  # server/cluster only: parallel upload workers

    # --- sparse retrieval ------------------------------------------------------------------------------
    # n-gram orders used in queries ("1,2,3" = the full baseline); documents always store 1-3-grams.
    # Trigrams alone: higher recall and ~13x fewer postings touched (docs/benchmarks.md).
    sparse_query_orders: str = "3"
    # Query n-grams found in more than this fraction of names are dropped (1.0 = keep all).
    sparse_query_max_df: float = 1.0
    # Keep the rarest query n-grams while their posting lists total at most this many names (0 = keep all):
    # 1.65x faster than all trigrams, recall@10 within a point of the full 1-3-gram baseline (docs/benchmarks.md).
    sparse_query_max_postings: int = 200_000
    # The same budget for phonetic queries; off (0) by measurement: phonetic queries rarely exceed 400k postings, and
    # every budget that saves time costs recall (200k: 1.2x faster, -1.5 points recall@10; docs/phonetic.md).
    phonetic_query_max_postings: int = 0

    # --- dense retrieval -------------------------------------------------------------------------------
    # dense-v1 (session 3: mined with dense-v0 over the whole gazetteer) beats dense-v0 on every query set (docs/dense.md)
    dense_model: str = "dense-v1"  # folder under models_dir, a path, or a hub name
    dense_dim: int = 256
    hnsw_m: int = 16
    hnsw_ef_construct: int = 100
    hnsw_ef: int = 64

    # --- speech ----------------------------------------------------------------------------------------
    # Recogniser profile: "auto" (default pair, else the offline pair, loudly), "default", "offline",
    # or comma-separated specs ("whisper:base,whisper:base@en"). See sle/asr.py and docs/speech.md.
    asr_profile: str = "auto"
    asr_offline: bool = False  # never try the model hub
    asr_device: str = "auto"  # auto | cpu | cuda
    asr_compute_type: str = "auto"  # auto: int8 on CPU, float16 on CUDA
    asr_cpu_threads: int = 0  # 0: CTranslate2's default
    asr_languages: str = "de,nl,sv,fr"  # languages Whisper may detect (the gazetteer's countries speak these)
    asr_window_seconds: float = 10.0  # mel window for clips that fit (Whisper's own is 30 s; see docs/speech.md)
    asr_beam_size: int = 5
    asr_max_tokens: int = 48  # a street name is short; longer decodings are loops
    asr_no_speech_threshold: float = 0.6  # Whisper's no-speech probability above which a clip transcribes to ""
    asr_batch_size: int = 8
    # Biased re-decoding (system "redecoded"): a second Whisper pass with this many top candidates as hotwords, which
    # re-orders them by the new transcript's spelling; 0 = off (docs/evaluation.md has the measurement).
    redecode_candidates: int = 0
    max_audio_seconds: float = 30.0
    max_audio_bytes: int = 20_000_000
    silence_rms: float = 0.001  # below this RMS (and peak below silence_peak) audio counts as silent
    silence_peak: float = 0.01
    tts_rate: int = 16000

    # --- dense ---------------------------------------------------------------------------------------
    dense_batch_size: int = 256  # names per encoder batch (length-sorted inside sentence-transformers)
    dense_threads: int = 0  # torch CPU threads for the encoder; 0 = torch's default (all cores)
    dense_int8: bool = False  # load the encoder with torch dynamic int8 quantization (CPU; see docs/dense.md)
    dense_backbone: str = "byt5-micro"  # preset (offline, from scratch) or hub name, e.g. google/byt5-small

    # --- app -----------------------------------------------------------------------------------------
    app_host: str = "127.0.0.1"  # "0.0.0.0" to serve others on the network
    app_port: int = 7860
    app_auth: str = ""  # "user:pass,user2:pass2" turns on Gradio login; the user name is the annotator
    app_asr_concurrency: int = 1  # simultaneous ASR jobs (CPU-bound; one model instance)
    app_search_concurrency: int = 4  # simultaneous retrieval-only jobs
    app_max_queue: int = 64  # requests waiting beyond this are refused with a message
    annotations_db: str = ""  # SQLite file; empty: <data_dir>/annotations/annotations.sqlite
    annotations_k: int = 40  # candidates stored per system with each label (recall@40 needs 40)
    sqlite_busy_ms: int = 30000  # wait this long for another annotator's write before failing

    # --- linking ---------------------------------------------------------------------------------------
    # Hybrid fusion inside Qdrant (docs/evaluation.md has the sweep that chose these).
    # DBSF: best R@1 and R@10 of every fusion tried with dense-avg + sparse + phonetic parts (docs/evaluation.md)
    fusion: str = "dbsf"  # rrf | dbsf
    rrf_k: int = 2  # RRF's k: score = sum of weight / (k + rank)
    fusion_weights: str = ""  # comma-separated weights of the fused parts (dense first, then sparse per recogniser)
    reranker_model: str = "reranker-v1"  # folder under models_dir (or a path); "" turns the reranked system off
    rerank_sparse_depth: int = 300  # the reranker's pool: each sparse list this deep (the other lists: rerank_depth)
    rerank_pool: int = 120  # ... then cut to every list's top rerank_depth + this many closest in spelling (0: no cut)

    # --- limits ----------------------------------------------------------------------------------------
    top_k: int = 10
    rerank_depth: int = 40

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, str) and f.type in ("Path", Path):
                setattr(self, f.name, Path(value))

    @property
    def query_orders(self) -> tuple[int, ...]:
        return tuple(int(x) for x in self.sparse_query_orders.replace(" ", "").split(",") if x)

    @property
    def index_dir(self) -> Path:
        return self.data_dir / "index"

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None, **overrides) -> "Settings":
        """Defaults, then ``SLE_*`` environment variables, then keyword overrides."""
        env = os.environ if env is None else env
        values = {}
        for f in dataclasses.fields(cls):
            raw = env.get("SLE_" + f.name.upper())
            if raw is None:
                continue
            kind = f.type if isinstance(f.type, str) else f.type.__name__
            if kind == "Path":
                values[f.name] = Path(raw).expanduser()
            elif kind == "int":
                values[f.name] = int(raw)
            elif kind == "float":
                values[f.name] = float(raw)
            elif kind == "bool":
                values[f.name] = raw.strip().lower() in ("1", "true", "yes", "on")
            else:
                values[f.name] = raw
        values.update(overrides)
        return cls(**values)


settings = Settings.from_env()
