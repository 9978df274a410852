"""The app in a real browser: Debian's chromium, headless, driven by Playwright, its microphone fed from a TTS clip.

Record -> transcripts and ranked lists on the page -> save the label with its keyboard shortcut -> the row is in
SQLite and in the Data tab. ``SLE_SCREENSHOT=docs/screenshot.png`` also saves a screenshot of the results.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from scipy import signal

from test_app import TARGET, App, app_env, free_port, make_slice, share_packaged_whisper

CHROMIUM = Path("/usr/bin/chromium")
pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed (apt-get install chromium)"),
]
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--autoplay-policy=no-user-gesture-required",
    "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
]  # fmt: skip


@pytest.fixture(scope="module")
def mic_wav(tmp_path_factory) -> Path:
    """The street name spoken by espeak-ng, padded with silence, at 48 kHz (the rate Chromium's fake device runs at)."""
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed")
    from sle import tts

    audio = tts.synthesize(TARGET, "mb-de2", speed=140)
    pad = np.zeros(8000, dtype=np.float32)
    audio = signal.resample_poly(np.concatenate([pad, audio, pad, pad]), 3, 1).astype(np.float32)
    path = tmp_path_factory.mktemp("mic") / "mic.wav"
    sf.write(path, audio, 48000, subtype="PCM_16")
    return path


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    from sle import index as idx
    from sle.settings import Settings

    root = tmp_path_factory.mktemp("browser-app")
    s = Settings(data_dir=root / "var", gazetteer=make_slice(root / "slice.tsv"), upload_batch=500, models_dir=root / "var" / "no-models")
    idx.build(s=s, progress=False)
    share_packaged_whisper(s.data_dir)
    a = App(app_env(s.data_dir, s.gazetteer, free_port()), root / "app.log").wait()
    a.data_dir = s.data_dir
    yield a
    a.stop()


@pytest.fixture()
def page(mic_wav):
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=[*CHROMIUM_ARGS, f"--use-file-for-fake-audio-capture={mic_wav}"])
        ctx = browser.new_context(viewport={"width": 1400, "height": 1000})
        pg = ctx.new_page()
        pg.set_default_timeout(60_000)
        yield pg
        browser.close()


def test_record_results_label_row_in_sqlite(app, page, tmp_path):
    names = tmp_path / "prompts.txt"
    names.write_text(f"name\n{TARGET}\n", encoding="utf-8")

    page.goto(app.url)
    # Try it: a typed transcript searches without a recording
    box = page.locator("#try-text-0 textarea").first
    box.fill("hauptstrase")
    box.press("Enter")
    page.wait_for_selector(f"#try-results .sle-col:has-text('{TARGET}')")

    page.get_by_role("tab", name="Collect").click()
    page.locator("#collect-annotator textarea, #collect-annotator input").first.fill("browser")
    page.locator("input[type=file]").first.set_input_files(names)  # prompt from an uploaded list
    page.wait_for_selector("text=prompts.txt")
    page.locator("#collect-next").click()
    page.wait_for_selector(f".sle-prompt:has-text('{TARGET}')")

    page.locator("#collect-audio button.record-button").click()
    page.wait_for_timeout(3500)  # the fake microphone loops the clip
    page.locator("#collect-audio button.stop-button").click()
    page.wait_for_selector("#collect-results .sle-col", timeout=120_000)

    transcripts = [page.locator(f"#collect-text-{i} textarea, #collect-text-{i} input").first.input_value() for i in range(2)]
    assert all(t.strip() for t in transcripts), transcripts
    columns = page.locator("#collect-results .sle-col")
    assert columns.count() == 4  # phonetic and sparse per recogniser (no dense model in this data dir)
    assert "phonetic@whisper:base" in columns.first.inner_text()
    assert "sparse@whisper:base" in page.locator("#collect-results").inner_text()
    assert page.locator("#collect-results tr.target").count() >= 1  # the prompted street is in a list, highlighted
    if os.environ.get("SLE_SCREENSHOT"):
        page.screenshot(path=os.environ["SLE_SCREENSHOT"], full_page=True)

    page.locator("body").click(position={"x": 5, "y": 5})  # focus outside text fields, where the shortcuts act
    page.keyboard.press("Alt+s")
    page.wait_for_selector("#collect-status:has-text('Saved')")

    con = sqlite3.connect(app.data_dir / "annotations" / "annotations.sqlite")
    rows = con.execute("SELECT annotator, prompt_name, label_kind, label_name, audio, transcripts FROM items").fetchall()
    con.close()
    assert len(rows) == 1
    annotator, prompt_name, kind, label_name, audio, stored = rows[0]
    assert (annotator, prompt_name, kind, label_name) == ("browser", TARGET, "entry", TARGET)
    assert sf.info(app.data_dir / "annotations" / audio).duration > 1.0
    assert all(t in stored for t in transcripts)

    # Data tab: the row is listed; select it, fix its label, delete it
    page.get_by_role("tab", name="Data").click()
    page.wait_for_selector("#data-items:has-text('browser')")
    assert TARGET in page.locator("#data-items").inner_text()
    page.locator("#data-items [data-testid=cell-0-2]").click()
    page.wait_for_selector("#data-audio audio, #data-audio [data-testid=waveform-Recording]", state="attached")
    box = page.locator("#data-fix-label input").first
    box.click()
    box.fill("Nowhere Road 99")
    box.press("Enter")
    page.locator("#data-fix").click()
    page.wait_for_selector("#data-items:has-text('Nowhere Road 99')")
    con = sqlite3.connect(app.data_dir / "annotations" / "annotations.sqlite")
    assert con.execute("SELECT label_kind, label_name FROM items").fetchall() == [("typed", "Nowhere Road 99")]
    page.locator("#data-delete").click()
    page.wait_for_function("() => !document.querySelector('#data-items').innerText.includes('browser')")
    assert con.execute("SELECT COUNT(*) FROM items").fetchone()[0] == 0
    con.close()
    assert not (app.data_dir / "annotations" / audio).exists()


def test_missing_index_offers_to_build_it_and_shows_progress(tmp_path, page):
    from sle.settings import Settings

    s = Settings(data_dir=tmp_path / "var", gazetteer=make_slice(tmp_path / "slice.tsv", step=2000))
    share_packaged_whisper(s.data_dir)
    a = App(app_env(s.data_dir, s.gazetteer, free_port()), tmp_path / "app.log").wait()
    try:
        page.goto(a.url)
        page.wait_for_selector("text=Street index: missing")
        page.get_by_role("button", name="Build the street index").click()
        page.wait_for_selector("text=/Street index: ready/", timeout=120_000)
        assert not page.get_by_role("button", name="Build the street index").is_visible()
    finally:
        a.stop()
    from sle import index as idx

    assert idx.build_status(s).ready
