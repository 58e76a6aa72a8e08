"""Build the book from the outputs stored in notebooks/, never executing a chapter again.

Every chapter ``book/NN_name.md`` is executed once, into ``notebooks/NN_name.ipynb``, by
``make notebooks``; nbval proves on every ``make test`` that those outputs reproduce. The book is
then rendered from them: MyST-NB runs in its ``cache`` execution mode, and this script fills its
cache (jupyter-cache, in ``_build/.jupyter_cache``) with the stored notebooks before the build.

MyST-NB finds a chapter's outputs in the cache by a hash of its code cells and their metadata, so a
chapter whose code differs from its notebook would miss the cache and be executed afresh. This
script refuses that case first: it reads each chapter with MyST-NB's own reader, asks the cache for
the match exactly as the build will, and stops with the chapter's name and the command to run.

Each chapter's last execution comes with it, for the execution-statistics page (when it ran and
how long it took): ``notebooks/execution_times.json`` holds the run that stored the outputs
(``make notebooks`` records it), and ``_build/nbval_times.json``, when present, nbval's
re-execution of the chapter in the last ``make test-notebooks`` (``tests/conftest.py`` records it),
which is then the most recent one.

Usage:
    python tools/stored_outputs.py seed          # check every chapter and fill the cache
    python tools/stored_outputs.py record NAME S # store S seconds for notebooks/NAME.ipynb
"""

import datetime
import json
import sys
from pathlib import Path

import nbformat
import yaml

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
CACHE = ROOT / "_build" / ".jupyter_cache"
TIMES = NOTEBOOKS / "execution_times.json"
NBVAL_TIMES = ROOT / "_build" / "nbval_times.json"


def toc_entries():
    """Every ``root:`` and ``file:`` entry of ``_toc.yml``, in order, as written (no extension)."""
    entries = []

    def walk(node):
        if isinstance(node, dict):
            entries.extend(str(node[key]) for key in ("root", "file") if key in node)
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(yaml.safe_load((ROOT / "_toc.yml").read_text(encoding="utf-8")))
    return entries


def toc_pages():
    """Every page of ``_toc.yml`` that is a Markdown file (chapters, appendices, glossary, ...), as paths."""
    return [path for path in (ROOT / f"{name}.md" for name in toc_entries()) if path.is_file()]


def toc_chapters():
    """The paired chapters of ``_toc.yml`` (MyST notebooks with a jupytext header), as paths."""
    return [p for p in toc_pages() if "\njupytext:" in p.read_text(encoding="utf-8")[:400]]


def read_chapter(md_path):
    """The chapter as MyST-NB reads it for the build (its code cells and their metadata)."""
    from myst_nb.core.read import read_myst_markdown_notebook
    from myst_parser.config.main import MdParserConfig

    text = md_path.read_text(encoding="utf-8")
    return read_myst_markdown_notebook(text, MdParserConfig(), path=str(md_path))


VOLATILE_METADATA = ("execution",)
"""Cell metadata a kernel may record while executing (timestamps): not part of the chapter."""


def without_volatile(nb):
    """``nb`` with the volatile metadata of its cells removed (in place), for the cache."""
    for cell in nb.cells:
        for key in VOLATILE_METADATA:
            cell.metadata.pop(key, None)
    return nb


def mismatch(chapter, stored):
    """A sentence saying where ``chapter`` and its stored notebook differ, or ``None``."""
    code = [c for c in chapter.cells if c.cell_type == "code"]
    kept = [c for c in stored.cells if c.cell_type == "code"]
    if len(code) != len(kept):
        return f"the chapter has {len(code)} code cells, its notebook {len(kept)}"
    for i, (a, b) in enumerate(zip(code, kept)):
        if a.source != b.source:
            first = next((line for line in a.source.splitlines() if line.strip()), "")
            return f"code cell {i + 1} differs (it starts {first[:60]!r})"
        if dict(a.metadata) != dict(b.metadata):
            return f"the options (tags, figure caption) of code cell {i + 1} differ"
    if chapter.metadata.get("kernelspec") != stored.metadata.get("kernelspec"):
        return "the kernelspec differs"
    if any(out.get("output_type") == "error" for c in kept for out in c.get("outputs", [])
           if "raises-exception" not in c.metadata.get("tags", [])):
        return "the stored notebook holds an error the chapter does not expect (tag raises-exception)"
    return None


def execution_times():
    """``{notebook stem: seconds}``: the stored times, overridden by nbval's more recent ones."""
    times = json.loads(TIMES.read_text(encoding="utf-8")) if TIMES.is_file() else {}
    if NBVAL_TIMES.is_file():
        times.update(json.loads(NBVAL_TIMES.read_text(encoding="utf-8")))
    return times


def seed():
    """Check every chapter against its notebook and fill the build's cache; 1 if any disagrees."""
    from jupyter_cache import get_cache
    from jupyter_cache.base import CacheBundleIn

    problems, bundles, parsed = [], [], []
    times = execution_times()
    for md_path in toc_chapters():
        rel = md_path.relative_to(ROOT)
        nb_path = NOTEBOOKS / f"{md_path.stem}.ipynb"
        if not nb_path.is_file():
            problems.append((rel, f"{nb_path.relative_to(ROOT)} is missing"))
            continue
        stored = without_volatile(nbformat.read(nb_path, as_version=4))
        chapter = read_chapter(md_path)
        parsed.append(chapter)
        problem = mismatch(chapter, stored)
        if problem:
            problems.append((rel, problem))
            continue
        run = times.get(md_path.stem, {})
        data = {"execution_seconds": run.get("seconds")}
        bundles.append((CacheBundleIn(stored, str(md_path), data=data), run.get("executed")))
    if problems:
        print("These chapters disagree with their executed notebooks in notebooks/, so the book "
              "would show outputs of other code:", file=sys.stderr)
        for rel, problem in problems:
            print(f"  {rel}: {problem}", file=sys.stderr)
        names = " ".join(str(rel) for rel, _ in problems)
        print(f"Execute them again, then build:\n    make notebooks CHAPTERS='{names}'", file=sys.stderr)
        return 1
    cache = get_cache(str(CACHE))
    cache.clear_cache()
    cache.change_cache_limit(max(1000, 2 * len(bundles)))
    for bundle, executed in bundles:
        record = cache.cache_notebook_bundle(bundle, check_validity=False, overwrite=True)
        if executed:
            _set_created(cache, record.pk, datetime.datetime.fromisoformat(executed))
    for chapter in parsed:       # the match the build will look for, made the way it makes it
        cache.match_cache_notebook(chapter)
    print(f"Outputs of {len(bundles)} chapters taken from notebooks/ into {CACHE.relative_to(ROOT)}; "
          "nothing will be executed.")
    return 0


def _set_created(cache, pk, when):
    """Date a cache record by the chapter's execution instead of by the seeding (the page shows it)."""
    from jupyter_cache.cache.db import NbCacheRecord, session_context

    with session_context(cache.db) as session:
        session.query(NbCacheRecord).filter_by(pk=pk).update({"created": when})
        session.commit()


def store_run(path, stem, seconds):
    """Add ``stem``'s run (its duration to a tenth of a second, and now) to the JSON file ``path``."""
    times = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    now = datetime.datetime.now().isoformat(timespec="minutes")
    times[stem] = {"seconds": round(float(seconds), 1), "executed": now}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(dict(sorted(times.items())), indent=1) + "\n", encoding="utf-8")


def record(stem, seconds):
    """Store the execution time of ``notebooks/<stem>.ipynb`` (``make notebooks`` calls this)."""
    store_run(TIMES, stem, seconds)
    return 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["seed"] and len(sys.argv) == 2:
        sys.exit(seed())
    if sys.argv[1:2] == ["record"] and len(sys.argv) == 4:
        sys.exit(record(sys.argv[2], sys.argv[3]))
    sys.exit(__doc__)
