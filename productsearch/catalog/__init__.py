"""The catalog: a generation's catalog on disk (files), compact serving columns, vector search
over it (ann: exact and faiss IVF), and the demo catalog generator (attributes, titles, renders).
Imported by the runtime's scorer, the build and the control tools; never imports control or build.
"""
