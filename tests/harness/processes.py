"""The processes a test starts: nginx, and the app served by uvicorn in a thread."""

from __future__ import annotations

import subprocess
import threading
import time
from pathlib import Path

import uvicorn
from starlette.applications import Starlette

from drophost.pipeline.nginx import Nginx
from drophost.settings import Settings


def start_nginx(settings: Settings) -> tuple[Nginx, subprocess.Popen[bytes]]:
    nginx = Nginx(settings)
    nginx.prepare()
    return nginx, nginx.start()


def stop_process(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def serve_in_thread(settings: Settings, app: Starlette) -> tuple[uvicorn.Server, threading.Thread]:
    """The app under uvicorn on the settings' unix socket, as `drophost up` serves it behind nginx."""
    Path(settings.service_socket).unlink(missing_ok=True)
    config = uvicorn.Config(app, uds=settings.service_socket, lifespan="on", log_level="warning", access_log=False)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the service did not start")
        time.sleep(0.02)
    return server, thread


def stop_server(server: uvicorn.Server, thread: threading.Thread) -> None:
    server.should_exit = True
    thread.join(timeout=30)
