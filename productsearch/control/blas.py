"""Which OpenBLAS kernels numpy and faiss run, chosen from the CPU's instruction sets.

OpenBLAS (built DYNAMIC_ARCH in the numpy and faiss-cpu wheels) picks its kernels by CPU model
number. A model newer than the library falls back to Prescott, its SSE3 kernels: on this
project's CI machine (Xeon family 6 model 207, Emerald Rapids, with AVX-512) numpy's OpenBLAS
0.3.23 and faiss's 0.3.15 both did, and the scorer's matrix product ran 2.4-3.6x slower than
with the AVX-512 kernels (BENCHMARKS.md, "Issue 14, second pass"). OPENBLAS_CORETYPE overrides
the choice; it must be in the environment before the library loads, so it is set for the
processes we start (tritonserver and its python stubs, the load-test tools), never changed in a
running one.
The kernel named here is the newest family the CPU's flags can run, so it is safe on any CPU;
a value the operator set is kept.
"""
from __future__ import annotations

from pathlib import Path

# OpenBLAS's SkylakeX kernels need these AVX-512 subsets; its Haswell kernels AVX2 + FMA.
SKYLAKEX_FLAGS = frozenset({"avx512f", "avx512cd", "avx512bw", "avx512dq", "avx512vl"})
HASWELL_FLAGS = frozenset({"avx2", "fma"})


def kernel_for(flags: set[str] | frozenset[str]) -> str | None:
    """The OpenBLAS core type for a CPU with these /proc/cpuinfo flags; None: leave OpenBLAS's choice."""
    if SKYLAKEX_FLAGS <= flags:
        return "SkylakeX"
    if HASWELL_FLAGS <= flags:
        return "Haswell"
    return None


def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> frozenset[str]:
    """The first CPU's flags (empty where /proc/cpuinfo is absent or says none, e.g. not x86)."""
    try:
        text = cpuinfo.read_text()
    except OSError:
        return frozenset()
    for line in text.splitlines():
        if line.startswith("flags"):
            return frozenset(line.partition(":")[2].split())
    return frozenset()


def with_blas_kernel(environ: dict[str, str], flags: frozenset[str] | None = None) -> dict[str, str]:
    """`environ` plus OPENBLAS_CORETYPE for this CPU, unless it is set already."""
    env = dict(environ)
    kernel = kernel_for(cpu_flags() if flags is None else flags)
    if kernel and not env.get("OPENBLAS_CORETYPE"):
        env["OPENBLAS_CORETYPE"] = kernel
    return env
