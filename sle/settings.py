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
    # Query n-grams that occur in more than this fraction of names are dropped from the query:
    # their IDF is tiny and their posting lists are what make sparse search slow (see docs/benchmarks.md).
    sparse_query_max_df: float = 0.02
    sparse_query_unigrams: bool = False

    # --- dense retrieval -------------------------------------------------------------------------------
    dense_model: str = "dense-v1"  # folder under models_dir, a path, or a hub name
    dense_dim: int = 256
    hnsw_m: int = 16
    hnsw_ef_construct: int = 100
    hnsw_ef: int = 64

    # --- limits ----------------------------------------------------------------------------------------
    top_k: int = 10
    rerank_depth: int = 40

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, str) and f.type in ("Path", Path):
                setattr(self, f.name, Path(value))

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
