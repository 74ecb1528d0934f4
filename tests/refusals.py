"""Asserting a refusal in tests: the call raises ServiceError with this gRPC status and words."""
from __future__ import annotations

import pytest

from clients.connection import ServiceError


def refused(call, status: str, words: str) -> str:
    """The refusal's message, once `call()` is refused with `status` naming `words`."""
    with pytest.raises(ServiceError) as err:
        call()
    assert err.value.status == f"StatusCode.{status}", err.value
    assert words in err.value.message, err.value.message
    return err.value.message
