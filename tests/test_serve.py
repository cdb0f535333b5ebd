"""The web service against a live uvicorn on loopback: TF Serving REST API, upload, limits, concurrency."""

from __future__ import annotations

import base64
import http.client
import io
import json
import socket
import struct
import zlib
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

import anyio
import helpers_models as hm
import numpy as np
import pytest
from PIL import Image

from tfdeepfake.serve import create_app, serve_in_thread

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
    "image_bytes not b64": json.dumps({"instances": [{"image_bytes": "abc"}]}).encode(),
    "mixed kinds": json.dumps({"instances": [{"b64": b64(JPEG)}, PIXEL]}).encode(),
    "too many": json.dumps({"instances": [PIXEL] * (MAX_BATCH + 1)}).encode(),
    "unknown signature": json.dumps({"signature_name": "x", "instances": [PIXEL]}).encode(),
    "wrong signature": json.dumps({"signature_name": "predict_bytes", "instances": [PIXEL]}).encode(),
    "deep nesting": b'{"instances": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
}


@pytest.mark.parametrize("case", sorted(BAD_REQUESTS))
def test_bad_requests_get_400_with_error(base, case):
    status, body = call(base, "POST", f"/v1/models/{NAME}:predict", BAD_REQUESTS[case])
    assert status == 400, (case, body)
    assert isinstance(body, dict) and list(body) == ["error"] and body["error"]


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
