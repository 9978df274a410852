"""sle.audio with real files (espeak-ng speech, converted by sox/ffmpeg) and every kind of bad input."""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest
import soundfile as sf

from sle import audio
from sle.audio import AudioError, load_audio


@pytest.fixture(scope="module")
def reference(speech_wav) -> np.ndarray:
    return load_audio(speech_wav)


def _error(source, **kw) -> AudioError:
    with pytest.raises(AudioError) as e:
        load_audio(source, **kw)
    assert str(e.value)  # a message a person can read
    return e.value


@pytest.mark.parametrize("fmt", ["wav", "stereo44k.wav", "flac", "speech.mp3", "opus.ogg", "vorbis.ogg", "speech.webm", "speech.m4a"])
def test_formats_decode_to_16k_mono_float32(audio_files, reference, fmt):
    a = load_audio(audio_files[fmt])
    assert a.dtype == np.float32 and a.ndim == 1
    # same speech, whatever the container: length within codec padding, similar loudness
    assert abs(len(a) - len(reference)) < 0.1 * audio.SAMPLE_RATE
    assert np.sqrt(np.mean(a**2)) == pytest.approx(np.sqrt(np.mean(reference**2)), rel=0.25)
    assert np.abs(a).max() <= 1.0


def test_bytes_input_equals_path_input(audio_files):
    for fmt in ("wav", "speech.webm"):
        path = audio_files[fmt]
        assert np.array_equal(load_audio(path.read_bytes()), load_audio(path))


def test_resampled_stereo_matches_original(audio_files, reference):
    a = load_audio(audio_files["stereo44k.wav"])
    n = min(len(a), len(reference))
    assert np.corrcoef(a[:n], reference[:n])[0, 1] > 0.95


def test_missing_and_empty(tmp_path):
    assert _error(tmp_path / "nope.wav").reason == "not_found"
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    assert _error(empty).reason == "empty"
    assert _error(b"").reason == "empty"


def test_silence(tmp_path):
    path = tmp_path / "silence.wav"
    sf.write(path, np.zeros(32000, dtype=np.float32), 16000)
    assert _error(path).reason == "silent"
    faint = tmp_path / "faint.wav"
    sf.write(faint, (np.random.default_rng(0).standard_normal(32000) * 1e-4).astype(np.float32), 16000)
    assert _error(faint).reason == "silent"


@pytest.mark.parametrize("fmt,keep", [("wav", 0.5), ("speech.mp3", 0.6), ("speech.webm", 0.5)])
def test_truncated(audio_files, tmp_path, fmt, keep):
    data = audio_files[fmt].read_bytes()
    e = _error(data[: int(len(data) * keep)])
    assert e.reason == "truncated"


def test_not_audio(tmp_path):
    text = tmp_path / "street.wav"
    text.write_text("Hauptstraße 12, 10115 Berlin\n")
    assert _error(text).reason == "not_audio"
    rnd = np.random.default_rng(1).integers(0, 256, 8000, dtype=np.uint8).tobytes()
    assert _error(rnd).reason in ("not_audio", "corrupt")


def test_corrupt_header(audio_files):
    data = bytearray(audio_files["flac"].read_bytes())
    data[8:40] = b"\xff" * 32  # stream info block destroyed
    assert _error(bytes(data)).reason in ("corrupt", "not_audio", "truncated")


def test_too_long_and_too_large(tmp_path, speech_wav):
    sox = shutil.which("sox")
    if sox is None:
        pytest.skip("sox is not installed")
    long = tmp_path / "long.flac"
    subprocess.run([sox, "-n", "-r", "16000", str(long), "synth", "40", "sine", "300", "vol", "0.3"], check=True)
    assert _error(long).reason == "too_long"
    assert _error(speech_wav, max_seconds=0.5).reason == "too_long"
    assert _error(speech_wav, max_bytes=1000).reason == "too_large"
    # long audio that only ffmpeg decodes is capped while decoding, not after reading everything
    webm = tmp_path / "long.webm"
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(long), "-c:a", "libopus", str(webm)], check=True)
    assert _error(webm).reason == "too_long"


def test_too_short():
    click = np.zeros(800, dtype=np.float32)
    click[100] = 0.5
    with pytest.raises(AudioError) as e:
        audio.check(click)
    assert e.value.reason == "too_short"


def test_check_rejects_nan_and_scales_overfull_floats():
    a = np.sin(np.linspace(0, 300, 16000)).astype(np.float32) * 2.0
    assert np.abs(audio.check(a)).max() == pytest.approx(1.0)
    a[5] = np.nan
    with pytest.raises(AudioError):
        audio.check(a)
