"""The built book as a reader sees it: every HTML page opened in headless Chromium.

Chromium is Debian's ``chromium`` (``.ci/run`` installs it when it is absent), driven by Playwright
(``pip install playwright``; never ``playwright install``: browser downloads are not reachable).
The book is served by a local HTTP server started here, and every request that would leave it is
refused and reported, so math and search must work offline.

One browser pass (``visited``) opens every page at 1,400 px and at 400 px, takes full-page
screenshots into ``_build/screenshots/`` and collects what it saw; each test below then checks one
thing over all pages and names every page and element that fails it. Without Chromium or
Playwright the tests are skipped, except in CI (``CI=true``), where that is a failure.
"""
from __future__ import annotations

import functools
import http.server
import json
import os
import re
import shutil
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = Path(os.environ.get("GRADPROBE_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
SCREENSHOTS = ROOT / "_build" / "screenshots"
WIDE, NARROW = 1400, 400
# How a chapter's claims table is recognised: a <table> whose header row contains this text, and,
# once the claims tables carry it (MyST's :::{table} with :class: claims), this class.
CLAIMS_TABLE_HEADER = "this book"
CLAIMS_TABLE_CLASS: str | None = "gradprobe-claims"   # gradprobe.book.claims.ClaimsTable._repr_html_
# Alt text that says nothing: an image hash or a file name.
MEANINGLESS_ALT = re.compile(r"[0-9a-f]{16,}|\.(png|jpe?g|gif|svg|webp)$", re.IGNORECASE)
PIPE_ROW = re.compile(r"^\s*\|.*\|.*\|\s*$")
PIPE_RULE = re.compile(r"\|\s*(-{3,}|—+|–+)\s*\|")
SEARCH_WORD = "gradient"  # a word every page of the book has
RAW_TEX = ("\\(", "\\[", "$$")  # opening delimiters of TeX that MathJax did not typeset

pytestmark = [pytest.mark.slow]


def _unavailable(why: str):
    """Skip, or fail in CI, where a missing browser must not pass unnoticed."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI=true and {why}")
    pytest.skip(why)


# ---------------------------------------------------------------------------- the book under test
# ``built_book`` (tests/conftest.py): the HTML book built from the smoke run of every notebook.

# ------------------------------------------------------------------------------ serving, browsing

class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture(scope="session")
def served_book(built_book):
    """A local HTTP server for the built book: yields its base URL."""
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(built_book)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="session")
def chromium():
    """Headless Debian Chromium under Playwright."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("playwright is not installed (pip install playwright; the browser is Debian's chromium)")
    if not CHROMIUM.exists():
        _unavailable(f"{CHROMIUM} is absent (apt-get install chromium)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@dataclass
class PageReport:
    """What one page showed, at both widths."""
    name: str                       # path relative to the HTML folder, e.g. executed/02_philipp2018.html
    images: list = field(default_factory=list)        # {src, alt, width, height}
    raw_tex: list = field(default_factory=list)       # text snippets around unrendered TeX
    math: dict = field(default_factory=dict)          # {elements, rendered, errors}
    tables: list = field(default_factory=list)        # {header, classes} of every <table>
    pipe_lines: list = field(default_factory=list)    # lines of | a | b | text outside code
    console: list = field(default_factory=list)       # console errors and uncaught exceptions
    failed_requests: list = field(default_factory=list)   # local requests that failed or got >= 400
    external_requests: list = field(default_factory=list)  # requests that tried to leave localhost
    links: list = field(default_factory=list)         # absolute hrefs of every <a>
    narrow: dict = field(default_factory=dict)        # {viewport, scroll_width, overflowing: [...]}
    screenshots: list = field(default_factory=list)
    seconds: float = 0.0


_WAIT_READY = """async () => {
  await Promise.all([...document.images].map(i => i.complete ? null :
      new Promise(r => { i.addEventListener('load', r); i.addEventListener('error', r); })));
  if (window.MathJax && MathJax.startup && MathJax.startup.promise) {
    await MathJax.startup.promise;
  }
  if (document.fonts && document.fonts.ready) { await document.fonts.ready; }
  return true;
}"""

_COLLECT = """(args) => {
  const [pipeRow, pipeRule] = [new RegExp(args.pipeRow), new RegExp(args.pipeRule)];
  const main = document.querySelector('#main-content') || document.querySelector('main') || document.body;
  const images = [...document.querySelectorAll('img')].map(i => ({
    src: i.getAttribute('src'), alt: i.getAttribute('alt'), width: i.naturalWidth, height: i.naturalHeight}));
  // Text outside code: a clone without code blocks, scripts and MathJax's own output.
  const clone = main.cloneNode(true);
  clone.querySelectorAll('pre, code, script, style, textarea, mjx-container, mjx-assistive-mml, .MathJax')
       .forEach(e => e.remove());
  const text = clone.textContent;
  const rawTex = [];
  for (const token of args.rawTex) {
    let at = text.indexOf(token);
    while (at >= 0 && rawTex.length < 20) {
      rawTex.push(text.slice(Math.max(0, at - 40), at + 60).replace(/\\s+/g, ' '));
      at = text.indexOf(token, at + token.length);
    }
  }
  const mathElements = [...main.querySelectorAll('.math')];
  const math = {
    elements: mathElements.length,
    rendered: mathElements.filter(e => e.querySelector('mjx-container, .MathJax, .katex')).length,
    errors: [...document.querySelectorAll('mjx-merror, .MathJax_Error, [data-mjx-error], .katex-error')]
            .map(e => (e.getAttribute('data-mjx-error') || e.textContent).slice(0, 120)),
    mathjax: !!(window.MathJax && window.MathJax.startup),
  };
  const tables = [...main.querySelectorAll('table')].map(t => {
    const head = t.tHead ? t.tHead.textContent : (t.rows.length ? t.rows[0].textContent : '');
    return {header: head.replace(/\\s+/g, ' ').trim(), classes: [...t.classList]};
  });
  const pipeLines = [];
  clone.querySelectorAll('p, li, dd, dt, td, th, blockquote').forEach(p => {
    for (const line of p.textContent.split('\\n')) {
      if (pipeRow.test(line) || pipeRule.test(line)) pipeLines.push(line.trim().slice(0, 120));
    }
  });
  const links = [...document.querySelectorAll('a[href]')].map(a => a.href);
  return {images, rawTex, math, tables, pipeLines, links};
}"""

_NARROW = """() => {
  const main = document.querySelector('#main-content') || document.querySelector('main') || document.body;
  const box = main.getBoundingClientRect();
  const shown = [...main.querySelectorAll('img')].filter(i => i.offsetParent !== null);
  const overflowing = shown.map(i => {
    const r = i.getBoundingClientRect();
    return {src: i.getAttribute('src'), left: Math.round(r.left), right: Math.round(r.right),
            main_left: Math.round(box.left), main_right: Math.round(box.right)};
  }).filter(r => r.left < r.main_left - 1 || r.right > r.main_right + 1
                 || r.right > window.innerWidth + 1 || r.left < -1);
  // squashed: drawn with another aspect ratio than the image has (width shrunk, height kept)
  const distorted = shown.filter(i => i.naturalWidth && i.naturalHeight && i.clientWidth && i.clientHeight)
    .map(i => ({src: i.getAttribute('src'), drawn: i.clientWidth / i.clientHeight,
                natural: i.naturalWidth / i.naturalHeight}))
    .filter(r => Math.abs(r.drawn / r.natural - 1) > 0.03);
  return {viewport: window.innerWidth, scroll_width: document.documentElement.scrollWidth, overflowing, distorted};
}"""


def _pages(html: Path) -> list[str]:
    skip = ("_static/", "_sources/", "_images/", "_downloads/")
    return sorted(p.relative_to(html).as_posix() for p in html.rglob("*.html")
                  if not p.relative_to(html).as_posix().startswith(skip))


def _shot_name(page: str, width: int) -> str:
    return f"{page.removesuffix('.html').replace('/', '__')}-{width}.png"


def _settle(page, script: str, arg=None):
    """Evaluate once the page has stopped navigating (index.html redirects to the root page)."""
    for attempt in range(4):
        try:
            page.wait_for_load_state("load")
            return page.evaluate(script, arg)
        except Exception as err:  # playwright's Error: a redirect replaced the document
            if "context was destroyed" not in str(err) or attempt == 3:
                raise
            time.sleep(0.2)


def _open(browser, base: str, width: int, report: PageReport | None):
    """A fresh page in its own context that may reach the local server only."""
    context = browser.new_context(viewport={"width": width, "height": 900}, device_scale_factor=1)

    def route(route):
        if route.request.url.startswith(base) or route.request.url.startswith("data:"):
            return route.continue_()
        if report is not None:
            report.external_requests.append(route.request.url)
        return route.abort()

    context.route("**/*", route)
    page = context.new_page()
    if report is not None:
        page.on("console", lambda m: m.type == "error" and report.console.append(
            f"console.error: {m.text} ({m.location.get('url', '')})"))
        page.on("pageerror", lambda e: report.console.append(f"uncaught: {e}"))
        page.on("requestfailed", lambda r: r.url.startswith(base) and report.failed_requests.append(
            f"{r.url}: {r.failure}"))
        page.on("response", lambda r: r.status >= 400 and report.failed_requests.append(f"{r.url}: HTTP {r.status}"))
    return context, page


@pytest.fixture(scope="session")
def visited(chromium, served_book, built_book) -> dict[str, PageReport]:
    """Open every page of the book at both widths; screenshots into _build/screenshots/."""
    shutil.rmtree(SCREENSHOTS, ignore_errors=True)
    SCREENSHOTS.mkdir(parents=True)
    reports = {}
    for name in _pages(built_book):
        started = time.perf_counter()
        report = reports[name] = PageReport(name)
        context, page = _open(chromium, served_book, WIDE, report)
        page.goto(served_book + name, wait_until="load")
        _settle(page, _WAIT_READY)
        seen = _settle(page, _COLLECT, {"pipeRow": PIPE_ROW.pattern, "pipeRule": PIPE_RULE.pattern,
                                        "rawTex": list(RAW_TEX)})
        report.images, report.raw_tex, report.math = seen["images"], seen["rawTex"], seen["math"]
        report.tables, report.pipe_lines, report.links = seen["tables"], seen["pipeLines"], seen["links"]
        shot = SCREENSHOTS / _shot_name(name, WIDE)
        page.screenshot(path=str(shot), full_page=True)
        report.screenshots.append(shot)
        context.close()

        context, page = _open(chromium, served_book, NARROW, None)
        page.goto(served_book + name, wait_until="load")
        _settle(page, _WAIT_READY)
        report.narrow = _settle(page, _NARROW)
        shot = SCREENSHOTS / _shot_name(name, NARROW)
        page.screenshot(path=str(shot), full_page=True)
        report.screenshots.append(shot)
        context.close()
        report.seconds = time.perf_counter() - started
    (SCREENSHOTS / "report.json").write_text(json.dumps(
        {k: {**vars(v), "screenshots": [s.name for s in v.screenshots], "links": len(v.links)}
         for k, v in reports.items()}, indent=1, ensure_ascii=False))
    print(f"\nbrowser: {len(reports)} pages in {sum(r.seconds for r in reports.values()):.1f} s; "
          f"screenshots in {SCREENSHOTS}")
    return reports


def _fail_if(problems: list[str], what: str):
    if problems:
        shown = "\n  ".join(problems[:60])
        more = f"\n  ... and {len(problems) - 60} more" if len(problems) > 60 else ""
        pytest.fail(f"{len(problems)} {what}:\n  {shown}{more}", pytrace=False)


def _chapters(reports: dict[str, PageReport]) -> list[PageReport]:
    # executed/NN_<chapter>.html; executed/results.html gathers the chapters' rows and is not one
    return [r for name, r in reports.items() if re.match(r"executed/\d\d_", name)]


# ----------------------------------------------------------------------------------------- checks

def test_every_page_was_opened_and_screenshot(visited, built_book):
    assert _chapters(visited), "the book has chapter pages under executed/"
    for report in visited.values():
        for shot in report.screenshots:
            assert shot.is_file() and shot.stat().st_size > 0, f"{report.name}: screenshot {shot.name}"


def test_images_load_and_have_meaningful_alt_text(visited):
    problems = []
    for report in visited.values():
        for image in report.images:
            if not image["width"]:
                problems.append(f"{report.name}: {image['src']} did not load (naturalWidth 0)")
            alt = (image["alt"] or "").strip()
            if not alt:
                problems.append(f"{report.name}: {image['src']} has no alt text")
            elif MEANINGLESS_ALT.search(alt):
                problems.append(f"{report.name}: {image['src']} has alt text that is a hash or a file name: {alt[:60]!r}")
    _fail_if(problems, "image problems")


def test_math_renders_offline(visited):
    problems = []
    for report in visited.values():
        for snippet in report.raw_tex:
            problems.append(f"{report.name}: raw TeX in the text: …{snippet}…")
        math = report.math
        if math.get("elements", 0) > math.get("rendered", 0):
            problems.append(f"{report.name}: {math['elements'] - math['rendered']} of {math['elements']} "
                            f"math elements not typeset (MathJax {'ran' if math.get('mathjax') else 'did not run'})")
        for error in math.get("errors", []):
            problems.append(f"{report.name}: MathJax error: {error}")
    _fail_if(problems, "math problems")


def test_no_request_leaves_the_book(visited):
    problems = [f"{r.name}: {url}" for r in visited.values() for url in sorted(set(r.external_requests))]
    _fail_if(problems, "requests to outside the book (blocked; the page must work offline)")


def _is_claims_table(table: dict) -> bool:
    return CLAIMS_TABLE_HEADER in table["header"] and (
        CLAIMS_TABLE_CLASS is None or CLAIMS_TABLE_CLASS in table["classes"])


def test_every_chapter_shows_its_claims_table_as_a_table(visited):
    wanted = f"header contains {CLAIMS_TABLE_HEADER!r}" + (
        f" and class {CLAIMS_TABLE_CLASS!r}" if CLAIMS_TABLE_CLASS else "")
    problems = [f"{r.name}: no <table> whose {wanted} (tables: {[t['header'][:60] for t in r.tables]})"
                for r in _chapters(visited) if not any(_is_claims_table(t) for t in r.tables)]
    _fail_if(problems, "chapters without a claims table")


def test_no_raw_markdown_tables(visited):
    problems = [f"{r.name}: {line}" for r in visited.values() for line in r.pipe_lines]
    _fail_if(problems, "lines of raw markdown-table text in the rendered pages")


def test_no_console_errors_or_failed_requests(visited):
    problems = [f"{r.name}: {msg}" for r in visited.values() for msg in r.console + r.failed_requests]
    _fail_if(problems, "console errors or failed requests")


def _ids(path: Path, cache: dict) -> set[str]:
    if path not in cache:
        text = path.read_text(errors="replace")
        cache[path] = set(re.findall(r"""\b(?:id|name)=["']([^"']+)["']""", text))
    return cache[path]


def test_internal_links_resolve(visited, built_book, served_book):
    problems, ids, checked = [], {}, 0
    for report in visited.values():
        for href in sorted(set(report.links)):
            if not href.startswith(served_book):
                continue
            checked += 1
            url = urlsplit(href)
            relative = unquote(url.path)[len(urlsplit(served_book).path):]
            target = built_book / relative
            if relative == "" or relative.endswith("/"):
                target = target / "index.html"
            if not target.is_file():
                problems.append(f"{report.name}: {href} -> no file {relative or 'index.html'}")
                continue
            anchor = unquote(url.fragment)
            if anchor and target.suffix == ".html" and anchor not in _ids(target, ids):
                problems.append(f"{report.name}: {href} -> no id {anchor!r} on {target.relative_to(built_book)}")
    assert checked, "the book has internal links"
    _fail_if(problems, f"broken internal links (of {checked} checked)")


def test_no_figure_overflows_or_is_squashed_at_400px(visited):
    problems = []
    for report in visited.values():
        narrow = report.narrow
        if narrow["scroll_width"] > narrow["viewport"] + 1:
            problems.append(f"{report.name}: the page scrolls sideways at {NARROW} px "
                            f"(scrollWidth {narrow['scroll_width']})")
        for image in narrow["overflowing"]:
            problems.append(f"{report.name}: {image['src']} spans {image['left']}…{image['right']} px, "
                            f"the content {image['main_left']}…{image['main_right']} px")
        for image in narrow["distorted"]:
            problems.append(f"{report.name}: {image['src']} is drawn at aspect {image['drawn']:.2f}, "
                            f"the image's is {image['natural']:.2f} (squashed)")
    _fail_if(problems, f"overflowing or squashed figures at {NARROW} px")


def test_search_works_offline(chromium, served_book, built_book):
    if not (built_book / "search.html").is_file():
        pytest.fail("the book has no search page")
    report = PageReport("search.html")
    context, page = _open(chromium, served_book, WIDE, report)
    try:
        page.goto(f"{served_book}search.html?q={SEARCH_WORD}", wait_until="load")
        page.wait_for_function("""() => {
            const s = document.querySelector('#search-results .search-summary');
            return s && /found|did not match/.test(s.textContent); }""", timeout=20000)
        summary = page.evaluate("() => document.querySelector('#search-results .search-summary').textContent")
        hits = page.evaluate("() => document.querySelectorAll('#search-results li').length")
    finally:
        context.close()
    assert hits > 0, f"searching for {SEARCH_WORD!r} finds pages; the search page says: {summary.strip()}"
    assert not report.external_requests, f"search left the book: {report.external_requests}"
    assert not report.console, f"search: {report.console}"
