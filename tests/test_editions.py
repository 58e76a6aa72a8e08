"""The Korean edition's helpers (tools/sphinxext/book_editions.py): the search stemmer, which messages
need translating, reading a catalogue's states, and where a glued number in a translation is read."""

import book_editions
import pytest


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


def test_message_state_counts_a_translated_image_description():
    catalogue = {"Done": ("완료", False), "Changed": ("바뀜", True), "Open": ("", False),
                 "Four boxes joined by arrows h0 and h1.": ("화살표 h0, h1로 이어진 tanh 상자 네 개.", False)}
    assert book_editions.message_state("Done", catalogue) == "translated"
    assert book_editions.message_state("Changed", catalogue) == "fuzzy"
    assert book_editions.message_state("Changed", catalogue, marked=True) == "translated"
    assert book_editions.message_state("Open", catalogue) == "untranslated"
    assert book_editions.message_state("Not in the catalogue", catalogue) == "untranslated"
    # an alt text comes back from the page already translated, and unmarked by Sphinx
    assert book_editions.message_state("화살표 h0, h1로 이어진 tanh 상자 네 개.", catalogue) == "translated"
    # a stale (fuzzy) translation read back is not a translation
    assert book_editions.message_state("바뀜", catalogue) == "untranslated"


@pytest.mark.parametrize("text, target", [
    ("ch03_order", "03_euler_method.md::ch03_order:s"),
    ("ch15_err:.1e", "03_euler_method.md::ch15_err:.1e"),
    ("other.md::ch03_order", "other.md::ch03_order"),
])
def test_glue_in_a_translation_names_its_page(text, target):
    # The role splits its text at the last colon, so the format must be spelled out after the page.
    assert book_editions.glue_target_in_translation(text, "03_euler_method.md") == target


@pytest.mark.parametrize("markdown, kind, text", [
    ("$2.4 \\times 10^{-5}$", "math", "2.4 \\times 10^{-5}"), (" $h$ ", "math", "h"),
    ("7.3 times", "Text", "7.3 times"), ("$a$ and $b$", "Text", "$a$ and $b$"),
])
def test_glued_markdown_in_a_translation(markdown, kind, text):
    """A value glued as Markdown becomes a formula in a translated sentence, or stays plain text."""
    (node,) = book_editions.markdown_nodes(markdown)
    assert type(node).__name__ == kind and node.astext() == text
