"""Thin gRPC clients and CLIs for the product search service (tritonclient only, no torch)."""
