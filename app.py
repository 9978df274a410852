"""sle in the browser: speak a street name, see what each recogniser heard and how each retrieval system ranked
the streets, label recordings, and evaluate the systems on the labelled (human control) data.

    python app.py                 # http://127.0.0.1:7860 (SLE_APP_HOST / SLE_APP_PORT change it)

This file only wires Gradio to the library (sle.link, sle.asr, sle.audio, sle.annotations, sle.index);
docs/app.md describes the tabs and the API endpoints.
"""

from __future__ import annotations

import html
import logging
import random
import tempfile
import threading
import time
from pathlib import Path

import gradio as gr

from sle import annotations as an
from sle import asr
from sle import audio as au
from sle import gazetteer as gz
from sle import index as idx
from sle import link
from sle.settings import Settings, settings as default_settings

log = logging.getLogger("sle.app")

N_RECOGNISERS = 2  # transcript boxes on the page (a profile has two recognisers)
# Column order on the page: systems whose key starts with the first prefix come first, and so on.
SYSTEM_ORDER = ("reranked", "hybrid", "dense-avg", "dense@", "phonetic@", "sparse@")
SYSTEM_FAMILIES = {
    "dense-avg": "needs a dense model in models/ and its vectors in the index (`python -m sle index`)",
    "dense@": "needs a dense model in models/ and its vectors in the index",
    "hybrid": "fuses dense and sparse: needs the dense model",
    "phonetic@": "needs phoneme vectors in the index: rebuild it (`python -m sle index`)",
    "reranked": "needs a trained reranker in models/ (`python -m sle eval --train-reranker`)",
}
COLLECT_GUIDELINES = """
**How to record**: press *Next street*, read the street name aloud once, the way you would say it on the phone,
then stop the recording. The app transcribes and searches; check the label (it defaults to the prompted street)
and press *Save*. Misread it, or noise? Record again before saving, or *Skip*. *None of these* is for free
recordings whose street is in no list. One name per clip, no house numbers, under 30 s.

Keys (outside text fields): **Alt+R** record/stop · **Alt+S** save · **Alt+N** none of these · **Alt+K** skip ·
**Alt+Z** undo last.
"""
KEYS_JS = """
<script>
// Alt+<key> clicks the button with that element id (Gradio has no keyboard bindings for buttons)
document.addEventListener("keydown", (ev) => {
  if (!ev.altKey) return;
  const ids = {s: "collect-save", n: "collect-none", k: "collect-skip", z: "collect-undo"};
  const key = ev.key.toLowerCase();
  let el = ids[key] && document.getElementById(ids[key]);
  if (key === "r") {
    const box = document.getElementById("collect-audio");
    const visible = (b) => b && b.offsetParent !== null;  // record and stop buttons both exist; one is shown
    el = box && [...box.querySelectorAll("button.record-button, button.stop-button")].find(visible);
  }
  if (el) { ev.preventDefault(); el.click(); }
});
</script>
"""
CSS = """
.sle-grid {display: grid; grid-template-columns: repeat(auto-fit, minmax(210px, 1fr)); gap: 10px;}
.sle-col {border: 1px solid var(--border-color-primary); border-radius: 8px; padding: 6px; font-size: 13px;}
.sle-col h4 {margin: 2px 0 6px 0; font-size: 13px;}
.sle-col table {width: 100%; border-collapse: collapse;}
.sle-col td {padding: 2px 4px; border-top: 1px solid var(--border-color-primary);}
.sle-col td.r, .sle-col td.s {text-align: right; color: var(--body-text-color-subdued); white-space: nowrap;}
.sle-col tr.target td {background: #fde68a; color: #111; font-weight: 600;}
.sle-prompt {font-size: 28px; font-weight: 700; padding: 8px 0;}
"""


class Services:
    """The loaded parts, each created once, on first use, behind a lock (requests may arrive while loading)."""

    def __init__(self, s: Settings):
        self.s = s
        self._index_lock = threading.Lock()  # the embedded index must not be opened twice at once
        self._gazetteer_lock = threading.Lock()
        self._linker: link.Linker | None = None
        self._gazetteer: gz.Gazetteer | None = None
        self.build: dict = {"running": False, "done": 0, "total": 0, "what": "", "error": "", "report": ""}

    def gazetteer(self) -> gz.Gazetteer:
        with self._gazetteer_lock:
            if self._gazetteer is None:
                self._gazetteer = gz.load(settings=self.s)
            return self._gazetteer

    def linker(self) -> link.Linker:
        """The index and dense model; raises gr.Error with the index's state when it is missing or building."""
        with self._index_lock:
            if self._linker is None:
                if self.build["running"]:
                    raise gr.Error(f"The street index is being built ({self.index_status()}); try again when it is ready.")
                try:
                    self._linker = link.Linker(self.s)
                except idx.IndexInUse as e:
                    raise gr.Error(f"The street index cannot be opened: {e}") from e
                except idx.IndexNotReady as e:
                    raise gr.Error(f"The street index is not ready: {e}. Build it on the page (button at the top).") from e
                except Exception as e:  # the embedded engine opens in one process at a time
                    raise gr.Error(f"The street index at {self.s.index_dir} could not be opened ({e}); is another sle process "
                                   "using it? The embedded index serves one process; use a Qdrant server (SLE_QDRANT_URL) to share it.") from e  # fmt: skip
            return self._linker

    def profile(self) -> asr.Profile:
        return asr.profile(None, self.s)

    def store(self) -> an.Store:
        return an.get_store(self.s)

    def index_status(self) -> str:
        """One line on the index: ready, building (with progress), or missing."""
        b = self.build
        if b["running"]:
            pct = f" ({100 * b['done'] / b['total']:.0f}%)" if b["total"] else ""
            return f"building: {b['done']:,}/{b['total']:,} {b['what']}{pct}"
        if b["error"]:
            return f"build failed: {b['error']}"
        if self._linker is not None:
            return f"ready: {len(self._linker.index):,} names" + (", dense vectors" if self._linker.has_dense else ", sparse only")
        if not self._index_lock.acquire(timeout=0.5):
            return "loading"
        try:
            if self._linker is not None:
                return self.index_status()
            m = idx.build_status(self.s)
        except idx.IndexInUse as e:
            return f"cannot be opened ({e})"
        finally:
            self._index_lock.release()
        if m is None:
            return "missing"
        return "ready (not loaded yet)" if m.ready else f"incomplete: {m.points_done:,}/{m.n_points:,} names (resume the build)"

    def start_build(self) -> str:
        """Build (or resume) the index in a background thread, so it survives closed browser tabs."""
        with self._index_lock:
            if self.build["running"] or self._linker is not None:
                return self.index_status()
            self.build.update(running=True, error="", done=0, total=0, what="starting")

        def progress(done, total, what):
            self.build.update(done=done, total=total, what=what)

        def work():
            try:
                self.build["report"] = idx.build(s=self.s, progress=False, on_progress=progress)
            except Exception as e:  # shown on the page; the build resumes from its checkpoint next time
                log.exception("index build failed")
                self.build["error"] = f"{type(e).__name__}: {e}"
            finally:
                self.build["running"] = False

        threading.Thread(target=work, name="sle-index-build", daemon=True).start()
        return self.index_status()

    def warm_up(self) -> None:
        """Load gazetteer, index and recognisers in the background, so the first request does not wait for all."""

        def work():
            for part in (self.gazetteer, self.profile, self.linker):
                try:
                    part()
                except Exception as e:  # reported when a request needs the part
                    log.warning("warm-up: %s", e)

        threading.Thread(target=work, name="sle-warm-up", daemon=True).start()


# --- presentation ------------------------------------------------------------------------------------------


def ordered_systems(keys) -> list[str]:
    return sorted(keys, key=lambda k: (next((i for i, p in enumerate(SYSTEM_ORDER) if k.startswith(p)), 99), k))


def missing_systems(keys) -> list[str]:
    return [f"`{fam}{'*' if fam.endswith('@') else ''}` ({why})" for fam, why in SYSTEM_FAMILIES.items() if not any(k.startswith(fam) for k in keys)]


def results_html(result: dict, target_id: int | None, target_name: str, shown: int) -> str:
    """The systems side by side: rank, name, countries, score; the target highlighted, its rank in each header."""
    systems = result.get("systems", {})
    if not systems:
        return "<p>No transcript to search with: the recognisers heard no speech. Type what was said in a box above.</p>"
    cols = []
    for key in ordered_systems(systems):
        cands = systems[key]
        rank = next((c["rank"] for c in cands if target_id is not None and int(c["id"]) == target_id), None)
        head = html.escape(key)
        if target_id is not None:
            head += f" &nbsp;<small>target: {'#' + str(rank) if rank else f'not in top {len(cands)}'}</small>"
        rows = "".join(
            f"<tr class='{'target' if target_id is not None and int(c['id']) == target_id else ''}'><td class='r'>{c['rank']}</td>"
            f"<td>{html.escape(c['name'])} <small>{html.escape(','.join(c['countries']))}</small></td><td class='s'>{c['score']:.3g}</td></tr>"
            for c in cands[:shown]
        )
        cols.append(f"<div class='sle-col'><h4>{head}</h4><table>{rows}</table></div>")
    note = f"<p>Target: <b>{html.escape(target_name)}</b></p>" if target_name else ""
    return note + f"<div class='sle-grid'>{''.join(cols)}</div>"


def info_md(result: dict, asr_info: dict) -> str:
    """Active recognisers and models, fallbacks said plainly, missing systems, timings."""
    lines = []
    if asr_info.get("recognisers"):
        lines.append(f"**Recognisers**: {', '.join(asr_info['recognisers'])} (profile `{asr_info.get('profile', '')}`)")
    if asr_info.get("fallback_reason"):
        lines.append(f"⚠️ **Fallback**: the default recognisers (Whisper turbo + Parakeet) are not available here, so the packaged "
                     f"Whisper base models stand in; transcripts are worse than with the default pair. Reason: {asr_info['fallback_reason']}")  # fmt: skip
    models = [f"{kind} `{name}`" for kind, name in result.get("models", {}).items() if name]
    if models:
        lines.append("**Models**: " + ", ".join(models))
    systems = result.get("systems", {})
    if systems:
        missing = missing_systems(systems)
        if missing:
            lines.append("**Not shown**: " + "; ".join(missing))
    timings = {**asr_info.get("timings_ms", {}), **result.get("timings_ms", {})}
    if timings:
        lines.append("**Timings**: " + ", ".join(f"{k} {v:.0f} ms" for k, v in timings.items()))
    return "\n\n".join(lines)


# --- the app -----------------------------------------------------------------------------------------------


def build_demo(s: Settings = default_settings, services: Services | None = None) -> gr.Blocks:
    """The Gradio app on settings ``s``."""
    sv = services or Services(s)
    shown = s.top_k
    asr_limit = dict(concurrency_limit=s.app_asr_concurrency, concurrency_id="asr")
    search_limit = dict(concurrency_limit=s.app_search_concurrency, concurrency_id="search")
    private = dict(api_visibility="private")

    # --- library calls shared by the page and the API --------------------------------------------------------
    def transcribe(audio_path: str | None) -> dict:
        if not audio_path:
            raise gr.Error("No audio: record with the microphone or upload a file first.")
        t0 = time.perf_counter()
        try:
            samples = au.load_audio(audio_path, s=s)
        except au.AudioError as e:
            raise gr.Error(str(e)) from e
        t_load = (time.perf_counter() - t0) * 1e3
        p = sv.profile()
        t0 = time.perf_counter()
        ts = [t[0] for t in asr.transcribe_many(p.transcribers, [samples])]
        return {
            "transcripts": {t.recognizer: t.text for t in ts},
            "recognisers": p.specs,
            "profile": p.name,
            "fallback_reason": p.fallback_reason,
            "timings_ms": {"load_audio": round(t_load, 1), "asr": round((time.perf_counter() - t0) * 1e3, 1)},
        }

    def target_of(text: str | None) -> tuple[int | None, str]:
        if not text or not str(text).strip():
            return None, ""
        lab = an.resolve_label(text, sv.gazetteer())
        return (lab.id, lab.name) if lab.kind == "entry" else (None, lab.name)

    def link_texts(transcripts: dict, k: int | None = None, target: str = "") -> dict:
        linker = sv.linker()
        result = linker.link_texts({r: t or "" for r, t in (transcripts or {}).items()}, k=int(k or s.annotations_k)).to_dict()
        result["models"] = {"dense": s.dense_model if linker.has_dense else "", "reranker": s.reranker_model if "reranked" in result["systems"] else ""}
        tid, tname = target_of(target)
        if tid is not None or tname:
            result["target"] = {"id": tid, "name": tname,
                                "ranks": an.ranks_of(result["systems"], tid) if tid is not None else {}}  # fmt: skip
        return result

    def store_label(annotator: str, audio_path: str, label_text: str, asr_info: dict, result: dict, prompt: dict | None) -> an.Item:
        if not (annotator or "").strip():
            raise gr.Error("Enter your name (annotator) first.")
        if not result or not audio_path:
            raise gr.Error("Nothing to label yet: record a street name first.")
        label = an.resolve_label(label_text, sv.gazetteer())
        prompt = prompt or {}
        return sv.store().add(
            annotator, audio_path, label, result.get("transcripts", {}), result.get("systems", {}),
            {**asr_info.get("timings_ms", {}), **result.get("timings_ms", {})},
            prompt_id=int(prompt["id"]) if prompt.get("id") else None, prompt_name=prompt.get("name", ""),
            profile=asr_info.get("profile", "") + (" (fallback)" if asr_info.get("fallback_reason") else ""),
        )  # fmt: skip

    def suggest(data: gr.KeyUpData):
        """Autocomplete over the gazetteer: the sparse index finds names close to what was typed so far."""
        text = (data.input_value or "").strip()
        if len(text) < 2:
            return gr.update()
        try:
            names = [c.name for c in sv.linker().search([text], "sparse", k=15)]
        except gr.Error:
            g = sv.gazetteer()
            names = [e.name for e in g.entries if e.key.startswith(text.casefold())][:15]
        return gr.update(choices=[text] + [n for n in names if n != text])

    def label_choices(result: dict, prompt_name: str = "") -> list[str]:
        names = an.candidate_union(result.get("systems", {}))
        first = [prompt_name] if prompt_name else []
        return first + [n for n in names if n != prompt_name] + [an.NONE_LABEL]

    # --- page handlers ---------------------------------------------------------------------------------------
    def boxes(info: dict) -> list:
        specs = info.get("recognisers", [])
        out = []
        for i in range(N_RECOGNISERS):
            if i < len(specs):
                out.append(gr.update(value=info["transcripts"].get(specs[i], ""), label=f"heard by {specs[i]}", visible=True))
            else:
                out.append(gr.update(value="", visible=False))
        return out

    def on_transcribe(audio_path):
        info = transcribe(audio_path)
        return *boxes(info), info, info_md({}, info)

    def on_link(info, target, *texts):
        if not any((t or "").strip() for t in texts):
            return gr.update(), {}, gr.update()
        if not info:  # typed without a recording: the boxes stand for the active recognisers
            p = sv.profile()
            info = {"recognisers": p.specs, "profile": p.name, "fallback_reason": p.fallback_reason}
        transcripts = dict(zip(info.get("recognisers", []), texts))
        result = link_texts(transcripts, target=target or "")
        tid, tname = target_of(target)
        return results_html(result, tid, tname, shown), result, info_md(result, info)

    def next_prompt(countries, prompt_file):
        names = an.read_prompt_list(prompt_file) if prompt_file else []
        try:
            pid, name = an.pick_prompt(sv.gazetteer(), random.Random(), countries or (), names)
        except ValueError as e:
            raise gr.Error(str(e)) from e
        prompt = {"id": pid, "name": name}
        return prompt, f"<div class='sle-prompt'>{html.escape(name)}</div>", None, "", gr.update(choices=[name, an.NONE_LABEL], value=name), {}, {}

    def on_collect_link(info, prompt, *texts):
        prompt = prompt or {}
        transcripts = dict(zip(info.get("recognisers", []), texts))
        result = link_texts(transcripts)
        pid = int(prompt["id"]) if prompt.get("id") else None
        choices = label_choices(result, prompt.get("name", ""))
        value = prompt.get("name") or (choices[0] if choices else an.NONE_LABEL)
        return results_html(result, pid, prompt.get("name", ""), shown), result, info_md(result, info), gr.update(choices=choices, value=value)

    def progress_rows():
        return [[a, p["items"], p["prompted"], p["none"]] for a, p in sv.store().progress().items()]

    def on_save(annotator, audio_path, label_text, info, result, prompt, countries, prompt_file, none=False):
        item = store_label(annotator, audio_path, an.NONE_LABEL if none else label_text, info, result, prompt)
        ranks = ", ".join(f"{k} {'#' + str(v) if v else '-'}" for k, v in item.ranks.items())
        msg = f"Saved #{item.id} ({item.label_name}); rank per system: {ranks or 'n/a'}"
        return (msg, progress_rows(), *next_prompt(countries, prompt_file))

    def on_undo(annotator):
        item = sv.store().undo_last(annotator or "")
        return (f"Removed #{item.id} ({item.label_name})." if item else "Nothing to undo."), progress_rows()

    def items_table(annotator):
        rows = []
        for i in sv.store().list(annotator or None):
            ranks = " ".join(f"{k}:{v or '-'}" for k, v in i.ranks.items())
            rows.append([i.id, time.strftime("%Y-%m-%d %H:%M", time.gmtime(i.created_at)), i.annotator, i.prompt_name, i.label_name,
                         " | ".join(i.transcripts.values()), ranks])  # fmt: skip
        return rows

    def on_data_refresh(annotator):
        store = sv.store()
        rec = store.recall(annotator=annotator or None)
        rec_rows = [[k, v["n"], v["r@1"], v["r@10"], v["r@40"]] for k, v in rec.items()]
        return items_table(annotator), gr.update(choices=[""] + store.annotators()), rec_rows, an.plot_recall(rec)

    def on_select(evt: gr.SelectData):
        item_id = int(evt.row_value[0])  # the clicked row as shown (the table may be sorted in the browser)
        item = sv.store().get(item_id)
        if item is None:
            raise gr.Error(f"Item {item_id} no longer exists.")
        return item_id, item.audio, gr.update(value=item.label_name, choices=label_choices({"systems": item.systems}, item.prompt_name))

    def on_fix(item_id, label_text, annotator):
        if not item_id:
            raise gr.Error("Select an item in the table first.")
        item = sv.store().update_label(int(item_id), an.resolve_label(label_text, sv.gazetteer()))
        gr.Info(f"Item #{item.id} is now labelled {item.label_name}.")
        return on_data_refresh(annotator)

    def on_delete(item_id, annotator):
        if not item_id:
            raise gr.Error("Select an item in the table first.")
        sv.store().delete(int(item_id))
        return (None, None, *on_data_refresh(annotator))

    export_dir = Path(tempfile.mkdtemp(prefix="sle-export-"))  # Gradio serves files from the temp dir; it caches a copy

    def export(kind: str, annotator: str = "") -> str:
        return str(sv.store().export(kind, export_dir, annotator or None))

    # --- API-only endpoints (named, stable, JSON in and out) -----------------------------------------------
    def api_label(audio_path: str, annotator: str, label: str, prompt: str = "") -> dict:
        if not (annotator or "").strip():
            raise gr.Error("Enter your name (annotator) first.")
        info = transcribe(audio_path)
        result = link_texts(info["transcripts"])
        pid, pname = target_of(prompt)
        item = store_label(annotator, audio_path, label or prompt, info, result, {"id": pid, "name": pname} if prompt else None)
        return item.to_dict()

    # analytics off: the app runs offline; delete_cache: uploads and exports older than 6 h, checked hourly
    with gr.Blocks(title="sle: spoken street-name linking", analytics_enabled=False, delete_cache=(3600, 6 * 3600)) as demo:
        gr.Markdown("# sle: spoken street-name linking\nSay a street name; two recognisers transcribe it and every retrieval system searches ~685k European street names.")
        with gr.Row():
            index_md = gr.Markdown()
            build_btn = gr.Button("Build the street index", visible=False, scale=0)
        timer = gr.Timer(2.0, active=False)

        def index_view():
            st = sv.index_status()
            offer = st.startswith(("missing", "incomplete", "build failed"))
            return f"**Street index**: {st}", gr.update(visible=offer), gr.Timer(active=sv.build["running"] or st == "loading")

        demo.load(index_view, None, [index_md, build_btn, timer], **private)
        timer.tick(index_view, None, [index_md, build_btn, timer], **private)
        build_btn.click(lambda: sv.start_build(), None, None, **private).then(index_view, None, [index_md, build_btn, timer], **private)

        with gr.Tab("Try it"):
            with gr.Row():
                with gr.Column(scale=1):
                    audio = gr.Audio(sources=["microphone", "upload"], type="filepath", label="Say or upload a street name", elem_id="try-audio")
                    target = gr.Dropdown(label="Known street (optional): highlighted in every list", allow_custom_value=True, filterable=True, choices=[], value=None, elem_id="try-target")
                    go = gr.Button("Find the street", variant="primary", elem_id="try-go")
                with gr.Column(scale=1):
                    texts = [gr.Textbox(label=f"recogniser {i + 1}", interactive=True, info="edit to search again", elem_id=f"try-text-{i}") for i in range(N_RECOGNISERS)]
                    info_box = gr.Markdown(elem_id="try-info")
            results = gr.HTML(elem_id="try-results")
            asr_state, result_state = gr.State({}), gr.State({})
            for trigger in (go.click, audio.stop_recording, audio.upload):
                trigger(on_transcribe, audio, [*texts, asr_state, info_box], **private, **asr_limit).then(
                    on_link, [asr_state, target, *texts], [results, result_state, info_box], **private, **search_limit
                )  # fmt: skip
            for box in texts:
                box.submit(on_link, [asr_state, target, *texts], [results, result_state, info_box], **private, **search_limit)
                box.input(on_link, [asr_state, target, *texts], [results, result_state, info_box], trigger_mode="always_last", **private, **search_limit)
            target.key_up(suggest, None, target, trigger_mode="always_last", show_progress="hidden", **private, **search_limit)
            target.change(on_link, [asr_state, target, *texts], [results, result_state, info_box], **private, **search_limit)

        with gr.Tab("Collect"):
            gr.Markdown(COLLECT_GUIDELINES)
            with gr.Row():
                annotator = gr.Textbox(label="Annotator (your name)", elem_id="collect-annotator", scale=1)
                countries = gr.Dropdown(["AT", "BE", "CH", "DE", "NL", "SE"], multiselect=True, label="Prompt streets from (empty: all)", scale=1)
                prompt_file = gr.File(label="…or from your list (txt: one name a line; csv/tsv: a name column)", file_types=[".txt", ".csv", ".tsv"], type="filepath", scale=1)
            with gr.Row():
                with gr.Column(scale=1):
                    next_btn = gr.Button("Next street", elem_id="collect-next")
                    prompt_html = gr.HTML("<div class='sle-prompt'>Press <i>Next street</i>, or record anything freely.</div>")
                    c_audio = gr.Audio(sources=["microphone", "upload"], type="filepath", label="Read it aloud", elem_id="collect-audio")
                with gr.Column(scale=1):
                    # read-only: the control data keeps what the recognisers heard (correct them in "Try it")
                    c_texts = [gr.Textbox(label=f"recogniser {i + 1}", interactive=False, elem_id=f"collect-text-{i}") for i in range(N_RECOGNISERS)]
                    label_dd = gr.Dropdown(label="The street said (pick, or type to search the gazetteer)", choices=[an.NONE_LABEL], allow_custom_value=True, filterable=True, elem_id="collect-label")
                    with gr.Row():
                        save_btn = gr.Button("Save (Alt+S)", variant="primary", elem_id="collect-save")
                        none_btn = gr.Button("None of these (Alt+N)", elem_id="collect-none")
                        skip_btn = gr.Button("Skip (Alt+K)", elem_id="collect-skip")
                        undo_btn = gr.Button("Undo last (Alt+Z)", elem_id="collect-undo")
                    status = gr.Markdown(elem_id="collect-status")
                    c_info = gr.Markdown()
            c_results = gr.HTML(elem_id="collect-results")
            progress = gr.Dataframe(headers=["annotator", "items", "prompted", "none of these"], label="Progress per annotator", interactive=False)
            prompt_state, c_asr, c_result = gr.State({}), gr.State({}), gr.State({})

            new_prompt_outputs = [prompt_state, prompt_html, c_audio, c_results, label_dd, c_asr, c_result]
            next_btn.click(next_prompt, [countries, prompt_file], new_prompt_outputs, **private)
            skip_btn.click(next_prompt, [countries, prompt_file], new_prompt_outputs, **private)
            for trigger in (c_audio.stop_recording, c_audio.upload):
                trigger(on_transcribe, c_audio, [*c_texts, c_asr, c_info], **private, **asr_limit).then(
                    on_collect_link, [c_asr, prompt_state, *c_texts], [c_results, c_result, c_info, label_dd], **private, **search_limit
                )  # fmt: skip
            label_dd.key_up(suggest, None, label_dd, trigger_mode="always_last", show_progress="hidden", **private, **search_limit)
            save_inputs = [annotator, c_audio, label_dd, c_asr, c_result, prompt_state, countries, prompt_file]
            save_btn.click(on_save, save_inputs, [status, progress, *new_prompt_outputs], **private)
            none_btn.click(lambda *a: on_save(*a, none=True), save_inputs, [status, progress, *new_prompt_outputs], **private)
            undo_btn.click(on_undo, annotator, [status, progress], **private)

        with gr.Tab("Data") as data_tab:
            with gr.Row():
                who = gr.Dropdown([""], value="", label="Annotator (empty: everyone)", allow_custom_value=True)
                refresh = gr.Button("Refresh", elem_id="data-refresh", scale=0)
            items = gr.Dataframe(
                headers=["id", "created (UTC)", "annotator", "prompt", "label", "transcripts", "rank per system"],
                label="Items (click a row to play it and fix its label)", interactive=False, elem_id="data-items",
            )  # fmt: skip
            with gr.Row():
                sel_id = gr.Number(label="Selected item", interactive=False, precision=0, elem_id="data-selected")
                sel_audio = gr.Audio(label="Recording", type="filepath", interactive=False, elem_id="data-audio")
                fix_dd = gr.Dropdown(label="Correct label", choices=[an.NONE_LABEL], allow_custom_value=True, filterable=True, elem_id="data-fix-label")
                with gr.Column(scale=0):
                    fix_btn = gr.Button("Fix label", elem_id="data-fix")
                    del_btn = gr.Button("Delete item", variant="stop", elem_id="data-delete")
            gr.Markdown("### Recall@k per system on the human control data\nOver items labelled with a gazetteer street; "
                        "ranks are those the systems gave when the item was recorded.")  # fmt: skip
            with gr.Row():
                recall_df = gr.Dataframe(headers=["system", "n", "recall@1", "recall@10", "recall@40"], interactive=False, scale=1)
                recall_plot = gr.Plot(scale=1)
            with gr.Row():
                kind = gr.Radio(["audiofolder", "csv", "jsonl"], value="audiofolder", label="Export as (audiofolder: Hugging Face dataset zip)")
                export_btn = gr.Button("Export", scale=0)
                export_file = gr.File(label="Download", interactive=False)

            data_outputs = [items, who, recall_df, recall_plot]
            refresh.click(on_data_refresh, who, data_outputs, api_name="items", api_description="Items table, annotators, recall, plot")
            data_tab.select(on_data_refresh, who, data_outputs, **private)
            who.change(on_data_refresh, who, data_outputs, **private)
            items.select(on_select, None, [sel_id, sel_audio, fix_dd], **private)
            fix_dd.key_up(suggest, None, fix_dd, trigger_mode="always_last", show_progress="hidden", **private, **search_limit)
            fix_btn.click(on_fix, [sel_id, fix_dd, who], data_outputs, **private)
            del_btn.click(on_delete, [sel_id, who], [sel_id, sel_audio, *data_outputs], **private)
            export_btn.click(lambda k, w: export(k, w), [kind, who], export_file, **private)

        demo.load(lambda: progress_rows(), None, progress, **private)

        def who_am_i(request: gr.Request):
            # with auth the login is the annotator; without, leave whatever the person typed
            return request.username if request and request.username else gr.update()

        demo.load(who_am_i, None, annotator, **private)

        # named API endpoints (gradio_client): JSON in, JSON out
        with gr.Row(visible=False):
            api_audio = gr.Audio(type="filepath")
            api_json_in, api_json_out = gr.JSON(), gr.JSON()
            api_k = gr.Number(value=s.top_k, precision=0)
            api_t1, api_t2, api_t3 = gr.Textbox(), gr.Textbox(), gr.Textbox()
            api_file = gr.File()
            api_btn = gr.Button()
        api_btn.click(transcribe, api_audio, api_json_out, api_name="transcribe",
                      api_description="Audio file -> transcripts per recogniser, profile, fallback reason, timings", **asr_limit)  # fmt: skip
        api_btn.click(link_texts, [api_json_in, api_k, api_t1], api_json_out, api_name="link",
                      api_description="{recogniser: transcript}, k, optional target name -> candidates per system (+ target ranks)", **search_limit)  # fmt: skip
        api_btn.click(api_label, [api_audio, api_t1, api_t2, api_t3], api_json_out, api_name="label",
                      api_description="Audio, annotator, label (street name, id, or 'none of these'), optional prompt -> stored item", **asr_limit)  # fmt: skip
        api_btn.click(export, [api_t1, api_t2], api_file, api_name="export",
                      api_description="Kind (audiofolder | csv | jsonl), optional annotator -> file")  # fmt: skip
    return demo


def auth_pairs(spec: str) -> list[tuple[str, str]] | None:
    """``"user:pass,user2:pass2"`` -> Gradio auth pairs (None: no login)."""
    pairs = [tuple(x.strip().split(":", 1)) for x in spec.split(",") if ":" in x]
    return pairs or None  # type: ignore[return-value]


def main(s: Settings = default_settings) -> None:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    sv = Services(s)
    sv.warm_up()
    demo = build_demo(s, sv)
    demo.queue(max_size=s.app_max_queue, default_concurrency_limit=s.app_search_concurrency)
    demo.launch(server_name=s.app_host, server_port=s.app_port, auth=auth_pairs(s.app_auth), css=CSS, head=KEYS_JS,
                theme=gr.themes.Soft(), max_file_size=s.max_audio_bytes, footer_links=["api"])  # fmt: skip


if __name__ == "__main__":
    main()
