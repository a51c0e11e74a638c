"""The rendered paper and poster in a real browser: headless Chromium (Debian's), driven by Selenium.

Renders from build/smoke (results/smoke and its executed notebooks) when present, else from the
synthetic results and generated notebooks of test_report (with figures of a poster figure's size)
into a tmp folder. Screenshots of both pages are kept under build/test-artifacts/ for a person to
look at.

The poster is checked at 1920x1080 and 1280x800: no sideways overflow, every figure tall enough for
its text to be read, balanced columns, and every finding's verdict as a heading.
"""
from __future__ import annotations

import base64
import re
import shutil
import tempfile
from pathlib import Path

import pytest
import yaml

from pruning.reporting import plots, report

from test_report import REPORT, float_order, make_results, write_notebooks

pytestmark = [pytest.mark.browser, pytest.mark.slow]  # starts Chromium and renders the report

REPO = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
ARTIFACTS = REPO / "build" / "test-artifacts"
SMOKE_RESULTS = REPO / "results" / "smoke"
SMOKE_BUILD = REPO / "build" / "smoke"


@pytest.fixture(scope="module")
def pages(tmp_path_factory):
    """{"paper": path, "poster": path} rendered offline into a tmp folder."""
    build = tmp_path_factory.mktemp("browser-build")
    if (SMOKE_BUILD / "notebooks").is_dir() and (SMOKE_RESULTS / "experiment.json").exists():
        results = SMOKE_RESULTS
        (build / "notebooks").symlink_to(SMOKE_BUILD / "notebooks", target_is_directory=True)
    else:
        results = make_results(tmp_path_factory.mktemp("browser-results") / "synthetic")
        write_notebooks(build / "notebooks", figure_size=(571, 420))  # a poster figure's natural size
    out = report.render(results, renderer="pandoc", quiet=True, build=build)
    values = yaml.safe_load((build / "report" / "_variables.yml").read_text())
    return {"paper": out["paper"], "poster": out["poster"], "values": values}


@pytest.fixture(scope="module")
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="chromium-profile-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run",
                f"--user-data-dir={profile}", "--window-size=1920,1080", "--hide-scrollbars"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()
    shutil.rmtree(profile, ignore_errors=True)


def open_page(driver, path: Path) -> list[dict]:
    """Load ``path``, wait until every image is decoded; returns the console messages it logged."""
    driver.get_log("browser")  # drop what earlier pages logged
    driver.get(path.as_uri())
    driver.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "Promise.all([...document.images].map(i => i.decode().catch(() => null))).then(() => done(true));")
    return driver.get_log("browser")


def screenshot(driver, name: str) -> Path:
    """A full-page PNG (the whole scroll height) saved under build/test-artifacts/."""
    metrics = driver.execute_cdp_cmd("Page.getLayoutMetrics", {})
    size = metrics["cssContentSize"]
    shot = driver.execute_cdp_cmd("Page.captureScreenshot", {
        "format": "png", "captureBeyondViewport": True,
        "clip": {"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1}})
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    path.write_bytes(base64.b64decode(shot["data"]))
    return path


def broken_images(driver) -> list[str]:
    return driver.execute_script(
        "return [...document.images].filter(i => !i.complete || i.naturalWidth === 0)"
        ".map(i => (i.closest('[id]') || {}).id || i.src.slice(0, 40));")


@pytest.mark.parametrize("name", ["paper", "poster"])
def test_page_loads_without_console_errors_and_every_image_shows(browser, pages, name):
    logs = open_page(browser, pages[name])
    errors = [entry["message"] for entry in logs if entry["level"] == "SEVERE"]
    assert not errors, errors
    n_images = browser.execute_script("return document.images.length")
    figures = [label for label in float_order(REPORT / f"{name}.qmd") if label.startswith("fig-")]
    assert n_images >= len(figures) > 0
    assert broken_images(browser) == []
    caption = browser.execute_script(
        "const t = document.getElementById('tbl-ensembles'); return t && t.querySelector('table') ? t.innerText : null")
    assert caption and "Table" in caption  # the ensemble table, with its numbered caption
    path = screenshot(browser, name)
    assert path.stat().st_size > 10_000


def test_poster_is_a_banner_over_three_columns(browser, pages):
    browser.set_window_size(1920, 1080)
    open_page(browser, pages["poster"])
    boxes = browser.execute_script(
        "const r = e => { const b = e.getBoundingClientRect(); return [b.left, b.top, b.width, b.height]; };"
        "return {banner: r(document.querySelector('.banner')),"
        "        cols: [...document.querySelectorAll('.poster-col')].map(r),"
        "        title: parseFloat(getComputedStyle(document.querySelector('.banner h1')).fontSize),"
        "        body: parseFloat(getComputedStyle(document.querySelector('.block p')).fontSize),"
        "        page: document.documentElement.scrollWidth};")
    banner, cols = boxes["banner"], boxes["cols"]
    assert len(cols) == 3
    lefts = [c[0] for c in cols]
    assert lefts == sorted(lefts) and len(set(round(x) for x in lefts)) == 3  # side by side
    assert all(abs(c[1] - cols[0][1]) < 2 for c in cols)  # top-aligned
    assert all(c[1] >= banner[1] + banner[3] for c in cols)  # under the banner
    assert banner[2] >= 0.95 * boxes["page"]  # the banner spans the page
    assert all(c[2] > 500 for c in cols)  # columns as wide as a figure
    assert boxes["title"] >= 36 and boxes["body"] >= 14


# A poster figure is drawn at its display size: 5.6 in at 100 dpi (~570 px wide, the width of a column's
# content at 1920 px) and at least 3.9 in (398 px, fig-random) tall, with no text under 10.5 pt =
# plots.MIN_TEXT_PX = 14.6 px. Shown at 96% of its natural size or more, its smallest text stays >= 14 px:
# 398 px * 0.96 = 382, so N = 380 px at 1920 px. The poster is laid out in units of the window width, so
# at 1280 px everything is 1280/1920 of that: N = 253 px there, on an identical layout.
MIN_FIGURE_HEIGHT_1920 = 380
SIZES = [(1920, 1080), (1280, 800)]


def poster_layout(browser, pages, width, height):
    browser.set_window_size(width, height)
    open_page(browser, pages["poster"])
    return browser.execute_script(
        "const cols = [...document.querySelectorAll('.poster-col')].map(c => {"
        "  const k = [...c.children]; return k[k.length - 1].getBoundingClientRect().bottom"
        "    - k[0].getBoundingClientRect().top; });"
        "const figs = [...document.querySelectorAll('.poster-col img')].map(i => ({"
        "  id: (i.closest('[id]') || {}).id || i.src.slice(0, 30), height: i.getBoundingClientRect().height,"
        "  width: i.getBoundingClientRect().width, natural: i.naturalHeight}));"
        "const over = [...document.querySelectorAll('body *')].filter(e => e.getBoundingClientRect().right"
        "  > window.innerWidth + 1).map(e => e.tagName + '.' + e.className).slice(0, 5);"
        "return {inner: window.innerWidth, scroll: document.documentElement.scrollWidth,"
        "        body: document.body.scrollWidth, cols, figs, over,"
        "        headings: [...document.querySelectorAll('.poster h2')].map(h => h.innerText.trim())};")


@pytest.mark.parametrize("width,height", SIZES)
def test_poster_reads_at_1920_and_1280(browser, pages, width, height):
    layout = poster_layout(browser, pages, width, height)
    try:
        assert layout["inner"] == width
        # no sideways overflow: the page is no wider than the window, and no element sticks out
        assert layout["scroll"] <= width and layout["body"] <= width and layout["over"] == [], layout["over"]
        # every figure tall enough to read (see MIN_FIGURE_HEIGHT_1920), and at 1920 its text >= 14 px
        n = MIN_FIGURE_HEIGHT_1920 * width / 1920
        assert len(layout["figs"]) >= 5
        for fig in layout["figs"]:
            assert fig["height"] >= n, (fig, n)
            if width == 1920:
                assert plots.MIN_TEXT_PX * fig["height"] / fig["natural"] >= 14, fig
        # balanced columns: the shortest at least 75% of the tallest
        cols = layout["cols"]
        assert len(cols) == 3 and min(cols) >= 0.75 * max(cols), cols
        # every finding's verdict is a heading: the headline computed from the results, verdict first
        values = pages["values"]
        keys = ["tickets", "variety", "random", "functions", "ensembles", "stability", "connectivity"]
        for key in keys:
            assert values[f"{key}_headline"] in layout["headings"], key
        verdicts = [h for h in layout["headings"] if re.match(r"(Supported|Not supported|Inconclusive): ", h)]
        assert len(verdicts) == len(keys)
    finally:
        screenshot(browser, f"poster-{width}")
        browser.set_window_size(1920, 1080)


HEADER_ALIGNMENT_JS = """
const out = [];
document.querySelectorAll('table').forEach((t, ti) => {
  const head = t.tHead ? t.tHead.rows[t.tHead.rows.length - 1] : null;
  const body = t.tBodies.length ? [...t.tBodies[0].rows] : [];
  if (!head || !body.length) return;
  [...head.cells].forEach((th, j) => {
    const td = body[0].cells[j];
    if (!td || th.colSpan > 1) return;
    const a = getComputedStyle(th).textAlign, b = getComputedStyle(td).textAlign;
    const norm = x => (x === 'start' ? 'left' : x === 'end' ? 'right' : x);
    if (norm(a) !== norm(b)) out.push(`table ${ti} (${(t.closest('[id]') || {}).id || 'no id'}), column ${j} ` +
                                      `"${th.textContent.trim().slice(0, 30)}": header ${a}, values ${b}`);
  });
});
return out;
"""


@pytest.mark.parametrize("which", ["smoke", "published"])
def test_every_table_header_sits_over_its_values(browser, pages, which):
    """A header aligned otherwise than its column's values sits over the next column's values in a wide table: each
    header's text alignment is its values', on the smoke paper and on the published paper-scale paper."""
    path = pages["paper"] if which == "smoke" else REPO / "docs" / "paper_lenet_mnist_cpu" / "paper.html"
    open_page(browser, path)
    assert browser.execute_script("return document.querySelectorAll('table').length") > 5
    bad = browser.execute_script(HEADER_ALIGNMENT_JS)
    assert not bad, "headers not aligned with their values:\n" + "\n".join(bad)


PUBLISHED_POSTER = REPO / "docs" / "paper_lenet_mnist_cpu" / "poster.html"

SMALL_TEXT_JS = """
const out = [];
for (const e of document.querySelectorAll('body *')) {
  const own = [...e.childNodes].some(n => n.nodeType === 3 && n.textContent.trim());
  if (!own || e.getClientRects().length === 0) continue;
  const px = parseFloat(getComputedStyle(e).fontSize);
  if (px < arguments[0]) out.push(`${e.tagName}.${e.className} ${px.toFixed(1)} px: ${e.textContent.trim().slice(0, 40)}`);
}
return out;
"""


@pytest.mark.parametrize("width,height", SIZES)
def test_the_published_poster_balances_its_columns_and_keeps_its_text_readable(browser, pages, width, height):
    """The real poster (the paper-scale set's), not the smoke one: columns within 75% of each other's height, no
    sideways overflow, no text under 12 px, headers over their values, at 1920 and at 1280 px."""
    browser.set_window_size(width, height)
    try:
        open_page(browser, PUBLISHED_POSTER)
        cols = browser.execute_script(
            "return [...document.querySelectorAll('.poster-col')].map(c => { const k = [...c.children];"
            "  return k[k.length - 1].getBoundingClientRect().bottom - k[0].getBoundingClientRect().top; });")
        assert len(cols) == 3 and min(cols) >= 0.75 * max(cols), cols
        assert browser.execute_script("return document.documentElement.scrollWidth") <= width
        small = browser.execute_script(SMALL_TEXT_JS, 12)
        assert not small, "text under 12 px:\n" + "\n".join(small[:10])
        bad = browser.execute_script(HEADER_ALIGNMENT_JS)
        assert not bad, "\n".join(bad)
    finally:
        screenshot(browser, f"published-poster-{width}")
        browser.set_window_size(1920, 1080)


def test_the_poster_prints_on_a0(browser):
    """On paper (print CSS): A0 portrait sheets (841 x 1189 mm = 2384 x 3370 pt), at most two of them."""
    open_page(browser, PUBLISHED_POSTER)
    pdf = base64.b64decode(browser.execute_cdp_cmd("Page.printToPDF", {"preferCSSPageSize": True,
                                                                      "printBackground": True})["data"])
    boxes = re.findall(rb"/MediaBox\s*\[\s*0\s+0\s+([\d.]+)\s+([\d.]+)\s*\]", pdf)
    assert boxes, "no page in the printed PDF"
    for w, h in boxes:
        assert abs(float(w) - 2383.94) < 2 and abs(float(h) - 3370.39) < 2, (w, h)
    assert len(boxes) <= 2
