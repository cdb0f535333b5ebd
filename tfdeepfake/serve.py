"""Serve an exported detector: ``python -m tfdeepfake.serve --model-dir saved_models/NAME``.

A FastAPI app on uvicorn that loads the newest version of ``saved_models/NAME`` once with
``tf.saved_model.load`` (no Keras needed) and answers TensorFlow Serving's REST API:

- ``GET /v1/models/NAME[/versions/N]`` (status), ``GET /v1/models/NAME[/versions/N]/metadata``;
- ``POST /v1/models/NAME[/versions/N]:predict`` with ``{"instances": [...]}`` (rows) or ``{"inputs": ...}``
  (columns). An instance is an encoded image ``{"b64": "..."}`` (or ``{"image_bytes": {"b64": "..."}}``) —
  run through the ``predict_bytes`` signature — or a nested ``[height][width][3]`` list of 0-255 integers
  (``serving_default``). Answers ``{"predictions": [{"probability_fake", "label", "members"}, ...]}`` or
  ``{"outputs": {...}}``; errors are ``{"error": "..."}`` with a 4xx status.

- ``POST /v1/models/NAME[/versions/N]:explain``: the same bodies; each row also holds each member's
  Grad-CAM ``heatmaps`` (grayscale PNG) and ``overlays`` (RGB PNG over the image) as ``{"b64": ...}``,
  computed with the Keras model saved beside the export (``NAME.keras``, loaded on first use).

Plus the upload page at ``/`` (``static/``), ``GET /api/info`` and ``POST /api/upload`` (multipart field
``file``; ``?explain=1`` adds each member's Grad-CAM overlay) behind it. Bad input never gives a 5xx: bodies
over ``max_body_bytes`` (``Content-Length`` and the streamed size) get 413, images over ``max_pixels`` (read
from the header before decoding) get 413, an image that does not decode gets 400 naming its format and why
(truncated, unsupported, corrupt), a full queue 429, everything else malformed 400 and unknown models or
versions 404. A client that disconnects mid-body is one warning line in the log.

Batching (TF Serving's): concurrent ``:predict`` and upload requests wait in one bounded queue
(:class:`tfdeepfake.batching.Batcher`) and are merged into one model call, up to ``max_batch_size`` images,
waiting at most ``batch_timeout_micros`` for a batch to fill. Encoded images of any sizes merge (the
``predict_bytes`` signature resizes each image); pixel-list requests merge only with requests of the same
image shape (``serving_default`` takes one shape per call). Each request gets its own rows, equal to what it
gets alone up to float32 rounding (the CPU kernels' summation order depends on the batch size, as it does for
a request of several images today). ``batching=False`` runs each request on its own (up to ``workers`` at
once). The loaded SavedModel is shared by all requests.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import io
import json
import logging
import re
import socket
import sys
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import anyio
import numpy as np
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tfdeepfake import CLASS_NAMES
from tfdeepfake.batching import Batcher, QueueFull
from tfdeepfake.data import decode_tf
from tfdeepfake.explain import heatmaps, overlay, png_bytes
from tfdeepfake.export import check_name
from tfdeepfake.hardware import set_inference_env
from tfdeepfake.media import TF_FORMATS, image_format, tf_error_text, undecodable_reason
from tfdeepfake.runs import load_model
from tfdeepfake.savedmodel import (
    OUTPUTS,
    SIGNATURES,
    ExportedModel,
    keras_beside,
    latest_version,
)

STATIC_DIR = Path(__file__).with_name("static")
DEFAULT_MAX_BODY_BYTES = 10_000_000
DEFAULT_MAX_PIXELS = 25_000_000
DEFAULT_MAX_BATCH = 64
DEFAULT_MAX_BATCH_SIZE = 32
DEFAULT_MAX_ENQUEUED_BATCHES = 64
EXPLAIN_MAX_SIDE = 384
LOG = logging.getLogger("uvicorn.error")  # the server's own log (printed at uvicorn's --log-level)
_MODEL_PATH = re.compile(
    r"(?P<name>[^/:]+)(?:/versions/(?P<version>\d+))?(?P<metadata>/metadata)?(?::(?P<verb>\w+))?"
)


class ApiError(HTTPException):
    """A client error, rendered as ``{"error": message}`` with ``status``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(status_code=status, detail=message)


# ------------------------------------------------------------------------------------------- limits
class BodyLimit:
    """ASGI middleware: 413 when ``Content-Length`` or the streamed body exceeds ``max_bytes``."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_bytes):
            status, message = (413, self._too_large()) if length.isdigit() else (400, "bad Content-Length")
            await JSONResponse({"error": message}, status, headers={"Connection": "close"})(
                scope, receive, send)
            return
        received = 0

        async def limited() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.max_bytes:  # raised inside the handler: rendered by the error handler
                raise ApiError(413, self._too_large())
            return message

        await self.app(scope, limited, send)

    def _too_large(self) -> str:
        return f"request body larger than the limit of {self.max_bytes} bytes"


def image_pixels(data: bytes, max_pixels: int) -> int:
    """Width x height read from an encoded image's header (nothing decoded); 400/413 when unfit."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as image:
            width, height = image.size
    except Image.DecompressionBombError:
        raise ApiError(413, f"image has more than {max_pixels} pixels") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, EOFError) as exc:
        fmt = image_format(data)
        if fmt is None:
            raise ApiError(400, f"data is not a readable image ({TF_FORMATS})") from None
        raise ApiError(400, f"{fmt} image whose header is truncated or corrupt ({exc})") from None
    if width * height > max_pixels:
        raise ApiError(413, f"image of {width}x{height} pixels is over the limit of {max_pixels} pixels")
    return width * height


# ------------------------------------------------------------------------------------ request parsing
def _b64(value: Any) -> bytes:
    if not isinstance(value, str):
        raise ApiError(400, '"b64" must hold a base64 string')
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise ApiError(400, '"b64" value is not valid base64') from None


def _as_bytes(item: Any) -> bytes | None:
    """The image bytes of ``{"b64": ...}`` / ``{"image_bytes": {"b64": ...}}``; None for other values."""
    if isinstance(item, dict) and set(item) == {"image_bytes"}:
        item = item["image_bytes"]
        if not (isinstance(item, dict) and set(item) == {"b64"}):
            raise ApiError(400, '"image_bytes" must be {"b64": "<base64 image>"}')
    if isinstance(item, dict) and set(item) == {"b64"}:
        return _b64(item["b64"])
    return None


def _as_images(value: Any) -> np.ndarray:
    """Nested 0-255 integer lists as a uint8 array ``[batch, height, width, 3]``."""
    try:
        array = np.asarray(value)
    except (ValueError, TypeError, OverflowError, RecursionError):
        array = np.empty(0, dtype=object)
    if array.dtype == object or array.ndim != 4 or array.shape[-1] != 3 or 0 in array.shape:
        shape = "ragged" if array.dtype == object else list(array.shape)
        raise ApiError(400, "pixel-list images must have shape [batch, height, width, 3] (RGB), one "
                            f"shape per request; got {shape}")
    if array.dtype.kind not in "iuf" or not np.all(np.isfinite(array)) \
            or np.any(array != np.round(array)) or array.min() < 0 or array.max() > 255:
        raise ApiError(400, "pixel values must be integers in 0..255")
    return array.astype(np.uint8)


def _unwrap(instance: Any) -> Any:
    """The pixel lists of a row instance (bare or ``{"images": ...}``)."""
    if isinstance(instance, dict):
        if set(instance) != {"images"}:
            raise ApiError(400, 'an instance object must be {"b64": ...}, {"image_bytes": {"b64": ...}} '
                                f'or {{"images": [...]}}; got keys {sorted(instance)}')
        return instance["images"]
    if isinstance(instance, str):
        raise ApiError(400, 'encoded images must be sent as {"b64": "<base64>"}')
    return instance


def parse_predict(body: Any, max_batch: int) -> tuple[str, list[bytes] | np.ndarray, bool]:
    """``(signature, batch, row_format)`` from a TF Serving predict request body."""
    if not isinstance(body, dict):
        raise ApiError(400, 'request body must be a JSON object with "instances" or "inputs"')
    unknown = set(body) - {"instances", "inputs", "signature_name"}
    if unknown or ("instances" in body) == ("inputs" in body):
        raise ApiError(400, 'request must hold exactly one of "instances" (row format) or "inputs" '
                            f'(columnar) and optionally "signature_name"; got keys {sorted(body)}')
    signature = body.get("signature_name")
    if signature is not None and signature not in SIGNATURES:
        raise ApiError(400, f"unknown signature_name {signature!r}; this model has {list(SIGNATURES)}")
    rows = "instances" in body
    data = body["instances"] if rows else body["inputs"]
    if not rows and isinstance(data, dict) and len(data) == 1 and set(data) <= {"images", "image_bytes"}:
        data = next(iter(data.values()))  # named columnar input
        data = [data] if isinstance(data, dict) else data
    if not isinstance(data, list) or not data:
        raise ApiError(400, f'"{"instances" if rows else "inputs"}" must be a non-empty list')
    if len(data) > max_batch:
        raise ApiError(400, f"at most {max_batch} images per request; got {len(data)}")
    blobs = [_as_bytes(item) for item in data]
    if all(b is not None for b in blobs):
        kind, batch = "predict_bytes", [b for b in blobs if b is not None]
    elif any(b is not None for b in blobs):
        raise ApiError(400, 'encoded ({"b64": ...}) and pixel-list images mixed in one request')
    else:
        kind, batch = "serving_default", _as_images([_unwrap(i) for i in data])
    if signature is not None and signature != kind:
        raise ApiError(400, f"signature {signature!r} does not take these inputs (they fit {kind!r})")
    return kind, batch, rows


def check_total_pixels(blobs: list[bytes], max_pixels: int) -> None:
    """413 when the encoded images hold more than ``max_pixels`` pixels, alone or together."""
    total = sum(image_pixels(b, max_pixels) for b in blobs)
    if total > max_pixels:
        raise ApiError(413, f"images hold {total} pixels together; the limit is {max_pixels}")


def parse_request(body: bytes, *, max_batch: int, max_pixels: int
                  ) -> tuple[str, list[bytes] | np.ndarray, bool]:
    """A ``:predict``/``:explain`` body (raw bytes) -> ``(signature, batch, row_format)``, every check
    done before the model runs; anything wrong raises :class:`ApiError` (400 or 413), nothing else."""
    try:
        parsed = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):
        raise ApiError(400, "request body is not valid JSON") from None
    signature, batch, rows = parse_predict(parsed, max_batch)
    if isinstance(batch, list):
        check_total_pixels(batch, max_pixels)
    elif batch.shape[0] * batch.shape[1] * batch.shape[2] > max_pixels:
        raise ApiError(413, f"images hold more than {max_pixels} pixels together")
    return signature, batch, rows


# ---------------------------------------------------------------------------------------- predictor
class ServedModel(ExportedModel):
    """The newest exported version of one model (:class:`~tfdeepfake.savedmodel.ExportedModel`), loaded
    once and warmed up; thread-safe. Failures to decode become 400 answers."""

    def __init__(self, model_dir: str | Path) -> None:
        self.model_dir = Path(model_dir)
        name = check_name(self.model_dir.resolve().name)
        super().__init__(latest_version(self.model_dir)[1])
        self.name = name
        self.warmup()

    def warmup(self) -> None:
        """Run both signatures once, so the first request is not slowed by lazy initialisation."""
        image = np.zeros((1, 8, 8, 3), np.uint8)
        self.predict("serving_default", image)
        self.predict("predict_bytes", [png_bytes(image[0])])

    def predict(self, signature: str, batch: list[bytes] | np.ndarray) -> dict[str, np.ndarray]:
        """Run one signature; ``InvalidArgumentError`` (undecodable image) becomes a 400."""
        import tensorflow as tf

        try:
            out = self.run(signature, batch)
        except tf.errors.InvalidArgumentError as exc:
            raise ApiError(400, self._failure(signature, batch, exc.message)) from None
        return {k: out[k] for k in OUTPUTS}

    @staticmethod
    def _failure(signature: str, batch: list[bytes] | np.ndarray, message: str) -> str:
        """Which image(s) of a failed call do not decode, with their format and why."""
        if signature == "predict_bytes":
            reasons = [(i, undecodable_reason(b)) for i, b in enumerate(batch)]
            bad = [f"image {i + 1} of {len(batch)}: {r}" if len(batch) > 1 else r
                   for i, r in reasons if r is not None]
            if bad:
                return "could not decode the image: " + "; ".join(bad[:5]) + (
                    f"; and {len(bad) - 5} more" if len(bad) > 5 else "")
        return f"could not run the model on these images: {tf_error_text(message)[:300]}"

    def metadata(self) -> dict[str, Any]:
        """TF Serving's ``signature_def`` metadata, built from the loaded signatures."""
        dtypes = {"uint8": "DT_UINT8", "string": "DT_STRING", "float32": "DT_FLOAT", "int64": "DT_INT64"}

        def spec(name: str, s: Any, key: str) -> dict[str, Any]:
            return {"dtype": dtypes.get(s.dtype.name, s.dtype.name), "name": f"{key}_{name}:0",
                    "tensor_shape": {"dim": [{"size": str(-1 if d is None else d), "name": ""}
                                             for d in s.shape.as_list()], "unknown_rank": False}}

        defs = {}
        for key, fn in self.signatures.items():
            inputs = fn.structured_input_signature[1]
            defs[key] = {"inputs": {n: spec(n, s, key) for n, s in inputs.items()},
                         "outputs": {n: spec(n, t, "StatefulPartitionedCall")
                                     for n, t in fn.structured_outputs.items()},
                         "method_name": "tensorflow/serving/predict"}
        return {"model_spec": {"name": self.name, "signature_name": "", "version": str(self.version)},
                "metadata": {"signature_def": {"signature_def": defs}}}

    def status(self) -> dict[str, Any]:
        return {"model_version_status": [{"version": str(self.version), "state": "AVAILABLE",
                                          "status": {"error_code": "OK", "error_message": ""}}]}


class Explainer:
    """Grad-CAM of each member (:func:`tfdeepfake.explain.heatmaps`) with the Keras model saved beside the
    export (``NAME.keras``), loaded on first use; one explanation at a time (thread-safe)."""

    def __init__(self, predictor: ServedModel) -> None:
        self.path = keras_beside(predictor.path)
        self._model: Any = None
        self._lock = threading.Lock()

    @property
    def available(self) -> bool:
        return self.path is not None

    def __call__(self, image: np.ndarray, label: int) -> dict[str, dict[str, str]]:
        """``{"heatmaps": {member: PNG b64}, "overlays": {member: PNG b64}}`` explaining ``label`` (the
        served verdict) for one uint8 RGB image; pictures at most :data:`EXPLAIN_MAX_SIDE` px a side."""
        import cv2

        if self.path is None:
            raise ApiError(400, "explanations need the Keras model saved beside the export "
                                "(NAME.keras, written by tfdeepfake.export); this model has none")
        with self._lock:
            if self._model is None:
                self._model = load_model(self.path)
            maps = heatmaps(self._model, image, target=CLASS_NAMES[int(label)])
        scale = EXPLAIN_MAX_SIDE / max(image.shape[:2])
        if scale < 1:
            size = (max(1, round(image.shape[1] * scale)), max(1, round(image.shape[0] * scale)))
            image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
            maps = {n: cv2.resize(m, size, interpolation=cv2.INTER_AREA) for n, m in maps.items()}

        def b64png(picture: np.ndarray) -> str:
            return base64.b64encode(png_bytes(picture)).decode()

        return {"heatmaps": {n: b64png(np.uint8(np.round(255 * np.clip(m, 0, 1)))) for n, m in maps.items()},
                "overlays": {n: b64png(overlay(image, m)) for n, m in maps.items()}}


def decode_image(data: bytes) -> np.ndarray:
    """Encoded bytes -> uint8 RGB with the export's own decoder (:func:`tfdeepfake.data.decode_tf`)."""
    import tensorflow as tf

    return decode_tf(tf.constant(data, tf.string)).numpy()


def predictions(out: dict[str, Any], rows: bool) -> dict[str, Any]:
    """TF Serving's JSON answer: ``{"predictions": [row, ...]}`` or ``{"outputs": {name: column}}``."""
    columns = {k: v.tolist() if isinstance(v, np.ndarray) else list(v) for k, v in out.items()}
    if not rows:
        return {"outputs": columns}
    return {"predictions": [dict(zip(columns, values, strict=True))
                            for values in zip(*columns.values(), strict=True)]}


# ---------------------------------------------------------------------------------------------- app
def create_app(
    model_dir: str | Path, *, max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    max_pixels: int = DEFAULT_MAX_PIXELS, max_batch: int = DEFAULT_MAX_BATCH, workers: int = 4,
    batching: bool = True, max_batch_size: int = DEFAULT_MAX_BATCH_SIZE, batch_timeout_micros: int = 0,
    num_batch_threads: int = 1, max_enqueued_batches: int = DEFAULT_MAX_ENQUEUED_BATCHES,
) -> FastAPI:
    """The service for the newest version under ``model_dir`` (``saved_models/NAME``).

    ``max_pixels`` bounds the pixels decoded per request (summed over its images); ``workers`` bounds
    the threads parsing requests and explaining (and, with ``batching=False``, running the model).
    With ``batching``, model calls go through a :class:`~tfdeepfake.batching.Batcher` of
    ``num_batch_threads`` threads and at most ``max_enqueued_batches * max_batch_size`` queued images.
    """
    from PIL import Image

    predictor = ServedModel(model_dir)
    explainer = Explainer(predictor)
    limiter = anyio.CapacityLimiter(workers)
    batcher = Batcher(lambda key, items: predictor.predict(key[0], items), max_batch_size=max_batch_size,
                      batch_timeout_micros=batch_timeout_micros, num_batch_threads=num_batch_threads,
                      max_enqueued_items=max_enqueued_batches * max_batch_size) if batching else None
    if Image.MAX_IMAGE_PIXELS is not None and Image.MAX_IMAGE_PIXELS < max_pixels:
        Image.MAX_IMAGE_PIXELS = max_pixels  # our own limit applies; Pillow's must not be lower
    app = FastAPI(title=f"tfdeepfake: {predictor.name}", docs_url=None, redoc_url=None)  # no CDN assets
    app.state.predictor, app.state.batcher, app.state.explainer = predictor, batcher, explainer
    app.add_middleware(BodyLimit, max_bytes=max_body_bytes)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        return JSONResponse({"error": str(exc.detail)}, exc.status_code, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse({"error": f"invalid request: {exc.errors()}"}, 400)

    @app.exception_handler(ClientDisconnect)
    async def client_disconnect(request: Request, exc: ClientDisconnect) -> JSONResponse:
        client = f"{request.client.host}:{request.client.port}" if request.client else "a client"
        length = request.headers.get("content-length")
        LOG.warning("client %s disconnected before sending the whole request body%s (%s %s)", client,
                    f" of {length} bytes" if length else "", request.method, request.url.path)
        return JSONResponse({"error": "client disconnected"}, 400)  # nobody reads it

    def parse_body(body: bytes) -> tuple[str, list[bytes] | np.ndarray, bool]:
        return parse_request(body, max_batch=max_batch, max_pixels=max_pixels)

    def run_predict(body: bytes) -> dict[str, Any]:  # unbatched: parse and run in one worker thread
        signature, batch, rows = parse_body(body)
        return predictions(predictor.predict(signature, batch), rows)

    async def infer(signature: str, batch: list[bytes] | np.ndarray) -> dict[str, np.ndarray]:
        """One model call for this request's images, merged with other requests' when batching."""
        if batcher is None:
            return await anyio.to_thread.run_sync(predictor.predict, signature, batch, limiter=limiter)
        key = (signature,) if isinstance(batch, list) else (signature, batch.shape[1:])
        try:
            future = batcher.submit(key, batch)
        except QueueFull as exc:
            raise ApiError(429, f"the server is busy: {exc}") from None
        return await asyncio.wrap_future(future)

    def explain_rows(batch: list[bytes] | np.ndarray, labels: Sequence[int]) -> list[dict[str, Any]]:
        images = [decode_image(b) for b in batch] if isinstance(batch, list) else list(batch)
        return [explainer(image, label) for image, label in zip(images, labels, strict=True)]

    async def explain(batch: list[bytes] | np.ndarray, out: dict[str, Any]) -> dict[str, Any]:
        """``out`` plus each image's ``heatmaps`` and ``overlays`` (PNG b64 per member)."""
        found = await anyio.to_thread.run_sync(explain_rows, batch, out["label"].tolist(), limiter=limiter)
        return {**out, "heatmaps": [{n: {"b64": v} for n, v in e["heatmaps"].items()} for e in found],
                "overlays": [{n: {"b64": v} for n, v in e["overlays"].items()} for e in found]}

    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html")

    @app.get("/api/info")
    async def info() -> dict[str, Any]:
        """The served model: name, version, threshold, members, the request limits and batching."""
        return {"name": predictor.name, "version": predictor.version, "threshold": predictor.threshold,
                "members": predictor.members, "mode": predictor.info.get("mode"),
                "weights": predictor.info.get("weights"), "max_body_bytes": max_body_bytes,
                "max_pixels": max_pixels, "labels": list(CLASS_NAMES), "explain": explainer.available,
                "batching": None if batcher is None else {
                    "max_batch_size": max_batch_size, "batch_timeout_micros": batch_timeout_micros,
                    "num_batch_threads": num_batch_threads, "max_enqueued_batches": max_enqueued_batches,
                    "batch_sizes": dict(sorted(batcher.batch_sizes.items()))}}

    @app.post("/api/upload")
    async def upload(request: Request, explain: bool = False) -> dict[str, Any]:
        """Score one uploaded image (multipart field ``file``): verdict, P(fake), members' scores, and
        with ``?explain=1`` each member's Grad-CAM overlay (PNG b64)."""
        form = await request.form(max_files=1, max_fields=4)
        file = form.get("file")
        if not isinstance(file, UploadFile):
            raise ApiError(400, 'send the image as multipart/form-data field "file"')
        data = await file.read()
        if not data:
            raise ApiError(400, "the uploaded file is empty")
        await anyio.to_thread.run_sync(check_total_pixels, [data], max_pixels, limiter=limiter)
        out = await infer("predict_bytes", [data])
        prob, label = float(out["probability_fake"][0]), int(out["label"][0])
        members = [{"name": n, "probability_fake": float(p)}
                   for n, p in zip(predictor.members, out["members"][0].tolist(), strict=True)]
        if explain:
            found = await anyio.to_thread.run_sync(explain_rows, [data], [label], limiter=limiter)
            for member in members:
                member["overlay"] = found[0]["overlays"].get(member["name"])
        return {"verdict": CLASS_NAMES[label], "probability_fake": prob, "label": label,
                "threshold": predictor.threshold, "model": predictor.name, "version": predictor.version,
                "members": members}

    @app.api_route("/v1/models/{path:path}", methods=["GET", "POST"])
    async def tf_serving(path: str, request: Request) -> Any:
        """TensorFlow Serving's REST API for this one model (plus ``:explain``)."""
        m = _MODEL_PATH.fullmatch(path)
        if m is None:
            raise ApiError(404, f"no such endpoint: /v1/models/{path}")
        if m["name"] != predictor.name:
            raise ApiError(404, f"Servable not found for request: Latest({m['name']})")
        if m["version"] is not None and int(m["version"]) != predictor.version:
            raise ApiError(404, f"Servable not found for request: Specific({m['name']}, {m['version']})")
        verb = m["verb"]
        if verb is None:
            if request.method != "GET":
                raise ApiError(405, "use GET for status and metadata, POST for :predict")
            return predictor.metadata() if m["metadata"] else predictor.status()
        if m["metadata"]:
            raise ApiError(404, f"no such endpoint: /v1/models/{path}")
        if verb not in ("predict", "explain"):
            raise ApiError(400 if verb in ("classify", "regress") else 404,
                           f"{verb!r} is not supported by this model; use :predict or :explain")
        if request.method != "POST":
            raise ApiError(405, f"use POST for :{verb}")
        body = await request.body()
        if verb == "predict" and batcher is None:
            return await anyio.to_thread.run_sync(run_predict, body, limiter=limiter)
        signature, batch, rows = await anyio.to_thread.run_sync(parse_body, body, limiter=limiter)
        out = await infer(signature, batch)
        return predictions(await explain(batch, out) if verb == "explain" else out, rows)

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    return app


@contextmanager
def serve_in_thread(app: Any, host: str = "127.0.0.1", port: int = 0) -> Iterator[str]:
    """Run ``app`` on uvicorn in a background thread; yield its base URL (``port=0``: a free port)."""
    import uvicorn

    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        while not server.started:
            if not thread.is_alive():
                raise RuntimeError("uvicorn failed to start")
            threading.Event().wait(0.02)
        bound = sock.getsockname()[1]
        yield f"http://{'[' + host + ']' if ':' in host else host}:{bound}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


def _main(argv: list[str]) -> int:
    from tfdeepfake import cli

    p = argparse.ArgumentParser(prog="python -m tfdeepfake.serve",
                                description="Serve an exported detector (TF Serving REST API + upload page).")
    p.add_argument("--model-dir", required=True, help="saved_models/NAME (its newest version is served)")
    p.add_argument("--host", default="127.0.0.1", help="(default: %(default)s; 0.0.0.0 to listen on all)")
    p.add_argument("--port", type=cli.port, default=8501, help="(default: %(default)s, as TF Serving's REST)")
    p.add_argument("--max-body-bytes", type=cli.positive_int, default=DEFAULT_MAX_BODY_BYTES)
    p.add_argument("--max-pixels", type=cli.positive_int, default=DEFAULT_MAX_PIXELS,
                   help="most pixels decoded per request (default: %(default)s)")
    p.add_argument("--max-batch", type=cli.positive_int, default=DEFAULT_MAX_BATCH, help="most images per request")
    p.add_argument("--workers", type=cli.positive_int, default=4,
                   help="threads parsing requests and explaining (with --no-batching: inferences at once)")
    b = p.add_argument_group("batching (TensorFlow Serving's parameters)")
    b.add_argument("--no-batching", dest="batching", action="store_false",
                   help="run each request on its own instead of merging concurrent ones")
    b.add_argument("--max-batch-size", type=cli.positive_int, default=DEFAULT_MAX_BATCH_SIZE,
                   help="most images merged into one model call (default: %(default)s)")
    b.add_argument("--batch-timeout-micros", type=cli.non_negative_int, default=0,
                   help="longest wait for a batch to fill, in microseconds (default: %(default)s: run "
                        "what is queued as soon as the model is free)")
    b.add_argument("--num-batch-threads", type=cli.positive_int, default=1,
                   help="model calls running at once (default: %(default)s)")
    b.add_argument("--max-enqueued-batches", type=cli.positive_int, default=DEFAULT_MAX_ENQUEUED_BATCHES,
                   help="queue bound, in batches of --max-batch-size images; beyond it requests get 429 "
                        "(default: %(default)s)")
    p.add_argument("--log-level", default="info",
                   choices=("critical", "error", "warning", "info", "debug", "trace"))
    args = cli.add_debug_flag(p).parse_args(argv)
    cli.input_dir("--model-dir", args.model_dir, optional=False)  # before the model is loaded
    set_inference_env()  # this process never changes weights
    app = create_app(args.model_dir, max_body_bytes=args.max_body_bytes, max_pixels=args.max_pixels,
                     max_batch=args.max_batch, workers=args.workers, batching=args.batching,
                     max_batch_size=args.max_batch_size, batch_timeout_micros=args.batch_timeout_micros,
                     num_batch_threads=args.num_batch_threads,
                     max_enqueued_batches=args.max_enqueued_batches)
    import uvicorn

    print(f"serving {app.state.predictor.name} version {app.state.predictor.version} on "
          f"http://{args.host}:{args.port}/ (REST: /v1/models/{app.state.predictor.name}:predict)",
          flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    from tfdeepfake import cli

    return cli.run_cli(_main, argv)


if __name__ == "__main__":
    sys.exit(main())
