"""The web service against a live uvicorn on loopback: TF Serving REST API, upload, limits, concurrency."""

from __future__ import annotations

import base64
import http.client
import io
import json
import logging
import shutil
import socket
import struct
import time
import zlib
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

import anyio
import helpers_models as hm
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from tfdeepfake.batching import QueueFull
from tfdeepfake.serve import EXPLAIN_MAX_SIDE, create_app, serve_in_thread

MAX_BODY = 300_000
MAX_PIXELS = 1_000_000
MAX_BATCH = 8
NAME = hm.ENSEMBLE_NAME


@pytest.fixture(scope="module")
def app():
    return create_app(hm.exported().parent, max_body_bytes=MAX_BODY, max_pixels=MAX_PIXELS,
                      max_batch=MAX_BATCH)


@pytest.fixture(scope="module")
def base(app):
    with serve_in_thread(app) as url:
        yield url


def call(base: str, method: str, path: str, body: bytes | None = None,
         headers: dict[str, str] | None = None) -> tuple[int, object]:
    url = urlsplit(base)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=120)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        data = response.read()
    finally:
        conn.close()
    ctype = response.getheader("content-type", "")
    return response.status, json.loads(data) if "json" in ctype else data.decode()


def predict(base: str, payload: object, path: str = f"/v1/models/{NAME}:predict"):
    return call(base, "POST", path, json.dumps(payload).encode(), {"Content-Type": "application/json"})


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def multipart(field: str, filename: str, data: bytes) -> tuple[bytes, dict[str, str]]:
    boundary = "tfdeepfake-test-boundary"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"{field}\"; "
            f"filename=\"{filename}\"\r\nContent-Type: application/octet-stream\r\n\r\n").encode()
    body += data + f"\r\n--{boundary}--\r\n".encode()
    return body, {"Content-Type": f"multipart/form-data; boundary={boundary}"}


def threshold() -> float:
    return json.loads((hm.ensemble_run() / "metrics.json").read_text())["threshold"]


def assert_rows_match(rows: list[dict], expected: dict[str, np.ndarray]) -> None:
    assert [sorted(r) for r in rows] == [["label", "members", "probability_fake"]] * len(rows)
    np.testing.assert_allclose([r["probability_fake"] for r in rows], expected["probability_fake"],
                               atol=1e-5)
    np.testing.assert_allclose([r["members"] for r in rows], expected["members"], atol=1e-5)
    assert [r["label"] for r in rows] == expected["label"].tolist()


def bomb_png(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width`` x ``height`` pixels, with almost no data behind it."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
            + chunk(b"IEND", b""))


# ------------------------------------------------------------------------------------------ status
def test_status_metadata_and_not_found(base):
    status, body = call(base, "GET", f"/v1/models/{NAME}")
    assert status == 200
    assert body["model_version_status"] == [
        {"version": "1", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}]
    assert call(base, "GET", f"/v1/models/{NAME}/versions/1")[0] == 200
    status, body = call(base, "GET", f"/v1/models/{NAME}/metadata")
    assert status == 200 and body["model_spec"] == {"name": NAME, "signature_name": "", "version": "1"}
    defs = body["metadata"]["signature_def"]["signature_def"]
    assert set(defs) == {"serving_default", "predict_bytes"}
    assert defs["serving_default"]["inputs"]["images"]["dtype"] == "DT_UINT8"
    assert defs["predict_bytes"]["inputs"]["image_bytes"]["dtype"] == "DT_STRING"
    assert set(defs["predict_bytes"]["outputs"]) == {"probability_fake", "label", "members"}
    for path in ("/v1/models/other", f"/v1/models/{NAME}/versions/2", f"/v1/models/{NAME}/labels/x",
                 "/v1/models/other:predict", "/nowhere"):
        status, body = call(base, "GET" if "predict" not in path else "POST", path, b"{}")
        assert status == 404 and isinstance(body, dict) and body["error"], path


def test_page_and_info(base):
    status, html = call(base, "GET", "/")
    assert status == 200 and 'id="verdict"' in html and 'id="file"' in html
    assert call(base, "GET", "/static/app.js")[0] == 200
    status, info = call(base, "GET", "/api/info")
    assert status == 200 and info["name"] == NAME and info["version"] == 1
    assert info["members"] == ["resnet18-test", "alexnet-test"]
    assert info["threshold"] == pytest.approx(threshold())


# ----------------------------------------------------------------------------------------- predict
def test_predict_encoded_images_all_request_forms(base):
    images = hm.sample_images()  # different sizes and formats in one batch
    expected = hm.keras_reference([hm.decoded(b) for b in images], threshold())
    status, body = predict(base, {"instances": [{"b64": b64(b)} for b in images]})
    assert status == 200
    assert_rows_match(body["predictions"], expected)
    first = body["predictions"]
    for payload, path in [
        ({"instances": [{"image_bytes": {"b64": b64(b)}} for b in images]}, None),
        ({"signature_name": "predict_bytes", "instances": [{"b64": b64(b)} for b in images]}, None),
        ({"instances": [{"b64": b64(b)} for b in images]}, f"/v1/models/{NAME}/versions/1:predict"),
    ]:
        status, body = predict(base, payload, *([path] if path else []))
        assert status == 200 and body["predictions"] == first
    for inputs in ([{"b64": b64(b)} for b in images], {"image_bytes": [{"b64": b64(b)} for b in images]}):
        status, body = predict(base, {"inputs": inputs})
        assert status == 200
        assert body["outputs"] == {k: [row[k] for row in first] for k in first[0]}


def test_predict_pixel_lists_rows_and_columns(base):
    images = np.stack([hm.random_image(20, 30, 30 + i) for i in range(2)])
    expected = hm.keras_reference(list(images), threshold())
    status, body = predict(base, {"instances": images.tolist()})
    assert status == 200
    assert_rows_match(body["predictions"], expected)
    status, named = predict(base, {"instances": [{"images": im.tolist()} for im in images]})
    assert status == 200 and named["predictions"] == body["predictions"]
    status, columns = predict(base, {"signature_name": "serving_default",
                                     "inputs": {"images": images.tolist()}})
    assert status == 200
    np.testing.assert_allclose(columns["outputs"]["probability_fake"], expected["probability_fake"],
                               atol=1e-5)


# ------------------------------------------------------------------------------------- bad inputs
JPEG = hm.encode(hm.random_image(40, 40, 9), "JPEG")
PIXEL = [[[1, 2, 3]]]
TIFF = hm.encode(hm.random_image(40, 40, 9), "TIFF")
BAD_REQUESTS = {
    "malformed json": b"{not json",
    "not utf-8": b"\xff\xfe{",
    "json array": b"[1, 2]",
    "no instances": json.dumps({"images": [PIXEL]}).encode(),
    "both keys": json.dumps({"instances": [PIXEL], "inputs": [PIXEL]}).encode(),
    "extra key": json.dumps({"instances": [PIXEL], "foo": 1}).encode(),
    "empty": json.dumps({"instances": []}).encode(),
    "not a list": json.dumps({"instances": {"b64": b64(JPEG)}}).encode(),
    "two channels": json.dumps({"instances": [[[[1, 2]]]]}).encode(),
    "no channel axis": json.dumps({"instances": [[1, 2, 3]]}).encode(),
    "ragged": json.dumps({"instances": [PIXEL, [[[1, 2, 3], [4, 5, 6]]]]}).encode(),
    "over 255": json.dumps({"instances": [[[[256, 0, 0]]]]}).encode(),
    "negative": json.dumps({"instances": [[[[-1, 0, 0]]]]}).encode(),
    "fraction": json.dumps({"instances": [[[[1.5, 0, 0]]]]}).encode(),
    "booleans": json.dumps({"instances": [[[[True, False, True]]]]}).encode(),
    "nan": b'{"instances": [[[[NaN, 0, 0]]]]}',
    "huge number": b'{"instances": [[[[1e400, 0, 0]]]]}',
    "strings": json.dumps({"instances": ["abc"]}).encode(),
    "nulls": json.dumps({"instances": [[[[None, 0, 0]]]]}).encode(),
    "unknown instance key": json.dumps({"instances": [{"pixels": PIXEL}]}).encode(),
    "b64 not base64": json.dumps({"instances": [{"b64": "not base64!"}]}).encode(),
    "b64 not a string": json.dumps({"instances": [{"b64": 5}]}).encode(),
    "b64 not an image": json.dumps({"instances": [{"b64": b64(b"hello world")}]}).encode(),
    "truncated jpeg": json.dumps({"instances": [{"b64": b64(JPEG[: len(JPEG) // 2])}]}).encode(),
    "tiff": json.dumps({"instances": [{"b64": b64(TIFF)}]}).encode(),
    "image_bytes not b64": json.dumps({"instances": [{"image_bytes": "abc"}]}).encode(),
    "mixed kinds": json.dumps({"instances": [{"b64": b64(JPEG)}, PIXEL]}).encode(),
    "too many": json.dumps({"instances": [PIXEL] * (MAX_BATCH + 1)}).encode(),
    "unknown signature": json.dumps({"signature_name": "x", "instances": [PIXEL]}).encode(),
    "wrong signature": json.dumps({"signature_name": "predict_bytes", "instances": [PIXEL]}).encode(),
    "deep nesting": b'{"instances": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
}


@pytest.mark.parametrize("verb", ["predict", "explain"])
@pytest.mark.parametrize("case", sorted(BAD_REQUESTS))
def test_bad_requests_get_400_with_error(base, case, verb):
    status, body = call(base, "POST", f"/v1/models/{NAME}:{verb}", BAD_REQUESTS[case])
    assert status == 400, (case, body)
    assert isinstance(body, dict) and list(body) == ["error"] and body["error"]
    assert "Graph execution" not in body["error"] and "{{" not in body["error"]


def test_undecodable_images_say_their_format_and_why(base):
    """Images whose header reads fine but whose data does not decode: the format and the reason."""
    png = hm.encode(hm.random_image(40, 40, 3))
    jpeg = hm.encode(np.random.default_rng(0).integers(0, 256, (64, 64, 3), np.uint8), "JPEG")
    garbled = bytearray(jpeg)
    garbled[len(garbled) // 2: len(garbled) // 2 + 40] = b"\xff" * 40
    cases = {"JPEG image is truncated": jpeg[: len(jpeg) // 2], "PNG image is truncated": png[:-200],
             "TIFF image: format not supported": TIFF, "JPEG image is corrupt": bytes(garbled)}
    status, body = predict(base, {"instances": [{"b64": b64(jpeg[:100])}]})  # cut inside the header
    assert status == 400 and body["error"].startswith("JPEG image whose header is truncated"), body
    for expected, data in cases.items():
        status, body = predict(base, {"instances": [{"b64": b64(data)}]})
        assert status == 400 and body["error"].startswith(f"could not decode the image: {expected}"), body
    status, body = predict(base, {"instances": [{"b64": b64(png)}, {"b64": b64(TIFF)}]})
    assert status == 400 and "image 2 of 2: TIFF image" in body["error"]
    status, body = call(base, "POST", "/api/upload", *multipart("file", "cut.png", png[:-200]))
    assert status == 400 and "PNG image is truncated" in body["error"]


def test_wrong_method_and_verb(base):
    assert call(base, "GET", f"/v1/models/{NAME}:predict")[0] == 405
    assert call(base, "POST", f"/v1/models/{NAME}", b"{}")[0] == 405
    status, body = call(base, "POST", f"/v1/models/{NAME}:classify", b"{}")
    assert status == 400 and "predict" in body["error"]


def test_images_over_the_pixel_limit_get_413(base):
    flat = io.BytesIO()
    Image.new("RGB", (1001, 1000)).save(flat, format="PNG")  # 1.001 Mpx, a few kB
    for data in (flat.getvalue(), bomb_png(100_000, 100_000)):
        status, body = predict(base, {"instances": [{"b64": b64(data)}]})
        assert status == 413 and "pixels" in body["error"]
    small = io.BytesIO()
    Image.new("RGB", (600, 600)).save(small, format="PNG")  # 0.36 Mpx each, 1.08 together
    status, body = predict(base, {"instances": [{"b64": b64(small.getvalue())}] * 3})
    assert status == 413 and "together" in body["error"]


def test_body_over_the_limit_by_content_length_gets_413(base):
    url = urlsplit(base)
    with socket.create_connection((url.hostname, url.port), timeout=30) as sock:
        sock.sendall(f"POST /v1/models/{NAME}:predict HTTP/1.1\r\nHost: x\r\n"
                     f"Content-Type: application/json\r\nContent-Length: {MAX_BODY + 1}\r\n\r\n".encode())
        response = b""
        while chunk := sock.recv(65536):
            response += chunk
    head, _, payload = response.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413") and b"larger than the limit" in payload


def test_streamed_body_over_the_limit_gets_413(app):
    """No Content-Length (chunked upload): the limit applies to the bytes as they arrive."""
    chunks = [b"x" * 100_000] * 4
    messages: list[dict] = []

    async def receive() -> dict:
        body = chunks.pop() if chunks else b""
        return {"type": "http.request", "body": body, "more_body": bool(chunks)}

    async def send(message: dict) -> None:
        messages.append(message)

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
             "scheme": "http", "path": f"/v1/models/{NAME}:predict", "raw_path": b"", "root_path": "",
             "query_string": b"", "headers": [(b"transfer-encoding", b"chunked")],
             "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 2)}
    anyio.run(app, scope, receive, send)
    assert messages[0]["status"] == 413
    assert b"larger than the limit" in b"".join(m.get("body", b"") for m in messages[1:])


# ------------------------------------------------------------------------------------------ upload
def test_upload_endpoint_matches_rest(base):
    data = hm.sample_images()[1]
    status, page = call(base, "POST", "/api/upload", *multipart("file", "face.jpg", data))
    assert status == 200
    _, rest = predict(base, {"instances": [{"b64": b64(data)}]})
    row = rest["predictions"][0]
    assert page["probability_fake"] == row["probability_fake"] and page["label"] == row["label"]
    assert page["verdict"] == ("fake" if row["label"] else "real")
    assert [m["name"] for m in page["members"]] == ["resnet18-test", "alexnet-test"]
    assert [m["probability_fake"] for m in page["members"]] == row["members"]
    for body, headers in (multipart("other", "face.jpg", data), multipart("file", "x.txt", b"text"),
                          multipart("file", "empty.png", b""), (b"raw", {"Content-Type": "image/png"}),
                          (b"--x\r\nbroken", {"Content-Type": "multipart/form-data; boundary=x"})):
        status, body = call(base, "POST", "/api/upload", body, headers)
        assert 400 <= status < 500 and body["error"], body


# ------------------------------------------------------------------------------------- concurrency
def test_concurrent_requests_are_answered_correctly(base):
    images = hm.sample_images()
    sequential = [predict(base, {"instances": [{"b64": b64(b)}]})[1]["predictions"][0] for b in images]

    def one(i: int) -> tuple[int, dict]:
        if i % 4 == 3:  # some pixel-list requests among the encoded ones
            return i, predict(base, {"instances": [hm.decoded(images[i % 3]).tolist()]})
        return i, predict(base, {"instances": [{"b64": b64(images[i % 3])}]})

    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(one, range(48)))
    for i, (status, body) in results:
        assert status == 200, body
        row = body["predictions"][0]
        assert row["label"] == sequential[i % 3]["label"]
        np.testing.assert_allclose(row["probability_fake"], sequential[i % 3]["probability_fake"],
                                   atol=1e-6)
        np.testing.assert_allclose(row["members"], sequential[i % 3]["members"], atol=1e-6)


# ---------------------------------------------------------------------------------------- batching
@pytest.fixture(scope="module")
def slow_batches():
    """A service whose batches wait up to 1 s to fill (6 images), so concurrent requests surely merge."""
    app = create_app(hm.exported().parent, max_body_bytes=MAX_BODY, max_pixels=MAX_PIXELS,
                     max_batch=MAX_BATCH, max_batch_size=6, batch_timeout_micros=1_000_000)
    with serve_in_thread(app) as url:
        yield app, url


def test_batched_answers_equal_unbatched_ones(slow_batches):
    """Requests of different kinds and sizes sent at once: merged (by signature and pixel shape) into
    few model calls, and each answer equals the image's own unbatched call (float32 rounding apart)."""
    app, url = slow_batches
    predictor, batcher = app.state.predictor, app.state.batcher
    encoded = [hm.encode(hm.random_image(30 + 7 * i, 50 - 3 * i, 20 + i), "JPEG" if i % 2 else "PNG")
               for i in range(5)]
    pixels = [hm.random_image(24, 24, 40 + i) for i in range(3)] + [hm.random_image(20, 36, 50 + i)
                                                                   for i in range(3)]
    requests = [("predict_bytes", b, {"instances": [{"b64": b64(b)}]}) for b in encoded]
    requests += [("serving_default", p, {"instances": [p.tolist()]}) for p in pixels]
    expected = [predictor.predict(sig, [x] if sig == "predict_bytes" else x[None]) for sig, x, _ in requests]

    def send_all(payloads: list) -> list:
        with ThreadPoolExecutor(len(payloads)) as pool:
            return list(pool.map(lambda payload: predict(url, payload), payloads))

    batcher.batch_sizes.clear()
    answers = send_all([r[2] for r in requests])
    for (status, body), want in zip(answers, expected, strict=True):
        assert status == 200, body
        assert_rows_match(body["predictions"], want)
    assert sorted(batcher.batch_sizes.elements()) == [3, 3, 5]  # one call per signature and shape
    probs = [body["predictions"][0]["probability_fake"] for _, body in answers]
    assert len({round(p, 4) for p in probs}) == len(probs)  # distinct scores: a mix-up would show

    # an undecodable image merged with good ones fails alone; the others are answered as before
    answers = send_all([r[2] for r in requests[:3]]
                       + [{"instances": [{"b64": b64(JPEG[: len(JPEG) // 2])}]}])
    status, body = answers.pop()
    assert status == 400 and "JPEG image" in body["error"] and "truncated" in body["error"]
    for (status, body), want in zip(answers, expected[:3], strict=True):
        assert status == 200, body
        assert_rows_match(body["predictions"], want)


def test_a_full_queue_gets_429(base, app, monkeypatch):
    def full(*args, **kwargs):
        raise QueueFull("64 images are already queued (limit 64); retry later")

    monkeypatch.setattr(app.state.batcher, "submit", full)
    status, body = predict(base, {"instances": [{"b64": b64(JPEG)}]})
    assert status == 429 and "busy" in body["error"] and "retry later" in body["error"]
    status, body = call(base, "POST", "/api/upload", *multipart("file", "face.jpg", JPEG))
    assert status == 429


def test_batching_off_answers_the_same():
    app = create_app(hm.exported().parent, max_batch=MAX_BATCH, batching=False)
    assert app.state.batcher is None
    images = hm.sample_images()
    with serve_in_thread(app) as url:
        status, info = call(url, "GET", "/api/info")
        assert status == 200 and info["batching"] is None
        status, body = predict(url, {"instances": [{"b64": b64(b)} for b in images]})
    assert status == 200
    assert_rows_match(body["predictions"], hm.keras_reference([hm.decoded(b) for b in images], threshold()))


# ------------------------------------------------------------------------------------- disconnects
class Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def test_client_disconnect_mid_body_is_one_log_line(base):
    records = Records()
    loggers = [logging.getLogger(n) for n in ("uvicorn.error", "uvicorn", "")]
    for logger in loggers:
        logger.addHandler(records)
    try:
        url = urlsplit(base)
        for path in (f"/v1/models/{NAME}:predict", "/api/upload"):
            with socket.create_connection((url.hostname, url.port), timeout=30) as sock:
                sock.sendall(f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                             f"Content-Length: 5000\r\n\r\n".encode() + b'{"instances": [')
                time.sleep(0.2)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and len(records.records) < 2:
            time.sleep(0.05)
        time.sleep(0.3)  # anything logged after the warnings would show too
    finally:
        for logger in loggers:
            logger.removeHandler(records)
    lines = [r.getMessage() for r in records.records]
    assert len(lines) == 2, lines
    assert all("disconnected before sending the whole request body of 5000 bytes" in ln for ln in lines)
    assert not any(r.exc_info for r in records.records)
    assert call(base, "GET", f"/v1/models/{NAME}")[0] == 200  # still serving


# ------------------------------------------------------------------------------------ explanations
def test_explain_returns_each_members_heatmap_beside_the_scores(base):
    from tfdeepfake.explain import heatmaps, overlay

    images = hm.sample_images()[:2]
    status, body = predict(base, {"instances": [{"b64": b64(b)} for b in images]},
                           f"/v1/models/{NAME}:explain")
    assert status == 200, body
    _, plain = predict(base, {"instances": [{"b64": b64(b)} for b in images]})
    for row, plain_row, data in zip(body["predictions"], plain["predictions"], images, strict=True):
        assert {k: row[k] for k in plain_row} == plain_row
        assert set(row["heatmaps"]) == set(row["overlays"]) == {"resnet18-test", "alexnet-test"}
        image = hm.decoded(data)
        want = heatmaps(hm.keras_ensemble(), image, target="fake" if row["label"] else "real")
        for member, heat in want.items():
            got = np.asarray(Image.open(io.BytesIO(base64.b64decode(row["heatmaps"][member]["b64"]))))
            assert got.shape == image.shape[:2] and got.dtype == np.uint8
            np.testing.assert_allclose(got / 255.0, heat, atol=1 / 255 + 1e-6)
            shown = np.asarray(Image.open(io.BytesIO(base64.b64decode(row["overlays"][member]["b64"]))))
            np.testing.assert_allclose(shown, overlay(image, heat), atol=2)  # the same colours
    large = hm.encode(hm.random_image(500, 300, 5))  # pictures come back at most EXPLAIN_MAX_SIDE a side
    status, body = predict(base, {"inputs": [{"b64": b64(large)}]}, f"/v1/models/{NAME}:explain")
    assert status == 200
    heat = Image.open(io.BytesIO(base64.b64decode(body["outputs"]["heatmaps"][0]["alexnet-test"]["b64"])))
    assert heat.size == (round(300 * EXPLAIN_MAX_SIDE / 500), EXPLAIN_MAX_SIDE) and heat.mode == "L"
    status, body = predict(base, {"instances": [hm.random_image(24, 24, 1).tolist()]},
                           f"/v1/models/{NAME}:explain")  # pixel lists too
    assert status == 200 and set(body["predictions"][0]["overlays"]) == {"resnet18-test", "alexnet-test"}


def test_upload_with_explain_adds_overlays(base):
    data = hm.sample_images()[1]
    status, page = call(base, "POST", "/api/upload?explain=1", *multipart("file", "face.jpg", data))
    assert status == 200
    _, rest = predict(base, {"instances": [{"b64": b64(data)}]}, f"/v1/models/{NAME}:explain")
    row = rest["predictions"][0]
    assert [m["overlay"] for m in page["members"]] == [row["overlays"][n]["b64"]
                                                       for n in ("resnet18-test", "alexnet-test")]
    status, plain = call(base, "POST", "/api/upload", *multipart("file", "face.jpg", data))
    assert status == 200 and all("overlay" not in m for m in plain["members"])


def test_explain_without_a_keras_model_says_so(tmp_path):
    copy = tmp_path / NAME
    shutil.copytree(hm.exported(), copy / "1")  # the SavedModel alone, no NAME.keras beside it
    app = create_app(copy)
    with serve_in_thread(app) as url:
        assert call(url, "GET", "/api/info")[1]["explain"] is False
        status, body = predict(url, {"instances": [{"b64": b64(JPEG)}]}, f"/v1/models/{NAME}:explain")
        assert status == 400 and "NAME.keras" in body["error"]
        assert predict(url, {"instances": [{"b64": b64(JPEG)}]})[0] == 200


# ------------------------------------------------------------------------- live property-based tests
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-1000, 1000) | st.floats() | st.text(max_size=8),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(
        st.sampled_from(["instances", "inputs", "b64", "images", "signature_name", "x"]), children,
        max_size=3), max_leaves=20)


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(body=json_values | st.binary(max_size=64), verb=st.sampled_from(["predict", "explain"]))
def test_arbitrary_bodies_never_get_a_5xx(base, body, verb):
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    status, answer = call(base, "POST", f"/v1/models/{NAME}:{verb}", data)
    assert status < 500, answer
    assert status == 200 or (isinstance(answer, dict) and answer["error"])

