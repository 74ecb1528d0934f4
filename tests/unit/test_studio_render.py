import random

import pytest

from productsearch.demo.studio_render import STUDIO_KINDS, render_studio


def test_same_seed_same_pixels_and_kinds_differ():
    a = render_studio("vase", "blue", random.Random(3)).tobytes()
    b = render_studio("vase", "blue", random.Random(3)).tobytes()
    assert a == b
    assert render_studio("lamp", "blue", random.Random(3)).tobytes() != a
    assert set(STUDIO_KINDS) >= {"lamp", "vase"}


def test_unknown_kind_refused():
    with pytest.raises(ValueError, match="unknown studio kind"):
        render_studio("rocket", "red", random.Random(0))
