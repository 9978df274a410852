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
    p.add_argument("--system", default="sparse", help="sparse | dense | hybrid | reranked")
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
    p.add_argument("what", choices=["index", "query", "all"], help="index: upload/optimize/reopen; query: search speed")
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="sle", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(dest="command", required=True)
    for add in (_add_index, _add_search, _add_bench):
        add(sub)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
