"""OpenBLAS kernel choice (productsearch/control/blas.py): the rule, the operator's override, and
that numpy's OpenBLAS really runs the named kernel in a process started with that environment."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

from productsearch.control.blas import cpu_flags, kernel_for, with_blas_kernel
from productsearch.control.triton_install import TritonInstall, server_environment

AVX512 = frozenset({"sse4_2", "avx", "avx2", "fma", "avx512f", "avx512cd", "avx512bw", "avx512dq", "avx512vl"})


def test_the_kernel_is_the_newest_family_the_flags_can_run():
    assert kernel_for(AVX512) == "SkylakeX"
    assert kernel_for(AVX512 - {"avx512vl"}) == "Haswell"  # SkylakeX kernels need all five subsets
    assert kernel_for(frozenset({"sse4_2", "avx", "avx2", "fma"})) == "Haswell"
    assert kernel_for(frozenset({"sse4_2", "avx"})) is None  # OpenBLAS's own choice
    assert kernel_for(frozenset()) is None  # no /proc/cpuinfo flags (e.g. not x86)


def test_an_operators_choice_is_kept_and_a_missing_cpuinfo_changes_nothing(tmp_path):
    assert with_blas_kernel({"OPENBLAS_CORETYPE": "Zen"}, AVX512)["OPENBLAS_CORETYPE"] == "Zen"
    assert with_blas_kernel({}, AVX512)["OPENBLAS_CORETYPE"] == "SkylakeX"
    assert "OPENBLAS_CORETYPE" not in with_blas_kernel({}, frozenset({"sse2"}))
    assert cpu_flags(tmp_path / "absent") == frozenset()
    (tmp_path / "cpuinfo").write_text("processor\t: 0\nflags\t\t: fpu sse2 avx2 fma\n")
    assert cpu_flags(tmp_path / "cpuinfo") == frozenset({"fpu", "sse2", "avx2", "fma"})


def test_the_servers_environment_names_this_cpus_kernel(monkeypatch):
    monkeypatch.delenv("OPENBLAS_CORETYPE", raising=False)
    env = server_environment(TritonInstall(binary=Path("tritonserver"), backend_dir=Path("backends")))
    assert env.get("OPENBLAS_CORETYPE") == kernel_for(cpu_flags())


@pytest.mark.skipif(kernel_for(cpu_flags()) is None, reason="this CPU has no AVX2: OpenBLAS keeps its own choice")
def test_numpys_openblas_runs_the_named_kernel():
    env = with_blas_kernel({k: v for k, v in os.environ.items() if k != "OPENBLAS_CORETYPE"})
    probe = ("import numpy; from threadpoolctl import threadpool_info; "
             "print(sorted({i.get('architecture') for i in threadpool_info() if i['internal_api'] == 'openblas'}))")
    out = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True).stdout
    assert out.strip() == f"['{env['OPENBLAS_CORETYPE']}']"
