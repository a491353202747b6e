"""
The error page in a real browser (headless Chromium through selenium and Debian's
chromedriver): the counts it shows equal Python's and the evaluator's, the score slider and
the class filter recompute them as Python does, sorting follows the errors, nothing is fetched.
Skipped where chromium is absent, unless $CI is set (then it fails: .ci/run installs it).
"""

import contextlib
import io
import json
import os
import re

import numpy as np
import pytest

from cxr_d2.evaluation import CXRCOCOEvaluator
from cxr_d2.evaluation.cocoeval import make_coco
from cxr_d2.evaluation.errors_page import count_errors, dataset_ground_truth
from cxr_d2.evaluation.errors_page.cli import main
from tests.evaluation.errors_page_cases import (
    HAND_EXPECTED,
    HAND_FROC,
    HAND_PR,
    expected,
    hand_dataset,
    hand_results,
    phantom_results,
)
from tests.helpers import TINY

pytestmark = pytest.mark.browser

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
PHANTOM = f"{TINY}_train"
CARDS_JS = """return [...document.querySelectorAll('#gallery .card')].map(c => [
    c.dataset.imageId, c.querySelector('.tp-n').textContent,
    c.querySelector('.fp-n').textContent, c.querySelector('.fn-n').textContent]);"""
SET_SLIDER_JS = """const s = document.getElementById('threshold'); s.value = arguments[0];
    s.dispatchEvent(new Event('input'));"""


def require_chromium(paths=(CHROMIUM, CHROMEDRIVER)):
    """Skip when chromium or its driver is missing; fail instead when $CI is set."""
    missing = [p for p in paths if not os.access(p, os.X_OK)]
    if missing:
        why = f"{', '.join(missing)} missing: apt-get install chromium chromium-driver"
        if os.environ.get("CI"):
            pytest.fail(why)
        pytest.skip(why)


def test_missing_chromium_skips_here_and_fails_in_ci(monkeypatch, tmp_path):
    absent = (str(tmp_path / "chromium"), CHROMEDRIVER)
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="chromium missing: apt-get install"):
        require_chromium(absent)
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="chromium missing: apt-get install"):
        require_chromium(absent)


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    require_chromium()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--window-size=1280,900",
        f"--user-data-dir={tmp_path_factory.mktemp('chromium')}",
    ):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    # The driver's path is given: selenium-manager is never run (it would download one).
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    yield driver
    driver.quit()


def _write_page(tmp_path, dataset, results):
    preds = tmp_path / "coco_instances_results.json"
    preds.write_text(json.dumps(results))
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        assert main(["--dataset", dataset, "--input", str(preds), "--thumb-size", "96"]) == 0
    return (tmp_path / "errors.html").as_uri()


@pytest.fixture(scope="module")
def phantom_page(tiny_phantom, tmp_path_factory):
    """(page URI, pycocotools COCO, results, the evaluator's FROC classes)."""
    tmp = tmp_path_factory.mktemp("errors_page")
    results = phantom_results(PHANTOM)
    evaluator = CXRCOCOEvaluator(
        PHANTOM,
        distributed=False,
        output_dir=str(tmp / "eval"),
        agnostic=False,
        backend="pycocotools",
    )
    evaluator.evaluate_results(results, where="test")
    froc = json.loads((tmp / "eval" / "evaluation.json").read_text())["froc"]["bbox"]["classes"]
    coco = make_coco(dataset_ground_truth(PHANTOM)[0])
    return _write_page(tmp, PHANTOM, results), coco, results, froc


def _shown(driver):
    """{image_id: (tp, fp, fn)} read from the captions, and the totals."""
    cards = {
        int(i): tuple(int(s.split()[1]) for s in c) for i, *c in driver.execute_script(CARDS_JS)
    }
    totals = tuple(int(driver.find_element("id", f"total-{k}").text) for k in ("tp", "fp", "fn"))
    return cards, totals


def _python(counts):
    cards = {img: (c.tp, c.fp, c.fn) for img, c in counts.items()}
    return cards, tuple(sum(v[k] for v in cards.values()) for k in range(3))


def _order(coco, counts, key):
    """Python's order of the image ids: most errors first, then dataset order."""
    ids = [im["id"] for im in coco.dataset["images"]]
    return [ids[k] for k in sorted(range(len(ids)), key=lambda k: (-key(counts[ids[k]]), k))]


def test_counts_slider_class_filter_and_sorting(browser, phantom_page):
    uri, coco, results, _ = phantom_page
    browser.get(uri)
    assert browser.find_element("tag name", "body").get_attribute("data-ready") == "1"
    assert "equal those computed in Python" in browser.find_element("id", "check").text
    assert _shown(browser) == _python(count_errors(coco, results, 0.5))

    # The median score: a detection exactly at the threshold is kept.
    median = sorted(r["score"] for r in results)[len(results) // 2]
    for t in ("0", repr(median), "0.77"):
        browser.execute_script(SET_SLIDER_JS, t)
        counts = count_errors(coco, results, float(t))
        assert _shown(browser) == _python(counts), t
        shown_order = [int(i) for i, *_ in browser.execute_script(CARDS_JS)]
        assert shown_order == _order(coco, counts, lambda c: c.fp + c.fn), t
    # The keyboard moves the slider by 1/100 of its range: 0.78.
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import Select

    browser.find_element("id", "threshold").send_keys(Keys.ARROW_RIGHT)
    assert float(browser.find_element("id", "threshold").get_attribute("value")) == 0.78
    assert _shown(browser) == _python(count_errors(coco, results, 0.78))

    browser.execute_script(SET_SLIDER_JS, "0.25")
    cat = coco.dataset["categories"][1]
    Select(browser.find_element("id", "class-filter")).select_by_visible_text(cat["name"])
    counts = count_errors(coco, results, 0.25, category_ids=[cat["id"]])
    assert _shown(browser) == _python(counts)
    drawn = browser.execute_script(
        "return ['tp', 'fp', 'fn'].map(k => document.querySelectorAll('rect.box.' + k).length)"
    )
    assert tuple(drawn) == _python(counts)[1]
    Select(browser.find_element("id", "sort")).select_by_value("fn")
    shown_order = [int(i) for i, *_ in browser.execute_script(CARDS_JS)]
    assert shown_order == _order(coco, counts, lambda c: c.fn)
    errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert not errors, errors


def _curve(driver, svg):
    line = driver.find_element("css selector", f"#{svg} polyline")
    return np.c_[json.loads(line.get_attribute("data-x")), json.loads(line.get_attribute("data-y"))]


def test_curves_equal_the_evaluators(browser, phantom_page):
    uri, coco, results, froc = phantom_page
    browser.get(uri)
    from selenium.webdriver.support.ui import Select

    np.testing.assert_allclose(
        _curve(browser, "froc"), np.c_[froc["overall"]["fppi"], froc["overall"]["sens"]]
    )
    # PR: precision and recall at every distinct score, from Python's counts.
    pr = []
    for t in sorted({r["score"] for r in results}, reverse=True):
        _, (tp, fp, fn) = _python(count_errors(coco, results, t))
        pr.append((tp / (tp + fn), tp / (tp + fp)))
    np.testing.assert_allclose(_curve(browser, "pr"), pr)
    cat = coco.dataset["categories"][2]
    Select(browser.find_element("id", "class-filter")).select_by_visible_text(cat["name"])
    np.testing.assert_allclose(
        _curve(browser, "froc"), np.c_[froc[cat["name"]]["fppi"], froc[cat["name"]]["sens"]]
    )


def test_nothing_is_fetched(browser, phantom_page):
    browser.get(phantom_page[0])
    assert browser.execute_script("return performance.getEntriesByType('resource').length") == 0
    refs = browser.execute_script("""return [...document.querySelectorAll('[src], [href]')]
        .map(e => e.getAttribute('src') || e.getAttribute('href'));""")
    assert refs and all(r.startswith("data:") or r.startswith("#") for r in refs)
    policy = browser.find_element("css selector", 'meta[http-equiv="Content-Security-Policy"]')
    assert "default-src 'none'" in policy.get_attribute("content")


def test_hand_worked_case_in_the_page(browser, tmp_path):
    with hand_dataset() as name:
        uri = _write_page(tmp_path, name, hand_results())
    browser.get(uri)
    assert re.search(r"no thumbnail: .*hand1\.png", browser.find_element("id", "gallery").text)
    np.testing.assert_allclose(_curve(browser, "froc"), HAND_FROC, atol=1e-12)
    np.testing.assert_allclose(_curve(browser, "pr"), HAND_PR, atol=1e-12)
    for t, table in sorted(HAND_EXPECTED.items()):
        browser.execute_script(SET_SLIDER_JS, str(t))
        cards, _ = _shown(browser)
        assert cards == {img: c[:3] for img, c in expected(table).items()}, t


def test_mask_matching_in_the_page(browser, phantom_page, tmp_path):
    coco = phantom_page[1]
    results = phantom_results(PHANTOM, masks=True)
    preds = tmp_path / "coco_instances_results.json"
    preds.write_text(json.dumps(results))
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        assert (
            main(
                [
                    "--dataset",
                    PHANTOM,
                    "--input",
                    str(preds),
                    "--iou-type",
                    "segm",
                    "--thumb-size",
                    "32",
                ]
            )
            == 0
        )
    browser.get((tmp_path / "errors.html").as_uri())
    for t in ("0.35", "0.6"):
        browser.execute_script(SET_SLIDER_JS, t)
        segm = count_errors(coco, results, float(t), "segm")
        assert _shown(browser) == _python(segm) != _python(count_errors(coco, results, float(t)))


def test_names_are_text_not_markup(browser, tmp_path):
    classes = ("a</script><!--", "<b>b</b>")
    with hand_dataset(classes) as name:
        uri = _write_page(tmp_path, name, hand_results())
    browser.get(uri)
    options = browser.find_elements("css selector", "#class-filter option")
    assert [o.text for o in options] == ["all classes", *classes]
    assert not browser.find_elements("css selector", "#gallery b")
    assert _shown(browser)[0] == {i: c[:3] for i, c in expected(HAND_EXPECTED[0.5]).items()}
