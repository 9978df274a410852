"""sle.tts and sle.synth: real espeak-ng audio, real Whisper base, tiny gazetteers in tmp dirs."""

from __future__ import annotations

import gzip
import subprocess
import sys
from collections import Counter

import numpy as np
import pytest

from sle import synth, tts
from sle.settings import REPO_DIR
from sle.text import normalize

# --- TTS ---------------------------------------------------------------------------------------------------------


def test_language_follows_country_with_french_heuristic():
    assert tts.language_of("Hauptstraße", ("DE",)) == "de"
    assert tts.language_of("Bahnhofstrasse", ("CH",)) == "de"
    assert tts.language_of("Kerkstraat", ("NL",)) == "nl"
    assert tts.language_of("Willem Herreynsstraat", ("BE",)) == "nl"
    assert tts.language_of("Rue du Timon", ("BE",)) == "fr"
    assert tts.language_of("Chaussée de Louvain", ("BE",)) == "fr"
    assert tts.language_of("Avenue de la Gare", ("CH",)) == "fr"
    assert tts.language_of("Storgatan", ("SE",)) == "sv"


def test_abbreviations_are_spoken_out():
    assert tts.speakable("Hauptstr.", "de") == "Hauptstraße"
    assert tts.speakable("Goethestr. 3", "de") == "Goethestraße 3"
    assert tts.speakable("Str. des 17. Juni", "de") == "straße des 17. Juni"
    assert tts.speakable("Kerkstr.", "nl") == "Kerkstr."


def test_synthesize_speaks_every_configured_voice():
    for language, voices in tts.VOICES.items():
        for voice in voices:
            a = tts.synthesize("Hauptstraße", voice)
            assert a.dtype == np.float32 and 0.4 < len(a) / tts.SAMPLE_RATE < 3.0, voice
            assert np.abs(a).max() > 0.05, voice


def test_speed_and_pitch_change_the_audio():
    slow = tts.synthesize("Bahnhofstraße", "mb-de2", speed=110)
    fast = tts.synthesize("Bahnhofstraße", "mb-de2", speed=200)
    assert len(slow) > 1.4 * len(fast)
    low, high = tts.synthesize("Bahnhofstraße", "mb-de2", pitch=20), tts.synthesize("Bahnhofstraße", "mb-de2", pitch=80)
    assert not np.array_equal(low[: min(len(low), len(high))], high[: min(len(low), len(high))])


def test_unknown_voice_is_a_clear_error():
    with pytest.raises(tts.TTSError, match="no-such-voice"):
        tts.synthesize("Hauptstraße", "no-such-voice")


def test_names_starting_with_a_dash_are_not_options():
    assert len(tts.synthesize("-Weg", "mb-de2")) > 0


def test_augmentations_are_deterministic_and_bounded():
    clean = tts.synthesize("Am Grabenhügel", "mb-de5")
    for kind in tts.AUGMENTATIONS:
        a, b = tts.augment(clean, kind, seed=7), tts.augment(clean, kind, seed=7)
        assert np.array_equal(a, b) and np.abs(a).max() <= 0.9 + 1e-6
        assert len(a) >= len(clean)
    assert not np.array_equal(tts.augment(clean, "noise", 1), tts.augment(clean, "noise", 2))
    with pytest.raises(ValueError):
        tts.augment(clean, "underwater", 0)


def test_noise_is_added_at_the_requested_snr():
    rng = np.random.default_rng(3)
    x = np.sin(np.linspace(0, 2000, 32000)).astype(np.float32) * 0.3
    noisy = tts.add_noise(x, 10.0, rng)
    snr = 10 * np.log10(np.mean(x**2) / np.mean((noisy - x) ** 2))
    assert snr == pytest.approx(10.0, abs=0.1)


def test_telephone_removes_high_frequencies():
    rng = np.random.default_rng(0)
    x = rng.standard_normal(16000).astype(np.float32) * 0.1
    y = tts.telephone(x, rng)
    spec = np.abs(np.fft.rfft(y)) ** 2
    freqs = np.fft.rfftfreq(len(y), 1 / 16000)
    assert spec[freqs > 4500].sum() < 0.01 * spec[(freqs > 500) & (freqs < 3000)].sum()


def test_choice_is_a_pure_function_of_the_name_and_training_never_uses_held_out_voices():
    r1 = tts.choose("hauptstraße", "Hauptstraße", ("DE",))
    assert r1 == tts.choose("hauptstraße", "Hauptstraße", ("DE",))
    voices = Counter(tts.choose(f"weg {i}", f"Weg {i}", ("DE",), allow_unseen=False).voice for i in range(400))
    assert not set(voices) & tts.UNSEEN_VOICES
    assert len(voices) == len(tts.VOICES["de"]) - len(tts.UNSEEN_VOICES & set(tts.VOICES["de"]))
    all_voices = {tts.choose(f"weg {i}", f"Weg {i}", ("DE",)).voice for i in range(400)}
    assert tts.UNSEEN_VOICES & set(tts.VOICES["de"]) <= all_voices
    (a, used), (b, _) = tts.render(r1), tts.render(r1)
    assert used == r1 and np.array_equal(a, b)


def test_mbrola_voice_missing_diphones_falls_back_to_espeak_voice():
    # mb-nl1's database lacks most diphones espeak-ng's Dutch asks for (the reason it is not in VOICES)
    with pytest.raises(tts.TTSError, match="diphones"):
        tts.synthesize("Kerkstraat", "mb-nl1")
    r = tts.Rendition("Kerkstraat", "nl", "mb-nl1", 150, 50, "clean", 1)
    audio, used = tts.render(r)
    assert used.voice == "nl" and len(audio) > 8000


# --- splits and plan ---------------------------------------------------------------------------------------------


def test_split_proportions_and_determinism():
    keys = [f"teststraße {i}" for i in range(40000)]
    counts = Counter(synth.split_of(k) for k in keys)
    assert counts["validation"] / len(keys) == pytest.approx(0.005, abs=0.0015)
    assert counts["test"] / len(keys) == pytest.approx(0.005, abs=0.0015)
    assert [synth.split_of(k) for k in keys[:100]] == [synth.split_of(k) for k in keys[:100]]


def _names_by_split(n_per_split: int) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {s: [] for s in synth.SPLITS}
    countries = ["DE", "BE", "SE", "NL", "AT", "CH"]
    i = 0
    while any(len(v) < n_per_split for v in out.values()):
        name = f"Linden{'weg' if i % 2 else 'straat'} {i}"
        sp = synth.split_of(normalize(name))
        if len(out[sp]) < n_per_split:
            out[sp].append(f"{name}\t{countries[i % len(countries)]}")
        i += 1
    return out


@pytest.fixture()
def tiny_gazetteer(tmp_path):
    by_split = _names_by_split(2)
    path = tmp_path / "streets.tsv"
    lines = ["name\tcountry"] + [x for v in by_split.values() for x in v]
    lines.append(by_split["train"][0].upper())  # a case variant must stay with its name's split
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_plan_orders_validation_then_train_then_test(tiny_gazetteer):
    from sle import gazetteer

    g = gazetteer.load(tiny_gazetteer)
    items = synth.plan(g.entries)
    assert [it.split for it in items] == ["validation"] * 2 + ["train"] * 2 + ["test"] * 2
    assert len({it.name_id for it in items}) == len(items)
    assert [it.split for it in synth.plan(g.entries, "test")] == ["test"] * 2


def test_run_writes_parts_and_resumes(tiny_gazetteer, tmp_path):
    out = tmp_path / "synthetic"
    first = synth.run(limit=1, workers=1, profile="offline", root=out, gazetteer_path=str(tiny_gazetteer), progress=False)
    assert first["written"] == {"validation": 1, "train": 1, "test": 1}
    # the second run does the rest in worker processes and skips what is done
    second = synth.run(limit=2, workers=2, profile="offline", root=out, gazetteer_path=str(tiny_gazetteer), progress=False, part_size=1)
    assert second["done_before"] == 3 and sum(second["written"].values()) == 3
    third = synth.run(workers=1, profile="offline", root=out, gazetteer_path=str(tiny_gazetteer), progress=False)
    assert third["written"] == {}

    rows = list(synth.read_rows(out))
    assert len(rows) == 6 * 2  # two recognisers per clip
    per_name = Counter(r["name_id"] for r in rows)
    assert set(per_name.values()) == {2}
    assert {r["asr"] for r in rows} == {"whisper:base", "whisper:base@lang2"}
    for r in rows:
        assert list(r) == list(synth.COLUMNS)
        assert synth.split_of(normalize(r["name"])) == r["split"]
        assert float(r["audio_seconds"]) > 0.3 and float(r["seconds"]) > 0
        if r["split"] == "train":
            assert r["voice"] not in tts.UNSEEN_VOICES
    assert any(r["transcript"] for r in rows)
    # parts are plain gzip TSV with a header, atomically renamed (no temp files left)
    parts = sorted(out.glob("*/part-*.tsv.gz"))
    assert len(parts) >= 4 and not list(out.glob("*/*.tmp"))
    with gzip.open(parts[0], "rt", encoding="utf-8") as f:
        assert f.readline().rstrip("\n").split("\t") == list(synth.COLUMNS)

    text = synth.card(out)
    assert "| validation | 2 | 3000 |" in text and "whisper:base@lang2" in text
    assert synth.write_card(out).read_text(encoding="utf-8") == text


def test_damaged_part_is_skipped_not_fatal(tmp_path):
    d = tmp_path / "train"
    d.mkdir()
    (d / "part-00000.tsv.gz").write_bytes(b"\x1f\x8b garbage")
    assert list(synth.read_rows(tmp_path)) == []


def test_cli_synth_card(tmp_path):
    out = subprocess.run([sys.executable, "-m", "sle", "synth", "--card", "--out", str(tmp_path)], capture_output=True, text=True, cwd=REPO_DIR, timeout=120)
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "README.md").read_text(encoding="utf-8").startswith("# Synthetic street-name speech")
