"""Audio input: whatever browsers and people send (wav, flac, mp3, ogg/opus, webm, any rate, stereo)
to 16 kHz mono float32, with a clear :class:`AudioError` for everything that is not a usable recording.

soundfile (libsndfile) decodes first: it is fast and reads headers without decoding. Containers it does
not know (webm, mp4/m4a, some opus/mp3) go through an ``ffmpeg`` subprocess.
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf
from scipy import signal

from .settings import Settings, settings as default_settings

SAMPLE_RATE = 16000
MIN_SECONDS = 0.1


class AudioError(ValueError):
    """Audio that cannot be used, with a message for people and a short ``reason`` code for programs.

    Reasons: ``not_found``, ``empty``, ``too_large``, ``too_long``, ``too_short``, ``not_audio``, ``corrupt``,
    ``truncated``, ``silent``, ``no_decoder``.
    """

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


def _resample(audio: np.ndarray, rate: int) -> np.ndarray:
    if rate == SAMPLE_RATE:
        return audio
    g = np.gcd(int(rate), SAMPLE_RATE)
    return signal.resample_poly(audio, SAMPLE_RATE // g, int(rate) // g).astype(np.float32)


def _read_soundfile(data: bytes | Path, max_seconds: float) -> np.ndarray | None:
    """Decode with libsndfile; None when it does not know the format (then ffmpeg tries)."""
    src = io.BytesIO(data) if isinstance(data, bytes) else str(data)
    try:
        info = sf.info(src)
    except (sf.LibsndfileError, RuntimeError, TypeError):
        return None
    if info.samplerate <= 0 or info.channels <= 0:
        raise AudioError("corrupt", "The audio header is damaged (no sample rate or channels).")
    if info.frames > 0 and info.duration > max_seconds + 0.05:
        raise AudioError("too_long", f"The recording is {info.duration:.1f} s long; at most {max_seconds:g} s are accepted.")
    if isinstance(src, io.BytesIO):
        src.seek(0)
    try:
        audio, rate = sf.read(src, dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError) as e:
        raise AudioError("corrupt", f"The audio file is damaged and cannot be decoded ({e}).") from e
    if info.frames > 0 and len(audio) < info.frames:
        raise AudioError("truncated", f"The audio file is cut off: it announces {info.duration:.2f} s but holds {len(audio) / rate:.2f} s.")
    if _wav_truncated(data):
        raise AudioError("truncated", "The WAV file is cut off: its header announces more audio than the file holds.")
    return _resample(audio.mean(axis=1), rate)


def _wav_truncated(data: bytes | Path) -> bool:
    """A RIFF/WAVE whose ``data`` chunk announces more bytes than follow (libsndfile silently reads what is there)."""
    head = data[:4096] if isinstance(data, bytes) else _head(data)
    if head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        return False
    total = len(data) if isinstance(data, bytes) else data.stat().st_size
    pos = 12
    while pos + 8 <= len(head):
        cid, size = head[pos : pos + 4], int.from_bytes(head[pos + 4 : pos + 8], "little")
        if cid == b"data":
            # streaming writers (espeak-ng --stdout, browsers) put 0 or 0xFFFFFFFF when the length is unknown
            return size not in (0, 0xFFFFFFFF, 0x7FFFFFFF, 0x7FFFF000) and pos + 8 + size > total
        pos += 8 + size + (size & 1)
    return False


def _head(path: Path, n: int = 4096) -> bytes:
    with open(path, "rb") as f:
        return f.read(n)


def _read_ffmpeg(data: bytes | Path, max_seconds: float) -> np.ndarray:
    exe = shutil.which("ffmpeg")
    if exe is None:
        raise AudioError("no_decoder", "This audio format needs ffmpeg, which is not installed; send WAV or FLAC instead.")
    tmp = None
    try:
        if isinstance(data, bytes):
            # a file, not a pipe: mp4/m4a keep their index at the end and cannot be decoded from a stream
            fd, tmp = tempfile.mkstemp(prefix="sle-audio-")
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            path = tmp
        else:
            path = str(data)
        cmd = [exe, "-nostdin", "-hide_banner", "-v", "warning", "-i", path, "-vn", "-t", f"{max_seconds + 1:.3f}",
               "-ac", "1", "-ar", str(SAMPLE_RATE), "-f", "f32le", "pipe:1"]  # fmt: skip
        try:
            proc = subprocess.run(cmd, capture_output=True, timeout=60)
        except subprocess.TimeoutExpired as e:
            raise AudioError("corrupt", "Decoding the audio took too long; the file is probably damaged.") from e
    finally:
        if tmp:
            os.unlink(tmp)
    err = proc.stderr.decode("utf-8", "replace").strip()
    audio = np.frombuffer(proc.stdout[: len(proc.stdout) // 4 * 4], dtype="<f4").astype(np.float32)
    if audio.size == 0:
        if "Invalid data" in err or "could not find codec" in err.lower() or "does not contain any stream" in err or "matches no streams" in err:
            raise AudioError("not_audio", "This file is not audio (or in a format nobody can decode).")
        raise AudioError("corrupt", f"The audio file cannot be decoded: {err.splitlines()[-1] if err else 'no audio in it'}.")
    if proc.returncode != 0:
        raise AudioError("corrupt", f"The audio file is damaged: {err.splitlines()[-1] if err else 'decoder failed'}.")
    # (ffmpeg warnings are only read for the signs of a cut-off file; others are harmless)
    if err and any(w in err.lower() for w in ("truncat", "ended prematurely", "end of file", "invalid frame", "error while decoding", "packet too small")):
        raise AudioError("truncated", "The audio file is cut off or damaged in the middle; please record again.")
    return audio


def load_audio(source: str | os.PathLike | bytes, max_seconds: float | None = None, max_bytes: int | None = None, s: Settings = default_settings) -> np.ndarray:
    """Decode a file path or the bytes of a file to 16 kHz mono float32 in [-1, 1].

    Raises :class:`AudioError` (a ``ValueError``) with a human message for unusable input.
    """
    max_seconds = s.max_audio_seconds if max_seconds is None else max_seconds
    max_bytes = s.max_audio_bytes if max_bytes is None else max_bytes
    if isinstance(source, (bytes, bytearray, memoryview)):
        data: bytes | Path = bytes(source)
        size = len(data)
    else:
        data = Path(source).expanduser()
        if not data.is_file():
            raise AudioError("not_found", f"No audio file at {data}.")
        size = data.stat().st_size
    if size == 0:
        raise AudioError("empty", "The audio file is empty (0 bytes).")
    if size > max_bytes:
        raise AudioError("too_large", f"The audio file is {size / 1e6:.1f} MB; at most {max_bytes / 1e6:.1f} MB are accepted.")

    audio = _read_soundfile(data, max_seconds)
    if audio is None:
        audio = _read_ffmpeg(data, max_seconds)
    return check(audio, max_seconds, s)


def check(audio: np.ndarray, max_seconds: float | None = None, s: Settings = default_settings) -> np.ndarray:
    """Validate decoded 16 kHz mono samples (length, finite values, not silent); returns them as float32."""
    max_seconds = s.max_audio_seconds if max_seconds is None else max_seconds
    audio = np.asarray(audio, dtype=np.float32)
    if audio.ndim != 1:
        raise AudioError("corrupt", f"Expected mono samples, got an array of shape {audio.shape}.")
    seconds = len(audio) / SAMPLE_RATE
    if seconds > max_seconds + 0.05:
        raise AudioError("too_long", f"The recording is longer than {max_seconds:g} s; please say just the street name.")
    if seconds < MIN_SECONDS:
        raise AudioError("too_short", f"The recording is only {seconds * 1000:.0f} ms long; please say the street name.")
    if not np.isfinite(audio).all():
        raise AudioError("corrupt", "The audio contains invalid sample values (NaN or infinity).")
    peak = float(np.abs(audio).max())
    rms = float(np.sqrt(np.mean(audio.astype(np.float64) ** 2)))
    if peak < s.silence_peak or rms < s.silence_rms:
        raise AudioError("silent", "The recording is silent; check the microphone and speak the street name.")
    if peak > 1.0:  # float files may exceed full scale; Whisper's features do not care, but keep the contract
        audio = audio / peak
    return audio
