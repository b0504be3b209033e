"""The README's picture of the editor: drives a running `pix2pixhd-jax serve` in headless
Debian Chromium (Playwright), paints, restyles a car, and takes a screenshot.

    pix2pixhd-jax serve --workdir /tmp/tune/t4 --port 8767 &
    python experiments/editor_screenshot.py --url http://127.0.0.1:8767/ --out docs/editor.png

The edits are fixed image coordinates on the first synthetic 256x128 test scene.
"""

import argparse

from playwright.sync_api import sync_playwright

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage"]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--url", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--scene", default=None, help="test scene name (default: the first)")
    ap.add_argument("--style", type=int, default=4, help="the style given to the selected car")
    args = ap.parse_args()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1480, "height": 700}, bypass_csp=True)
        page.goto(args.url)
        page.wait_for_selector("#status:has-text('edit(s)')")
        if args.scene:
            page.select_option("#scene-select", args.scene)
            page.click("#open-scene")
        idle = lambda: page.wait_for_selector('body[data-busy="0"]')  # noqa: E731
        idle()
        w, h = page.evaluate("[editorState.width, editorState.height]")

        def at(x, y):
            box = page.locator("#labels-overlay").bounding_box()
            return box["x"] + (x + 0.5) * box["width"] / w, box["y"] + (y + 0.5) * box["height"] / h

        # A tree (vegetation) painted over the left buildings, then a car restyled.
        page.click('#palette button[data-class="21"]')
        page.check("#tool-brush")
        page.fill("#radius", "9")
        page.dispatch_event("#radius", "input")
        page.mouse.move(*at(22, 42))
        page.mouse.down()
        page.mouse.move(*at(60, 48), steps=10)
        page.mouse.up()
        idle()
        page.check("#tool-select")
        page.mouse.click(*at(175, 66))
        page.wait_for_selector("#object-info:not([hidden])")
        idle()
        page.click(f'#styles button[data-style="{args.style}"]')
        idle()
        page.wait_for_timeout(300)  # the selection mask image
        page.screenshot(path=args.out)
        print(page.inner_text("#status"))
        browser.close()


if __name__ == "__main__":
    main()
