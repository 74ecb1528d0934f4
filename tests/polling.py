"""Waiting in tests for something a server does in the background."""
from __future__ import annotations

import time


def wait_until(condition, timeout_s: float, what: str, every_s: float = 0.2):
    """`condition()`'s first truthy value, polled every `every_s`; AssertionError naming `what`
    after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(every_s)
    raise AssertionError(f"not within {timeout_s:.0f} s: {what}")
