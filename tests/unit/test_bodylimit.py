from __future__ import annotations

from collections.abc import Iterator

import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.testclient import TestClient

from drophost.errors import DrophostError
from drophost.web.bodylimit import BodyLimit, lower_body_limit


async def echo_size(request: Request) -> Response:
    if request.query_params.get("lower"):
        lower_body_limit(request, int(request.query_params["lower"]))
    return JSONResponse({"size": len(await request.body())})


async def never_reads(request: Request) -> Response:
    return JSONResponse({"read": False})


async def as_json(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, DrophostError)
    return JSONResponse(exc.to_json(), status_code=exc.status_code)


@pytest.fixture
def client() -> Iterator[TestClient]:
    capped = [Middleware(BodyLimit, max_bytes=100)]
    app = Starlette(
        routes=[
            Route("/echo", echo_size, methods=["POST"], middleware=capped),
            Route("/ignore", never_reads, methods=["POST"], middleware=capped),
        ],
        exception_handlers={DrophostError: as_json},
    )
    with TestClient(app) as client:
        yield client


def test_a_body_within_the_cap_is_read(client: TestClient) -> None:
    assert client.post("/echo", content=b"x" * 100).json() == {"size": 100}


def test_a_declared_length_over_the_cap_is_a_json_413(client: TestClient) -> None:
    answer = client.post("/echo", content=b"x" * 101)
    assert answer.status_code == 413
    assert answer.json() == {"error": "the request body is larger than the limit of 100 bytes"}


def test_a_streamed_body_is_counted_as_it_arrives(client: TestClient) -> None:
    answer = client.post("/echo", content=iter([b"x" * 60, b"x" * 60]))
    assert answer.status_code == 413 and "larger than the limit of 100 bytes" in answer.json()["error"]


def test_a_handler_can_lower_the_cap_but_never_raise_it(client: TestClient) -> None:
    assert client.post("/echo?lower=10", content=b"x" * 11).status_code == 413
    assert client.post("/echo?lower=10", content=b"x" * 10).json() == {"size": 10}
    assert client.post("/echo?lower=1000", content=b"x" * 101).status_code == 413


def test_a_body_nobody_reads_is_not_refused(client: TestClient) -> None:
    assert client.post("/ignore", content=b"x" * 1000).json() == {"read": False}
