"""The upload page in real headless Chromium (Playwright): its verdict equals the REST API's answer."""

from __future__ import annotations

import base64
import json
import urllib.request
from pathlib import Path

import helpers_models as hm
import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


@pytest.fixture(scope="module")
def fake_images(shared_data: Path) -> list[Path]:
    images = sorted((shared_data / "rvf10k" / "test" / "fake").glob("*.jpg"))[:2]
    if not images:
        pytest.skip(f"no JPEG images in {shared_data / 'rvf10k' / 'test' / 'fake'}")
    return images


@pytest.fixture(scope="module")
def page_url():
    from tfdeepfake.serve import create_app, serve_in_thread

    with serve_in_thread(create_app(hm.exported().parent)) as url:
        yield url


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.is_file():
        pytest.skip(f"Chromium not installed at {CHROMIUM} (apt-get install -y chromium)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def rest_answer(url: str, path: Path, verb: str = "predict") -> dict:
    body = json.dumps({"instances": [{"b64": base64.b64encode(path.read_bytes()).decode()}]}).encode()
    request = urllib.request.Request(f"{url}/v1/models/{hm.ENSEMBLE_NAME}:{verb}", data=body,
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read())["predictions"][0]


def read_result(page) -> dict:
    page.wait_for_function("document.body.dataset.state === 'done'", timeout=60_000)
    verdict = page.locator("#verdict")
    members = page.locator("#members tr")
    return {
        "verdict": verdict.inner_text().strip().lower(),
        "label": int(verdict.get_attribute("data-label")),
        "probability": float(page.locator("#probability").get_attribute("data-value")),
        "shown": page.locator("#probability").inner_text(),
        "members": {members.nth(i).locator("td").nth(0).inner_text():
                    float(members.nth(i).locator("td").nth(1).get_attribute("data-value"))
                    for i in range(members.count())},
    }


def check_against_rest(result: dict, rest: dict) -> None:
    assert result["verdict"] == ("fake" if rest["label"] else "real")
    assert result["label"] == rest["label"]
    assert result["probability"] == pytest.approx(rest["probability_fake"], abs=1e-9)
    assert result["shown"] == f"{100 * rest['probability_fake']:.2f} %"
    assert list(result["members"]) == ["resnet18-test", "alexnet-test"]
    assert list(result["members"].values()) == pytest.approx(rest["members"], abs=1e-9)


def test_upload_page_shows_the_rest_verdict(browser, page_url, fake_images):
    page = browser.new_page()
    try:
        page.goto(page_url + "/")
        page.wait_for_function("document.getElementById('model-info').textContent.includes('tiny')")
        assert page.locator("#result").is_hidden()

        page.set_input_files("#file", str(fake_images[0]))  # choose a file
        check_against_rest(read_result(page), rest_answer(page_url, fake_images[0]))
        assert page.locator("#result").is_visible() and page.locator("#error").is_hidden()

        # drop another file onto the drop zone
        page.evaluate("document.body.dataset.state = ''")
        data = base64.b64encode(fake_images[1].read_bytes()).decode()
        transfer = page.evaluate_handle(
            """(data) => {
                const bytes = Uint8Array.from(atob(data), (c) => c.charCodeAt(0));
                const transfer = new DataTransfer();
                transfer.items.add(new File([bytes], "dropped.jpg", { type: "image/jpeg" }));
                return transfer;
            }""", data)
        page.dispatch_event("#drop", "drop", {"dataTransfer": transfer})
        check_against_rest(read_result(page), rest_answer(page_url, fake_images[1]))
    finally:
        page.close()


def test_upload_page_reports_a_bad_file(browser, page_url, tmp_path):
    bad = tmp_path / "notes.txt"
    bad.write_text("not an image")
    page = browser.new_page()
    try:
        page.goto(page_url + "/")
        page.set_input_files("#file", str(bad))
        page.wait_for_function("document.body.dataset.state === 'error'", timeout=60_000)
        assert "not a readable image" in page.locator("#error").inner_text()
        assert page.locator("#result").is_hidden()
    finally:
        page.close()


def test_upload_page_shows_each_members_gradcam(browser, page_url, fake_images):
    """With the Grad-CAM box ticked, each member's row shows its overlay: the picture ``:explain`` returns."""
    page = browser.new_page()
    try:
        page.goto(page_url + "/")
        page.wait_for_function("document.getElementById('model-info').textContent.includes('tiny')")
        assert page.locator("#explain").is_enabled()
        page.set_input_files("#file", str(fake_images[0]))  # not ticked: no overlays
        read_result(page)
        assert page.locator("#members img.overlay").count() == 0 and page.locator("#overlay-head").is_hidden()

        page.evaluate("document.body.dataset.state = ''")
        page.check("#explain")
        page.set_input_files("#file", str(fake_images[0]))
        result = read_result(page)
        rest = rest_answer(page_url, fake_images[0], "explain")
        check_against_rest(result, rest)
        assert page.locator("#overlay-head").is_visible()
        rows = page.locator("#members tr")
        for i, name in enumerate(["resnet18-test", "alexnet-test"]):
            img = rows.nth(i).locator("img.overlay")
            assert img.is_visible()
            assert img.get_attribute("src") == "data:image/png;base64," + rest["overlays"][name]["b64"]
            size = img.evaluate("(el) => [el.naturalWidth, el.naturalHeight, el.complete]")
            assert size[2] and size[0] > 0 and size[1] > 0  # the browser decoded the PNG
            assert name in img.get_attribute("alt")
    finally:
        page.close()


def test_upload_page_says_why_an_image_does_not_decode(browser, page_url, fake_images, tmp_path):
    cut = tmp_path / "cut.jpg"
    data = fake_images[0].read_bytes()
    cut.write_bytes(data[: len(data) // 2])  # the header reads fine, the pixel data stops halfway
    page = browser.new_page()
    try:
        page.goto(page_url + "/")
        page.set_input_files("#file", str(cut))
        page.wait_for_function("document.body.dataset.state === 'error'", timeout=60_000)
        error = page.locator("#error").inner_text()
        assert "JPEG image is truncated" in error and "Graph execution" not in error
        assert page.locator("#result").is_hidden()
    finally:
        page.close()
