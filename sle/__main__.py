"""Command line: ``python -m sle <command> ...`` (also installed as ``sle``).

Each command lives in its own ``_add_<command>`` function; heavy imports happen inside the handlers
so that ``python -m sle --help`` stays instant.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys


def _print_json(obj) -> None:
    json.dump(obj, sys.stdout, ensure_ascii=False, indent=None)
    sys.stdout.write("\n")


# --- index / search / bench (street index) -------------------------------------------------------------


def _add_index(sub) -> None:
    p = sub.add_parser("index", help="build or refresh the street index (resumable, idempotent)")
    p.add_argument("--gazetteer", help="TSV/CSV of street names (default: the shipped gazetteer)")
    p.add_argument("--column", help="name column of the gazetteer (default: name)")
    p.add_argument("--limit", type=int, help="index only the first N names (quick runs)")
    p.add_argument("--rebuild", action="store_true", help="drop the existing index first")
    p.add_argument("--no-dense", action="store_true", help="do not fill the dense slot even if a model exists")
    p.set_defaults(func=_run_index)


def _run_index(args) -> int:
    from . import index

    report = index.build(
        gazetteer_path=args.gazetteer,
        column=args.column,
        limit=args.limit,
        rebuild=args.rebuild,
        dense=not args.no_dense,
    )
    print(report)
    return 0


def _add_search(sub) -> None:
    p = sub.add_parser("search", help="find the street names closest to a (mis)spelled query")
    p.add_argument("query", nargs="+", help="one or more transcripts of the same utterance")
    p.add_argument("-k", type=int, default=10, help="number of results")
    p.add_argument("--system", default="sparse", help="sparse | phonetic | dense | hybrid | reranked")
    p.add_argument("--json", action="store_true", help="print a JSON list of candidates")
    p.set_defaults(func=_run_search)


def _run_search(args) -> int:
    from . import link

    candidates = link.search(args.query, system=args.system, k=args.k)
    if args.json:
        _print_json([c.to_dict() for c in candidates])
    else:
        for c in candidates:
            print(f"{c.rank:3d}  {c.score:8.4f}  {c.name}  ({', '.join(c.countries)})")
    return 0


def _add_bench(sub) -> None:
    p = sub.add_parser("bench", help="benchmarks (not tests): print figures")
    p.add_argument("what", choices=["index", "query", "dense", "phonetic", "all"],
                   help="index: upload/optimize/reopen; query: sparse search; dense: embedding and HNSW; phonetic: the phonetic query budget; all: index+query")
    p.add_argument("--limit", type=int, help="use the first N names (default: the whole gazetteer)")
    p.add_argument("--queries", type=int, default=2000, help="number of queries")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=_run_bench)


def _run_bench(args) -> int:
    from . import bench

    result = bench.run(args.what, limit=args.limit, n_queries=args.queries)
    if args.json:
        _print_json(result)
    else:
        for k, v in result.items():
            print(f"{k:28s} {v}")
    return 0


# --- transcribe / synth (speech) -------------------------------------------------------------------------


def _add_transcribe(sub) -> None:
    p = sub.add_parser("transcribe", help="transcribe an audio file with both recognisers of the ASR profile")
    p.add_argument("audio", help="audio file (wav, flac, mp3, ogg/opus, webm, ...)")
    p.add_argument("--profile", help="auto | default | offline | comma-separated specs (default: settings.asr_profile)")
    p.add_argument("--language", help="language hint for recognisers that detect it (de, nl, sv, fr)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=_run_transcribe)


def _run_transcribe(args) -> int:
    from . import asr, audio

    try:
        samples = audio.load_audio(args.audio)
    except audio.AudioError as e:
        print(f"sle transcribe: {e}", file=sys.stderr)
        return 2
    try:
        prof = asr.profile(args.profile)
    except (asr.ASRUnavailable, ValueError) as e:
        print(f"sle transcribe: {e}", file=sys.stderr)
        return 3
    transcripts = asr.transcribe_many(prof.transcribers, [samples], [args.language])
    transcripts = [ts[0] for ts in transcripts]
    if args.json:
        _print_json(
            {
                "audio": args.audio,
                "transcripts": [
                    {"recognizer": t.recognizer, "text": t.text, "language": t.language, "seconds": t.seconds} for t in transcripts
                ],
                "profile": prof.name,
                "fallback_reason": prof.fallback_reason or None,
            }
        )
    else:  # a fallback was already logged as a warning by sle.asr
        for t in transcripts:
            print(f"{t.recognizer:24s} [{t.language or '?'}] {t.text}")
    return 0


def _add_synth(sub) -> None:
    p = sub.add_parser("synth", help="generate synthetic (name, transcript) pairs (resumable) or their data card")
    p.add_argument("--split", default="all", choices=["validation", "train", "test", "all"])
    p.add_argument("--limit", type=int, help="at most N names per split (quick runs)")
    p.add_argument("--workers", type=int, default=2, help="processes, each with its own model on one thread")
    p.add_argument("--profile", help="recogniser profile (default: settings.asr_profile)")
    p.add_argument("--part-size", type=int, default=500, help="names per written part")
    p.add_argument("--out", help="output folder (default: settings.synthetic_dir)")
    p.add_argument("--card", action="store_true", help="recompute data/synthetic/README.md from the parts instead")
    p.set_defaults(func=_run_synth)


def _run_synth(args) -> int:
    from . import synth

    if args.card:
        path = synth.write_card(root=args.out)
        print(path)
        return 0
    report = synth.run(split=args.split, limit=args.limit, workers=args.workers, profile=args.profile, part_size=args.part_size, root=args.out)
    _print_json(report)
    return 0


# --- train / embed (dense encoder) -----------------------------------------------------------------------


def _add_train(sub) -> None:
    p = sub.add_parser("train", help="train the dense encoder (v0: MiniLM-mined negatives; v1: v0-mined, from v0)")
    p.add_argument("--version", default="v0", choices=["v0", "v1"])
    p.add_argument("--epochs", type=float, default=1.0)
    p.add_argument("--max-pairs", type=int, default=0, help="cap on training pairs (0: all)")
    p.add_argument("--noise-names", type=int, help="train names corrupted into extra pairs (default 40000; 0: none)")
    p.add_argument("--backbone", help="preset (byt5-micro, byt5-tiny, ...) or hub name such as google/byt5-small")
    p.add_argument("--batch-size", type=int, help="pairs per batch (default 128)")
    p.add_argument("--lr", type=float, help="learning rate (default 1e-3)")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--out", help="output folder (default models/dense-<version>)")
    p.add_argument("--init-from", help="v1: model to start from and mine with (default models/dense-v0)")
    p.add_argument("--eval-only", action="store_true", help="print the recall table: sparse, dense-v0, dense-v1 (or --out) per recogniser")
    p.set_defaults(func=_run_train)


def _run_train(args) -> int:
    from . import train

    if args.eval_only:  # sparse baseline and the committed dense models on the validation queries
        results = train.compare(models=[args.out] if args.out else ("dense-v0", "dense-v1"))
        print(train.table(results))
        _print_json(results)
        return 0
    cfg = train.TrainConfig(version=args.version, epochs=args.epochs, max_pairs=args.max_pairs, seed=args.seed,
                            out=args.out or "", init_from=args.init_from or "", backbone=args.backbone or "")  # fmt: skip
    for field, value in (("noise_names", args.noise_names), ("batch_size", args.batch_size), ("learning_rate", args.lr)):
        if value is not None:
            setattr(cfg, field, value)
    info = train.train(cfg)
    _print_json({"out": cfg.out or f"models/dense-{cfg.version}", "validation": info["validation"]})
    return 0


def _add_embed(sub) -> None:
    p = sub.add_parser("embed", help="dense vectors of texts (first values), or --bench: embedding speed")
    p.add_argument("text", nargs="*", help="texts to embed (normalised first)")
    p.add_argument("--model", help="folder under models/, a path or a hub name (default: settings.dense_model)")
    p.add_argument("--bench", type=int, metavar="N", help="time embedding N random gazetteer names and single queries")
    p.add_argument("--quantize", action="store_true", help="with --bench: torch dynamic int8 quantization")
    p.set_defaults(func=_run_embed)


def _run_embed(args) -> int:
    from . import encoder

    if args.bench:
        _print_json(encoder.benchmark(args.model, n=args.bench, quantize=args.quantize))
        return 0
    vectors = encoder.embed(args.text, model=args.model)
    _print_json([{"text": t, "vector": [round(float(x), 5) for x in v]} for t, v in zip(args.text, vectors)])
    return 0


# --- eval / link (linking and evaluation) -----------------------------------------------------------------


def _add_eval(sub) -> None:
    p = sub.add_parser("eval", help="recall@1/10/40 of every system x recogniser, upper bounds and peers; writes a report")
    p.add_argument("--split", default="validation", choices=["validation", "test", "train"])
    p.add_argument("--limit", type=int, help="at most N utterances (seeded sample)")
    p.add_argument("--systems", nargs="*", help="keep only linker systems whose key starts with these (default: all)")
    p.add_argument("--peers", nargs="*", default=None, help="peers to run: ratio jaro-winkler cologne idf (default: all; none: --peers)")
    p.add_argument("--peer-limit", type=int, default=300, help="utterances for the (slow, brute-force) peers")
    p.add_argument("--labels", help="a labelled CSV/JSONL (e.g. the app's export) instead of the synthetic split")
    p.add_argument("--out", default="docs/evaluation.md", help="markdown report (the plot goes next to it as .png); '-': none")
    p.add_argument("--json", action="store_true", help="also print the figures as JSON")
    p.add_argument("--train-reranker", action="store_true", help="first train the reranker on TRAIN-split utterances (models/reranker-v1)")
    p.add_argument("--noise", type=int, default=3000, help="with --train-reranker: corrupted train-split names added as utterances")
    p.add_argument("--sweep", action="store_true", help="also sweep hybrid fusion (RRF k, DBSF, weights) on the queries")
    p.add_argument("--latency", type=int, default=0, metavar="N", help="also time audio-to-results on N TTS clips of the query names")
    p.add_argument("--noise-level", type=float, default=1.0, help="with --train-reranker: strength of the character noise")
    p.add_argument("--rerank-utterances", type=int, help="with --train-reranker: at most N synthetic train utterances (seeded sample)")
    p.add_argument("--rerank-first-part", type=int, default=0, help="with --train-reranker: train parts from this number on (to keep out names the dense model trained on)")
    p.add_argument("--recognisers", metavar="SPEC,SPEC,...", help="instead: compare recognisers (each alone, every pair) on TTS clips of validation names")
    p.add_argument("--names", type=int, default=300, help="with --recognisers: validation names to speak")
    p.add_argument("--hint", action="store_true", help="with --recognisers: give each recogniser the name's language")
    p.set_defaults(func=_run_eval)


def _run_eval(args) -> int:
    from . import evaluate

    if args.recognisers:
        specs = [x.strip() for x in args.recognisers.split(",") if x.strip()]
        cmp = evaluate.compare_recognisers(specs, n=args.names, hint=args.hint)
        print(evaluate.recogniser_table(cmp))
        if args.json:
            _print_json(cmp)
        return 0
    if args.train_reranker:
        from . import rerank

        _print_json(rerank.train(n_noise=args.noise, noise_level=args.noise_level, max_synthetic=args.rerank_utterances,
                                 first_part=args.rerank_first_part))  # fmt: skip
    peers = list(evaluate.PEERS) if args.peers is None else args.peers
    result = evaluate.evaluate(split=args.split, limit=args.limit, systems=args.systems, peers=peers, peer_limit=args.peer_limit,
                               labels=args.labels, sweep=args.sweep, latency_clips=args.latency)  # fmt: skip
    print(result["table"])
    if "peer_table" in result:
        print()
        print(result["peer_table"])
    if args.out and args.out != "-":
        command = "python -m sle " + " ".join(sys.argv[1:]) if sys.argv[0].endswith(("__main__.py", "sle")) else "python -m sle eval"
        print(evaluate.report(result, args.out, command=command))
    if args.json:
        _print_json(evaluate.to_json(result))
    return 0


def _add_link(sub) -> None:
    p = sub.add_parser("link", help="audio clips -> transcripts and every system's top-k streets")
    p.add_argument("audio", nargs="+", help="audio files (wav, flac, mp3, ogg/opus, webm, ...)")
    p.add_argument("-k", type=int, default=10, help="candidates per system")
    p.add_argument("--profile", help="recogniser profile (default: settings.asr_profile)")
    p.add_argument("--language", help="language hint for the recognisers (de, nl, sv, fr)")
    p.add_argument("--json", action="store_true", help="one JSON object per clip (LinkResult.to_dict())")
    p.set_defaults(func=_run_link)


def _run_link(args) -> int:
    from . import audio, link

    linker = link.Linker(profile=args.profile)
    rc = 0
    for path in args.audio:
        try:
            result = linker.link_audio(path, k=args.k, language=args.language)
        except audio.AudioError as e:
            print(f"sle link: {path}: {e}", file=sys.stderr)
            rc = 2
            continue
        if args.json:
            _print_json(result.to_dict())
            continue
        print(f"== {path}")
        if result.fallback_reason:
            print(f"note: {result.fallback_reason}", file=sys.stderr)
        for rec, text in result.transcripts.items():
            print(f"  {rec:24s} {text}")
        for system, cands in result.systems.items():
            print(f"  [{system}]")
            for c in cands:
                print(f"    {c.rank:3d}  {c.score:9.4f}  {c.name}  ({', '.join(c.countries)})")
        print("  timings: " + ", ".join(f"{k} {v:.0f} ms" for k, v in result.timings_ms.items()))
    return rc


# --- export (human control data collected with the app) --------------------------------------------------


def _add_export(sub) -> None:
    p = sub.add_parser("export", help="export the labelled recordings collected with the app, and their recall@k")
    p.add_argument("--format", default="audiofolder", choices=("audiofolder", "csv", "jsonl"), help="audiofolder: Hugging Face dataset zip")
    p.add_argument("--out", default=".", help="folder to write the export to")
    p.add_argument("--annotator", help="only this annotator's items")
    p.add_argument("--recall", action="store_true", help="print recall@1/10/40 per system (JSON) instead of exporting")
    p.set_defaults(func=_run_export)


def _run_export(args) -> int:
    from .annotations import Store

    store = Store()
    if args.recall:
        _print_json(store.recall(annotator=args.annotator))
        return 0
    path = store.export(args.format, args.out, annotator=args.annotator)
    print(f"{len(store.list(args.annotator))} items -> {path}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="sle", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(dest="command", required=True)
    for add in (_add_index, _add_search, _add_bench, _add_transcribe, _add_synth, _add_train, _add_embed, _add_eval, _add_link, _add_export):
        add(sub)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    from .index import IndexNotReady

    try:
        return args.func(args)
    except KeyboardInterrupt:
        print(f"sle {args.command}: interrupted (long jobs resume where they stopped)", file=sys.stderr)
        return 130
    except (IndexNotReady, FileNotFoundError) as e:
        print(f"sle {args.command}: {e}", file=sys.stderr)
        return 2
    except ValueError as e:  # bad input: unreadable audio, unknown system, malformed gazetteer header...
        if args.verbose:
            raise
        print(f"sle {args.command}: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
