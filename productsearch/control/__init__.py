"""Everything that runs the service on its host: default paths and ports, the admin key, the
tritonserver process and its install, the background service and its supervisor, generations
(manifests, deploy/swap) and indexing. Never imported by the runtime (tests/unit/test_layout.py).
"""
