"""Triton python-backend entry point for `record_events`; the code is productsearch.runtime.record_events in the installed package."""
from productsearch.runtime.record_events import RecordEventsModel as TritonPythonModel  # noqa: F401
