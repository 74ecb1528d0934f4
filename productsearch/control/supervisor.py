"""Keep the python-backend models alive: reload a model whose stub process died.

Longer than 350 lines: the three watches (dead stubs, stub memory, a wedged server) share one
client, the server's PID and the reload path; apart, each would need the others' state.

Each python-backend model instance runs in its own stub process. In Triton 2.51 (24.10) the
python backend does not restart a stub that died (killed, out of memory, a crash in a C
extension; server issues #7862, #8604): every request to that model then fails with INTERNAL
"Stub process '<instance>' is not healthy" - for the `search` ensemble that is every query, since
each one passes through both encoders - while the readiness API still says READY (measured).

The supervisor runs beside tritonserver (`make serve` starts it; it exits with the server):
- every `interval_s` it lists tritonserver's stub processes (/proc); when one has gone, and
  every `probe_every_s` anyway, it probes each loaded version of each python-backend model with
  a minimal request built from the model's config (empty strings, zeros). Any answer but the
  dead-stub error, a validation error included, means the stub is alive. No probes are sent
  while nothing changes, so statistics stay clean.
- a dead model is reloaded through the model-repository API (admin header) with the config the
  server is using - its version policy set to the versions READY now, so a serving generation's
  versions, pins and any override are kept - plus a parameter `supervisor_reload` that changes
  with every reload: Triton skips a load whose config is unchanged (measured: the dead stub
  stays). Triton starts new instances, switches to them once ready and reloads the ensembles
  that use the model with their pinned configs; requests fail only until then (clients retry,
  clients/search.py).
- memory guard: the python backend copies every request's inputs into its stub's shared-memory
  region (/dev/shm), which grows to fit and never shrinks; with large uploads it grew ~50 MB
  per 50 MB request until ~1 GB (measured; Triton has no request-size limit). A model whose
  region exceeds `max_shm_mb` (default 256) is reloaded the same way - new instances with a
  fresh 1 MB region take over, in-flight requests finish on the old ones - at most once per
  `cooldown_s` per model.
- wedge watchdog: every `liveness_every_s` it sends one probe to a python-backend model. The
  model queues are bounded in time (5 s), so a live server answers - even overloaded, with
  "Request timeout expired". No answer at all within `wedge_timeout_s`, `wedge_strikes` times
  in a row, means tritonserver has stopped serving (seen once here: a deadlock in Triton 2.51
  between its gRPC handler and the ensemble scheduler when an ensemble step fails, all models
  stuck, health still "ready"). The supervisor then kills it (SIGKILL), so that what runs it -
  compose's restart policy, systemd, or the supervisor itself - starts it again, instead of a
  server that accepts requests and never answers.
- restart (`--restart`, what `make serve` runs): when tritonserver dies - killed by the watchdog,
  or crashed: Triton 2.51 segfaults now and then when gRPC clients cancel requests, e.g. on
  deadlines of a few milliseconds (server issue #7368, fixed in later releases by PRs #7840,
  #8078, #8220; reproduced here, see the README) - the supervisor starts it again with the same
  ports and repository, restores the serving generation and records the new PID in
  run/triton.json (`service.restart_background`). Restarts that come quicker than one a minute
  wait longer and longer, up to `max_backoff_s`, so a server that crashes at start-up does not
  spin. Under compose, the container's restart policy does this instead.

    python -m productsearch.control.supervisor --url 127.0.0.1:8001 --pid <tritonserver pid> [--run-dir run]
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time
from pathlib import Path

import numpy as np

from clients.connection import DEAD_STUB, TlsOptions, add_tls_arguments, tls_from_args
from productsearch.control.admin import admin_headers, admin_key
from productsearch.control.paths import DEFAULT_RUN_DIR
from productsearch.control.processes import Stub, pid_alive, stub_processes
from productsearch.control.service import Backoff, exit_reason, restart_with_retries

_NUMPY = {"TYPE_BOOL": np.bool_, "TYPE_FP16": np.float16, "TYPE_FP32": np.float32, "TYPE_FP64": np.float64,
          "TYPE_INT8": np.int8, "TYPE_INT16": np.int16, "TYPE_INT32": np.int32, "TYPE_INT64": np.int64,
          "TYPE_UINT8": np.uint8, "TYPE_UINT16": np.uint16, "TYPE_UINT32": np.uint32, "TYPE_UINT64": np.uint64}


def probe_inputs(config: dict, module) -> list:
    """The smallest request the model's config allows: one row of empty strings / zeros / ones."""
    inputs = []
    batched = int(config.get("max_batch_size", 0)) > 0
    for spec in config.get("input", []):
        if spec.get("optional"):
            continue
        shape = ([1] if batched else []) + [int(d) if int(d) > 0 else 1 for d in spec.get("dims", [])]
        dtype = spec["data_type"]
        if dtype == "TYPE_STRING":
            value, wire = np.full(shape, b"", dtype=object), "BYTES"
        else:
            value = np.ones(shape, dtype=_NUMPY.get(dtype, np.float32))
            wire = {"TYPE_FP16": "FP16"}.get(dtype, dtype.replace("TYPE_", ""))
        tensor = module.InferInput(spec["name"], shape, wire)
        tensor.set_data_from_numpy(value)
        inputs.append(tensor)
    return inputs


class Supervisor:
    """Watches one tritonserver; `check()` probes and reloads, `run()` loops until told to stop."""

    def __init__(self, url: str, headers: dict[str, str], server_pid: int | None = None,
                 interval_s: float = 1.0, probe_every_s: float = 60.0, probe_timeout_s: float = 30.0,
                 max_shm_mb: float = 256.0, cooldown_s: float = 60.0, liveness_every_s: float = 30.0,
                 wedge_timeout_s: float = 30.0, wedge_strikes: int = 2,
                 tls: TlsOptions | None = None, log=print):
        import tritonclient.grpc as grpcclient

        self.grpc = grpcclient
        self.url = url
        self.headers = headers
        self.server_pid = server_pid
        self.interval_s = interval_s
        self.probe_every_s = probe_every_s
        self.probe_timeout_s = probe_timeout_s
        self.max_shm_bytes = int(max_shm_mb * 2**20)
        self.cooldown_s = cooldown_s
        self.log = log
        self._last_guard_reload: dict[str, float] = {}
        self._checked_once = False
        options = tls.client_kwargs() if tls is not None else {}
        self.client = grpcclient.InferenceServerClient(url, **options)
        self.liveness_client = grpcclient.InferenceServerClient(url, **options)
        self.liveness_every_s = liveness_every_s
        self.wedge_timeout_s = wedge_timeout_s
        self.wedge_strikes = wedge_strikes
        self.reloads: list[tuple[float, str]] = []  # (time, model) of every reload done
        self._backends: dict[str, str] = {}

    def close(self) -> None:
        self.client.close()
        self.liveness_client.close()

    # ------------------------------------------------------------------ what is loaded

    def loaded_python_models(self, client=None, timeout_s: float | None = None) -> dict[str, list[int]]:
        """{model: READY versions} of the python-backend models in the server."""
        client = client or self.client
        index = client.get_model_repository_index(headers=self.headers, as_json=True,
                                                  client_timeout=timeout_s).get("models", [])
        ready: dict[str, list[int]] = {}
        for entry in index:
            if entry.get("state") == "READY" and entry.get("version"):
                ready.setdefault(entry["name"], []).append(int(entry["version"]))
        python = {}
        for model, versions in ready.items():
            if model not in self._backends:
                config = client.get_model_config(model, as_json=True, client_timeout=timeout_s)["config"]
                self._backends[model] = config.get("backend") or config.get("platform", "")
            if self._backends[model] == "python":
                python[model] = sorted(versions)
        return python

    def alive(self, model: str, version: int) -> bool:
        """False only when the model answers with the dead-stub error."""
        from tritonclient.utils import InferenceServerException

        config = self.client.get_model_config(model, str(version), as_json=True)["config"]
        try:
            self.client.infer(model, probe_inputs(config, self.grpc), model_version=str(version),
                              client_timeout=self.probe_timeout_s)
        except InferenceServerException as err:
            return not DEAD_STUB.search(err.message() or "")
        return True

    # ------------------------------------------------------------------ repair

    def reload(self, model: str, versions: list[int]) -> None:
        config = self.client.get_model_config(model, as_json=True)["config"]
        config["version_policy"] = {"specific": {"versions": [str(v) for v in versions]}}
        config.setdefault("parameters", {})["supervisor_reload"] = {"string_value": str(time.time_ns())}
        started = time.monotonic()
        self.client.load_model(model, config=json.dumps(config), headers=self.headers, client_timeout=600)
        self.reloads.append((time.time(), model))
        self._backends.pop(model, None)
        self.log(f"supervisor: reloaded {model} versions {versions} ({time.monotonic() - started:.1f} s)")

    def check(self) -> list[str]:
        """Probe every loaded python-backend model version; reload the dead ones. Returns them."""
        dead = []
        for model, versions in self.loaded_python_models().items():
            if not all(self.alive(model, version) for version in versions):
                dead.append(model)
        for model in dead:
            self.log(f"supervisor: {model} has a dead stub process; reloading it")
            versions = self.loaded_python_models().get(model)
            if versions:
                self.reload(model, versions)
        if not self._checked_once:
            self._checked_once = True
            self.log("supervisor: first check done, every python-backend model answers")
        return dead

    def guard_memory(self, stubs: dict[int, Stub]) -> list[str]:
        """Reload models whose stub's shared-memory region holds more than max_shm_mb."""
        reloaded = []
        bloated: dict[str, int] = {}
        for stub in stubs.values():
            size = stub.shm_bytes()
            if size > self.max_shm_bytes:
                bloated[stub.model] = max(size, bloated.get(stub.model, 0))
        for model, size in bloated.items():
            if time.monotonic() - self._last_guard_reload.get(model, -1e9) < self.cooldown_s:
                continue
            versions = self.loaded_python_models().get(model)
            if not versions:
                continue
            self.log(f"supervisor: {model}'s shared memory holds {size / 2**20:.0f} MB "
                     f"(> {self.max_shm_bytes / 2**20:.0f} MB, grown by large requests); reloading it")
            self._last_guard_reload[model] = time.monotonic()
            self.reload(model, versions)
            reloaded.append(model)
        return reloaded

    def run(self, stop: threading.Event | None = None) -> None:
        """Until `stop` is set or the server exits: check when a stub disappears, and every
        probe_every_s; a failed check or reload is retried at the next interval."""
        stop = stop or threading.Event()
        watchdog = threading.Thread(target=self.watch_liveness, args=(stop,), name="triton-watchdog", daemon=True)
        watchdog.start()
        known = set(stub_processes(self.server_pid)) if self.server_pid else set()
        pending = True  # check once at start
        last_check = 0.0
        last_failure, last_failure_logged = None, 0.0  # log a repeated failure once a minute
        while not stop.wait(self.interval_s):
            if self.server_pid is not None and not pid_alive(self.server_pid):
                self.log(f"supervisor: tritonserver (pid {self.server_pid}) has exited")
                return
            stubs = stub_processes(self.server_pid) if self.server_pid is not None else {}
            if self.server_pid is not None:
                if known - set(stubs):
                    pending = True
                known = set(stubs)
            try:
                if pending or time.monotonic() - last_check >= self.probe_every_s:
                    last_check = time.monotonic()
                    self.check()
                    pending = False
                self.guard_memory(stubs)
            except Exception as err:  # noqa: BLE001 - server starting/busy: try again next time
                message = f"{type(err).__name__}: {err}"
                if message != last_failure or time.monotonic() - last_failure_logged >= 60:
                    self.log(f"supervisor: check failed ({message}); retrying every {self.interval_s:g} s")
                    last_failure, last_failure_logged = message, time.monotonic()
                pending = True
                continue
            last_failure = None

    def answers(self, model: str, version: int) -> bool:
        """Whether the server answers a probe of `model` at all (an error is an answer) within
        wedge_timeout_s."""
        from tritonclient.utils import InferenceServerException

        client = self.liveness_client
        config = client.get_model_config(model, str(version), as_json=True,
                                         client_timeout=self.wedge_timeout_s)["config"]
        try:
            client.infer(model, probe_inputs(config, self.grpc), model_version=str(version),
                         client_timeout=self.wedge_timeout_s)
        except InferenceServerException as err:
            return "DEADLINE_EXCEEDED" not in str(err.status())
        return True

    def watch_liveness(self, stop: threading.Event) -> None:
        """The wedge watchdog (see the module docstring); runs beside run()'s loop."""
        from tritonclient.utils import InferenceServerException

        strikes = 0
        while not stop.wait(self.liveness_every_s):
            if self.server_pid is not None and not pid_alive(self.server_pid):
                return
            try:
                python = self.loaded_python_models(self.liveness_client, self.wedge_timeout_s)
                candidates = sorted((m, v) for m, versions in python.items() for v in versions)
                if not candidates:
                    strikes = 0
                    continue
                cheap = ("query_gate", "fusion")  # probes that cost nothing
                model, version = next((c for c in candidates if c[0] in cheap), candidates[0])
                answered = self.answers(model, version)
            except InferenceServerException as err:
                answered = "DEADLINE_EXCEEDED" not in str(err.status())
            except Exception:  # noqa: BLE001 - anything else is not a wedge
                answered = True
            strikes = 0 if answered else strikes + 1
            if strikes and strikes < self.wedge_strikes:
                self.log(f"supervisor: no answer from tritonserver within {self.wedge_timeout_s:g} s "
                         f"({strikes}/{self.wedge_strikes})")
            if strikes >= self.wedge_strikes:
                if self.server_pid is None:
                    self.log("supervisor: tritonserver has stopped answering; restart it")
                    strikes = 0
                    continue
                self.log(f"supervisor: tritonserver (pid {self.server_pid}) has stopped answering "
                         f"({strikes} probes without an answer in {self.wedge_timeout_s:g} s); killing it "
                         "so that it can be started again")
                try:
                    os.kill(self.server_pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                return

    def start_thread(self) -> tuple[threading.Thread, threading.Event]:
        stop = threading.Event()
        thread = threading.Thread(target=self.run, args=(stop,), name="triton-supervisor", daemon=True)
        thread.start()
        return thread, stop


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m productsearch.control.supervisor", description=__doc__.split("\n")[0])
    parser.add_argument("--url", required=True, help="tritonserver gRPC address")
    parser.add_argument("--pid", type=int, default=None, help="tritonserver's PID: watch its stubs, exit with it")
    parser.add_argument("--run-dir", type=Path, default=DEFAULT_RUN_DIR, help="where the admin key is")
    parser.add_argument("--interval", type=float, default=1.0)
    parser.add_argument("--probe-every", type=float, default=60.0)
    parser.add_argument("--liveness-every", type=float, default=float(os.environ.get("PRODUCTSEARCH_LIVENESS_EVERY_S", 30)),
                        help="seconds between wedge-watchdog probes")
    parser.add_argument("--wedge-timeout", type=float, default=float(os.environ.get("PRODUCTSEARCH_WEDGE_TIMEOUT_S", 30)),
                        help="a probe without an answer after this long is a strike (2 strikes: kill)")
    parser.add_argument("--max-shm-mb", type=float, default=float(os.environ.get("PRODUCTSEARCH_MAX_SHM_MB", 256)),
                        help="reload a model whose stub's shared-memory region holds more (MB)")
    parser.add_argument("--restart", action="store_true",
                        help="start tritonserver again when it dies (needs run-dir/triton.json: `make serve`)")
    parser.add_argument("--max-backoff", type=float, default=60.0, help="longest wait between restarts (s)")
    add_tls_arguments(parser)
    args = parser.parse_args(argv)
    tls = tls_from_args(args)

    def log(line: str) -> None:
        print(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {line}", flush=True)

    def watch(url: str, headers: dict[str, str], pid: int | None, tls: TlsOptions | None) -> Supervisor:
        return Supervisor(url, headers, pid, args.interval, args.probe_every, max_shm_mb=args.max_shm_mb,
                          liveness_every_s=args.liveness_every, wedge_timeout_s=args.wedge_timeout,
                          tls=tls, log=log)

    supervisor = watch(args.url, admin_headers(admin_key(args.run_dir)), args.pid, tls)
    log(f"supervisor: watching tritonserver {args.url} (pid {args.pid})")
    signal.signal(signal.SIGTERM, _exit_on_sigterm)  # `make stop`: leave run() (or a restart) at once
    restarts, child = Backoff(max_s=args.max_backoff), None
    try:
        while True:
            try:
                supervisor.run()
            finally:
                supervisor.close()
            if child is not None:  # one we started: reap it (and stubs it left)
                child.stop()
            if not args.restart or args.pid is None:
                return 0
            delay = restarts.next()
            log(f"supervisor: {exit_reason(args.run_dir)}; starting it again{f' in {delay:.0f} s' if delay else ''}")
            time.sleep(delay)
            server = restart_with_retries(args.run_dir, log, restarts)
            if server is None:
                log("supervisor: the service was stopped; exiting")
                return 0
            args.pid, child = server.pid, server
            supervisor = watch(server.grpc_url, server.admin_headers, server.pid, server.client_tls)
    except (KeyboardInterrupt, SystemExit):
        return 0


def _exit_on_sigterm(signum, frame):
    raise SystemExit(0)


if __name__ == "__main__":
    sys.exit(main())
