"""Shared fixtures. Speech fixtures make real audio with espeak-ng (skipped where it is not installed)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest


def _need(tool: str) -> str:
    exe = shutil.which(tool)
    if exe is None:
        pytest.skip(f"{tool} is not installed")
    return exe


@pytest.fixture(scope="session")
def speech_wav(tmp_path_factory) -> Path:
    """A real recording of a German street name: espeak-ng with the MBROLA voice de2, 16 kHz mono WAV."""
    exe = _need("espeak-ng")
    path = tmp_path_factory.mktemp("speech") / "hauptstrasse.wav"
    subprocess.run([exe, "-v", "mb-de2", "-s", "140", "-w", str(path), "Hauptstraße"], check=True, capture_output=True)
    return path


@pytest.fixture(scope="session")
def audio_files(speech_wav, tmp_path_factory) -> dict[str, Path]:
    """The speech clip in the formats browsers and people send, made with sox and ffmpeg."""
    sox, ffmpeg = _need("sox"), _need("ffmpeg")
    d = tmp_path_factory.mktemp("formats")
    files = {"wav": speech_wav}

    def ff(name: str, *args: str) -> None:
        out = d / name
        subprocess.run([ffmpeg, "-v", "error", "-y", "-i", str(speech_wav), *args, str(out)], check=True, capture_output=True)
        files[name] = out

    subprocess.run([sox, str(speech_wav), "-r", "44100", "-c", "2", str(d / "stereo44k.wav")], check=True)
    files["stereo44k.wav"] = d / "stereo44k.wav"
    subprocess.run([sox, str(speech_wav), str(d / "speech.flac")], check=True)
    files["flac"] = d / "speech.flac"
    ff("speech.mp3")
    ff("opus.ogg", "-c:a", "libopus")
    ff("vorbis.ogg", "-c:a", "libvorbis")
    ff("speech.webm", "-c:a", "libopus")
    ff("speech.m4a", "-c:a", "aac")
    return files


@pytest.fixture(scope="session")
def gazetteer_slice(tmp_path_factory):
    """``gazetteer_slice(step)``: a TSV of every step-th name of the shipped gazetteer (all countries), made once."""
    from sle import gazetteer as gz

    made: dict[int, Path] = {}

    def make(step: int) -> Path:
        if step not in made:
            g = gz.load()
            path = tmp_path_factory.mktemp("gaz") / f"slice-{step}.tsv"
            with open(path, "w", encoding="utf-8") as f:
                f.write("name\tcountry\n")
                for e in g.entries[::step]:
                    for c in e.countries:
                        f.write(f"{e.name}\t{c}\n")
            made[step] = path
        return made[step]

    return make
