"""Testing an app: ``from rawbg.testing import serve_app``, or FastAPI's ``TestClient``.

Two clients, each a real rawbg server on a free port (or in memory):

* `serve_app` (`rawbg.testing.async_client`): ``async with serve_app(app) as
  client``, for async tests, with ``await client.wait_for_background()``;
* `TestClient` (`rawbg.testing.sync_client`): FastAPI's synchronous client,
  also importable as ``rawbg.testclient.TestClient`` (FastAPI's path).
"""

from rawbg.testing.async_client import AsyncClient, serve_app
from rawbg.testing.sync_client import TestClient, TestResponse

__all__ = ["AsyncClient", "TestClient", "TestResponse", "serve_app"]
