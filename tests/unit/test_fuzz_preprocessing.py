"""Fuzzing the preprocessing that sees untrusted bytes (hypothesis, bounded: a few seconds).

decode_image and the text decoding must answer any input with a value or their own error
(InvalidImage / RequestError, which the models turn into INVALID_ARGUMENT for that request
alone); anything else escaping would be a server-side failure. Examples are random on each run
(no example database is written); a failure prints the input that reproduces it.
"""
from __future__ import annotations

import io
import re
import sys
import types
import warnings
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from productsearch.runtime.model_io import RequestError, run_batched
from productsearch.core.limits import MAX_TEXT_BYTES
from productsearch.runtime.text_input import decode_texts
from productsearch.runtime.image_input import ALLOWED_FORMATS, InvalidImage, decode_image

FUZZ = settings(max_examples=400, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow])


def seed_images() -> list[bytes]:
    """Small valid files of every accepted format (and some refused ones) to mutate."""
    image = Image.new("RGB", (37, 23), (200, 30, 30))
    image.paste((10, 10, 240), (5, 5, 20, 15))
    seeds = []
    for fmt in (*sorted(ALLOWED_FORMATS), "TIFF", "ICO", "PPM"):
        buffer = io.BytesIO()
        image.save(buffer, fmt)
        seeds.append(buffer.getvalue())
    return seeds


SEEDS = seed_images()


def check_decode(data: bytes) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # PIL warns on some broken files; the result is what counts
        try:
            image = decode_image(data)
        except InvalidImage as err:
            assert str(err), "the error names the problem"
            return
    assert image.mode == "RGB" and image.width * image.height > 0


@FUZZ
@given(st.binary(max_size=4096))
def test_decode_image_on_random_bytes_raises_only_invalid_image(data):
    check_decode(data)


@st.composite
def mutated_images(draw) -> bytes:
    """A valid file with bytes flipped, inserted or cut: deep into the decoders, not just the magic."""
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(0, 6))):
        op = draw(st.sampled_from(["flip", "insert", "delete", "truncate"]))
        position = draw(st.integers(0, max(len(data) - 1, 0)))
        if op == "flip" and data:
            data[position] = draw(st.integers(0, 255))
        elif op == "insert":
            data[position:position] = draw(st.binary(min_size=1, max_size=32))
        elif op == "delete":
            del data[position:position + draw(st.integers(1, 32))]
        else:
            del data[position:]
    return bytes(data)


@FUZZ
@given(mutated_images())
def test_decode_image_on_mutated_files_raises_only_invalid_image(data):
    check_decode(data)


@FUZZ
@given(st.lists(st.binary(max_size=MAX_TEXT_BYTES + 64), min_size=1, max_size=4))
def test_text_decoding_returns_strings_or_raises_request_error(values):
    raw = np.array(values, dtype=object).reshape(-1, 1)
    try:
        texts = decode_texts(raw)
    except RequestError as err:
        assert "too long" in str(err) or "not valid UTF-8" in str(err)
        return
    assert len(texts) == len(values) and all(isinstance(t, str) for t in texts)


@FUZZ
@given(st.text(max_size=2000))
def test_valid_utf8_under_the_limit_is_accepted(text):
    data = text.encode("utf-8")
    if len(data) > MAX_TEXT_BYTES:
        with pytest.raises(RequestError, match="too long"):
            decode_texts(np.array([[data]], dtype=object))
    else:
        assert decode_texts(np.array([[data]], dtype=object)) == [text.strip()]


TEXT_VERSION = Path(__file__).resolve().parents[2] / "model_repository" / "text_encoder" / "1"


@pytest.fixture(scope="module")
def served_text_tower():
    """The text tower generation 1 serves, loaded the way text_encoder loads it (the demo: USE
    multilingual through ONNX Runtime, its sentencepiece tokenizer). `make test` builds it first."""
    from productsearch.encoders.loading import load_text_tower

    if not (TEXT_VERSION / "text_model").is_dir():
        pytest.fail("the demo text tower is not built: run `make models` (make test does it first)")
    return load_text_tower(TEXT_VERSION)


@settings(max_examples=200, deadline=None, database=None)
@given(texts=st.lists(st.text(max_size=600), min_size=1, max_size=4))
def test_the_served_tokenizer_takes_any_unicode_and_cuts_at_max_tokens(served_text_tower, texts):
    """What text_encoder does with decoded strings: never raises, never longer than MAX_TOKENS,
    BOS and EOS always there."""
    from productsearch.core.limits import MAX_TOKENS

    ids, lens = served_text_tower.tokenize(texts, MAX_TOKENS)
    assert ids.shape[0] == len(texts) and ids.shape[1] <= MAX_TOKENS and int(lens.min()) >= 2


# ------------------------------------------------------------------ one bad request, one batch

@pytest.fixture
def fake_pb_utils(monkeypatch):
    """A stand-in for the python backend's triton_python_backend_utils (only in the stub)."""
    module = types.ModuleType("triton_python_backend_utils")

    class TritonError:
        INVALID_ARG, INTERNAL = "INVALID_ARG", "INTERNAL"

        def __init__(self, message, code=None):
            self.message, self.code = message, code

    class InferenceResponse:
        def __init__(self, output_tensors=None, error=None):
            self.outputs, self.error = output_tensors or [], error

    module.TritonError = TritonError
    module.InferenceResponse = InferenceResponse
    module.Tensor = lambda name, value: (name, value)
    monkeypatch.setitem(sys.modules, "triton_python_backend_utils", module)
    return module


def test_a_bad_or_crashing_request_fails_alone_and_the_rest_is_computed_in_one_op(fake_pb_utils):
    calls = []

    def parse(request):
        if request == "bad":
            raise RequestError("image is empty")
        if request == "bug":
            raise KeyError("unexpected")
        return [request]

    def compute(rows):
        calls.append(list(rows))
        return [row.upper() for row in rows]

    responses = run_batched(["a", "bad", "b", "bug", "c"], parse, compute,
                            lambda out: fake_pb_utils.InferenceResponse([("OUT", out)]))
    assert calls == [["a", "b", "c"]], "one op over the good rows only"
    assert [r.outputs for r in responses if r.error is None] == [[("OUT", ["A"])], [("OUT", ["B"])], [("OUT", ["C"])]]
    assert responses[1].error.code == "INVALID_ARG" and "image is empty" in responses[1].error.message
    assert responses[3].error.code == "INTERNAL" and "KeyError" in responses[3].error.message


@FUZZ
@given(st.lists(st.tuples(st.binary(max_size=MAX_TEXT_BYTES + 64), st.binary(max_size=256)), min_size=1, max_size=4))
def test_query_gate_passes_or_raises_request_error(rows):
    from productsearch.runtime.query_gate import check_rows

    texts = np.array([[t] for t, _ in rows], dtype=object)
    images = np.array([[i] for _, i in rows], dtype=object)
    try:
        check_rows(texts, images)
    except RequestError as err:
        assert re.search("too long|not valid UTF-8|query is empty|too large", str(err)), err
