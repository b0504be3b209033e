"""The editor page end to end: headless Debian Chromium driven by Playwright paints a region,
changes one car's style and deletes an object; the photo and label map, downloaded through the
API, changed where the edit was and (beyond the generator's reach) not elsewhere.

Needs /usr/bin/chromium (`apt-get install chromium`, which `make venv` does as root) and the
`playwright` package (requirements-test.txt); skips otherwise. It never runs `playwright install`.
"""

import os
import time

import numpy as np
import pytest

from serve_helpers import (BOXES, CAR, CAR_A, H, PERSON, PERSON_A, ROAD, W, RunningServer, change_inside_vs_outside,
                           download, make_editor_workdir)

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage"]
VEGETATION = 21
MARGIN = 8  # beyond the edit grown by this many pixels counts as "elsewhere"
LOCALITY = 3.0  # mean change inside the edit / mean change elsewhere, at least


@pytest.fixture(scope="module")
def browser():
    if not os.access(CHROMIUM, os.X_OK):
        pytest.skip(f"{CHROMIUM} is absent: install Debian's chromium (apt-get install chromium; `make venv` does "
                    "it when run as root)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed "
                                   "(pip install -r requirements-test.txt)")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    from pix2pixhd_jax.inference.synthesis import Synthesizer
    from pix2pixhd_jax.serve import EditorService, list_test_scenes

    synth = Synthesizer.from_workdir(make_editor_workdir(str(tmp_path_factory.mktemp("editor"))))
    running = RunningServer(EditorService(synth, list_test_scenes(synth.config)))
    yield running
    running.stop()


class Page:
    def __init__(self, page):
        self.page = page
        self.errors = []
        page.on("pageerror", lambda e: self.errors.append(str(e)))

    def idle(self):
        self.page.wait_for_selector('body[data-busy="0"]', timeout=60_000)

    def state(self, key):
        return self.page.evaluate(f"window.editorState.{key}")

    def wait_edits(self, n):
        deadline = time.time() + 60
        while self.state("edits") != n:
            assert time.time() < deadline, (self.state("edits"), self.page.inner_text("#error"))
            time.sleep(0.05)
        self.idle()

    def at(self, x, y):
        """The page coordinates of image pixel (x, y)'s centre on the label view."""
        box = self.page.locator("#labels-overlay").bounding_box()
        return box["x"] + (x + 0.5) * box["width"] / W, box["y"] + (y + 0.5) * box["height"] / H


def test_paint_restyle_and_delete_in_the_browser(browser, server):
    page = Page(browser.new_page(viewport={"width": 1400, "height": 700}))
    p = page.page
    p.goto(server.url + "/")
    p.wait_for_selector("#status:has-text('scene_0')", timeout=60_000)
    page.idle()
    session = page.state("session")
    assert page.state("width") == W and page.state("height") == H
    label0, inst0, photo0 = (download(server.url, session, w) for w in ("label", "inst", "photo"))

    # 1. Paint a strip of vegetation across the road with the brush.
    p.click(f'#palette button[data-class="{VEGETATION}"]')
    p.check("#tool-brush")
    p.fill("#radius", "4")
    p.dispatch_event("#radius", "input")
    p.mouse.move(*page.at(8, 57))
    p.mouse.down()
    p.mouse.move(*page.at(50, 57), steps=12)
    p.mouse.up()
    page.wait_edits(1)
    label1, inst1, photo1 = (download(server.url, session, w) for w in ("label", "inst", "photo"))
    painted = label1 != label0
    assert painted.sum() > 0.8 * (50 - 8) * 9, painted.sum()  # a 9-pixel-wide stroke, about 42 long
    assert np.all(label1[painted] == VEGETATION) and np.all(inst1[painted] == VEGETATION)
    ys, xs = np.nonzero(painted)
    assert 52 <= ys.min() and ys.max() <= 62 and 3 <= xs.min() and xs.max() <= 55
    np.testing.assert_array_equal(inst1[~painted], inst0[~painted])
    inside, far = change_inside_vs_outside(photo0, photo1, painted, MARGIN)
    assert inside > LOCALITY * far, (inside, far)

    # 2. Select car A and give it the k-means style farthest from its current one.
    p.check("#tool-select")
    p.mouse.click(*page.at(25, 44))
    p.wait_for_selector("#object-info:not([hidden])")
    page.idle()
    assert p.inner_text("#object-name") == "car" and page.state("selected.instance") == CAR_A
    assert p.locator("#styles button").count() == 4
    current = page.state("selected.style")
    target = {0: 1, 1: 0, 2: 3, 3: 2}[current]  # the opposite corner of the feature cube
    p.click(f'#styles button[data-style="{target}"]')
    page.wait_edits(2)
    assert page.state("selected.style") == target and page.state("selected.style_kind") == "chosen"
    label2, inst2, photo2 = (download(server.url, session, w) for w in ("label", "inst", "photo"))
    np.testing.assert_array_equal(label2, label1)
    np.testing.assert_array_equal(inst2, inst1)
    inside, far = change_inside_vs_outside(photo1, photo2, BOXES[CAR_A], MARGIN)
    assert inside > LOCALITY * far, (inside, far)

    # 3. Select the person and delete it: road fills its place.
    p.mouse.click(*page.at(64, 40))
    p.wait_for_selector("#object-name:has-text('person')")
    page.idle()
    assert page.state("selected.instance") == PERSON_A
    p.click("#delete")
    page.wait_edits(3)
    label3, inst3, photo3 = (download(server.url, session, w) for w in ("label", "inst", "photo"))
    gone = BOXES[PERSON_A]
    assert PERSON not in label3 and PERSON_A not in inst3
    assert set(np.unique(label3[gone]).tolist()) <= {ROAD, 8, 11}  # the classes around it
    np.testing.assert_array_equal(label3[~gone], label2[~gone])
    inside, far = change_inside_vs_outside(photo2, photo3, gone, MARGIN)
    assert inside > LOCALITY * far, (inside, far)
    assert CAR in label3 and page.state("selected") is None

    # Undo brings the person back, photo and all.
    p.click("#undo")
    page.wait_edits(2)
    np.testing.assert_array_equal(download(server.url, session, "photo"), photo2)
    np.testing.assert_array_equal(download(server.url, session, "label"), label2)
    assert p.inner_text("#error") == "" and not page.errors, page.errors
    p.close()


def test_errors_are_shown_on_the_page(browser, server):
    page = Page(browser.new_page())
    p = page.page
    p.goto(server.url + "/")
    p.wait_for_selector("#status:has-text('scene_0')", timeout=60_000)
    page.idle()
    p.set_input_files("#upload-label", files=[{"name": "bad.png", "mimeType": "image/png", "buffer": b"not a png"}])
    p.click("#upload")
    p.wait_for_selector("#error:not([hidden])")
    assert "not a PNG" in p.inner_text("#error")
    p.close()
