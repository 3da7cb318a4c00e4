"""The painter's server: one model in memory, compiled once before the first request, answering the page.

Endpoints (JSON in and out unless said; every bad request is a 4xx with {"error": "..."} naming the problem):

    GET  /                    the page (static/index.html); GET /static/<file> its other files
    GET  /api/model           the model: name, size, classes with colours, and which style controls apply
    POST /api/generate        {"labels": LABELS, "seed": int, "samples": 1 | grid, "style": IMAGE,
                               "region_style": {"image": IMAGE, "labels": LABELS}}
                              -> {"images": [PNG data URLs], "seed", "ms"}
    POST /api/label/decode    a label PNG's bytes (index or palette, decoded with the model's class table)
                              -> LABELS plus "encoding" and "note" (set when the map was resized to the model)
    POST /api/label/encode    {"labels": LABELS} -> the label file (image/png) in the dataset's own encoding

LABELS is {"width", "height", "ids"}: `ids` the class ids row by row as little-endian uint16, base64. IMAGE is an
image file's bytes, base64 (a data URL is accepted). The page's truth is this array of ids: nothing is read back
from coloured pixels, and a palette file's colours must be exactly the table's (an antialiased edge is an error
naming the colours, never a guessed class).

The server keeps no state between requests: each response carries its own results, so any number of tabs (or
users) never see each other's images, and nothing is written to disk. Inference is serialised by a lock.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import importlib.resources
import io
import json
import logging
import threading
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np

from data_pipelines import labels as labels_lib

log = logging.getLogger(__name__)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
MAX_SEED = 2**32 - 1


class RequestError(Exception):
    """A request the server refuses: an HTTP status and a message for the page."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = int(status)


def _bad(message: str) -> RequestError:
    return RequestError(HTTPStatus.BAD_REQUEST, message)


class _NamedBytes(io.BytesIO):
    """Uploaded bytes that PIL (and the label readers) open like a file, and that messages name by the upload's
    file name: decoded in memory, never written under a name another request could also use."""

    def __init__(self, data: bytes, name: str):
        super().__init__(data)
        self.name = name

    def __str__(self) -> str:
        return self.name

    def __format__(self, spec: str) -> str:  # f"{path}: ..." in the label readers' messages
        return format(self.name, spec)


@dataclasses.dataclass(frozen=True)
class Limits:
    max_body_bytes: int = 32 << 20  # one request's body
    max_image_pixels: int = 4096 * 4096  # an uploaded label map or style image


class Painter:
    """A loaded model (`synth.generate.Model`) and what the page may ask of it.

    `grid`: how many samples the page may ask for at once from a stochastic model (its only batch sizes are 1
    and `grid`, both compiled by `warm_up`)."""

    def __init__(self, model, *, grid: int = 4, limits: Limits = Limits()):
        if int(grid) < 1:
            raise ValueError(f"grid must be >= 1, got {grid}.")
        self.model, self.limits = model, limits
        self.table = model.spec.table
        self.lock = threading.Lock()  # one inference at a time: one model, one set of compiled functions
        self.capabilities = self._capabilities(int(grid))
        self.grid = self.capabilities["samples"]

    # -- what the model supports

    def _capabilities(self, grid: int) -> dict:
        from synth import generate

        system = self.model.system
        codes = getattr(system, "code_control", None) is not None and hasattr(generate, "style_codes")
        # A per-class-code system without a prior (SEAN) renders only codes taken from an image.
        required = codes and not _has_prior(system)
        return {
            # A key changes the samples (a VAE's code or per-class codes drawn from the prior, conditional IMLE's
            # noise map, SEAN's noise).
            "seed": bool(system.stochastic),
            # Several samples at once where they differ and no image fixes the style.
            "samples": grid if system.stochastic and not required else 1,
            # SPADE with a VAE: a style image's code (the encoder's mean).
            "style_image": not codes and "z" in system.controls and "e" in self.model.state,
            # Per-class codes (SEAN's per-region styles, SMIS's class latents) from a photo and its own layout.
            "region_style": codes,
            "region_style_required": required,
        }

    def info(self) -> dict:
        t, m = self.table, self.model
        return {
            "model": m.config.model.name, "dataset": t.name, "step": m.step, "height": m.height, "width": m.width,
            "classes": [{"id": i, "name": n, "colour": [int(c) for c in t.colours[i]]}
                        for i, n in enumerate(t.class_names)],
            "ignore_id": int(t.ignore_id), "controls": self.capabilities,
            "max_body_bytes": self.limits.max_body_bytes,
        }

    def describe(self) -> str:
        m = self.model
        caps = [k for k, v in self.capabilities.items() if v and k not in ("samples", "region_style_required")]
        if self.grid > 1:
            caps.append(f"grid of {self.grid}")
        return (f"{m.config.model.name} on {self.table.name} ({self.table.num_classes} classes, {m.height}x{m.width}"
                f"{', step %d' % m.step if m.step >= 0 else ', official weights'}; "
                f"controls: {', '.join(caps) or 'none'})")

    # -- compiling before the first request

    def warm_up(self) -> float:
        """Runs every computation the page can ask for once (each batch size, with and without a style code), so
        that no request waits for a compile. Returns the seconds it took."""
        start = time.perf_counter()
        ids = np.zeros((self.model.height, self.model.width), np.int32)
        image = np.zeros((self.model.height, self.model.width, 3), np.uint8)
        if not self.capabilities["region_style_required"]:
            for n in sorted({1, self.grid}):
                self._render(ids, seed=0, n=n)
        if self.capabilities["style_image"]:
            self._render(ids, seed=0, n=1, style=image)
        if self.capabilities["region_style"]:
            self._render(ids, seed=0, n=1, region_style=(image, ids))
        return time.perf_counter() - start

    # -- requests

    def generate(self, request: dict) -> dict:
        if not isinstance(request, dict):
            raise _bad("the body must be a JSON object.")
        unknown = sorted(set(request) - {"labels", "seed", "samples", "style", "region_style"})
        if unknown:
            raise _bad(f"unknown field(s) {unknown}; a generate request takes labels, seed, samples, style, "
                       "region_style.")
        ids = self.parse_labels(request.get("labels"))
        seed = request.get("seed", 0)
        if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
            raise _bad(f"seed must be an integer in 0..{MAX_SEED}, got {seed!r}.")
        n = request.get("samples", 1)
        allowed = sorted({1, self.grid})
        if isinstance(n, bool) or n not in allowed:
            raise _bad(f"samples must be {' or '.join(map(str, allowed))} for this model, got {n!r}.")
        style = region = None
        if request.get("style") is not None:
            if not self.capabilities["style_image"]:
                raise _bad(f"this {self.model.config.model.name} model has no style encoder: it takes no style image.")
            style = self.parse_image(request["style"], "style")
        if request.get("region_style") is not None:
            if not self.capabilities["region_style"]:
                raise _bad(f"this {self.model.config.model.name} model has no per-class codes: it takes no "
                           "per-region style image.")
            region = self.parse_region_style(request["region_style"], ids)
        elif self.capabilities["region_style_required"]:
            raise _bad(f"this {self.model.config.model.name} model renders the per-class styles of a photo: send "
                       "one with its layout (region_style).")
        if (style is not None or region is not None) and n != 1:
            raise _bad("a style image fixes the style, so its samples would be identical: ask for samples = 1.")
        start = time.perf_counter()
        images = self._render(ids, seed=seed, n=n, style=style, region_style=region)
        return {"images": [_png_data_url(im) for im in images], "seed": seed,
                "ms": round(1000 * (time.perf_counter() - start), 1)}

    def _render(self, ids: np.ndarray, *, seed: int, n: int, style=None, region_style=None) -> np.ndarray:
        """uint8 [n, H, W, 3] for one layout: `generate.generate(model, layout, rng=jax.random.key(seed))` (n
        copies of the layout for a grid), with the style image's code when one is given."""
        import jax

        from synth import generate

        controls = {}
        with self.lock:
            if style is not None:
                controls["z"] = generate.encode_style(self.model, style)
            if region_style is not None:  # (photo, its own layout) -> per-class codes, repeated for n layouts
                codes = generate.style_codes(self.model, region_style[0], region_style[1])
                controls[self.model.system.code_control] = np.repeat(codes, n, 0)
            return generate.generate(self.model, np.repeat(ids[None], n, 0), rng=jax.random.key(seed), **controls)

    def parse_labels(self, labels, field: str = "labels") -> np.ndarray:
        """LABELS -> int32 [H, W] at the model's size, every id a class or the ignore id."""
        if not isinstance(labels, dict):
            raise _bad(f'{field} must be {{"width": W, "height": H, "ids": base64 little-endian uint16}}, got '
                       f"{type(labels).__name__}.")
        h, w, data = labels.get("height"), labels.get("width"), labels.get("ids")
        if (h, w) != (self.model.height, self.model.width):
            raise _bad(f"{field} are {w}x{h} (width x height); this model paints {self.model.width}x"
                       f"{self.model.height}.")
        if not isinstance(data, str):
            raise _bad(f"{field}.ids must be a base64 string of little-endian uint16 class ids.")
        raw = _b64(data, f"{field}.ids")
        if len(raw) != 2 * h * w:
            raise _bad(f"{field}.ids holds {len(raw)} bytes; {w}x{h} uint16 ids are {2 * h * w}.")
        ids = np.frombuffer(raw, "<u2").reshape(h, w).astype(np.int32)
        self.check_ids(ids, field)
        return ids

    def parse_region_style(self, region, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """{"image": IMAGE, "labels": LABELS} -> (the photo, its layout); without labels the photo's layout is the
        request's own."""
        if not isinstance(region, dict) or "image" not in region:
            raise _bad('region_style must be {"image": base64 image, "labels": its layout (optional)}.')
        unknown = sorted(set(region) - {"image", "labels"})
        if unknown:
            raise _bad(f"unknown field(s) {unknown} in region_style; it takes image and labels.")
        image = self.parse_image(region["image"], "region_style.image")
        layout = ids if region.get("labels") is None else self.parse_labels(region["labels"], "region_style.labels")
        return image, layout

    def check_ids(self, ids: np.ndarray, field: str = "labels") -> None:
        t = self.table
        bad = (ids >= t.num_classes) & (ids != t.ignore_id)
        if bad.any():
            values = np.unique(ids[bad])
            raise _bad(f"{field} hold id(s) {values[:10].tolist()} ({int(bad.sum())} pixels) outside the "
                       f"{t.num_classes} classes 0..{t.num_classes - 1} of {t.name} (ignore id {t.ignore_id}).")

    def parse_image(self, data, field: str) -> np.ndarray:
        """A base64 image file (any format PIL reads) -> uint8 [H, W, 3]."""
        from PIL import Image

        if not isinstance(data, str):
            raise _bad(f"{field} must be an image file as base64 (or a data URL).")
        raw = _b64(data.split(",", 1)[1] if data.startswith("data:") else data, field)
        with self._open_image(raw, field) as image:
            try:
                return np.asarray(image.convert("RGB"))
            except Exception as e:  # truncated or damaged data decodes lazily
                raise _bad(f"{field}: cannot decode the image ({type(e).__name__}: {e}).") from e

    def _open_image(self, raw: bytes, name: str):
        from PIL import Image

        try:
            image = Image.open(io.BytesIO(raw))
        except Image.DecompressionBombError as e:
            raise RequestError(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f"{name}: {e}") from e
        except Exception as e:
            raise _bad(f"{name} is not an image ({type(e).__name__}: {e}).") from e
        w, h = image.size
        if w * h > self.limits.max_image_pixels:
            image.close()
            raise RequestError(HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                               f"{name} is {w}x{h} pixels; the painter takes images of up to "
                               f"{self.limits.max_image_pixels} pixels.")
        return image

    def decode_label(self, data: bytes, name: str = "upload.png") -> dict:
        """A label PNG -> LABELS at the model's size. Single-channel files (grey, paletted or 16-bit) are index
        labels (raw values through the table's remap, as the dataset's own files); RGB files are colour-coded
        with the table's colours (any dataset whose files are colour-coded reads every file that way)."""
        if not data.startswith(PNG_MAGIC):
            raise RequestError(HTTPStatus.UNSUPPORTED_MEDIA_TYPE, f"{name} is not a PNG{_sniff(data)}: label maps "
                               "are PNG files (lossless; JPEG noise changes classes at region edges).")
        with self._open_image(data, name) as image:
            mode = image.mode
        palette = self.model.spec.label_encoding == "palette" or mode in ("RGB", "RGBA")
        try:
            if palette:
                if mode == "RGBA":
                    self._check_opaque(data, name)
                ids = labels_lib.read_palette(_NamedBytes(data, name), self.table)
            else:
                ids = labels_lib.read_label(_NamedBytes(data, name), self.table, "index")
        except labels_lib.LabelError as e:
            raise _bad(str(e)) from e
        ids = ids.astype(np.int32)
        h, w = ids.shape
        note = None
        if (h, w) != (self.model.height, self.model.width):
            ids = _nearest(ids, self.model.height, self.model.width)
            note = (f"{name} is {w}x{h}; resized (nearest) to the model's {self.model.width}x{self.model.height}"
                    + (" (another aspect ratio: shapes are stretched)" if h * self.model.width !=
                       w * self.model.height else "") + ".")
        return {**_labels_json(ids), "encoding": "palette" if palette else "index", "note": note}

    def _check_opaque(self, data: bytes, name: str) -> None:
        with self._open_image(data, name) as image:
            alpha = np.asarray(image.getchannel("A"))
        if (alpha != 255).any():
            raise _bad(f"{name}: {int((alpha != 255).sum())} pixels are not opaque (alpha < 255); a colour label "
                       "must be opaque with exactly the table's colours (an antialiased or transparent edge has no "
                       "class).")

    def encode_label(self, request: dict) -> bytes:
        """LABELS -> a PNG in the dataset's encoding: an index PNG of the raw values the dataset's files use
        (paletted with the class colours, so it also looks right), or the class colours for colour-coded data.
        `generate.generate(model, that_file)` and this painter read it back to the same ids."""
        from PIL import Image

        if not isinstance(request, dict):
            raise _bad("the body must be a JSON object.")
        ids = self.parse_labels(request.get("labels"))
        t = self.table
        if self.model.spec.label_encoding == "palette":
            return _png(Image.fromarray(t.colourise(ids)))
        raw_of = self.raw_values()
        raw = raw_of[np.minimum(ids, len(raw_of) - 1)]
        if (raw < 0).any():
            missing = np.unique(ids[raw < 0]).tolist()
            raise _bad(f"id(s) {missing} have no raw value in {t.name}'s files: the label cannot be saved.")
        if raw.max() < 256:
            image = Image.fromarray(raw.astype(np.uint8), mode="P")
            colours = np.zeros((256, 3), np.uint8)
            valid = np.flatnonzero(t.raw_to_id[:256] != labels_lib.INVALID)
            colours[valid] = t.colourise(t.raw_to_id[valid])
            image.putpalette(colours.ravel().tolist())
            return _png(image)
        return _png(Image.fromarray(raw.astype(np.uint16)))

    def raw_values(self) -> np.ndarray:
        """For each id (classes and the ignore id), the smallest raw file value the table maps to it; -1 if none."""
        t = self.table
        out = np.full(max(t.num_classes, t.ignore_id + 1), -1, np.int64)
        for v in range(len(t.raw_to_id) - 1, -1, -1):
            i = int(t.raw_to_id[v])
            if i != labels_lib.INVALID:
                out[i] = v
        return out


# -- helpers


def _has_prior(system) -> bool:
    """Whether a per-class-code system draws codes itself (SMIS: N(0, I)); SEAN has no prior."""
    import jax

    try:
        jax.eval_shape(lambda key: system.draw_codes(key, 1), jax.random.key(0))
    except TypeError:
        return False
    return True


def _b64(text: str, field: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as e:
        raise _bad(f"{field} is not valid base64 ({e}).") from e


def _sniff(data: bytes) -> str:
    kinds = {b"\xff\xd8\xff": "JPEG", b"GIF8": "GIF", b"BM": "BMP", b"RIFF": "WebP", b"II*\x00": "TIFF",
             b"MM\x00*": "TIFF"}
    for magic, kind in kinds.items():
        if data.startswith(magic):
            return f" (it is a {kind} file)"
    return " (the file does not start with the PNG signature)" if data else " (the file is empty)"


def _nearest(ids: np.ndarray, height: int, width: int) -> np.ndarray:
    """torch's nearest resize (index floor(i * in / out)), as synth.layers.nearest_resize."""
    rows = (np.arange(height) * ids.shape[0]) // height
    cols = (np.arange(width) * ids.shape[1]) // width
    return ids[rows[:, None], cols[None, :]]


def _labels_json(ids: np.ndarray) -> dict:
    return {"height": int(ids.shape[0]), "width": int(ids.shape[1]),
            "ids": base64.b64encode(ids.astype("<u2").tobytes()).decode("ascii")}


def _png(image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def _png_data_url(rgb: np.ndarray) -> str:
    from PIL import Image

    return "data:image/png;base64," + base64.b64encode(_png(Image.fromarray(rgb))).decode("ascii")


# -- HTTP

STATIC_TYPES = {".html": "text/html; charset=utf-8", ".mjs": "text/javascript; charset=utf-8",
                ".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8", ".png": "image/png",
                ".svg": "image/svg+xml"}
# Everything the page uses comes from this server: scripts, styles, and images it makes itself (data:, blob:).
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data: blob:; script-src 'self'; "
                               "style-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


def static_files() -> dict[str, tuple[bytes, str]]:
    """The page's files shipped with the package: {name: (bytes, content type)}."""
    root = importlib.resources.files(__package__) / "static"
    out = {}
    for entry in root.iterdir():
        suffix = "." + entry.name.rsplit(".", 1)[-1] if "." in entry.name else ""
        if entry.is_file() and suffix in STATIC_TYPES:
            out[entry.name] = (entry.read_bytes(), STATIC_TYPES[suffix])
    return out


class Handler(BaseHTTPRequestHandler):
    server_version = "synth-painter/1"
    timeout = 120  # s: a client that stops sending mid-body frees its thread
    server: "PainterServer"

    def do_GET(self):  # noqa: N802 (http.server's names)
        path = self.path.split("?", 1)[0]
        if path == "/":
            path = "/static/index.html"
        if path == "/api/model":
            return self._json(HTTPStatus.OK, self.server.painter.info())
        if path.startswith("/static/"):
            files = self.server.static
            name = path[len("/static/"):]
            if name in files:
                body, kind = files[name]
                return self._send(HTTPStatus.OK, body, kind)
        self._json(HTTPStatus.NOT_FOUND, {"error": f"no such page: {path}"})

    def do_POST(self):  # noqa: N802
        path = self.path.split("?", 1)[0]
        painter = self.server.painter
        try:
            if path not in ("/api/generate", "/api/label/decode", "/api/label/encode"):
                raise RequestError(HTTPStatus.NOT_FOUND, f"no such endpoint: POST {path}")
            body = self._body()
            if path == "/api/label/decode":
                name = _header_name(self.headers.get("X-Filename"))
                return self._json(HTTPStatus.OK, painter.decode_label(body, name))
            request = _json_body(body)
            if path == "/api/generate":
                return self._json(HTTPStatus.OK, painter.generate(request))
            return self._send(HTTPStatus.OK, painter.encode_label(request), "image/png")
        except RequestError as e:
            self._json(e.status, {"error": str(e)})
        except (ValueError, labels_lib.LabelError) as e:  # the library's checks of its inputs name the problem
            self._json(HTTPStatus.BAD_REQUEST, {"error": str(e)})
        except Exception as e:  # a bug: answered, logged, and the server goes on serving
            log.exception("painter: %s failed", path)
            self._json(HTTPStatus.INTERNAL_SERVER_ERROR, {"error": f"internal error: {type(e).__name__}: {e}"})

    def _body(self) -> bytes:
        length = self.headers.get("Content-Length")
        if length is None:
            raise RequestError(HTTPStatus.LENGTH_REQUIRED, "the request needs a Content-Length.")
        try:
            length = int(length)
        except ValueError:
            raise _bad(f"Content-Length {length!r} is not a number.") from None
        limit = self.server.painter.limits.max_body_bytes
        if length > limit:
            self._discard(length)
            raise RequestError(HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                               f"the request is {length} bytes; the painter takes up to {limit} bytes.")
        return self.rfile.read(length)

    def _discard(self, length: int, most: int = 256 << 20) -> None:
        """Reads a refused body away (up to `most` bytes), so that the client, still sending, gets the answer."""
        self.close_connection = True
        left = min(length, most)
        while left > 0:
            chunk = self.rfile.read(min(left, 1 << 20))
            if not chunk:
                break
            left -= len(chunk)

    def _json(self, status: int, payload: dict) -> None:
        self._send(status, json.dumps(payload).encode(), "application/json")

    def _send(self, status: int, body: bytes, kind: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        for k, v in SECURITY_HEADERS.items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def log_message(self, format, *args):  # noqa: A002
        log.debug("painter %s: " + format, self.address_string(), *args)


def _json_body(body: bytes):
    try:
        return json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise _bad(f"the body is not JSON ({e}).") from e


def _header_name(value: str | None) -> str:
    """The upload's file name (sent URI-encoded by the page), for messages only."""
    from urllib.parse import unquote

    name = unquote(value or "").strip().replace("\n", " ")[:200]
    return name or "the uploaded file"


class PainterServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address, painter: Painter):
        super().__init__(address, Handler)
        self.painter = painter
        self.static = static_files()

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}/"


def make_server(painter: Painter, host: str = "127.0.0.1", port: int = 0) -> PainterServer:
    """A threaded HTTP server for `painter` bound to host:port (port 0: a free one; see `.url`). Call
    `serve_forever()` (e.g. in a thread) and `shutdown()`."""
    return PainterServer((host, port), painter)
