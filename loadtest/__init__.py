"""Load tests (Locust) and the benchmark harness for the product search service.

The tools here run the scorer and the encoders in process too (served vs in-process), so they get
the OpenBLAS kernels the server's processes get (productsearch/control/blas.py); set here, before
any of them imports numpy.
"""
import os as _os

from productsearch.control.blas import with_blas_kernel as _with_blas_kernel

OPERATOR_BLAS_KERNEL = _os.environ.get("OPENBLAS_CORETYPE")  # what the operator set, if anything
_os.environ.update(_with_blas_kernel(_os.environ))
