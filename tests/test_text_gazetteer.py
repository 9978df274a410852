"""Normalisation and the gazetteer: merging, stable ids, malformed rows, user files."""

from __future__ import annotations

import gzip
import random
import subprocess
import sys

import pytest

from sle import gazetteer as gz
from sle.text import corrupt, normalize


def test_normalize_casefolds_and_strips_punctuation():
    assert normalize("Salzhübelstraße") == "salzhübelstrasse"
    assert normalize(" Dr.-Cornils-Weg ") == "dr cornils weg"
    assert normalize("Rue de la Loi.") == "rue de la loi"
    assert normalize("A\u0308pfelweg") == normalize("Äpfelweg")  # NFD input composes
    assert normalize("!!!") == ""


def test_corrupt_is_deterministic_and_changes_names():
    names = ["Salzhübelstraße", "Neptuns Väg", "Kerkstraat", "Am Markt"]
    a = [corrupt(n, random.Random(7)) for n in names]
    b = [corrupt(n, random.Random(7)) for n in names]
    assert a == b
    changed = sum(x != normalize(n) for x, n in zip(a, names))
    assert changed >= 2


def _write(path, text: str, gzipped: bool = False) -> None:
    if gzipped:
        with gzip.open(path, "wt", encoding="utf-8") as f:
            f.write(text)
    else:
        path.write_text(text, encoding="utf-8")


def test_merges_case_and_country_variants(tmp_path):
    p = tmp_path / "g.tsv.gz"
    _write(p, "name\tcountry\nHauptstraße\tDE\nHauptstrasse\tCH\nhauptstraße\tAT\nKerkstraat\tNL\n", gzipped=True)
    g = gz.load(p)
    assert len(g) == 2
    e = g.find("HAUPTSTRASSE")
    assert e.name == "Hauptstraße"
    assert e.countries == ("DE", "CH", "AT")
    assert set(e.variants) == {"Hauptstrasse", "hauptstraße"}
    assert e.id == gz.stable_id("hauptstrasse")


def test_ids_are_stable_across_processes_and_orders(tmp_path):
    p1, p2 = tmp_path / "a.tsv", tmp_path / "b.tsv"
    _write(p1, "name\tcountry\nAm Markt\tDE\nKerkstraat\tNL\n")
    _write(p2, "name\tcountry\nKerkstraat\tNL\nAm Markt\tDE\n")
    ids1 = {e.key: e.id for e in gz.load(p1)}
    ids2 = {e.key: e.id for e in gz.load(p2)}
    assert ids1 == ids2
    code = "from sle.gazetteer import stable_id; print(stable_id('am markt'))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env={"PYTHONHASHSEED": "123"})
    assert int(out.stdout) == ids1["am markt"]
    assert 0 < ids1["am markt"] < 2**63


def test_malformed_rows_are_reported_and_skipped(tmp_path, caplog):
    p = tmp_path / "bad.tsv"
    _write(p, "name\tcountry\nGoodweg\tDE\nno country column\n\tDE\n123\tDE\nX\tDE\n" + "A" * 300 + "\tDE\nZweiter Weg\tDE\textra\nLast Road\tSE\n")
    g = gz.load(p)
    assert sorted(e.name for e in g) == ["Goodweg", "Last Road"]
    reasons = " | ".join(r for _, r in g.skipped)
    assert len(g.skipped) == 6
    assert "expected 2 fields" in reasons and "no letter" in reasons and "shorter than 2" in reasons and "longer than" in reasons
    assert [line for line, _ in g.skipped] == [3, 4, 5, 6, 7, 8]
    assert "skipped 6 malformed rows" in caplog.text


def test_user_csv_with_other_column_names(tmp_path):
    p = tmp_path / "mine.csv"
    _write(p, 'id,strasse,land\n1,"Lange Straße, Nord",DE\n2,Kurze Gasse,AT\n')
    g = gz.load(p, column="strasse", country_column="land")
    assert [e.name for e in g] == ["Lange Straße, Nord", "Kurze Gasse"]
    assert g.entries[1].countries == ("AT",)
    with pytest.raises(ValueError, match="no column 'name'"):
        gz.load(p)


def test_empty_and_missing_files(tmp_path):
    with pytest.raises(FileNotFoundError):
        gz.load(tmp_path / "nope.tsv")
    empty = tmp_path / "empty.tsv"
    empty.write_text("")
    with pytest.raises(ValueError, match="empty"):
        gz.load(empty)


def test_shipped_gazetteer_loads_whole():
    g = gz.load()
    assert len(g) > 680_000
    assert not g.skipped
    assert {"DE", "SE", "BE", "AT", "CH", "NL"} <= {c for e in g.entries[::500] for c in e.countries}
    assert g.find("Salzhübelstraße") is not None
