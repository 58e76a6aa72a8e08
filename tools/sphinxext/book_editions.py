"""The book's editions: English, and Korean translated from it by gettext catalogues.

One source, two editions. The English chapters are the source of truth; the Korean edition is built
from them with the translations in ``locale/ko/LC_MESSAGES/<docname>.po`` applied by Sphinx (a
sentence whose translation is missing, or marked fuzzy because the English changed, shows in
English). This extension adds what Sphinx does not do by itself:

* every page links to its counterpart in the other edition (same relative path, under ``ko/``);
* a Korean page that is not wholly translated says so in one line at its top;
* the Korean build writes ``translation_status.json``: for every page, how many of its messages are
  translated, and which are fuzzy or missing, read against the current English sources (so a
  changed English sentence counts as untranslated even before the catalogue is updated);
* search in Korean: Sphinx 7.4 has no Korean search language, so words keep their particles
  ("오차를") and a query for "오차" finds nothing. :class:`SearchKorean` strips common particles and
  endings from indexed words and, with the same rules in JavaScript, from query words.
* glued numbers in translated sentences: ``{glue:text}`key` `` and ``{glue:md}`key` `` in a
  translation read the page's glue data (MyST-NB alone finds it only in the English text it parses
  with the notebook).

Configuration (``_config.yml``, ``sphinx: config:``): ``language`` (set per edition by
``tools/build_book.py``), ``locale_dirs``, ``gettext_compact: false``, and
``edition_complete_pages``: the pages a translated edition must hold wholly translated.
"""

import json
import re
from pathlib import Path

from docutils import nodes
from sphinx import addnodes
from sphinx.search import SearchLanguage
from sphinx.util import logging
from sphinx.util.nodes import extract_messages

logger = logging.getLogger(__name__)

EDITIONS = {"en": ("English", ""), "ko": ("한국어", "ko/")}
"""Each edition's language code, its name in its own language, and its folder under the HTML root."""

NOTES = {
    "untranslated": "이 페이지는 아직 한국어로 옮기지 않았습니다. 영어 원문을 그대로 보여 드립니다.",
    "partial": "이 페이지는 일부만 한국어로 옮겼습니다. 번역되지 않은 {missing}개 문단은 영어 원문으로 보입니다.",
}

# ---------------------------------------------------------------------------------------------
# Korean search: particles and endings stripped from the end of a word


PARTICLES = sorted("""
은 는 이 가 을 를 의 에 에서 에게 께 께서 로 으로 와 과 도 만 까지 부터 보다 처럼 만큼 마다 조차 이나 나
이며 며 이고 이란 란 이라 라 이라는 라는 이라고 라고 으로는 로는 에는 에서는 에도 에서도 과의 와의 으로의 로의
에서의 에게는 이다 입니다 이며 인 이든 든 이요 요 들 들은 들이 들을 들의 들에 들도 들과 들로
""".split(), key=len, reverse=True)
"""Particles and endings, longest first; a word loses the longest one it ends with."""

MIN_STEM = 1
"""Characters a stem keeps at least: a word that is only a particle ("이") stays as it is."""


def korean_stem(word):
    """``word`` without its trailing particle (``"오차를" -> "오차"``); other words unchanged."""
    if not re.search(r"[\uac00-\ud7a3]$", word):
        return word
    for particle in PARTICLES:
        if word.endswith(particle) and len(word) - len(particle) >= MIN_STEM:
            return word[: -len(particle)]
    return word


_JS_STEMMER = """
var KoreanParticles = %(particles)s;
function Stemmer() {
  this.stemWord = function (word) {
    if (!/[\\uac00-\\ud7a3]$/.test(word)) { return word; }
    for (var i = 0; i < KoreanParticles.length; i++) {
      var p = KoreanParticles[i];
      if (word.length - p.length >= %(min_stem)d && word.slice(-p.length) === p) {
        return word.slice(0, word.length - p.length);
      }
    }
    return word;
  };
}
"""


class SearchKorean(SearchLanguage):
    """Sphinx's search index in Korean: words split at spaces and punctuation, particles stripped."""

    lang = "ko"
    language_name = "Korean"
    js_stemmer_rawcode = None
    js_stemmer_code = _JS_STEMMER % {"particles": json.dumps(PARTICLES, ensure_ascii=False),
                                     "min_stem": MIN_STEM}
    stopwords = set()

    def stem(self, word):
        return korean_stem(word.lower())


# ---------------------------------------------------------------------------------------------
# How much of each page is translated


_MATH_OR_CODE = re.compile(r"\$\$.*?\$\$|\$[^$]*\$|`[^`]*`|\{[\w:-]+\}|\\[A-Za-z]+|https?://\S+", re.S)


def needs_translation(message):
    """Whether a message has words to translate (not only math, code, references or numbers)."""
    return bool(re.search(r"[A-Za-z]{2,}", _MATH_OR_CODE.sub(" ", message)))


def read_catalogue(path):
    """``{msgid: (msgstr, fuzzy)}`` from a ``.po`` file (an empty dict if there is none)."""
    if not path.is_file():
        return {}
    from babel.messages.pofile import read_po

    with path.open("rb") as handle:
        catalogue = read_po(handle)
    return {m.id: (m.string, m.fuzzy) for m in catalogue if m.id and isinstance(m.id, str)}


def _catalogue(app, docname):
    for folder in app.config.locale_dirs:
        path = Path(app.srcdir, folder, app.config.language, "LC_MESSAGES", f"{docname}.po")
        if path.is_file():
            return read_catalogue(path)
    return {}


def message_state(message, catalogue, marked=False):
    """``"translated"``, ``"fuzzy"`` or ``"untranslated"``: the state of a message read from a page
    of a translated edition, given the page's catalogue (:func:`read_catalogue`).

    ``marked`` is Sphinx's own mark on a node it translated. Sphinx marks a translated paragraph but
    not a translated image description (alt text): there the message read back is the translation
    itself, which counts as translated when it is an up-to-date entry's ``msgstr``.
    """
    msgstr, fuzzy = catalogue.get(message, ("", False))
    if marked or (msgstr and not fuzzy):
        return "translated"
    if any(message == text and not stale for text, stale in catalogue.values()):
        return "translated"
    return "fuzzy" if msgstr else "untranslated"


def record_translation(app, doctree):
    """After reading a page of a translated edition, count its messages by state (env data)."""
    if app.config.language == "en":
        return
    catalogue = _catalogue(app, app.env.docname)
    status = {"translated": 0, "fuzzy": [], "untranslated": []}
    for node, message in extract_messages(doctree):
        if isinstance(node, nodes.math_block) or not needs_translation(message):
            continue
        state = message_state(message, catalogue, bool(node.get("translated")))
        if state == "translated":
            status["translated"] += 1
        else:
            status[state].append(message[:120])
    if not hasattr(app.env, "edition_status"):
        app.env.edition_status = {}
    app.env.edition_status[app.env.docname] = status


def rehome_translated_nodes(app, doctree):
    """Make every node of a translated page belong to the page's own document.

    Sphinx parses each translation as a small document of its own and moves its nodes into the
    page, where some keep a reference to that small document, and with it the settings and the
    reporter it was made with. Every such reference is pickled with the page: the Korean glossary's
    doctree weighed 10.6 MB (the English one 0.17 MB) and unpickling the doctrees a {numref} or the
    toctree reads took most of the Korean build. Pointing them at the page costs nothing."""
    if app.config.language == "en":
        return
    for node in doctree.findall(include_self=False):
        if node._document is not None and node._document is not doctree:
            node._document = doctree


def translate_toc_captions(app, doctree):
    """Translate the captions of the parts of the table of contents in a translated edition.

    sphinx-external-toc inserts the toctrees of ``_toc.yml`` after Sphinx has applied the
    translations, so their captions (the names of the book's parts) would stay English; the
    gettext builder does extract them, into the root page's catalogue, and they are applied here."""
    if app.config.language == "en":
        return
    catalogue = None
    for toctree in doctree.findall(addnodes.toctree):
        caption = toctree.get("caption")
        if not caption:
            continue
        catalogue = _catalogue(app, app.env.docname) if catalogue is None else catalogue
        msgstr, fuzzy = catalogue.get(caption, ("", False))
        if msgstr and not fuzzy:
            toctree["caption"] = toctree["rawcaption"] = msgstr


def _purge(app, env, docname):
    getattr(env, "edition_status", {}).pop(docname, None)


def _merge(app, env, docnames, other):
    if not hasattr(env, "edition_status"):
        env.edition_status = {}
    env.edition_status.update({d: s for d, s in getattr(other, "edition_status", {}).items() if d in docnames})


def write_status(app, exception):
    """Write ``translation_status.json`` into a translated edition's output folder, and warn about
    every page of ``edition_complete_pages`` that is not wholly translated (an error in the strict
    build, with the messages to translate)."""
    if exception is not None or app.config.language == "en" or app.builder.format != "html":
        return
    status = dict(sorted(getattr(app.env, "edition_status", {}).items()))
    Path(app.outdir, "translation_status.json").write_text(
        json.dumps(status, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    for docname in app.config.edition_complete_pages:
        page = status.get(docname)
        if page is None:
            logger.warning(f"edition_complete_pages names {docname!r}, which is not a page of the book")
            continue
        for state in ("fuzzy", "untranslated"):
            if page[state]:
                shown = "; ".join(repr(m[:60]) for m in page[state][:3])
                logger.warning(f"{docname}: {len(page[state])} {state} message(s) in the {app.config.language} "
                               f"edition, which must be complete (run `make translations`, then translate "
                               f"them in locale/{app.config.language}/LC_MESSAGES/{docname}.po): {shown}")


# ---------------------------------------------------------------------------------------------
# Glued numbers in translated messages


def glue_target_in_translation(text, source_name):
    """The target a ``{glue:text}`` role of a translated message is read with: the same key on the
    same page, named explicitly (``"ch03_order:.3f"`` -> ``"03_euler_method.md::ch03_order:.3f"``).

    MyST-NB hands a page's glue data to the roles only while it parses the notebook. Sphinx parses a
    translated message afterwards, on its own, where a bare key finds nothing; a key that names its
    page is resolved when the page is written, from the glue data MyST-NB saved. The format is always
    spelled out, because the role splits its text at the last colon."""
    if "::" in text:
        return text
    key, _, spec = text.partition(":")
    return f"{source_name}::{key}:{spec or 's'}"


def _paste_text_in_translations():
    """MyST-NB's ``{glue:text}`` role, which in a translated message reads the page's saved glue data."""
    from myst_nb.ext.glue.roles import PasteTextRole

    class PasteTextTranslated(PasteTextRole):
        def run(self):
            if _translated(self.document):
                env = self.document.settings.env
                self.text = glue_target_in_translation(self.text, Path(env.doc2path(env.docname)).name)
            return super().run()

    return PasteTextTranslated()


def _translated(document):
    return document.current_source.endswith("<translated>")


def saved_glue(env, key):
    """The glued output ``key`` of the page being read, from the file MyST-NB wrote when it parsed it
    (read once per page, by MyST-NB's own reader)."""
    from myst_nb.ext.glue.crossref import read_glue_cache

    return read_glue_cache(str(env.mystnb_config.output_folder), env.docname).get(key)


def markdown_nodes(markdown):
    """Nodes for a glued Markdown value: a formula ``$...$`` becomes math, anything else plain text."""
    formula = re.fullmatch(r"\s*\$([^$]+)\$\s*", markdown)
    if formula:
        return [nodes.math(formula.group(0).strip(), formula.group(1))]
    return [nodes.Text(markdown)]


def _paste_markdown_in_translations():
    """MyST-NB's ``{glue:md}`` role, which in a translated message reads the page's saved glue data.

    The role renders its value with the notebook's renderer, which exists only while MyST-NB parses
    the English page; in a translated message the value (a formula or a short text, as the chapters
    glue them) is read from the saved glue data and turned into nodes here."""
    from myst_nb.ext.glue.roles import PasteMarkdownRole
    from myst_nb.ext.glue.utils import glue_warning

    class PasteMarkdownTranslated(PasteMarkdownRole):
        def run(self):
            if not _translated(self.document):
                return super().run()
            key = self.text.rsplit(":", 1)[0] if ":" in self.text else self.text
            output = saved_glue(self.document.settings.env, key)
            markdown = (output or {}).get("data", {}).get("text/markdown")
            if markdown is None:
                return [], [glue_warning(f"No text/markdown found in {key!r} data", self.document, self.line)]
            _nodes = markdown_nodes("".join(markdown) if isinstance(markdown, list) else markdown)
            for node in _nodes:
                self.set_source_info(node) if isinstance(node, nodes.Element) else None
            return _nodes, []

    return PasteMarkdownTranslated()


# ---------------------------------------------------------------------------------------------
# Links between the editions, and the note on untranslated pages


def _counterpart(app, pagename):
    """``(href, language code, name)`` of ``pagename`` in the other edition."""
    up = "../" * pagename.count("/")
    if app.config.language == "en":
        other = "ko"
        href = f"{up}{EDITIONS[other][1]}{pagename}.html"
    else:
        other = "en"
        href = f"{up}../{pagename}.html"
    return href, other, EDITIONS[other][0]


def add_edition_links(app, pagename, templatename, context, doctree):
    """Put the link to the other edition (and, in Korean, the translation note) above the page."""
    if app.config.language not in EDITIONS or "body" not in context:
        return
    href, other, name = _counterpart(app, pagename)
    link = (f'<p class="edition-switch"><a href="{href}" hreflang="{other}" lang="{other}">'
            f"{name}</a></p>\n")
    context["metatags"] = context.get("metatags", "") + (
        f'\n<link rel="alternate" hreflang="{other}" href="{href}">')
    note = ""
    status = getattr(app.env, "edition_status", {}).get(pagename)
    if status is not None:
        missing = len(status["fuzzy"]) + len(status["untranslated"])
        if missing and not status["translated"]:
            note = NOTES["untranslated"]
        elif missing:
            note = NOTES["partial"].format(missing=missing)
    if note:
        link += f'<p class="edition-note">{note}</p>\n'
    context["body"] = link + context["body"]


INTERFACE = {"ko": {"nb_code_prompt_show": "셀 펼쳐 보기", "nb_code_prompt_hide": "셀 접기",
                    "search_bar_text": "이 책에서 검색…", "theme": {"By": "지은이:"}}}
"""Interface words that neither Sphinx's nor the theme's catalogues translate, per edition."""


def translate_interface(app, config):
    """Give a translated edition's own words to MyST-NB's hidden-cell buttons and the search box."""
    words = INTERFACE.get(config.language)
    if not words:
        return
    config.nb_code_prompt_show = words["nb_code_prompt_show"]
    config.nb_code_prompt_hide = words["nb_code_prompt_hide"]
    config.html_theme_options = {**config.html_theme_options, "search_bar_text": words["search_bar_text"]}


def translate_theme_words(app, pagename, templatename, context, doctree):
    """Replace the theme's translations that read wrongly in an edition (its Korean "By" is "으로",
    "by means of", which put "으로 The Neural ODE Book authors" in every footer)."""
    words = INTERFACE.get(app.config.language, {}).get("theme")
    theme_translate = context.get("translate")
    if not words or theme_translate is None:
        return
    context["translate"] = lambda message, *args: words.get(message) or theme_translate(message, *args)


def setup(app):
    app.setup_extension("myst_nb")
    app.add_role_to_domain("glue", "text", _paste_text_in_translations(), override=True)
    app.add_role_to_domain("glue", "md", _paste_markdown_in_translations(), override=True)
    app.add_config_value("edition_complete_pages", [], "env")
    app.add_search_language(SearchKorean)
    app.connect("config-inited", translate_interface)
    app.connect("doctree-read", rehome_translated_nodes)
    app.connect("doctree-read", translate_toc_captions)
    app.connect("doctree-read", record_translation)
    app.connect("env-purge-doc", _purge)
    app.connect("env-merge-info", _merge)
    app.connect("html-page-context", add_edition_links)
    # After sphinx-book-theme's own handler (priority 500), which puts its `translate` in the context.
    app.connect("html-page-context", translate_theme_words, priority=900)
    app.connect("build-finished", write_status)
    return {"parallel_read_safe": True, "parallel_write_safe": True, "env_version": 1}
