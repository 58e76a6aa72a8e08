"""The time budget, read from the execution-statistics page of the built book (_build/html).

The book is written so that each chapter executes in under 20 s on the machine it is built on
(CONTRIBUTING.md, section 8): a reader's machine may be three times slower. Two checks:

- the run that stored the outputs (`make notebooks`, one chapter at a time, in the machine's own
  floating-point environment; notebooks/execution_times.json) took under 20 s per chapter;
- the most recent execution, the one the statistics page shows (nbval's in `make test`: two chapters
  at once, under the perturbed floating-point environment, whose baseline loops make the chapters
  that train longest markedly slower), took under three times that, as a slower machine would.

It prints both times of every chapter and their totals, so the log of `make test` carries the
measurement.

Run after a build, with the browser tests (`make test-browser`).
"""

import json
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[1]
STATS_PAGE = ROOT / "_build" / "html" / "book" / "execution_statistics.html"
STORED_RUN = ROOT / "notebooks" / "execution_times.json"
CHAPTER_BUDGET_S = 20.0
SLOWER_MACHINE = 3.0


class _Table(HTMLParser):
    """The cells of every table row on a page, as lists of text."""

    def __init__(self):
        super().__init__()
        self.rows, self._row, self._cell = [], None, None

    def handle_starttag(self, tag, attrs):
        if tag == "tr":
            self._row = []
        elif tag in ("td", "th") and self._row is not None:
            self._cell = []

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self._row.append(" ".join("".join(self._cell).split()))
            self._cell = None
        elif tag == "tr" and self._row is not None:
            self.rows.append(self._row)
            self._row = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


def run_times():
    """``{document: seconds}`` from the execution-statistics table."""
    if not STATS_PAGE.is_file():
        pytest.fail(f"{STATS_PAGE} is missing: build the book first (make book, or make test-build)")
    parser = _Table()
    parser.feed(STATS_PAGE.read_text(encoding="utf-8"))
    header = next((row for row in parser.rows if "Document" in row), None)
    assert header is not None, "no execution table with a 'Document' column on the statistics page"
    doc_col = header.index("Document")
    time_col = next(i for i, name in enumerate(header) if name.startswith("Run Time"))
    status_col = header.index("Status")
    times = {}
    for row in parser.rows:
        if row is header or len(row) != len(header):
            continue
        assert row[status_col] == "✅", f"{row[doc_col]} did not execute cleanly: {row[status_col]}"
        times[row[doc_col]] = float(re.sub(r"[^0-9.]", "", row[time_col]))
    return times


def test_every_chapter_within_budget():
    times = run_times()
    chapters = {doc: s for doc, s in times.items() if re.match(r"book/(\d\d|A\d)_", doc)}
    assert chapters, f"no chapter in the execution table: {sorted(times)}"
    stored = {f"book/{stem}": run["seconds"] for stem, run in json.loads(STORED_RUN.read_text()).items()}
    assert set(stored) == set(chapters), (f"{STORED_RUN.name} and the statistics page list different chapters: "
                                          f"{sorted(set(stored) ^ set(chapters))}")
    limit = SLOWER_MACHINE * CHAPTER_BUDGET_S
    print(f"{'chapter':38s} {'make notebooks':>14s} {'last run':>9s}   (limits {CHAPTER_BUDGET_S:.0f} s and {limit:.0f} s)")
    for doc, seconds in sorted(chapters.items()):
        print(f"{doc:38s} {stored[doc]:12.1f} s {seconds:7.1f} s")
    print(f"{'all chapters together':38s} {sum(stored.values()):12.1f} s {sum(chapters.values()):7.1f} s")
    slow = {doc: s for doc, s in stored.items() if s > CHAPTER_BUDGET_S}
    assert not slow, (f"chapters over their {CHAPTER_BUDGET_S:.0f} s budget when their outputs were stored: "
                      f"{slow}; choose smaller problems (CONTRIBUTING.md, section 8)")
    over = {doc: s for doc, s in chapters.items() if s > limit}
    assert not over, (f"chapters over {SLOWER_MACHINE:.0f} x their {CHAPTER_BUDGET_S:.0f} s budget: {over}; "
                      "choose smaller problems (CONTRIBUTING.md, section 8)")
