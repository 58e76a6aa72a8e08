"""The built book (_build/html), page by page, in headless Chromium.

Run after a build (`make test` builds first; alone: `make book && make test-browser`).
The pages are served from 127.0.0.1 on a free port, and every request to any other address is
blocked and reported: the book must read offline. On every page:

- MathJax comes from the local server, and every math node (inline and display) is typeset,
  without a MathJax error such as an undefined macro;
- every image has loaded;
- the console shows no error outside ALLOWED_CONSOLE_ERRORS, and no script throws;
- every link to a page of the book points to a file that exists, and its #fragment to an
  id on that page.

Exercises must come with solutions that are collapsed dropdowns.
"""

import functools
import json
import http.server
import re
import threading
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[1]
HTML_DIR = ROOT / "_build" / "html"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
NOT_PAGES = {"_static", "_sources", "_images", "_downloads"}
# index.html of each edition only redirects to its first page; test_landing_page_redirects covers it.
REDIRECTS = {"index.html", "ko/index.html"}
MATHJAX_TIMEOUT_MS = 30_000

# Console errors that are not the book's fault. Each entry: (regex on the message, reason).
ALLOWED_CONSOLE_ERRORS = [
]


def built_pages():
    if not HTML_DIR.is_dir():
        return []
    pages = (p.relative_to(HTML_DIR) for p in HTML_DIR.rglob("*.html"))
    return sorted(p.as_posix() for p in pages
                  if not NOT_PAGES.intersection(p.parts) and p.as_posix() not in REDIRECTS)


def pages_holding(*markers):
    """For each marker, the pages whose HTML contains it (every page read once)."""
    holding = [[] for _ in markers]
    for page in PAGES:
        html = (HTML_DIR / page).read_text(encoding="utf-8")
        for found, marker in zip(holding, markers):
            if marker in html:
                found.append(page)
    return holding


PAGES = built_pages()
EXERCISE_PAGES, ANIMATION_PAGES = pages_holding('class="exercise', 'class="animation-player"')


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def handle(self):
        try:
            super().handle()
        except (BrokenPipeError, ConnectionResetError):
            pass        # the browser closed the page before a response was written: not the book's fault


@pytest.fixture(scope="module")
def server():
    """Serve _build/html on 127.0.0.1, on a port the OS picks; yields the base URL."""
    if not (HTML_DIR / "index.html").is_file():
        pytest.fail(f"no built book in {HTML_DIR}: run `make book` first", pytrace=False)
    handler = functools.partial(_QuietHandler, directory=str(HTML_DIR))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()
    thread.join(timeout=10)


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium (apt-get install chromium)",
                    pytrace=False)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        yield chromium
        chromium.close()


class OfflinePage:
    """A page opened in a fresh browser context where only the local server can be reached."""

    def __init__(self, browser, base):
        self.base = base
        self.origin = urlsplit(base).netloc
        self.blocked, self.console_errors, self.failed = [], [], []
        self.context = browser.new_context()
        self.context.route("**/*", self._route)
        self.page = self.context.new_page()
        self.page.on("console", self._console)
        self.page.on("pageerror", lambda exc: self.console_errors.append(f"uncaught: {exc}"))
        self.page.on("response", self._response)

    def _route(self, route):
        url = route.request.url
        if urlsplit(url).netloc == self.origin:
            route.continue_()
        else:
            self.blocked.append(url)
            route.abort()

    def _console(self, msg):
        if msg.type == "error":
            self.console_errors.append(msg.text)

    def _response(self, response):
        if response.status >= 400:
            self.failed.append(f"{response.status} {response.url}")

    def open(self, rel):
        self.page.goto(f"{self.base}/{rel}", wait_until="load")
        return self.page

    def close(self):
        self.context.close()


@pytest.fixture
def offline(browser, server):
    page = OfflinePage(browser, server)
    yield page
    page.close()


class _Ids(HTMLParser):
    def __init__(self):
        super().__init__()
        self.ids = set()

    def handle_starttag(self, tag, attrs):
        for name, value in attrs:
            if name == "id" and value:
                self.ids.add(value)


@functools.lru_cache(maxsize=None)
def ids_in(path):
    parser = _Ids()
    parser.feed(Path(path).read_text(encoding="utf-8"))
    return frozenset(parser.ids)


def _short(text, n=70):
    text = " ".join(text.split())
    return text if len(text) <= n else text[: n - 1] + "…"


# --- what each page must satisfy ------------------------------------------------------------

def mathjax_problems(page, base):
    problems = []
    n_math = page.locator(".math").count()
    if n_math == 0:
        return problems
    sources = page.evaluate(
        "() => Array.from(document.scripts).map(s => s.src).filter(s => /mathjax/i.test(s))")
    if not sources:
        return [f"{n_math} math nodes but no MathJax script"]
    problems += [f"MathJax loaded from outside the book: {s}" for s in sources if not s.startswith(base)]
    try:
        page.wait_for_function("() => window.MathJax && MathJax.startup && MathJax.startup.promise",
                               timeout=MATHJAX_TIMEOUT_MS)
        page.evaluate("() => MathJax.startup.promise")
    except Exception as exc:  # noqa: BLE001 - reported as a page problem
        return problems + [f"MathJax did not start: {_short(str(exc), 200)}"]
    untypeset = page.evaluate(
        "() => Array.from(document.querySelectorAll('.math'))"
        "          .filter(el => !el.querySelector('mjx-container'))"
        "          .map(el => el.textContent)")
    problems += [f"math not typeset: {_short(t)}" for t in untypeset]
    errors = page.evaluate(
        "() => Array.from(document.querySelectorAll('mjx-merror'))"
        "          .map(el => el.getAttribute('data-mjx-error') || el.textContent)")
    problems += [f"MathJax error: {_short(e)}" for e in errors]
    return problems


def image_problems(page):
    broken = page.evaluate(
        """async () => {
            const images = Array.from(document.images);
            images.forEach(img => { img.loading = 'eager'; });
            await Promise.all(images.map(img => img.complete ? null : new Promise(done => {
                img.addEventListener('load', done); img.addEventListener('error', done);
                setTimeout(done, 10000);
            })));
            return images.filter(img => !(img.complete && img.naturalWidth > 0))
                         .map(img => img.getAttribute('src'));
        }""")
    return [f"image did not load: {src}" for src in broken]


def link_problems(page, base, rel):
    problems = []
    links = page.evaluate(
        "() => Array.from(document.querySelectorAll('a[href]'))"
        "          .map(a => [a.getAttribute('href'), a.href])")
    own_ids = set(page.evaluate("() => Array.from(document.querySelectorAll('[id]')).map(e => e.id)"))
    origin = urlsplit(base).netloc
    for raw, absolute in links:
        url = urlsplit(absolute)
        if url.scheme not in ("http", "https") or url.netloc != origin:
            continue  # mailto:, javascript:, and links out of the book (not fetched)
        path = unquote(url.path)
        target = HTML_DIR / path.lstrip("/")
        if path.endswith("/"):
            target = target / "index.html"
        if not target.is_file():
            problems.append(f"broken link {raw!r}: no file {target.relative_to(HTML_DIR)}")
            continue
        fragment = unquote(url.fragment)
        if not fragment or target.suffix != ".html":
            continue
        same_page = target == HTML_DIR / rel
        ids = own_ids if same_page else ids_in(str(target))
        if fragment not in ids:
            problems.append(f"broken anchor {raw!r}: no id {fragment!r} in {target.relative_to(HTML_DIR)}")
    return sorted(set(problems))


def console_problems(messages):
    return [f"console error: {_short(m, 200)}" for m in messages
            if not any(re.search(pattern, m) for pattern, _reason in ALLOWED_CONSOLE_ERRORS)]


# --- tests ----------------------------------------------------------------------------------

def test_book_is_built():
    assert (HTML_DIR / "index.html").is_file(), f"no built book in {HTML_DIR}: run `make book` first"
    assert PAGES, f"{HTML_DIR} holds no page"


def test_no_external_resources_in_html():
    """No page or stylesheet asks for a script, style, font or image from another host."""
    external = re.compile(r"^\s*(?:https?:)?//", re.IGNORECASE)
    fetched = {"script": "src", "link": "href", "img": "src", "iframe": "src", "source": "src",
               "audio": "src", "video": "src", "embed": "src", "object": "data"}

    class Resources(HTMLParser):
        def __init__(self):
            super().__init__()
            self.found = []

        def handle_starttag(self, tag, attrs):
            attrs = dict(attrs)
            url = attrs.get(fetched.get(tag, ""), "") or ""
            if external.match(url):
                self.found.append(f"<{tag}> {url}")

    problems = []
    for path in sorted(HTML_DIR.rglob("*.html")):
        parser = Resources()
        parser.feed(path.read_text(encoding="utf-8"))
        problems += [f"{path.relative_to(HTML_DIR)}: {item}" for item in parser.found]
    css_import = re.compile(r"""(?:@import\s+(?:url\()?|url\()\s*['"]?((?:https?:)?//[^'")\s]+)""")
    for path in sorted(HTML_DIR.rglob("*.css")):
        for url in css_import.findall(path.read_text(encoding="utf-8", errors="replace")):
            problems.append(f"{path.relative_to(HTML_DIR)}: stylesheet loads {url}")
    if problems:
        pytest.fail("the book fetches from outside:\n  - " + "\n  - ".join(problems), pytrace=False)


@pytest.mark.parametrize("edition", ["", "ko/"])
def test_landing_page_redirects(offline, edition):
    page = offline.open(f"{edition}index.html")
    page.wait_for_url(re.compile(rf"/{edition}book/intro\.html$"), timeout=10_000)
    assert not offline.blocked, f"{edition}index.html: blocked requests {offline.blocked}"


def test_every_page_links_to_its_counterpart_in_the_other_edition():
    """Page for page at the same relative path, each linking to the other (book_editions)."""
    english = [p for p in PAGES if not p.startswith("ko/")]
    korean = {p[len("ko/"):] for p in PAGES if p.startswith("ko/")}
    assert korean, "no Korean edition in _build/html/ko"
    assert set(english) == korean, (f"pages only in English: {sorted(set(english) - korean)}; "
                                    f"only in Korean: {sorted(korean - set(english))}")
    for rel in english:
        if not rel.startswith("book/"):
            continue        # Sphinx's generated pages (index of terms, search) have no body to link from
        depth = "../" * rel.count("/")
        for page, target in ((rel, f"{depth}ko/{rel}"), (f"ko/{rel}", f"{depth}../{rel}")):
            text = (HTML_DIR / page).read_text(encoding="utf-8")
            assert f'class="edition-switch"><a href="{target}"' in text, f"{page} does not link to {target}"


def solution_problems(page, rel):
    """Every exercise has a solution, shown as a dropdown that starts closed and opens on click."""
    exercises = page.evaluate("() => Array.from(document.querySelectorAll('.exercise')).map(e => e.id)")
    solutions = page.locator(".solution")
    problems, solved = [], set()
    for i in range(solutions.count()):
        solution = solutions.nth(i)
        target = (solution.locator(".admonition-title a").first.get_attribute("href") or "").rpartition("#")[2]
        solved.add(target)
        classes = (solution.get_attribute("class") or "").split()
        if "dropdown" not in classes:
            problems.append(f"the solution to #{target} is not a dropdown (use `:class: dropdown`)")
            continue
        body = solution.locator("#solution-content, section").first
        if body.is_visible():
            problems.append(f"the solution to #{target} is shown open; it must start collapsed")
            continue
        solution.locator(".admonition-title").first.click()
        body.wait_for(state="visible", timeout=5_000)
    problems += [f"exercise #{e} has no solution" for e in exercises if e not in solved]
    return problems


def animation_problems(page):
    """Every animation player shows its first frame, and pressing play moves it on."""
    problems = []
    players = page.locator("div.animation-player")
    for i in range(players.count()):
        player = players.nth(i)
        player.scroll_into_view_if_needed()
        image = player.locator("img").first.element_handle()
        page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=image, timeout=10_000)
        first = image.get_attribute("src")
        player.locator("button[data-action='play']").click()
        page.wait_for_function("([img, src]) => img.src !== src", arg=[image, first], timeout=10_000)
        player.locator("button[data-action='pause']").click()
        slider = player.locator("input[type=range]")
        shown, last = int(slider.input_value()), int(slider.get_attribute("max"))
        counter = player.locator(".animation-counter").inner_text()
        if shown == 0:
            problems.append(f"player {i + 1}: the slider did not follow the frames")
        if counter != f"{shown + 1} / {last + 1}":
            problems.append(f"player {i + 1}: the counter says {counter!r} at frame {shown + 1} of {last + 1}")
    return problems


@pytest.mark.parametrize("rel", PAGES)
def test_page(offline, rel):
    """One visit per page: math, images, links, console, colour mode; then its exercises' solutions
    (collapsed dropdowns that open) and its animations (they play), where it has any."""
    page = offline.open(rel)
    problems = mathjax_problems(page, offline.base)
    problems += image_problems(page)
    problems += link_problems(page, offline.base, rel)
    if page.evaluate("() => document.documentElement.dataset.mode") != "light":
        problems.append("the default colour mode is not light")
    if rel in EXERCISE_PAGES:
        problems += solution_problems(page, rel)
    if rel in ANIMATION_PAGES:
        problems += animation_problems(page)
    # Last, so that the clicks above have already spent most of the half second of network quiet
    # this waits for; a request that failed at any moment of the visit is then on the list.
    page.wait_for_load_state("networkidle")
    problems += [f"failed request: {item}" for item in offline.failed]
    problems += [f"blocked request to outside the book: {url}" for url in offline.blocked]
    problems += console_problems(offline.console_errors)
    if problems:
        pytest.fail(f"{rel}: {len(problems)} problem(s)\n  - " + "\n  - ".join(problems), pytrace=False)


def test_the_checks_found_their_pages():
    """The per-page checks of exercises and animations have something to check."""
    assert EXERCISE_PAGES, "no built page has an exercise"
    assert len({p.removeprefix("ko/") for p in ANIMATION_PAGES}) >= 5, f"fewer than five pages animate: {ANIMATION_PAGES}"


@pytest.mark.parametrize("query, particle_form", [("오차", "오차를"), ("미분방정식", "미분방정식은")])
def test_korean_search_finds_a_word_without_its_particle(offline, query, particle_form):
    """Sphinx has no Korean search: without book_editions' stemmer "오차" would not find "오차를"."""
    index = (HTML_DIR / "ko" / "searchindex.js").read_text(encoding="utf-8")
    terms = json.loads(index[index.index("(") + 1: index.rindex(")")])["terms"]
    assert query in terms, f"{query!r} is not in the Korean search index"
    assert particle_form not in terms, f"{particle_form!r} was indexed with its particle"
    page = offline.open(f"ko/search.html?q={query}")
    page.wait_for_function("() => document.querySelectorAll('#search-results li').length > 0"
                           " || /0/.test((document.querySelector('#search-results p') || {}).textContent || '')",
                           timeout=20_000)
    found = page.locator("#search-results li").count()
    assert found > 0, f"searching the Korean edition for {query!r} found nothing"
    assert not offline.blocked, f"search: blocked requests {offline.blocked}"


def test_korean_pages_use_the_editions_interface_words():
    """The theme's Korean catalogue renders "By" as "으로" ("by means of"); book_editions replaces it."""
    korean = [p for p in PAGES if p.startswith("ko/book/")]
    assert korean, "no Korean page in _build/html/ko/book"
    for rel in korean:
        text = (HTML_DIR / rel).read_text(encoding="utf-8")
        footer = re.search(r'<p class="component-author">\s*(.*?)\s*</p>', text, re.DOTALL)
        assert footer, f"{rel} has no author line in its footer"
        assert footer.group(1).startswith("지은이:"), f"{rel}: footer reads {footer.group(1)!r}"
