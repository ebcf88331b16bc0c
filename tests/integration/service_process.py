"""The service as a real process behind the test's nginx, configured only through DROPHOST_* variables."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx2 as httpx

from drophost.settings import Settings

# `drophost serve` listens on TCP; behind nginx the service listens on the settings' unix socket.
LAUNCHER = """
import os, uvicorn
from drophost.web.app import create_app
from drophost.settings import Settings
settings = Settings.from_env(os.environ)
uvicorn.run(create_app(settings), uds=settings.service_socket, log_level="warning", access_log=False)
"""


def service_environment(settings: Settings) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DROPHOST_") and k != "DATABASE_URL"}
    for spec in dataclasses.fields(settings):
        env[f"DROPHOST_{spec.name.upper()}"] = str(getattr(settings, spec.name))
    return env


class ServiceProcess:
    def __init__(self, settings: Settings, log_path: Path) -> None:
        self.settings = settings
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> ServiceProcess:
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-c", LAUNCHER],
                env=service_environment(self.settings),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd="/",
            )
        self.wait_healthy()
        return self

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def wait_healthy(self, timeout: float = 60) -> None:
        """Until /health through nginx answers 200 (the service started, migrated and reconciled)."""
        url = f"http://127.0.0.1:{self.settings.port}/health"
        deadline = time.monotonic() + timeout
        while True:
            assert self.running(), f"the service exited; see {self.log_path}:\n{self.log_path.read_text()[-3000:]}"
            try:
                if httpx.get(url, timeout=2, trust_env=False).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, f"the service did not become healthy; see {self.log_path}"
            time.sleep(0.05)

    def kill(self) -> None:
        """SIGKILL: no clean-up of any kind runs in the service."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
        if self.process is not None:
            self.process.wait(timeout=30)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()
