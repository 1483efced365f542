"""FastAPI's synchronous test client, at its FastAPI path: ``rawbg.testclient.TestClient``.

It lives in `rawbg.testing.sync_client`, beside the async one (`rawbg.testing`).
"""

from rawbg.testing.sync_client import TestClient, TestResponse

__all__ = ["TestClient", "TestResponse"]
