"""The painter's server (`synth.painter`) through its HTTP API, with the standard library's client, against the
fixture checkpoints (tests/fixtures/checkpoints: 32x32 scenes; SPADE with a VAE, CC-FPSE, conditional IMLE).

Every image the server returns must be the model's own output for the layout sent (`generate.generate` with
rng=jax.random.key(seed), or the style image's code), bad requests are 4xx answers naming the problem after
which the server goes on serving, and concurrent clients each get their own results."""

from __future__ import annotations

import base64
import http.client
import io
import json
import os
import subprocess
import sys
import threading

import jax
import numpy as np
import pytest
from PIL import Image

from synth import generate
from synth import models as systems
from synth.painter import server as painter_server

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURES = os.path.join(ROOT, "tests", "fixtures", "checkpoints")
LIMITS = painter_server.Limits(max_body_bytes=400_000, max_image_pixels=300 * 300)


class Client:
    def __init__(self, url: str):
        self.host, self.port = url.split("//")[1].rstrip("/").split(":")

    def request(self, method: str, path: str, body=None, headers=None):
        conn = http.client.HTTPConnection(self.host, int(self.port), timeout=120)
        try:
            if isinstance(body, (dict, list)):
                body = json.dumps(body).encode()
                headers = {"Content-Type": "application/json", **(headers or {})}
            conn.request(method, path, body=body, headers=headers or {})
            response = conn.getresponse()
            data = response.read()
            kind = response.getheader("Content-Type", "")
            return response.status, (json.loads(data) if kind.startswith("application/json") else data), response
        finally:
            conn.close()

    def get(self, path):
        return self.request("GET", path)

    def post(self, path, body, headers=None):
        return self.request("POST", path, body, headers)


def serve(model, **kwargs):
    painter = painter_server.Painter(model, limits=LIMITS, **kwargs)
    painter.warm_up()
    httpd = painter_server.make_server(painter, "127.0.0.1", 0)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    return httpd, Client(httpd.url)


@pytest.fixture(scope="module")
def models():
    return {name: generate.load(os.path.join(FIXTURES, name)) for name in ("spade_vae_ema", "ccfpse", "cimle")}


@pytest.fixture(scope="module")
def servers(models):
    running = {name: serve(model) for name, model in models.items()}
    yield {name: client for name, (_, client) in running.items()}
    for httpd, _ in running.values():
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture
def vae(servers):
    return servers["spade_vae_ema"]


def layout(seed: int = 0, h: int = 32, w: int = 32) -> np.ndarray:
    """A layout with several scene classes: sky, a mountain, grass and a road, plus some noise-like blocks."""
    rng = np.random.RandomState(seed)
    ids = np.zeros((h, w), np.int32)
    ids[h // 2:] = 4
    ids[h // 3: h // 2, : w // 2] = 3
    ids[3 * h // 4:, w // 3: 2 * w // 3] = 6
    for _ in range(3):
        y, x = rng.randint(0, h - 4), rng.randint(0, w - 4)
        ids[y: y + 4, x: x + 4] = rng.randint(0, 12)
    return ids


def labels(ids: np.ndarray) -> dict:
    return {"width": int(ids.shape[1]), "height": int(ids.shape[0]),
            "ids": base64.b64encode(np.asarray(ids).astype("<u2").tobytes()).decode()}


def ids_of(payload: dict) -> np.ndarray:
    return np.frombuffer(base64.b64decode(payload["ids"]), "<u2").reshape(payload["height"], payload["width"])


def image_of(data_url: str) -> np.ndarray:
    assert data_url.startswith("data:image/png;base64,")
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(data_url.split(",", 1)[1]))).convert("RGB"))


def png_bytes(array: np.ndarray, mode: str | None = None, fmt: str = "PNG", palette=None) -> bytes:
    image = Image.fromarray(array, mode) if mode else Image.fromarray(array)
    if palette is not None:
        image.putpalette(palette)
    buf = io.BytesIO()
    image.save(buf, format=fmt)
    return buf.getvalue()


def expected(model, ids, seed=0, n=1, **controls) -> np.ndarray:
    return generate.generate(model, np.repeat(ids[None], n, 0), rng=jax.random.key(seed), **controls)


# -- what the server says about the model and the page


def test_the_model_description_has_the_class_table_and_only_the_controls_that_apply(servers, models):
    status, info, _ = servers["spade_vae_ema"].get("/api/model")
    assert status == 200
    table = models["spade_vae_ema"].spec.table
    assert (info["height"], info["width"], info["model"], info["step"]) == (32, 32, "spade", 2)
    assert [c["name"] for c in info["classes"]] == list(table.class_names)
    assert [c["colour"] for c in info["classes"]] == table.colours.tolist()
    assert info["ignore_id"] == table.ignore_id
    no_codes = {"region_style": False, "region_style_required": False}
    assert info["controls"] == {"seed": True, "samples": 4, "style_image": True, **no_codes}
    assert servers["ccfpse"].get("/api/model")[1]["controls"] == {
        "seed": False, "samples": 1, "style_image": False, **no_codes}
    assert servers["cimle"].get("/api/model")[1]["controls"] == {
        "seed": True, "samples": 4, "style_image": False, **no_codes}


def test_the_page_is_served_from_the_package_and_fetches_nothing_from_elsewhere(vae):
    status, html, response = vae.get("/")
    assert status == 200 and response.getheader("Content-Type").startswith("text/html")
    assert b'src="/static/app.mjs"' in html and b'href="/static/style.css"' in html
    csp = response.getheader("Content-Security-Policy")
    assert "default-src 'self'" in csp and "connect-src 'self'" in csp
    for name, kind in (("app.mjs", "text/javascript"), ("painter.mjs", "text/javascript"), ("style.css", "text/css")):
        status, body, response = vae.get(f"/static/{name}")
        assert status == 200 and response.getheader("Content-Type").startswith(kind), name
    for name, (body, _) in painter_server.static_files().items():
        assert b"://" not in body, f"{name} names another site"
    for path in ("/static/../server.py", "/static/missing.js", "/nothing"):
        status, body, _ = vae.get(path)
        assert status == 404 and "no such page" in body["error"]


# -- generating


def test_everything_the_page_asks_for_is_compiled_before_serving():
    model = generate.load(os.path.join(FIXTURES, "spade_vae_ema"))  # a fresh system: nothing compiled for it yet
    painter = painter_server.Painter(model)
    assert model.system.jitted_sample._cache_size() == 0
    painter.warm_up()
    compiled = (model.system.jitted_sample._cache_size(), generate._encoder_mean._cache_size())
    photo = base64.b64encode(png_bytes(np.zeros((50, 40, 3), np.uint8))).decode()
    for request in ({"seed": 3}, {"samples": 4, "seed": 1}, {"style": photo}, {"style": photo, "seed": 9}):
        painter.generate({"labels": labels(layout(0)), **request})
    assert (model.system.jitted_sample._cache_size(), generate._encoder_mean._cache_size()) == compiled




def test_an_image_is_the_models_output_for_the_layout_and_seed(vae, models):
    model, ids = models["spade_vae_ema"], layout(1)
    status, out, _ = vae.post("/api/generate", {"labels": labels(ids), "seed": 7})
    assert status == 200, out
    assert out["seed"] == 7 and len(out["images"]) == 1
    np.testing.assert_array_equal(image_of(out["images"][0]), expected(model, ids, 7)[0])
    again = vae.post("/api/generate", {"labels": labels(ids), "seed": 7})[1]
    other = vae.post("/api/generate", {"labels": labels(ids), "seed": 8})[1]
    assert again["images"] == out["images"]
    assert not np.array_equal(image_of(other["images"][0]), image_of(out["images"][0]))


def test_a_model_without_noise_ignores_the_seed(servers, models):
    ids = layout(2)
    a = servers["ccfpse"].post("/api/generate", {"labels": labels(ids), "seed": 1})[1]
    b = servers["ccfpse"].post("/api/generate", {"labels": labels(ids), "seed": 2})[1]
    assert a["images"] == b["images"]
    np.testing.assert_array_equal(image_of(a["images"][0]), expected(models["ccfpse"], ids)[0])


def test_a_grid_of_samples_of_a_diverse_model(servers, models):
    ids = layout(3)
    status, out, _ = servers["cimle"].post("/api/generate", {"labels": labels(ids), "seed": 5, "samples": 4})
    assert status == 200 and len(out["images"]) == 4
    images = np.stack([image_of(u) for u in out["images"]])
    np.testing.assert_array_equal(images, expected(models["cimle"], ids, 5, n=4))
    assert len({im.tobytes() for im in images}) == 4, "the samples differ"
    status, out, _ = servers["cimle"].post("/api/generate", {"labels": labels(ids), "samples": 3})
    assert status == 400 and "samples must be 1 or 4" in out["error"]
    status, out, _ = servers["ccfpse"].post("/api/generate", {"labels": labels(ids), "samples": 4})
    assert status == 400 and "samples must be 1 for this model" in out["error"]


def test_a_style_image_gives_the_encoders_code(vae, servers, models):
    model, ids = models["spade_vae_ema"], layout(4)
    photo = np.random.RandomState(0).randint(0, 256, (40, 56, 3)).astype(np.uint8)
    style = "data:image/png;base64," + base64.b64encode(png_bytes(photo)).decode()
    status, out, _ = vae.post("/api/generate", {"labels": labels(ids), "style": style, "seed": 3})
    assert status == 200, out
    want = generate.generate(model, ids, rng=jax.random.key(3), z=generate.encode_style(model, photo))
    np.testing.assert_array_equal(image_of(out["images"][0]), want[0])
    unstyled = vae.post("/api/generate", {"labels": labels(ids), "seed": 3})[1]
    assert unstyled["images"] != out["images"]
    jpeg = base64.b64encode(png_bytes(photo, fmt="JPEG")).decode()  # photos may be JPEG
    assert vae.post("/api/generate", {"labels": labels(ids), "style": jpeg})[0] == 200
    status, out, _ = vae.post("/api/generate", {"labels": labels(ids), "style": style, "samples": 4})
    assert status == 400 and "ask for samples = 1" in out["error"]
    status, out, _ = servers["ccfpse"].post("/api/generate", {"labels": labels(ids), "style": style})
    assert status == 400 and "takes no style image" in out["error"]
    status, out, _ = vae.post("/api/generate", {"labels": labels(ids), "region_style": style})
    assert status == 400 and "no per-class codes" in out["error"]


def test_encode_style_is_the_encoders_mean(models):
    model = models["spade_vae_ema"]
    photos = np.random.RandomState(1).randint(0, 256, (2, 32, 32, 3)).astype(np.uint8)
    z = generate.encode_style(model, photos)
    assert z.shape == (2, model.config.model.z_dim) and z.dtype == np.float32
    x = (photos / 127.5 - 1.0).astype(np.float32)
    (mu, _), _ = model.system.networks["e"].apply(model.state["e"], x, train=False, mutable=["spectral"])
    np.testing.assert_allclose(z, mu, atol=1e-5)
    np.testing.assert_allclose(generate.encode_style(model, photos[1]), z[1:], atol=1e-6)
    with pytest.raises(ValueError, match="has no style encoder"):
        generate.encode_style(models["ccfpse"], photos[0])
    with pytest.raises(ValueError, match=r"image must be uint8 \[H, W, 3\]"):
        generate.encode_style(model, photos[0].astype(np.float32))


# -- per-class codes: per-region style from a photo and its layout


def code_model(config_module, *, abstract: bool = False):
    """A freshly initialised tiny per-class-code model (32x32 scenes); `abstract`: shapes only (nothing compiled)."""
    config = config_module.get_config("tiny")
    system = systems.build(config)
    def init(fn, key):
        return jax.eval_shape(fn, key) if abstract else jax.jit(fn)(key)

    state = {"g": {"batch_stats": {}, "spectral": {}, **init(system.init_generator, jax.random.key(0))}}
    for role in system.generator_side[1:]:
        state[role] = {"spectral": {}, **init(lambda k, r=role: system.init_encoder(r, k), jax.random.key(1))}
    return generate.from_variables(config, state)


@pytest.fixture(scope="module")
def sean():
    from configs import scenes_sean

    model = code_model(scenes_sean)
    httpd, client = serve(model)
    yield model, client
    httpd.shutdown()
    httpd.server_close()


def test_per_region_style_from_a_photo_and_its_layout(sean):
    model, client = sean
    info = client.get("/api/model")[1]
    # SEAN renders only codes taken from a photo (no prior): the page must ask for one; no grid, no VAE style.
    assert info["controls"] == {"seed": True, "samples": 1, "style_image": False, "region_style": True,
                                "region_style_required": True}
    ids, photo_layout = layout(20), layout(21)
    photo = np.random.RandomState(2).randint(0, 256, (32, 32, 3)).astype(np.uint8)
    image = base64.b64encode(png_bytes(photo)).decode()
    status, out, _ = client.post("/api/generate", {"labels": labels(ids), "seed": 3, "region_style": {
        "image": image, "labels": labels(photo_layout)}})
    assert status == 200, out
    codes = generate.style_codes(model, photo, photo_layout)
    np.testing.assert_array_equal(image_of(out["images"][0]),
                                  generate.generate(model, ids, rng=jax.random.key(3), style=codes)[0])
    # without its own layout, the photo's layout is the one painted
    status, out, _ = client.post("/api/generate", {"labels": labels(ids), "seed": 3, "region_style": {"image": image}})
    want = generate.generate(model, ids, rng=jax.random.key(3), style=generate.style_codes(model, photo, ids))
    np.testing.assert_array_equal(image_of(out["images"][0]), want[0])
    for body, words in (({"labels": labels(ids)}, "renders the per-class styles of a photo"),
                        ({"labels": labels(ids), "region_style": image}, "region_style must be"),
                        ({"labels": labels(ids), "region_style": {"image": image, "labels": labels(ids[:16])}},
                         "region_style.labels are 32x16"),
                        ({"labels": labels(ids), "region_style": {"image": image, "layout": 1}},
                         "unknown field(s) ['layout'] in region_style"),
                        ({"labels": labels(ids), "style": image}, "takes no style image")):
        status, out, _ = client.post("/api/generate", body)
        assert status == 400 and words in out["error"], (body.keys(), out)


def test_a_code_model_with_a_prior_renders_without_a_photo_too():
    """SMIS draws its class codes from N(0, I): per-region style is optional and a grid applies."""
    from configs import scenes_smis

    model = code_model(scenes_smis, abstract=True)  # the capabilities need no weights
    caps = painter_server.Painter(model).capabilities
    assert caps == {"seed": True, "samples": 4, "style_image": False, "region_style": True,
                    "region_style_required": False}
    with pytest.raises(ValueError, match="takes per-class codes: encode a style image with its layout"):
        generate.encode_style(model, np.zeros((32, 32, 3), np.uint8))


# -- bad requests: a 4xx naming the problem, and the server goes on


def bad_cases(table):
    good = labels(layout(0))
    n = table.num_classes
    return [
        ("wrong-size", {"labels": labels(np.zeros((16, 32), np.int32))}, 400, "labels are 32x16"),
        ("id-out-of-range", {"labels": labels(np.full((32, 32), n))}, 400, f"id(s) [{n}]"),
        ("id-254", {"labels": labels(np.full((32, 32), 254))}, 400, "outside the 12 classes"),
        ("bytes-short", {"labels": {**good, "ids": base64.b64encode(b"\0" * 100).decode()}}, 400, "holds 100 bytes"),
        ("not-base64", {"labels": {**good, "ids": "***"}}, 400, "not valid base64"),
        ("ids-not-string", {"labels": {**good, "ids": [0, 1]}}, 400, "base64 string"),
        ("labels-missing", {"seed": 1}, 400, "labels must be"),
        ("labels-string", {"labels": "x"}, 400, "got str"),
        ("unknown-field", {"labels": good, "sead": 1}, 400, "unknown field(s) ['sead']"),
        ("seed-negative", {"labels": good, "seed": -1}, 400, "seed must be an integer"),
        ("seed-too-big", {"labels": good, "seed": 2**32}, 400, "seed must be an integer"),
        ("seed-string", {"labels": good, "seed": "7"}, 400, "got '7'"),
        ("samples-bool", {"labels": good, "samples": True}, 400, "samples must be"),
        ("style-not-image", {"labels": good, "style": base64.b64encode(b"hello").decode()}, 400,
         "style is not an image"),
        ("style-not-base64", {"labels": good, "style": "data:image/png;base64,@@"}, 400, "style is not valid base64"),
        ("style-too-many-pixels", {"labels": good, "style": base64.b64encode(
            png_bytes(np.zeros((400, 300, 3), np.uint8))).decode()}, 413, "300x400 pixels"),
        ("body-list", [1, 2], 400, "must be a JSON object"),
    ]


def test_bad_generate_requests_are_named_4xx_answers(vae, models):
    for case, body, status, words in bad_cases(models["spade_vae_ema"].spec.table):
        got, out, response = vae.post("/api/generate", body)
        assert (got, response.getheader("Content-Type")) == (status, "application/json"), (case, out)
        assert words in out["error"], (case, out["error"])
    for body, status, words in ((b"{not json", 400, "not JSON"), (b"\xff\xfe", 400, "not JSON"),
                                (b"x" * (LIMITS.max_body_bytes + 1), 413, "up to 400000 bytes")):
        got, out, _ = vae.post("/api/generate", body, {"Content-Type": "application/json"})
        assert got == status and words in out["error"], out
    got, out, _ = vae.post("/api/nothing", {})
    assert got == 404 and "no such endpoint" in out["error"]
    # and it goes on serving
    assert vae.post("/api/generate", {"labels": labels(layout(0))})[0] == 200


def test_a_request_without_a_length_is_refused(vae):
    conn = http.client.HTTPConnection(vae.host, int(vae.port), timeout=30)
    conn.putrequest("POST", "/api/generate")
    conn.endheaders()
    response = conn.getresponse()
    assert response.status == 411 and "Content-Length" in json.loads(response.read())["error"]
    conn.close()


# -- label files


def decode(client, data: bytes, name: str = "layout.png"):
    return client.post("/api/label/decode", data, {"Content-Type": "application/octet-stream",
                                                   "X-Filename": name})


def test_index_and_palette_pngs_decode_with_the_models_table(vae, models):
    table = models["spade_vae_ema"].spec.table
    ids = layout(5)
    status, out, _ = decode(vae, png_bytes(ids.astype(np.uint8)))
    assert status == 200 and out["encoding"] == "index" and out["note"] is None
    np.testing.assert_array_equal(ids_of(out), ids)
    # a paletted PNG is an index label: its indices count, never its palette's colours
    status, out, _ = decode(vae, png_bytes(ids.astype(np.uint8), "P", palette=[7] * 768))
    assert status == 200 and out["encoding"] == "index"
    np.testing.assert_array_equal(ids_of(out), ids)
    with_ignore = ids.copy()
    with_ignore[:4, :4] = table.ignore_id
    status, out, _ = decode(vae, png_bytes(table.colourise(with_ignore)))  # colour-coded: black is "ignore"
    assert status == 200 and out["encoding"] == "palette"
    np.testing.assert_array_equal(ids_of(out), with_ignore)


def test_an_antialiased_colour_label_is_an_error_naming_the_colours_never_a_guess(vae, models):
    table = models["spade_vae_ema"].spec.table
    rgb = table.colourise(layout(6)).copy()
    rgb[10, 10] = (rgb[10, 10].astype(int) + rgb[10, 11]) // 2 + 1  # a blended edge pixel
    status, out, _ = decode(vae, png_bytes(rgb), "painted.png")
    assert status == 400
    assert out["error"].startswith("painted.png: colour(s) (")
    assert "not in the scenes palette (1 pixels)" in out["error"]
    rgba = np.concatenate([table.colourise(layout(6)), np.full((32, 32, 1), 255, np.uint8)], -1)
    rgba[0, 0, 3] = 128
    status, out, _ = decode(vae, png_bytes(rgba), "soft.png")
    assert status == 400 and "soft.png: 1 pixels are not opaque" in out["error"]


@pytest.mark.parametrize("case,data,status,words", [
    ("jpeg", lambda: png_bytes(np.zeros((32, 32, 3), np.uint8), fmt="JPEG"), 415, "not a PNG (it is a JPEG file)"),
    ("text", lambda: b"hello", 415, "does not start with the PNG signature"),
    ("empty", lambda: b"", 415, "the file is empty"),
    ("truncated", lambda: png_bytes(layout(0).astype(np.uint8))[:60], 400, "f.png: cannot decode image"),
    ("id-too-large", lambda: png_bytes(np.full((32, 32), 40, np.uint8)), 400, "label value(s) 40 out of range"),
    ("two-channels", lambda: png_bytes(np.zeros((32, 32, 2), np.uint8), "LA"), 400, "single-channel"),
    ("too-many-pixels", lambda: png_bytes(np.zeros((400, 300), np.uint8)), 413, "300x400 pixels"),
    ("too-large-body", lambda: b"\x89PNG\r\n\x1a\n" + bytes(LIMITS.max_body_bytes), 413, "bytes"),
])
def test_bad_label_files_are_named_4xx_answers(vae, case, data, status, words):
    got, out, _ = decode(vae, data(), "f.png")
    assert got == status and words in out["error"], (case, out)
    assert decode(vae, png_bytes(layout(0).astype(np.uint8)))[0] == 200


def test_a_label_of_another_size_is_resized_with_a_note(vae):
    big = np.kron(layout(7), np.ones((2, 3), np.int32)).astype(np.uint8)  # 64 x 96
    status, out, _ = decode(vae, png_bytes(big), "wide.png")
    assert status == 200 and (out["width"], out["height"]) == (32, 32)
    assert "wide.png is 96x64; resized (nearest) to the model's 32x32 (another aspect ratio" in out["note"]
    rows, cols = (np.arange(32) * 64) // 32, (np.arange(32) * 96) // 32
    np.testing.assert_array_equal(ids_of(out), big[rows][:, cols])


def test_a_saved_label_reads_back_to_the_same_layout(vae, models, tmp_path):
    model, table = models["spade_vae_ema"], models["spade_vae_ema"].spec.table
    ids = layout(8)
    ids[0, :5] = table.ignore_id
    status, png, response = vae.post("/api/label/encode", {"labels": labels(ids)})
    assert status == 200 and response.getheader("Content-Type") == "image/png"
    image = Image.open(io.BytesIO(png))
    assert image.mode == "P"
    np.testing.assert_array_equal(np.asarray(image.convert("RGB")), table.colourise(ids))  # it looks right
    np.testing.assert_array_equal(ids_of(decode(vae, png)[1]), ids)  # the painter reads it back
    path = tmp_path / "saved.png"
    path.write_bytes(png)  # and so does the library
    np.testing.assert_array_equal(generate.generate(model, str(path), rng=jax.random.key(0)),
                                  generate.generate(model, ids, rng=jax.random.key(0)))
    status, out, _ = vae.post("/api/label/encode", {"labels": labels(np.full((32, 32), 99))})
    assert status == 400 and "id(s) [99]" in out["error"]


# -- several clients at once


def test_concurrent_clients_get_their_own_results(vae, models):
    model = models["spade_vae_ema"]
    layouts = {k: layout(10 + k) for k in range(4)}
    want = {k: expected(model, ids, seed=k)[0] for k, ids in layouts.items()}
    results, errors = {}, []

    def client(k):
        try:
            got = []
            for _ in range(3):
                status, out, _ = vae.post("/api/generate", {"labels": labels(layouts[k]), "seed": k})
                assert status == 200, out
                got.append(image_of(out["images"][0]))
            results[k] = got
        except Exception as e:  # noqa: BLE001 (reported below)
            errors.append(e)

    threads = [threading.Thread(target=client, args=(k,)) for k in layouts]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    for k, images in results.items():
        for image in images:
            np.testing.assert_array_equal(image, want[k])


# -- the command


def test_the_command_compiles_then_prints_the_address_and_serves(tmp_path):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    log = open(tmp_path / "stderr.txt", "w+")
    proc = subprocess.Popen(
        [sys.executable, "-m", "synth.painter", "--checkpoint", os.path.join(FIXTURES, "cimle"), "--port", "0",
         "--samples", "2"], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=log, text=True)
    try:
        lines = []
        for line in proc.stdout:
            lines.append(line)
            if line.startswith("Open http://"):
                break
        assert lines and lines[-1].startswith("Open http://127.0.0.1:"), (lines, (tmp_path / "stderr.txt").read_text())
        assert "crn on scenes (12 classes, 32x32, step" in "".join(lines) and "grid of 2" in "".join(lines)
        client = Client(lines[-1].split()[1])
        status, info, _ = client.get("/api/model")
        assert status == 200 and info["controls"]["samples"] == 2
        status, out, _ = client.post("/api/generate", {"labels": labels(layout(0)), "samples": 2})
        assert status == 200 and len(out["images"]) == 2
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        proc.stdout.close()
        log.close()


def test_the_command_names_a_missing_checkpoint(tmp_path):
    out = subprocess.run([sys.executable, "-m", "synth.painter", "--checkpoint", str(tmp_path / "nope")], cwd=ROOT,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode != 0
    assert "synth.painter:" in out.stderr and "nope" in out.stderr.splitlines()[-1], out.stderr[-2000:]
