"""The server side of the cross-modal product search service, in rooms by who runs them:

- runtime/   inside Triton's python-backend stubs: one module per served model, tensor I/O, limits
- encoders/  the towers (demo and pretrained) and the one path that loads a generation's towers
- catalog/   the catalog on disk, vector search over it, the demo catalog generator
- build/     training, presets and quality (build_models.py)
- control/   paths, admin key, the tritonserver process, service, supervisor, generations, deploy

Import rules (tests/unit/test_layout.py): runtime never imports control or build; encoders and
catalog never import control, build or runtime models; nothing here is imported by clients/,
which talks gRPC only.
"""
