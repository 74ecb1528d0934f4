"""Load tests (Locust) and the benchmark harness for the product search service."""
