"""Record how long nbval takes to re-execute each notebook, for the execution-statistics page.

`make test` executes every chapter once, here, and then builds the book from the stored outputs
(tools/stored_outputs.py): this run is then each chapter's most recent execution, and the time the
statistics page shows and the budget test reads (tests/test_execution_budget.py). The time of a
notebook is the sum of the setup, call and teardown of its cells (kernel start included), written to
_build/nbval_times.json when the session ends.
"""

from collections import defaultdict
from pathlib import Path

_DURATIONS = defaultdict(float)


def pytest_runtest_logreport(report):
    path = report.nodeid.split("::", 1)[0]
    if path.endswith(".ipynb"):
        _DURATIONS[Path(path).stem] += report.duration


def pytest_sessionfinish(session, exitstatus):
    if hasattr(session.config, "workerinput") or not _DURATIONS or exitstatus != 0:
        return          # a pytest-xdist worker (the controller writes), no notebook, or a failure
    import stored_outputs       # tools/, on pytest's pythonpath (pyproject.toml); only when there is a run to store
    for stem, seconds in sorted(_DURATIONS.items()):
        stored_outputs.store_run(stored_outputs.NBVAL_TIMES, stem, seconds)
