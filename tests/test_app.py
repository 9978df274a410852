"""The Gradio app as a client sees it: launched on localhost (its own process, a tiny real index, the packaged
Whisper models), driven through its named API endpoints with gradio_client."""

from __future__ import annotations

import csv
import functools
import json
import os
import socket
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from sle import annotations as an
from sle import gazetteer as gz
from sle import index as idx
from sle.settings import REPO_DIR, Settings

pytestmark = pytest.mark.slow
TARGET = "Hauptstraße"  # the name speech_wav says


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@functools.lru_cache(maxsize=1)
def shipped() -> gz.Gazetteer:
    return gz.load()


def make_slice(path: Path, step: int = 230, extra: tuple[str, ...] = (TARGET,)) -> Path:
    """Every ``step``-th name of the shipped gazetteer plus ``extra`` names: a small real gazetteer."""
    g = shipped()
    with open(path, "w", encoding="utf-8") as f:
        f.write("name\tcountry\n")
        for e in g.entries[::step]:
            for c in e.countries:
                f.write(f"{e.name}\t{c}\n")
        for name in extra:
            f.write(f"{name}\tDE\n")
    return path


def app_env(data_dir: Path, gazetteer: Path, port: int) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        SLE_DATA_DIR=str(data_dir), SLE_GAZETTEER=str(gazetteer), SLE_MODELS_DIR=str(data_dir / "no-models"),
        SLE_APP_PORT=str(port), SLE_APP_HOST="127.0.0.1", SLE_ASR_PROFILE="offline", SLE_ASR_OFFLINE="1",
        SLE_ASR_CPU_THREADS="2", GRADIO_ANALYTICS_ENABLED="False",
    )  # fmt: skip
    return env


def share_packaged_whisper(data_dir: Path) -> None:
    """Point the tmp data dir at the already assembled Whisper base (saves copying 140 MB per run)."""
    assembled = REPO_DIR / "var" / "models" / "whisper-base"
    if (assembled / "model.bin").is_file():
        (data_dir / "models").mkdir(parents=True, exist_ok=True)
        link = data_dir / "models" / "whisper-base"
        if not link.exists():
            link.symlink_to(assembled)


class App:
    """``python app.py`` in a subprocess, stopped at the end."""

    def __init__(self, env: dict[str, str], log: Path):
        self.url = f"http://127.0.0.1:{env['SLE_APP_PORT']}/"
        self.log = log
        self.proc = subprocess.Popen([sys.executable, str(REPO_DIR / "app.py")], env=env, cwd=REPO_DIR,
                                     stdout=open(log, "w"), stderr=subprocess.STDOUT)  # fmt: skip

    def wait(self, timeout: float = 180) -> "App":
        import urllib.request

        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"app exited: {self.log.read_text()[-3000:]}")
            try:
                urllib.request.urlopen(self.url, timeout=2)
                return self
            except OSError:
                time.sleep(0.5)
        raise TimeoutError(f"app did not start: {self.log.read_text()[-3000:]}")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()


@pytest.fixture(scope="module")
def app_settings(tmp_path_factory) -> Settings:
    root = tmp_path_factory.mktemp("app")
    s = Settings(data_dir=root / "var", gazetteer=make_slice(root / "slice.tsv"), upload_batch=500, models_dir=root / "var" / "no-models")
    idx.build(s=s, progress=False)
    share_packaged_whisper(s.data_dir)
    return s


@pytest.fixture(scope="module")
def app(app_settings, tmp_path_factory):
    a = App(app_env(app_settings.data_dir, app_settings.gazetteer, free_port()), tmp_path_factory.mktemp("log") / "app.log").wait()
    yield a
    a.stop()


@pytest.fixture(scope="module")
def client(app):
    from gradio_client import Client

    return Client(app.url, verbose=False)


def test_api_lists_the_named_endpoints(client):
    names = set(client.view_api(print_info=False, return_format="dict")["named_endpoints"])
    assert {"/transcribe", "/link", "/label", "/export", "/items"} <= names


def test_clip_in_transcripts_and_candidates_out_label_stored_listed_exported(client, app_settings, speech_wav, tmp_path):
    from gradio_client import handle_file

    heard = client.predict(handle_file(str(speech_wav)), api_name="/transcribe")
    assert heard["recognisers"] == ["whisper:base", "whisper:base@lang2"] and heard["profile"] == "offline"
    assert all(heard["transcripts"][r].strip() for r in heard["recognisers"]), heard
    assert heard["timings_ms"]["asr"] > 0

    linked = client.predict(heard["transcripts"], 10, TARGET, api_name="/link")
    recs = ("whisper:base", "whisper:base@lang2")
    assert set(linked["systems"]) == {f"{sys}@{r}" for sys in ("sparse", "phonetic") for r in recs}  # no dense model here
    for cands in linked["systems"].values():
        assert 1 <= len(cands) <= 10 and [c["rank"] for c in cands] == list(range(1, len(cands) + 1))
        assert [c["score"] for c in cands] == sorted((c["score"] for c in cands), reverse=True)
    target_id = gz.load(app_settings.gazetteer).find(TARGET).id
    assert linked["target"]["id"] == target_id
    assert min(r for r in linked["target"]["ranks"].values() if r) <= 3, linked["target"]  # the spoken street is found

    item = client.predict(handle_file(str(speech_wav)), "tester", TARGET, TARGET, api_name="/label")
    assert item["annotator"] == "tester" and item["label_kind"] == "entry" and item["label_id"] == target_id
    assert item["prompt_id"] == target_id and set(item["ranks"]) == set(linked["systems"])
    assert all(len(v) <= app_settings.annotations_k for v in item["systems"].values())

    # the stored row, seen by another process, with its audio
    store = an.Store(app_settings)
    row = store.get(item["id"])
    assert row.uid == item["uid"] and sf.info(row.audio).samplerate == 16000

    # the data tab's listing
    table, *_ = client.predict("", api_name="/items")
    rows = table["data"] if isinstance(table, dict) else table
    assert any(int(r[0]) == item["id"] and r[2] == "tester" and r[4] == TARGET for r in rows)

    # exports
    path = client.predict("jsonl", "tester", api_name="/export")
    lines = [json.loads(x) for x in Path(path).read_text(encoding="utf-8").splitlines()]
    assert [x["uid"] for x in lines] == [item["uid"]]
    path = client.predict("csv", "", api_name="/export")
    with open(path, encoding="utf-8", newline="") as f:
        assert item["uid"] in [r["uid"] for r in csv.DictReader(f)]
    path = client.predict("audiofolder", "", api_name="/export")
    with zipfile.ZipFile(path) as z:
        meta = [json.loads(x) for x in z.read("metadata.jsonl").decode().splitlines()]
        mine = next(m for m in meta if m["uid"] == item["uid"])
        assert mine["label_name"] == TARGET and sf.info(z.open(mine["file_name"])).frames > 0


def test_bad_audio_gets_a_clear_message(client, tmp_path):
    from gradio_client import handle_file

    silent = tmp_path / "silent.wav"
    sf.write(silent, np.zeros(16000, dtype=np.float32), 16000)
    with pytest.raises(Exception, match="silent"):
        client.predict(handle_file(str(silent)), api_name="/transcribe")
    junk = tmp_path / "junk.wav"
    junk.write_bytes(b"this is not audio at all" * 10)
    with pytest.raises(Exception, match="(?i)not audio|damaged|decod"):
        client.predict(handle_file(str(junk)), api_name="/transcribe")
    with pytest.raises(Exception, match="annotator"):
        client.predict(handle_file(str(junk)), "", TARGET, "", api_name="/label")


def test_missing_index_says_so_transcription_still_works_login_required(app_settings, speech_wav, tmp_path):
    from gradio_client import Client, handle_file

    data_dir = tmp_path / "empty"
    share_packaged_whisper(data_dir)
    env = app_env(data_dir, app_settings.gazetteer, free_port())
    env["SLE_APP_AUTH"] = "anna:secret"  # and with a login: no API without it
    a = App(env, tmp_path / "app.log").wait()
    try:
        with pytest.raises(Exception):
            Client(a.url, verbose=False).predict({"whisper:base": "x"}, 10, "", api_name="/link")
        c = Client(a.url, auth=("anna", "secret"), verbose=False)
        with pytest.raises(Exception, match="index is not ready"):
            c.predict({"whisper:base": "hauptstrasse"}, 10, "", api_name="/link")
        heard = c.predict(handle_file(str(speech_wav)), api_name="/transcribe")
        assert heard["transcripts"]["whisper:base"].strip()
    finally:
        a.stop()


def test_parallel_annotators_through_the_queue(app, app_settings, speech_wav):
    import concurrent.futures as cf

    from gradio_client import Client, handle_file

    def label(i: int) -> int:
        c = Client(app.url, verbose=False)
        return c.predict(handle_file(str(speech_wav)), f"parallel-{i}", TARGET, "", api_name="/label")["id"]

    with cf.ThreadPoolExecutor(4) as ex:
        ids = list(ex.map(label, range(4)))
    store = an.Store(app_settings)
    assert len(set(ids)) == 4 and all(store.get(i).annotator.startswith("parallel-") for i in ids)
    assert {a: p["items"] for a, p in store.progress().items() if a.startswith("parallel-")} == {f"parallel-{i}": 1 for i in range(4)}
