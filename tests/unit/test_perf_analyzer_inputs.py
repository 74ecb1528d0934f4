"""The perf_analyzer section's input files: every query of the workload, and photos serialized as
Triton serializes a BYTES element (perf_analyzer sends b64 data as the tensor's raw bytes)."""
from __future__ import annotations

import base64
import struct

from loadtest.perf_analyzer import input_data
from loadtest.workload import Workload

WORKLOAD = Workload(texts=["red dress", "红色连衣裙", "Nordia blue striped shirt"],
                    images=[b"\x89PNG fake one", b"\xff\xd8 fake two"], titles=["a", "b"])


def element(b64: str) -> bytes:
    raw = base64.b64decode(b64)
    (length,) = struct.unpack("<I", raw[:4])
    assert length == len(raw) - 4, "one length-prefixed element, nothing after it"
    return raw[4:]


def test_text_rows_are_every_query_with_an_empty_photo():
    rows = input_data(WORKLOAD, "text")["data"]
    assert [row["QUERY_TEXT"] for row in rows] == [[t] for t in WORKLOAD.texts]
    assert all(row["QUERY_IMAGE"] == [""] and row["TOP_K"] == [10] for row in rows)


def test_photo_rows_carry_each_image_as_one_serialized_bytes_element():
    rows = input_data(WORKLOAD, "photo")["data"]
    assert [element(row["QUERY_IMAGE"]["b64"]) for row in rows] == WORKLOAD.images
    assert all(row["QUERY_TEXT"] == [""] for row in rows)


def test_text_and_photo_rows_pair_a_word_with_a_photo():
    rows = input_data(WORKLOAD, "text+photo")["data"]
    assert [(row["QUERY_TEXT"][0], element(row["QUERY_IMAGE"]["b64"])) for row in rows] == \
        [("red", WORKLOAD.images[0]), ("红色连衣裙", WORKLOAD.images[1])]
