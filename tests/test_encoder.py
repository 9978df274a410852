"""Dense encoder: shapes, normalisation, save/load as a plain SentenceTransformer, exact search, golden vectors."""

from __future__ import annotations

import numpy as np
import pytest
from sentence_transformers import SentenceTransformer

from sle import encoder
from sle.settings import Settings


@pytest.fixture(scope="module")
def fresh():
    return encoder.build_encoder("byt5-micro", seed=0)


def test_embed_shape_dtype_and_unit_norm(fresh):
    v = encoder.embed(["Hauptstraße", "Kungsgatan", "x"], model=fresh)
    assert v.shape == (3, 256) and v.dtype == np.float32
    assert np.allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    assert encoder.embed("Rue de la Paix", model=fresh).shape == (1, 256)


def test_embed_applies_the_shared_normalisation(fresh):
    a, b, c = encoder.embed(["Hauptstraße", "HAUPTSTRASSE.", "Hauptstrase"], model=fresh)
    assert np.allclose(a, b, atol=1e-6)  # ß->ss, case and punctuation are normalised away
    assert not np.allclose(a, c, atol=1e-4)


def test_saved_model_loads_with_plain_sentence_transformers(fresh, tmp_path):
    fresh.save(str(tmp_path / "m"))
    plain = SentenceTransformer(str(tmp_path / "m"), device="cpu")
    texts = ["salzhubelstrasse", "zaltzubelstasse"]
    assert np.allclose(plain.encode(texts), fresh.encode(texts), atol=1e-5)
    s = Settings.from_env(models_dir=tmp_path)
    assert encoder.resolve_model_path("m", s) == str((tmp_path / "m").resolve())
    assert encoder.load_encoder("m", settings=s) is encoder.load_encoder(tmp_path / "m", settings=s)  # cached once
    assert encoder.resolve_model_path("google/byt5-small", s) == "google/byt5-small"  # hub names pass through


def test_presets_are_byt5_layout(fresh):
    t5 = fresh[0].auto_model.config
    assert t5.vocab_size == 384 and t5.feed_forward_proj == "gated-gelu"
    layers, d_model, heads, d_ff = encoder.PRESETS["byt5-micro"]
    assert (t5.num_layers, t5.d_model, t5.num_heads, t5.d_ff) == (layers, d_model, heads, d_ff)
    assert fresh.get_embedding_dimension() == 256


def test_search_exact_matches_brute_force():
    rng = np.random.default_rng(0)
    corpus = rng.normal(size=(500, 16)).astype(np.float32)
    queries = rng.normal(size=(37, 16)).astype(np.float32)
    idx, val = encoder.search_exact(queries, corpus, k=5, chunk=10)
    brute = np.argsort(-(queries @ corpus.T), axis=1)[:, :5]
    assert (idx == brute).all()
    assert np.allclose(val, np.take_along_axis(queries @ corpus.T, brute, axis=1), atol=1e-5)


# Golden vectors of the committed model: first values of fixed strings' embeddings (regenerate only when the
# committed model changes on purpose: python -c "from sle import encoder; print(encoder.embed([...])[:, :6])").
GOLDEN = {
    "v0": {
        "Salzhübelstraße": [-0.01139, -0.05778, 0.02514, 0.1068, 0.00581, -0.05007],
        "Zaltzubelstasse": [-0.05491, -0.0185, 0.06931, 0.0799, -0.08961, -0.0109],
        "Kungsgatan": [-0.13435, -0.01119, 0.02781, -0.1202, -0.0545, -0.01324],
    },
    "v1": {
        "Salzhübelstraße": [-0.02569, -0.06708, 0.00662, 0.03893, -0.02172, -0.07567],
        "Zaltzubelstasse": [-0.05479, -0.0258, 0.06282, 0.04468, -0.07999, -0.05111],
        "Kungsgatan": [-0.11573, -0.00158, 0.02196, -0.11826, -0.05831, -0.04693],
    },
}


@pytest.mark.parametrize("version", sorted(GOLDEN))
def test_golden_vectors_of_committed_models(version):
    model = encoder.load_encoder(f"dense-{version}", int8=False)
    texts = list(GOLDEN[version])
    got = encoder.embed(texts, model=model)
    for text, row in zip(texts, got):
        assert np.allclose(row[: len(GOLDEN[version][text])], GOLDEN[version][text], atol=2e-4), text
    # the committed model must also do its job on the seed's example: the misspelling is closest to its street
    assert float(got[0] @ got[1]) > float(got[2] @ got[1])


def test_int8_quantized_encoder_stays_close_to_float(fresh):
    q = encoder.quantize_int8(fresh)
    texts = ["Hauptstrasse", "Kungsgatan", "Rue de la Paix"]
    a, b = encoder.embed(texts, model=fresh), encoder.embed(texts, model=q)
    assert np.allclose(np.linalg.norm(b, axis=1), 1.0, atol=1e-5)
    assert (np.sum(a * b, axis=1) > 0.95).all()
