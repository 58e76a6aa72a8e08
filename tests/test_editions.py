"""The Korean edition's helpers (tools/sphinxext/book_editions.py): the search stemmer, which messages
need translating, reading a catalogue's states, and where a glued number in a translation is read."""

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("book_editions", ROOT / "tools" / "sphinxext" / "book_editions.py")
book_editions = importlib.util.module_from_spec(spec)
spec.loader.exec_module(book_editions)


@pytest.mark.parametrize("word, stem", [
    ("오차를", "오차"), ("오차가", "오차"), ("오차", "오차"), ("오차에서는", "오차"), ("미분방정식은", "미분방정식"),
    ("상미분방정식의", "상미분방정식"), ("신경망으로", "신경망"), ("기울기들을", "기울기"), ("것은", "것"),
    ("이", "이"), ("는", "는"), ("Euler", "Euler"), ("odeint", "odeint"), ("h를", "h"),
])
def test_korean_stem(word, stem):
    assert book_editions.korean_stem(word) == stem


def test_the_javascript_stemmer_uses_the_same_particles():
    code = book_editions.SearchKorean.js_stemmer_code
    assert all(f'"{p}"' in code for p in book_editions.PARTICLES)
    lengths = [len(p) for p in book_editions.PARTICLES]
    assert lengths == sorted(lengths, reverse=True), "longest particles must be tried first"


@pytest.mark.parametrize("message, needed", [
    ("The Euler polygon against the exact solution", True),
    ("$\\dd{z}{t} = z$", False), ("`ne.odeint`", False), ("{numref}`fig-ch03-euler`", False),
    ("0.25", False), ("$h$ | 0.1 | 2.5e-3", False), ("ResNet", True),
])
def test_needs_translation(message, needed):
    assert book_editions.needs_translation(message) is needed


def test_read_catalogue_states(tmp_path):
    po = tmp_path / "page.po"
    po.write_text('msgid ""\nmsgstr ""\n"Content-Type: text/plain; charset=utf-8\\n"\n\n'
                  'msgid "Done"\nmsgstr "완료"\n\n#, fuzzy\nmsgid "Changed"\nmsgstr "바뀜"\n\n'
                  'msgid "Open"\nmsgstr ""\n', encoding="utf-8")
    catalogue = book_editions.read_catalogue(po)
    assert catalogue == {"Done": ("완료", False), "Changed": ("바뀜", True), "Open": ("", False)}
    assert book_editions.read_catalogue(tmp_path / "missing.po") == {}


@pytest.mark.parametrize("text, target", [
    ("ch03_order", "03_euler_method.md::ch03_order:s"),
    ("ch15_err:.1e", "03_euler_method.md::ch15_err:.1e"),
    ("other.md::ch03_order", "other.md::ch03_order"),
])
def test_glue_in_a_translation_names_its_page(text, target):
    # The role splits its text at the last colon, so the format must be spelled out after the page.
    assert book_editions.glue_target_in_translation(text, "03_euler_method.md") == target


def test_glued_markdown_in_a_translation_is_read_from_the_saved_glue_data(tmp_path):
    # MyST-NB saves a page's glue data as <docname>.glue.json; a {glue:md} role in a translated
    # message pastes the Markdown stored there under its key (the format after the colon dropped).
    (tmp_path / "book").mkdir()
    (tmp_path / "book" / "06_page.glue.json").write_text(json.dumps({
        "ch06_err": {"data": {"text/markdown": "$2.4 \\times 10^{-5}$", "text/plain": "<Markdown>"}},
        "ch06_lines": {"data": {"text/markdown": ["$1", "0^{-3}$"]}},
        "ch06_plain": {"data": {"text/plain": "0.5"}},
    }), encoding="utf-8")
    read = book_editions.saved_glue_markdown
    assert read(tmp_path, "book/06_page", "ch06_err:myst") == "$2.4 \\times 10^{-5}$"
    assert read(tmp_path, "book/06_page", "ch06_err") == "$2.4 \\times 10^{-5}$"
    assert read(tmp_path, "book/06_page", "ch06_lines:myst") == "$10^{-3}$"
    assert read(tmp_path, "book/06_page", "ch06_plain:myst") is None
    assert read(tmp_path, "book/06_page", "ch06_missing:myst") is None
    assert read(tmp_path, "book/07_other", "ch06_err:myst") is None
