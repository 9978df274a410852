"""Text to speech for synthetic training data: espeak-ng with MBROLA voices, plus seeded augmentation.

A street name is spoken by a voice of its language (the country decides, with a small French heuristic for
Belgium and Switzerland), at a chosen speed and pitch, and optionally degraded (noise, telephone band, reverb).
Everything is deterministic given the name and a seed, so a clip can be regenerated from its TSV row.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import io
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
from scipy import signal

SAMPLE_RATE = 16000

# espeak-ng voice names per language: MBROLA diphone voices (Debian's mbrola-* packages) and espeak's own.
VOICES: dict[str, tuple[str, ...]] = {
    "de": ("mb-de1", "mb-de2", "mb-de3", "mb-de4", "mb-de5", "mb-de6", "mb-de7", "mb-de8", "de"),
    # mb-nl1 is left out: espeak-ng's Dutch phonemes miss most of its diphones (mbrola replaces them by silence)
    "nl": ("mb-nl2", "mb-nl3", "nl"),
    "sv": ("mb-sw1", "mb-sw2", "sv"),
    "fr": ("mb-fr1", "mb-fr4", "fr"),
}
# Never used for training names, so validation/test can report results on voices the models never heard.
UNSEEN_VOICES: frozenset[str] = frozenset({"mb-de7", "mb-de8", "mb-nl3", "mb-sw2", "mb-fr4"})

COUNTRY_LANGUAGE = {"DE": "de", "AT": "de", "CH": "de", "NL": "nl", "BE": "nl", "SE": "sv"}
_FRENCH_WORDS = frozenset(
    "rue avenue av chaussée chaussee place boulevard bd chemin allée allee impasse square quai route clos sentier "
    "rond-point cité cite résidence residence drève dreve ruelle venelle carrefour passage galerie parvis promenade "
    "esplanade thier voie cour hameau du des de la le les aux au".split()
)
_FRENCH_LEADS = frozenset("rue avenue chaussée chaussee place boulevard chemin allée allee impasse square quai route clos sentier drève dreve ruelle cité résidence".split())

AUGMENTATIONS = ("clean", "noise", "phone", "reverb", "noise+reverb")
_AUG_WEIGHTS = (0.3, 0.25, 0.15, 0.15, 0.15)

_ABBREVIATIONS_DE = [(re.compile(r"(?i)str\.(?=\s|$)"), "straße"), (re.compile(r"(?i)\bpl\.(?=\s|$)"), "platz")]


MAX_MISSING_DIPHONES = 2


class TTSError(RuntimeError):
    """espeak-ng is missing, a voice is not installed, or synthesis produced no audio."""


def language_of(name: str, countries: tuple[str, ...] | list[str] | str) -> str:
    """Language a local would use to say this street name."""
    if isinstance(countries, str):
        countries = (countries,)
    country = countries[0] if countries else "DE"
    lang = COUNTRY_LANGUAGE.get(country, "de")
    if country in ("BE", "CH"):
        words = name.casefold().replace("'", " ").replace("-", " ").split()
        if words and (words[0] in _FRENCH_LEADS or sum(w in _FRENCH_WORDS for w in words) >= 2):
            lang = "fr"
    return lang


def speakable(name: str, language: str) -> str:
    """Expand the few abbreviations espeak would spell out letter by letter."""
    if language == "de":
        for pattern, full in _ABBREVIATIONS_DE:
            name = pattern.sub(full, name)
    return name


@functools.lru_cache(maxsize=1)
def available_voices() -> frozenset[str]:
    """espeak-ng voice names usable here: espeak's languages and voice files, MBROLA voices whose database is installed."""
    exe = shutil.which("espeak-ng")
    if exe is None:
        return frozenset()
    names: set[str] = set()
    for listing in ("--voices", "--voices=mb"):
        out = subprocess.run([exe, listing], capture_output=True, text=True, timeout=30).stdout
        for line in out.splitlines()[1:]:
            cols = line.split()
            if len(cols) >= 5:
                names.add(cols[1])  # language, e.g. "de"
                names.add(cols[4].rsplit("/", 1)[-1])  # voice file, e.g. "mb-de2"
    # espeak lists every MBROLA voice it knows; only those with an installed diphone database speak
    return frozenset(n for n in names if not n.startswith("mb-") or _mbrola_installed(n[3:]))


def _mbrola_installed(db: str) -> bool:
    db = db.split("-", 1)[0]  # mb-de1-en speaks English with the de1 database
    return any(Path(d, db).exists() for d in ("/usr/share/mbrola", "/usr/local/share/mbrola", "/usr/share/mbrola/voices"))


def synthesize(text: str, voice: str, speed: int = 150, pitch: int = 50) -> np.ndarray:
    """Speak ``text`` with an espeak-ng voice (e.g. ``mb-de2``): 16 kHz mono float32.

    ``speed`` is words per minute (espeak ``-s``), ``pitch`` 0-99 (espeak ``-p``).
    """
    exe = shutil.which("espeak-ng")
    if exe is None:
        raise TTSError("espeak-ng is not installed (apt-get install espeak-ng mbrola mbrola-de2 ...)")
    if voice not in available_voices():
        # espeak-ng itself would silently fall back to its default voice
        raise TTSError(f"espeak-ng voice {voice!r} is not installed here")
    # "--" so a name starting with "-" is never read as an option
    cmd = [exe, "-v", voice, "-s", str(int(speed)), "-p", str(int(pitch)), "--stdout", "--", text]
    proc = subprocess.run(cmd, capture_output=True, timeout=60)
    err = proc.stderr.decode("utf-8", "replace").strip()
    # an unknown voice only prints an error and speaks with the default voice (exit status 0)
    # MBROLA replaces diphones its database lacks by silence: a few are harmless, more garble the name
    missing = err.count("unknown, replaced")
    if missing > MAX_MISSING_DIPHONES:
        raise TTSError(f"MBROLA voice {voice!r} lacks {missing} diphones of {text!r}; the clip would be garbled")
    if proc.returncode != 0 or len(proc.stdout) <= 44 or "does not exist" in err or "error" in err.lower():
        raise TTSError(f"espeak-ng voice {voice!r} produced no audio for {text!r}: {err[-300:] or 'empty output'}")
    audio, rate = sf.read(io.BytesIO(proc.stdout), dtype="float32", always_2d=True)
    audio = audio.mean(axis=1)
    if rate != SAMPLE_RATE:
        g = np.gcd(rate, SAMPLE_RATE)
        audio = signal.resample_poly(audio, SAMPLE_RATE // g, rate // g).astype(np.float32)
    if audio.size == 0 or float(np.abs(audio).max()) < 1e-4:
        raise TTSError(f"espeak-ng voice {voice!r} produced silence for {text!r}")
    return audio.astype(np.float32)


# --- augmentation ---------------------------------------------------------------------------------------------


def add_noise(audio: np.ndarray, snr_db: float, rng: np.random.Generator) -> np.ndarray:
    """Pink-ish background noise at a signal-to-noise ratio (dB) measured over the speech."""
    white = rng.standard_normal(len(audio)).astype(np.float32)
    noise = signal.lfilter([1.0], [1.0, -0.9], white).astype(np.float32)  # tilt towards low frequencies like room noise
    p_sig = float(np.mean(audio**2)) + 1e-12
    p_noise = float(np.mean(noise**2)) + 1e-12
    return audio + noise * np.sqrt(p_sig / (p_noise * 10 ** (snr_db / 10)))


def telephone(audio: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Narrow-band phone line: 8 kHz resampling, 300-3400 Hz band, mild clipping."""
    narrow = signal.resample_poly(audio, 1, 2)
    sos = signal.butter(4, [300, 3400], btype="bandpass", fs=8000, output="sos")
    narrow = signal.sosfilt(sos, narrow)
    gain = rng.uniform(1.0, 3.0)
    narrow = np.tanh(narrow * gain) / np.tanh(gain)
    return signal.resample_poly(narrow, 2, 1)[: len(audio)].astype(np.float32)


def reverb(audio: np.ndarray, rng: np.random.Generator, rt60: float | None = None, drr_db: float | None = None) -> np.ndarray:
    """Room reverberation: direct sound plus an exponentially decaying noise tail at a direct-to-reverberant ratio."""
    rt60 = rt60 if rt60 is not None else rng.uniform(0.2, 0.6)
    drr_db = drr_db if drr_db is not None else rng.uniform(0.0, 12.0)
    n = int(rt60 * SAMPLE_RATE)
    t = np.arange(1, n) / SAMPLE_RATE
    tail = rng.standard_normal(n - 1) * np.exp(-6.9 * t / rt60)  # -60 dB at rt60
    tail *= np.sqrt(10 ** (-drr_db / 10) / np.sum(tail**2))
    ir = np.concatenate([[1.0], tail])
    wet = signal.fftconvolve(audio, ir)[: len(audio) + n // 2]
    return wet.astype(np.float32)


def augment(audio: np.ndarray, kind: str, seed: int) -> np.ndarray:
    """Apply one of :data:`AUGMENTATIONS`, deterministically for a seed; the result peaks at 0.9 at most."""
    rng = np.random.default_rng(seed)
    out = np.asarray(audio, dtype=np.float32)
    if kind not in AUGMENTATIONS:
        raise ValueError(f"unknown augmentation {kind!r}; choose from {', '.join(AUGMENTATIONS)}")
    if "reverb" in kind:
        out = reverb(out, rng)
    if kind == "phone":
        out = telephone(out, rng)
    if "noise" in kind:
        out = add_noise(out, rng.uniform(8.0, 30.0), rng)
    peak = float(np.abs(out).max()) or 1.0
    return (out * min(1.0, 0.9 / peak)).astype(np.float32)


# --- deterministic choices ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Rendition:
    """How one name is spoken: enough to regenerate the clip exactly."""

    text: str
    language: str
    voice: str
    speed: int
    pitch: int
    augmentation: str
    seed: int


def _seed(key: str, salt: str) -> int:
    return int.from_bytes(hashlib.blake2b(f"{salt}\x00{key}".encode(), digest_size=8).digest(), "big")


def choose(key: str, name: str, countries: tuple[str, ...], allow_unseen: bool = True, salt: str = "tts-v1") -> Rendition:
    """Voice, speed, pitch and augmentation for a name, a pure function of its normalised key."""
    seed = _seed(key, salt)
    rng = np.random.default_rng(seed)
    language = language_of(name, countries)
    voices = [v for v in VOICES[language] if allow_unseen or v not in UNSEEN_VOICES]
    voice = voices[int(rng.integers(len(voices)))]
    speed = int(rng.integers(120, 191))
    pitch = int(rng.integers(25, 76))
    augmentation = AUGMENTATIONS[int(rng.choice(len(AUGMENTATIONS), p=_AUG_WEIGHTS))]
    return Rendition(speakable(name, language), language, voice, speed, pitch, augmentation, seed & 0xFFFFFFFF)


def render(r: Rendition) -> tuple[np.ndarray, Rendition]:
    """The audio of a :class:`Rendition`, and the rendition actually used.

    When an MBROLA voice cannot speak the name (missing diphones), espeak-ng's own voice of the language
    speaks it instead; the returned rendition says so.
    """
    try:
        audio = synthesize(r.text, r.voice, r.speed, r.pitch)
    except TTSError:
        if r.voice == r.language or r.language not in VOICES:
            raise
        r = dataclasses.replace(r, voice=r.language)
        audio = synthesize(r.text, r.voice, r.speed, r.pitch)
    return (augment(audio, r.augmentation, r.seed) if r.augmentation != "clean" else audio), r
