"""The painter end to end in a real browser: the system's Chromium (Debian's `chromium` and `chromium-driver`;
`.ci/run` installs them, nothing is downloaded) driven by Selenium against a server holding a fixture model.

Draws a stroke, a fill and a rectangle, undoes and redoes, sets a seed and generates; the image the page shows
must be `generate.generate(model, layout, rng=jax.random.key(seed))` for the layout the page sent, and the
browser's console must hold no error. A screenshot is saved under the test's output directory ($SYNTH_TEST_OUTPUT,
or pytest's tmp_path). Without Chromium the tests skip, except under CI (CI set), where that is a failure.

$SYNTH_PAINTER_TEST_CHECKPOINT points the test at another scenes model (e.g. demo_out/spade for the README's
screenshot)."""

from __future__ import annotations

import base64
import io
import os
import shutil
import threading

import jax
import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from synth import generate
from synth.painter import server as painter_server

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CHECKPOINT = os.environ.get("SYNTH_PAINTER_TEST_CHECKPOINT",
                            os.path.join(ROOT, "tests", "fixtures", "checkpoints", "spade_vae_ema"))


def _browser() -> tuple[str, str]:
    chromium = next(filter(None, map(shutil.which, ("chromium", "chromium-browser"))), None)
    driver = shutil.which("chromedriver")
    try:
        import selenium  # noqa: F401
    except ImportError:
        missing = "the selenium package"
    else:
        apt = "Chromium and chromedriver (apt-get install chromium chromium-driver)"
        missing = None if chromium and driver else apt
    if missing:
        if os.environ.get("CI"):
            pytest.fail(f"CI runs the browser tests: {missing} not found (.ci/run installs them).")
        pytest.skip(f"needs {missing}")
    return chromium, driver


@pytest.fixture(scope="module")
def model():
    return generate.load(CHECKPOINT)


@pytest.fixture(scope="module")
def painter(model):
    painter = painter_server.Painter(model)
    painter.warm_up()
    return painter


@pytest.fixture(scope="module")
def url(painter):
    httpd = painter_server.make_server(painter, "127.0.0.1", 0)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd.url
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(scope="module")
def browser():
    chromium, chromedriver = _browser()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1320,880", "--hide-scrollbars", "--force-device-scale-factor=1"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(chromedriver), options=options)
    driver.set_script_timeout(30)
    yield driver
    driver.quit()


@pytest.fixture
def out_dir(tmp_path):
    path = os.environ.get("SYNTH_TEST_OUTPUT") or str(tmp_path)
    os.makedirs(path, exist_ok=True)
    return path


def wait(driver, condition, what: str, timeout: float = 20):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout, poll_frequency=0.05).until(lambda d: condition(d), message=what)


def ids_of(payload: dict) -> np.ndarray:
    return np.frombuffer(base64.b64decode(payload["ids"]), "<u2").reshape(payload["height"], payload["width"])


def page_ids(driver) -> np.ndarray:
    return ids_of(driver.execute_script("return window.painter.labels()"))


def console_errors(driver) -> list[str]:
    return [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]


class Canvas:
    """Pointer actions on the painter's canvas at fractions of its width and height."""

    def __init__(self, driver):
        from selenium.webdriver.common.by import By

        self.driver = driver
        self.element = driver.find_element(By.ID, "overlay")
        self.rect = self.element.rect

    def _offset(self, fx: float, fy: float) -> tuple[int, int]:  # from the element's centre (WebDriver's origin)
        return round((fx - 0.5) * self.rect["width"]), round((fy - 0.5) * self.rect["height"])

    def drag(self, *points):
        from selenium.webdriver.common.action_chains import ActionChains

        chain = ActionChains(self.driver, duration=20)
        chain = chain.move_to_element_with_offset(self.element, *self._offset(*points[0])).click_and_hold()
        for p in points[1:]:
            chain = chain.move_to_element_with_offset(self.element, *self._offset(*p))
        chain.release().perform()

    def click(self, fx: float, fy: float):
        self.drag((fx, fy))


def choose(driver, class_name: str):
    from selenium.webdriver.common.by import By

    driver.find_element(By.XPATH, f"//ul[@id='palette']/li[normalize-space()='{class_name}']").click()
    assert class_name in driver.find_element(By.ID, "current-class").text


def tool(driver, name: str):
    from selenium.webdriver.common.by import By

    driver.find_element(By.CSS_SELECTOR, f"input[name='tool'][value='{name}']").click()


def generated(driver) -> int:
    return int(driver.execute_script("return document.body.dataset.generated"))


def test_paint_generate_and_get_the_models_image(browser, url, model, painter, out_dir):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    d = browser
    d.get(url)
    wait(d, lambda d: d.execute_script("return document.body.dataset.ready") == "true", "the page starts")
    wait(d, lambda d: generated(d) >= 1, "the first image (generated on load)")
    names = model.spec.table.class_names
    # The palette: the model's classes, searchable; only the controls this model has are shown.
    items = d.find_elements(By.CSS_SELECTOR, "#palette li")
    assert [li.text for li in items] == [*names, "unlabelled"]
    search = d.find_element(By.ID, "palette-search")
    search.send_keys("mount", Keys.ENTER)
    assert [li.text for li in d.find_elements(By.CSS_SELECTOR, "#palette li")] == ["mountain"]
    assert "mountain" in d.find_element(By.ID, "current-class").text
    search.send_keys(Keys.BACKSPACE * len("mount"))  # (clear() sends no input event)
    wait(d, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#palette li")) == len(names) + 1, "all classes again")
    caps = painter.capabilities  # the fixture's VAE: seed and style image, no per-region style
    for box, shown in (("seed-box", caps["seed"]), ("samples-box", caps["samples"] > 1),
                       ("style-box", caps["style_image"]), ("region-style-box", caps["region_style"])):
        assert d.find_element(By.ID, box).is_displayed() == shown, box

    canvas = Canvas(d)
    start = page_ids(d)
    h, w = start.shape
    assert (start == names.index("sky")).all()
    # Grass below (a rectangle), a mountain ridge (a brush stroke), the grass filled with water, a road.
    tool(d, "rect")
    choose(d, "grass")
    canvas.drag((0.001, 0.6), (0.5, 0.8), (0.999, 0.999))
    ground = page_ids(d)
    np.testing.assert_array_equal(ground, np.where(np.arange(h)[:, None] >= round(0.6 * h), names.index("grass"),
                                                   start))
    tool(d, "brush")
    d.execute_script(f"document.getElementById('brush-size').value = {max(2, w // 10)}; "
                     "document.getElementById('brush-size').dispatchEvent(new Event('input'))")
    choose(d, "mountain")
    canvas.drag((0.001, 0.55), (0.2, 0.3), (0.4, 0.45), (0.6, 0.2), (0.8, 0.4), (0.999, 0.55))
    stroke = page_ids(d)
    mountain = stroke == names.index("mountain")
    assert w < mountain.sum() < stroke.size // 3
    assert mountain[:, 0].any() and mountain[:, -1].any() and not mountain[: h // 6].any()
    assert (stroke[~mountain] == ground[~mountain]).all()
    tool(d, "fill")
    choose(d, "water")
    canvas.click(0.5, 0.85)
    filled = page_ids(d)
    regions, _ = ndimage.label(stroke == stroke[int(0.85 * h), w // 2])  # 4-connected
    want = np.where(regions == regions[int(0.85 * h), w // 2], names.index("water"), stroke)
    np.testing.assert_array_equal(filled, want)
    assert (filled == names.index("water")).sum() > h * w // 5
    tool(d, "rect")
    choose(d, "road")
    canvas.drag((0.35, 0.8), (0.5, 0.9), (0.65, 0.999))
    painted = page_ids(d)
    road = painted == names.index("road")
    ys, xs = np.nonzero(road)
    assert road.sum() == (ys.max() - ys.min() + 1) * (xs.max() - xs.min() + 1)  # a filled rectangle
    assert abs(ys.min() - 0.8 * h) <= 1 and abs(xs.max() - 0.65 * w) <= 1 and ys.max() == h - 1
    # Undo takes the rectangle away, redo brings it back.
    d.find_element(By.ID, "undo").click()
    np.testing.assert_array_equal(page_ids(d), filled)
    d.find_element(By.ID, "redo").click()
    np.testing.assert_array_equal(page_ids(d), painted)

    # A seed (where the model has one), then generate: the image shown is the model's for the layout sent.
    seed = 42 if caps["seed"] else 0
    if caps["seed"]:
        box = d.find_element(By.ID, "seed")
        box.clear()
        box.send_keys(str(seed))
    d.find_element(By.ID, "generate").click()
    wait(d, lambda d: d.execute_script(
        "const s = window.painter.sent(); return document.body.dataset.busy === 'false' && s !== null && "
        f"s.seed === {seed} && s.labels.ids === window.painter.labels().ids"), "the image of this layout")
    sent = d.execute_script("return window.painter.sent()")
    shown = d.find_element(By.ID, "result").get_attribute("src")
    assert shown == d.execute_script("return window.painter.image()")
    layout = ids_of(sent["labels"])
    np.testing.assert_array_equal(layout, painted)
    image = np.asarray(Image.open(io.BytesIO(base64.b64decode(shown.split(",", 1)[1]))).convert("RGB"))
    want = generate.generate(model, layout.astype(np.int32), rng=jax.random.key(seed))[0]
    np.testing.assert_array_equal(image, want)
    assert ("seed 42" in d.find_element(By.ID, "status").text) == caps["seed"]

    errors = console_errors(d)
    assert not errors, errors
    d.save_screenshot(os.path.join(out_dir, "painter.png"))

    # The overlaid view puts the image under the label map.
    d.find_element(By.CSS_SELECTOR, "input[name='view'][value='overlay']").click()
    assert d.find_element(By.CSS_SELECTOR, "#layout-view #result").is_displayed()
    assert not d.find_element(By.ID, "result-view").is_displayed()
    d.find_element(By.CSS_SELECTOR, "input[name='view'][value='beside']").click()
    assert d.find_element(By.CSS_SELECTOR, "#result-view #result").is_displayed()


def test_loading_label_files_good_and_bad(browser, url, model, tmp_path):
    from selenium.webdriver.common.by import By

    d = browser
    d.get(url)
    wait(d, lambda d: d.execute_script("return document.body.dataset.ready") == "true", "the page starts")
    # (an image generated meanwhile must not hide the upload's error: the upload may come while one is in flight)
    h, w = model.height, model.width
    layout = np.zeros((h, w), np.uint8)
    layout[h // 2:] = 4
    layout[: h // 4, w // 4: w // 2] = 2
    good = tmp_path / "layout.png"
    Image.fromarray(layout).save(good)
    bad = tmp_path / "photo.png"
    Image.fromarray(np.zeros((h, w, 3), np.uint8)).save(bad, format="JPEG")  # a JPEG under a PNG name
    before = page_ids(d)
    d.find_element(By.ID, "label-file").send_keys(str(bad))
    error = d.find_element(By.ID, "error")
    wait(d, lambda d: error.is_displayed(), "a visible error")
    assert "photo.png is not a PNG (it is a JPEG file)" in error.text
    np.testing.assert_array_equal(page_ids(d), before)  # nothing changed
    d.find_element(By.ID, "label-file").send_keys(str(good))
    wait(d, lambda d: (page_ids(d) == layout).all(), "the loaded layout")
    assert not error.is_displayed()
    assert "layout.png: index label loaded" in d.find_element(By.ID, "note").text
    d.find_element(By.ID, "undo").click()
    np.testing.assert_array_equal(page_ids(d), before)
    # The only console errors are the refused upload's (the browser logs a 4xx answer).
    errors = console_errors(d)
    assert all("415" in e for e in errors), errors


def test_style_image_and_sample_grid(browser, url, model, painter, tmp_path):
    from selenium.webdriver.common.by import By

    caps = painter.capabilities
    if not (caps["style_image"] and caps["samples"] > 1):
        pytest.skip("this model has no style encoder or no sample grid")
    d = browser
    d.get(url)
    wait(d, lambda d: d.execute_script("return document.body.dataset.ready") == "true", "the page starts")
    wait(d, lambda d: generated(d) >= 1, "the first image")
    ids = page_ids(d).astype(np.int32)

    def settled(samples: int):
        return lambda d: d.execute_script(
            "const s = window.painter.sent(); return document.body.dataset.busy === 'false' && s !== null && "
            f"s.samples === {samples}")

    # A grid of samples: the model's outputs for the layout, n keys from one seed.
    d.find_element(By.ID, "grid-toggle").click()
    wait(d, settled(caps["samples"]), "a grid of samples")
    grid = d.find_elements(By.CSS_SELECTOR, "#grid img")
    assert len(grid) == caps["samples"]
    images = np.stack([np.asarray(Image.open(io.BytesIO(base64.b64decode(g.get_attribute("src").split(",", 1)[1])))
                                  .convert("RGB")) for g in grid])
    want = generate.generate(model, np.repeat(ids[None], caps["samples"], 0), rng=jax.random.key(0))
    np.testing.assert_array_equal(images, want)
    grid[2].click()  # a sample chosen from the grid becomes the main image
    assert d.find_element(By.ID, "result").get_attribute("src") == grid[2].get_attribute("src")

    # A style image: its code renders the layout (one image: the style is fixed).
    photo = np.random.RandomState(0).randint(0, 256, (48, 40, 3)).astype(np.uint8)
    path = tmp_path / "style.png"
    Image.fromarray(photo).save(path)
    d.find_element(By.ID, "style-file").send_keys(str(path))
    wait(d, lambda d: settled(1)(d) and d.find_element(By.ID, "style-preview").is_displayed(), "the styled image")
    shown = d.find_element(By.ID, "result").get_attribute("src")
    image = np.asarray(Image.open(io.BytesIO(base64.b64decode(shown.split(",", 1)[1]))).convert("RGB"))
    want = generate.generate(model, ids, rng=jax.random.key(0), z=generate.encode_style(model, photo))[0]
    np.testing.assert_array_equal(image, want)
    assert not d.find_element(By.ID, "grid").is_displayed()
    errors = console_errors(d)
    assert not errors, errors
