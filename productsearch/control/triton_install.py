"""Find the real `tritonserver` and prepare its environment.

Two places provide the binary:
- NVIDIA's container: `tritonserver` on PATH with backends in /opt/tritonserver/backends;
- the `nvidia-pytriton` wheel (the embedded default): the binary, the python backend and one
  python-backend stub per Python version, all inside the installed wheel.
For the wheel, the stub built for the running Python is copied beside the backend (its RPATH
only resolves from there), the running interpreter's libdir goes first on LD_LIBRARY_PATH (the
stub embeds libpython and must get this interpreter's own, or C extensions fail to import) and
the venv's bin first on PATH (the stub finds its site-packages through the `python3` it sees).
"""
from __future__ import annotations

import os
import shutil
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path

from productsearch.control.blas import with_blas_kernel

CONTAINER_BACKENDS = Path("/opt/tritonserver/backends")


class LauncherError(RuntimeError):
    """Something prevents tritonserver from starting; the message says what and how to fix it."""


@dataclass(frozen=True)
class TritonInstall:
    """Where the server binary, its backends and its shared libraries are."""

    binary: Path
    backend_dir: Path
    library_dirs: tuple[Path, ...] = ()
    stub_source: Path | None = None  # wheel only: stub for this Python, to copy beside the backend


def find_triton() -> TritonInstall:
    """The pytriton wheel's server if installed, else `tritonserver` on PATH (NVIDIA's container)."""
    import importlib.util

    # Locate the wheel without importing it (its Python API is not used and pulls in more).
    spec = importlib.util.find_spec("pytriton")
    if spec is not None and spec.submodule_search_locations:
        root = Path(list(spec.submodule_search_locations)[0]).resolve() / "tritonserver"
        binary = root / "bin" / "tritonserver"
        version = f"{sys.version_info.major}.{sys.version_info.minor}"
        stub = root / "python_backend_stubs" / version / "triton_python_backend_stub"
        if not binary.exists():
            raise LauncherError(f"nvidia-pytriton is installed but {binary} is missing; reinstall it")
        if not stub.exists():
            raise LauncherError(
                f"nvidia-pytriton ships no python-backend stub for Python {version} "
                f"(looked for {stub}); use a Python it supports (3.8-3.13)"
            )
        return TritonInstall(
            binary=binary,
            backend_dir=root / "backends",
            library_dirs=(root.parent.parent / "nvidia_pytriton.libs",),
            stub_source=stub,
        )
    on_path = shutil.which("tritonserver")
    if on_path:
        return TritonInstall(binary=Path(on_path), backend_dir=CONTAINER_BACKENDS)
    raise LauncherError(
        "no tritonserver found: install the pinned requirements (nvidia-pytriton ships the "
        "server) or run inside NVIDIA's Triton container"
    )


def install_stub(install: TritonInstall) -> None:
    """Copy the stub for the running Python beside the python backend (once)."""
    if install.stub_source is None:
        return
    target = install.backend_dir / "python" / "triton_python_backend_stub"
    if target.exists() and target.read_bytes() == install.stub_source.read_bytes():
        return
    tmp = target.with_suffix(".tmp")
    shutil.copy2(install.stub_source, tmp)
    os.chmod(tmp, 0o755)
    os.replace(tmp, target)


def server_environment(install: TritonInstall) -> dict[str, str]:
    """Environment for tritonserver so its python stubs run this interpreter's venv."""
    env = with_blas_kernel(os.environ)  # numpy/faiss in the stubs: the CPU's own kernels
    libdir = sysconfig.get_config_var("LIBDIR")
    ldlibversion = sysconfig.get_config_var("LDVERSION")
    if install.stub_source is not None:
        if not libdir or not list(Path(libdir).glob(f"libpython{ldlibversion}.so*")):
            raise LauncherError(
                f"libpython{ldlibversion}.so not found in {libdir}: the python backend stub needs "
                "a Python built with --enable-shared (pyenv: PYTHON_CONFIGURE_OPTS=--enable-shared)"
            )
    # Wheel only: in NVIDIA's container the system libdir also holds the driver's libcuda,
    # which must not be put ahead of the container's CUDA compatibility libraries.
    lib_path = [libdir] if libdir and install.stub_source is not None else []
    lib_path += [str(p) for p in install.library_dirs]
    if env.get("LD_LIBRARY_PATH"):
        lib_path.append(env["LD_LIBRARY_PATH"])
    env["LD_LIBRARY_PATH"] = os.pathsep.join(lib_path)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env["PYTHONDONTWRITEBYTECODE"] = "1"  # the stub ignores it for model.py: see repository.compile_entry_points
    env["HF_HUB_OFFLINE"] = "1"
    env["TRANSFORMERS_OFFLINE"] = "1"
    env.setdefault("OMP_NUM_THREADS", "1")  # each model sets its own torch threads
    return env
