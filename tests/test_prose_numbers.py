"""A page's prose states no number that none of its cells, inputs or citations accounts for.

A number that a cell computes is put into the prose by that cell (MyST-NB's ``glue`` with
``{glue:text}``), so a re-executed chapter cannot say one thing and print another. The check is
``tools/prose_numbers.py`` (which says what it accepts); these tests run it on every page of the book
and show that it catches what it is for.
"""

import json
from pathlib import Path

import prose_numbers
import pytest
import stored_outputs

pytestmark = pytest.mark.notebooks

ROOT = Path(__file__).resolve().parents[1]


def toc_pages():
    return [path.relative_to(ROOT).as_posix() for path in stored_outputs.toc_pages()]


@pytest.mark.parametrize("page", toc_pages())
def test_every_number_in_the_prose_has_a_source(page):
    missing = prose_numbers.unsourced(ROOT / page)
    assert not missing, ("numbers typed in the prose that no code cell sets, no citation covers, and "
                         "that are either printed by a cell (then glue them) or by nothing at all:\n"
                         + "\n".join(prose_numbers.describe(page, n) for n in missing))


def _notebook(tmp_path, printed):
    nb = {"cells": [{"cell_type": "code", "source": "", "metadata": {}, "outputs": [
        {"output_type": "stream", "name": "stdout", "text": printed}]}], "metadata": {}}
    path = tmp_path / "chapter.ipynb"
    path.write_text(json.dumps(nb), encoding="utf-8")
    return path


CHAPTER = """---
jupytext: {}
---
# A chapter

```{code-cell} ipython3
cost = run(steps=250)
print(f"predicting 0 costs {cost:.3f}")
```

SENTENCE
"""


def check(tmp_path, sentence, printed="predicting 0 costs 0.535\n"):
    text = CHAPTER.replace("SENTENCE", sentence)
    return prose_numbers.unsourced(tmp_path / "99_test.md", text=text, notebook=_notebook(tmp_path, printed))


def test_a_number_no_cell_computes_is_caught(tmp_path):
    """The sentence chapter 14 once carried: its cell printed 0.535."""
    missing = check(tmp_path, "For scale, predicting 0 everywhere beyond the window costs about 0.22.")
    assert [n.text for n in missing] == ["0.22"] and not missing[0].computed


def test_a_typed_copy_of_a_printed_number_must_be_glued(tmp_path):
    missing = check(tmp_path, "Predicting 0 everywhere beyond the window costs about 0.54.")
    assert [n.text for n in missing] == ["0.54"] and missing[0].computed


def test_a_typed_copy_of_a_glued_number_must_be_glued(tmp_path):
    """A glued value is an output too (stored under the glue MIME prefix, not printed)."""
    from neuralode.glue import PREFIX
    nb = {"cells": [{"cell_type": "code", "source": "", "metadata": {}, "outputs": [
        {"output_type": "display_data", "metadata": {"scrapbook": {"name": "ch99_cost"}},
         "data": {PREFIX + "text/plain": "'0.535'"}}]}], "metadata": {}}
    notebook = tmp_path / "chapter.ipynb"
    notebook.write_text(json.dumps(nb), encoding="utf-8")
    text = CHAPTER.replace("SENTENCE", "Predicting 0 everywhere beyond the window costs about 0.54.")
    missing = prose_numbers.unsourced(tmp_path / "99_test.md", text=text, notebook=notebook)
    assert [n.text for n in missing] == ["0.54"] and missing[0].computed


def test_glued_inputs_and_cited_numbers_pass(tmp_path):
    assert not check(tmp_path, "It costs about {glue:text}`ch99_cost:.2f` after 250 steps.")
    assert not check(tmp_path, "The paper reports 0.42% error with 0.22 M parameters {cite:p}`chen2018neural`.")
    assert not check(tmp_path, "Small counts (3 seeds, 12 steps) and years (2018) are not results.")


TABLE = """:::{table} Test error on MNIST, as reported by CITATION.
:name: tab-test

| model | test error | parameters |
|---|---|---|
| ResNet | 0.41% | 0.60 M |
| ODE-Net | 0.42% | 0.22 M |
:::
"""


def test_a_table_cites_its_figures_once_in_its_caption(tmp_path):
    """The rows of a {table} directive count as cited when its caption cites, and only then."""
    assert not check(tmp_path, TABLE.replace("CITATION", "{cite:t}`chen2018neural`"))
    flagged = check(tmp_path, TABLE.replace("CITATION", "Chen et al."))
    assert {"0.22", "0.41%", "0.42%"} <= {n.text for n in flagged}
    assert all(n.sentence.lstrip().startswith("| ") for n in flagged)


def test_the_chapter_14_sentence_against_its_own_outputs():
    """The old sentence, put back into chapter 14 as it is now, is caught against its real outputs."""
    page = ROOT / "book" / "14_latent_odes.md"
    text = page.read_text(encoding="utf-8") + "\nFor scale, predicting 0 costs about 0.22.\n"
    flagged = {n.text for n in prose_numbers.unsourced(page, text=text)}
    assert "0.22" in flagged


@pytest.mark.parametrize("typed, printed, computed", [
    ("3.2e-3", "error 3.2e-03", True), ("3.2 \\times 10^{-3}", "error 0.0032", True),
    ("56%", "fewer: 0.56", True), ("1.8", "ratio 1.83", True), ("1.8", "ratio 1.86", False),
    ("4.0e-5", "error 4.4e-05", False),
])
def test_rounding_and_notation(tmp_path, typed, printed, computed):
    missing = check(tmp_path, f"The value is ${typed}$ here.", printed=printed + "\n")
    assert len(missing) == 1 and missing[0].computed == computed
