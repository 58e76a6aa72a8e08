"""Each chapter in book/ agrees with its executed notebook in notebooks/, and is in the toc.

A chapter is a MyST markdown file in book/ with a jupytext header; it is the source of truth.
`make notebooks` writes and executes notebooks/<stem>.ipynb from it, and nbval compares the
stored outputs with fresh ones. These checks catch a chapter edited without re-running
`make notebooks`, a notebook left behind by a removed chapter, and a page missing from _toc.yml.
"""

from pathlib import Path

import jupytext
import nbformat
import pytest
import yaml

import stored_outputs

pytestmark = pytest.mark.notebooks

ROOT = Path(__file__).resolve().parents[1]
BOOK = ROOT / "book"
NOTEBOOKS = ROOT / "notebooks"

REGENERATE = "run `make notebooks CHAPTERS=book/{stem}.md` and commit both files"


def front_matter(md_path):
    """The YAML header of a markdown file, or {} when it has none."""
    text = md_path.read_text(encoding="utf-8")
    if not text.startswith("---\n"):
        return {}
    end = text.find("\n---", 4)
    if end == -1:
        return {}
    return yaml.safe_load(text[4:end]) or {}


def paired_chapters():
    return sorted(p.stem for p in BOOK.glob("*.md") if "jupytext" in front_matter(p))


def code_sources(nb):
    return [cell.source for cell in nb.cells if cell.cell_type == "code"]


def read_notebook(stem):
    path = NOTEBOOKS / f"{stem}.ipynb"
    if not path.is_file():
        pytest.fail(f"book/{stem}.md has no executed notebook {path.relative_to(ROOT)}: "
                    + REGENERATE.format(stem=stem), pytrace=False)
    return nbformat.read(path, as_version=4)


toc_files = stored_outputs.toc_entries


CHAPTERS = paired_chapters()


@pytest.mark.parametrize("stem", CHAPTERS)
def test_chapter_header(stem):
    header = front_matter(BOOK / f"{stem}.md")
    fmt = header["jupytext"].get("text_representation", {}).get("format_name")
    kernel = (header.get("kernelspec") or {}).get("name")
    assert fmt == "myst", f"book/{stem}.md: jupytext format_name is {fmt!r}, expected 'myst'"
    assert kernel == "python3", f"book/{stem}.md: kernelspec name is {kernel!r}, expected 'python3'"


@pytest.mark.parametrize("stem", CHAPTERS)
def test_notebook_code_matches_chapter(stem):
    chapter = code_sources(jupytext.read(BOOK / f"{stem}.md"))
    notebook = code_sources(read_notebook(stem))
    where = f"notebooks/{stem}.ipynb is out of date with book/{stem}.md ({REGENERATE.format(stem=stem)})"
    for i, (md_src, nb_src) in enumerate(zip(chapter, notebook)):
        assert nb_src == md_src, (
            f"{where}: code cell {i + 1} differs.\n--- chapter:\n{md_src}\n--- notebook:\n{nb_src}")
    assert len(notebook) == len(chapter), (
        f"{where}: the chapter has {len(chapter)} code cells, the notebook {len(notebook)}")


@pytest.mark.parametrize("stem", CHAPTERS)
def test_notebook_is_executed_top_to_bottom(stem):
    counts = []
    for i, cell in enumerate(c for c in read_notebook(stem).cells if c.cell_type == "code"):
        if not cell.source.strip():
            continue  # an empty cell is never executed
        assert cell.execution_count is not None, (
            f"notebooks/{stem}.ipynb: code cell {i + 1} was never executed "
            f"({REGENERATE.format(stem=stem)})")
        counts.append(cell.execution_count)
    assert counts == list(range(1, len(counts) + 1)), (
        f"notebooks/{stem}.ipynb: execution counts {counts} show cells run out of order or in a "
        f"kernel that had run other code ({REGENERATE.format(stem=stem)})")


@pytest.mark.parametrize("stem", CHAPTERS)
def test_notebook_has_no_unexpected_errors(stem):
    for i, cell in enumerate(c for c in read_notebook(stem).cells if c.cell_type == "code"):
        if "raises-exception" in cell.metadata.get("tags", []):
            continue
        errors = [o for o in cell.get("outputs", []) if o.output_type == "error"]
        assert not errors, (
            f"notebooks/{stem}.ipynb: code cell {i + 1} raised {errors[0].ename}: {errors[0].evalue} "
            "(tag the cell `raises-exception` if the error is the point)")


def test_no_stray_notebooks():
    stray = sorted(p.name for p in NOTEBOOKS.glob("*.ipynb") if p.stem not in CHAPTERS)
    assert not stray, (
        f"notebooks/ holds {stray} with no paired chapter in book/ (a .md with a jupytext header): "
        "delete them, or restore their chapters")


def test_every_book_page_is_in_the_toc():
    listed = set(toc_files())
    pages = sorted(f"book/{p.stem}" for p in BOOK.glob("*.md"))
    missing = [page for page in pages if page not in listed]
    assert not missing, f"pages in book/ missing from _toc.yml (they would not be built): {missing}"


def test_every_toc_entry_exists():
    absent = [entry for entry in toc_files()
              if not any((ROOT / f"{entry}{ext}").is_file() for ext in ("", ".md", ".ipynb"))]
    assert not absent, f"_toc.yml lists files that do not exist: {absent}"
