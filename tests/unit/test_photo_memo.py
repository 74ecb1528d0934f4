import numpy as np

from productsearch.runtime.photo_memo import PhotoMemo, photo_key


def test_the_memo_keeps_the_most_recently_used_photos():
    memo = PhotoMemo(capacity=2)
    a, b, c = (photo_key(bytes([i]) * 10) for i in range(3))
    memo.put(a, np.ones(4)), memo.put(b, np.zeros(4))
    assert memo.get(a) is not None  # a is now the most recent
    memo.put(c, np.full(4, 2.0))
    assert memo.get(b) is None and memo.get(a) is not None and memo.get(c)[0] == 2.0 and len(memo) == 2


def test_capacity_zero_keeps_nothing():
    memo = PhotoMemo(capacity=0)
    key = photo_key(b"photo")
    memo.put(key, np.ones(4))
    assert memo.get(key) is None and len(memo) == 0


def test_the_key_is_the_bytes_not_the_object():
    assert photo_key(b"same") == photo_key(bytes(bytearray(b"same"))) != photo_key(b"other")
