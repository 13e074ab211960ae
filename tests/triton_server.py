"""A real Triton Inference Server for tests: the binary that ``nvidia-pytriton`` bundles.

PyTriton pins numpy<2, so it lives in an environment of its own, ``.venv-triton`` at the
repository root (``make triton-env`` builds it; ``$DUSKWATCH_TRITON_VENV`` points elsewhere).
Its server has only the Python backend, which runs our ``model.py`` (ONNX Runtime inside) in
that environment. The backend's stub must load the same libpython as the environment's
interpreter, so ``LIBDIR`` goes first on ``LD_LIBRARY_PATH``.

The server is started on free loopback ports with ``--model-control-mode=explicit`` (every
model in the repository is loaded at start; a test may unload one to make the server answer
errors) and can be killed, frozen (SIGSTOP), thawed and restarted on the same ports.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def triton_venv() -> Path:
    return Path(os.environ.get("DUSKWATCH_TRITON_VENV", ROOT / ".venv-triton"))


def triton_missing() -> str | None:
    """Why the bundled server cannot run here, or None."""
    venv = triton_venv()
    if not (venv / "bin" / "python").exists():
        return (f"no Triton test environment at {venv}: run `make triton-env` (nvidia-pytriton "
                "with onnxruntime, numpy<2, kept apart from .venv)")
    if _pytriton_dir(venv) is None:
        return f"{venv} has no pytriton/tritonserver: run `make triton-env` again"
    try:
        import tritonclient.grpc  # noqa: F401
    except ImportError:
        return "tritonclient is not installed in this environment: pip install -e '.[triton]'"
    return None


def _pytriton_dir(venv: Path) -> Path | None:
    hits = sorted(venv.glob("lib/python3*/site-packages/pytriton/tritonserver"))
    return hits[0] if hits else None


def _env_python(venv: Path, code: str) -> str:
    return subprocess.run([str(venv / "bin" / "python"), "-c", code], check=True,
                          capture_output=True, text=True).stdout.strip()


def free_port() -> int:
    from tests.conftest import free_port as fp

    return fp()


class TritonServer:
    """The bundled tritonserver on ``repo``; ``grpc_url``/``http_url``/``metrics_url``."""

    def __init__(self, repo: Path, workdir: Path):
        self.repo, self.workdir = Path(repo), Path(workdir)
        self.venv = triton_venv()
        self.grpc_port, self.http_port, self.metrics_port = free_port(), free_port(), free_port()
        self.proc: subprocess.Popen | None = None
        self.log = self.workdir / "tritonserver.log"
        self._server_dir = _pytriton_dir(self.venv)
        self._backends = self._backend_dir()
        self._env = self._environment()

    def _backend_dir(self) -> Path:
        """Triton's Python backend with the stub for this environment's Python version."""
        version = _env_python(self.venv, "import sys;print(f'{sys.version_info[0]}.{sys.version_info[1]}')")
        out = self.workdir / "backends"
        if not (out / "python").is_dir():
            shutil.copytree(self._server_dir / "backends" / "python", out / "python")
            for f in (self._server_dir / "python_backend_stubs" / version).iterdir():
                shutil.copy2(f, out / "python" / f.name)
        return out

    def _environment(self) -> dict[str, str]:
        libdir = _env_python(self.venv, "import sysconfig;print(sysconfig.get_config_var('LIBDIR'))")
        libs = sorted(self.venv.glob("lib/python3*/site-packages/nvidia_pytriton.libs"))
        env = dict(os.environ)
        env["LD_LIBRARY_PATH"] = ":".join([libdir, *map(str, libs), env.get("LD_LIBRARY_PATH", "")])
        env["PATH"] = f"{self.venv / 'bin'}:{env.get('PATH', '')}"
        env.pop("PYTHONPATH", None)
        env["OMP_NUM_THREADS"] = env.get("OMP_NUM_THREADS", "1")
        return env

    @property
    def grpc_address(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    def url(self, model: str, scheme: str = "triton", **opts: str) -> str:
        port = self.http_port if "http" in scheme else self.grpc_port
        query = "&".join(f"{k}={v}" for k, v in opts.items())
        return f"{scheme}://127.0.0.1:{port}/{model}" + (f"?{query}" if query else "")

    @property
    def metrics_target(self) -> str:
        return f"127.0.0.1:{self.metrics_port}"

    def start(self, timeout: float = 60.0) -> "TritonServer":
        cmd = [str(self._server_dir / "bin" / "tritonserver"),
               f"--model-repository={self.repo}", f"--backend-directory={self._backends}",
               f"--cache-directory={self._server_dir / 'caches'}",
               "--model-control-mode=explicit", "--load-model=*",
               f"--grpc-port={self.grpc_port}", f"--http-port={self.http_port}",
               f"--metrics-port={self.metrics_port}", "--grpc-address=127.0.0.1",
               "--http-address=127.0.0.1", "--allow-gpu-metrics=false", "--exit-timeout-secs=2",
               "--log-verbose=0"]
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(cmd, env=self._env, stdout=log, stderr=subprocess.STDOUT,
                                         start_new_session=True)
        self.wait_ready(timeout)
        return self

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}/v2/health/ready",
                                        timeout=1) as r:
                return r.status == 200
        except (OSError, urllib.error.URLError):
            return False

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                break
            if self.ready():
                return
            time.sleep(0.1)
        tail = self.log.read_text(errors="replace")[-3000:] if self.log.exists() else ""
        self.stop()
        raise RuntimeError(f"tritonserver did not become ready in {timeout:g} s; log:\n{tail}")

    # -- faults ------------------------------------------------------------------------------
    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def freeze(self) -> None:
        """SIGSTOP the server process (not its Python-backend stubs): connections are accepted
        and nothing answers, as from an overloaded server. Stopping the stubs too makes the
        2.51 Python backend crash on SIGCONT (a boost interprocess lock error, then SIGSEGV)."""
        os.kill(self.proc.pid, signal.SIGSTOP)

    def thaw(self) -> None:
        os.kill(self.proc.pid, signal.SIGCONT)

    def restart(self, timeout: float = 60.0) -> "TritonServer":
        self.kill()
        return self.start(timeout)

    def unload(self, model: str) -> None:
        self._repository("unload", model)

    def load(self, model: str) -> None:
        self._repository("load", model)

    def _repository(self, action: str, model: str) -> None:
        req = urllib.request.Request(
            f"http://127.0.0.1:{self.http_port}/v2/repository/models/{model}/{action}",
            data=json.dumps({}).encode(), method="POST")
        with urllib.request.urlopen(req, timeout=60) as r:
            assert r.status == 200, r.read()

    def metrics_text(self) -> str:
        with urllib.request.urlopen(f"http://{self.metrics_target}/metrics", timeout=5) as r:
            return r.read().decode()

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGCONT)
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(10)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                self.kill()
        self.proc = None


def write_test_repository(repo: Path, detector_onnx: Path, name: str = "yolo", **opts) -> Path:
    """A CPU repository (Python backend, ONNX Runtime, one thread) for one detector export."""
    from export.triton_repo import RepoOptions, write_repository

    options = RepoOptions(server="cpu", runtime="onnxruntime", threads=1, **opts)
    write_repository(repo, {name: ("detector", detector_onnx)}, options)
    return repo


if __name__ == "__main__":  # serve a repository by hand: python -m tests.triton_server REPO
    srv = TritonServer(Path(sys.argv[1]), Path(sys.argv[2] if len(sys.argv) > 2 else "/tmp")).start()
    print(f"grpc {srv.grpc_address} http {srv.http_port} metrics {srv.metrics_port}", flush=True)
    try:
        srv.proc.wait()
    except KeyboardInterrupt:
        srv.stop()
