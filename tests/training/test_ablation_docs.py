"""docs/ablations.md quotes the table that `liveact ablate --report` draws from the committed evidence.

The evidence of every evaluated variant is archived in docs/ablations/runs/; regenerating the table from it
must give the committed table, and the page must quote that table row for row, so the figures in the docs
cannot drift from the runs they came from.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from liveact.training.ablation import ARCHIVE, EVAL_JSON, SHEETS, TABLE, VARIANTS, report, variant_dir

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs" / "ablations"
PAGE = ROOT / "docs" / "ablations.md"
BASE = "tiny"  # the base run's name (runs/tiny), as the archive stores it
HOUR_S = 3600.0


@pytest.fixture(scope="module")
def regenerated(tmp_path_factory) -> str:
    out = tmp_path_factory.mktemp("docs")
    shutil.copytree(DOCS / ARCHIVE, out / ARCHIVE)
    # no live runs beside this base: every row comes from the archive, as in a fresh clone
    return report(out.parent / "no-live-runs" / BASE, out).read_text()


def test_committed_table_is_what_the_archive_gives(regenerated):
    assert (DOCS / TABLE).read_text() == regenerated


def test_page_quotes_every_row_of_the_table(regenerated):
    page = PAGE.read_text().splitlines()
    for row in regenerated.splitlines():
        assert row in page, f"docs/ablations.md lacks the table row {row[:60]!r}: paste ablations-table.md"


def test_every_variant_is_scored_over_the_hour():
    for name in VARIANTS:
        run = DOCS / ARCHIVE / variant_dir(Path(BASE), name).name
        assert (run / EVAL_JSON).is_file(), f"{name}: not archived: liveact ablate --variant {name}, then --report"
        result = json.loads((run / EVAL_JSON).read_text())
        ends = [w["end_s"] for w in result["windows"]]
        assert max(ends) == HOUR_S, f"{name}: scored up to {max(ends)} s, not the hour"
        assert len(list((run / SHEETS).glob("*.png"))) == len(ends), f"{name}: a contact sheet per window"


def test_the_built_in_model_row_meets_the_issue_bounds():
    result = json.loads((DOCS / ARCHIVE / BASE / EVAL_JSON).read_text())
    hour = next(w for w in result["windows"] if w["end_s"] == HOUR_S)
    assert result["drift_ratio_last_vs_1min"] <= 1.2
    assert hour["lip_sync_r"] > hour["lip_sync_r_shuffled"] + 0.5
