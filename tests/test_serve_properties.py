"""Property-based tests (Hypothesis) of the service's request parser, without a server or a model:
arbitrary bodies, JSON values, pixel lists and base64 strings give a parsed batch or an ``ApiError`` with a
4xx status, never another exception. (Live requests: ``tests/test_serve.py``.)"""

from __future__ import annotations

import base64
import io
import json

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from tfdeepfake.serve import ApiError, image_pixels, parse_request

MAX_BATCH = 8
MAX_PIXELS = 100_000
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

json_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=20)
json_values = st.recursive(json_scalars, lambda children: st.lists(children, max_size=5)
                           | st.dictionaries(st.text(max_size=10), children, max_size=5), max_leaves=30)
keys = st.sampled_from(["instances", "inputs", "signature_name", "images", "b64", "image_bytes", "x"])
bodies = st.dictionaries(keys, json_values, max_size=3)
pixel_numbers = (st.integers(-300, 300) | st.floats(-1, 300) | st.sampled_from([float("nan"), float("inf")])
                 | st.booleans() | st.none() | st.text(max_size=2))
pixel_lists = st.recursive(pixel_numbers, lambda children: st.lists(children, max_size=4), max_leaves=60)


def png(width: int, height: int) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (width, height), (10, 20, 30)).save(buf, format="PNG")
    return buf.getvalue()


def parse(body: bytes):
    """The parser's result, or None for an ApiError (whose status must be 400 or 413)."""
    try:
        return parse_request(body, max_batch=MAX_BATCH, max_pixels=MAX_PIXELS)
    except ApiError as exc:
        assert exc.status_code in (400, 413), exc.detail
        assert isinstance(exc.detail, str) and exc.detail
        return None


def check_parsed(result) -> None:
    if result is None:
        return
    signature, batch, rows = result
    assert signature in ("serving_default", "predict_bytes") and isinstance(rows, bool)
    assert 1 <= len(batch) <= MAX_BATCH
    if signature == "serving_default":
        assert batch.dtype == np.uint8 and batch.ndim == 4 and batch.shape[-1] == 3
        assert batch.shape[0] * batch.shape[1] * batch.shape[2] <= MAX_PIXELS
    else:
        assert all(isinstance(b, bytes) for b in batch)


@SETTINGS
@given(st.binary(max_size=200))
def test_arbitrary_bytes(body):
    check_parsed(parse(body))


@SETTINGS
@given(json_values)
def test_arbitrary_json_values(value):
    check_parsed(parse(json.dumps(value).encode()))


@SETTINGS
@given(bodies)
def test_arbitrary_json_objects_with_the_api_keys(body):
    check_parsed(parse(json.dumps(body).encode()))


@SETTINGS
@given(pixel_lists, st.sampled_from(["instances", "inputs"]), st.booleans())
def test_pixel_lists(pixels, key, named):
    value = {"images": pixels} if named and key == "inputs" else pixels
    result = parse(json.dumps({key: value}).encode())
    check_parsed(result)
    if result is not None:  # what was accepted is exactly the integers sent
        array = np.asarray(pixels if not (named and key == "inputs") else value["images"])
        np.testing.assert_array_equal(result[1], array.astype(np.uint8))
        assert np.all(array == result[1])


@SETTINGS
@given(st.lists(st.text(max_size=40) | st.binary(max_size=60).map(lambda b: base64.b64encode(b).decode()),
                min_size=1, max_size=4), st.booleans())
def test_b64_strings(strings, wrapped):
    items = [{"image_bytes": {"b64": s}} if wrapped else {"b64": s} for s in strings]
    check_parsed(parse(json.dumps({"instances": items}).encode()))


@SETTINGS
@given(st.integers(1, 400), st.integers(1, 400), st.integers(1, 3), st.integers(0, 200))
def test_real_images_and_their_truncations(width, height, count, cut):
    data = png(width, height)
    data = data if cut == 0 else data[:cut]
    body = json.dumps({"instances": [{"b64": base64.b64encode(data).decode()}] * count}).encode()
    result = parse(body)
    check_parsed(result)
    if cut == 0 and count <= MAX_BATCH and count * width * height <= MAX_PIXELS:
        assert result is not None and result[1] == [data] * count


@SETTINGS
@given(st.binary(max_size=300))
def test_header_check_of_arbitrary_bytes(data):
    for prefix in (b"", b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"GIF89a", b"BM", b"RIFF\0\0\0\0WEBP"):
        try:
            assert 0 < image_pixels(prefix + data, MAX_PIXELS) <= MAX_PIXELS
        except ApiError as exc:
            assert exc.status_code in (400, 413)


def test_the_parser_rejects_what_it_must():
    """Anchors for the properties above: a broken parser that accepted everything would fail here."""
    for body in (b"[]", b'{"instances": []}', b'{"instances": [[[[256, 0, 0]]]]}',
                 b'{"instances": [{"b64": "!!"}]}', json.dumps({"instances": [[[[1, 2, 3]]]] * 9}).encode()):
        assert parse(body) is None, body
    signature, batch, rows = parse(b'{"inputs": {"images": [[[[1, 2, 3]]]]}}')
    assert signature == "serving_default" and rows is False and batch.tolist() == [[[[1, 2, 3]]]]
    with pytest.raises(ApiError) as exc:
        parse_request(json.dumps({"instances": [{"b64": base64.b64encode(png(400, 400)).decode()}]}).encode(),
                      max_batch=MAX_BATCH, max_pixels=MAX_PIXELS)
    assert exc.value.status_code == 413
