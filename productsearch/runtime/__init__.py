"""What runs inside Triton's python-backend stubs: one module per served model (query_gate,
text_encoder, image_encoder, fusion, scorer, the catalog write models), the tensor I/O and batching
they share (model_io), and the decoders of untrusted query inputs.

model_repository/<model>/<N>/model.py is a one-line shim that imports its model class from here
(the package is installed in the venv the stub runs). Import rule, checked by
tests/unit/test_layout.py: runtime imports only core, encoders, catalog and itself; never control,
training, demo, evaluation, the console or the clients.
"""
