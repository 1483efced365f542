"""A large upload streams to disk: the server's memory hardly grows (a real rawbg process).

The full figure (1 GiB, side by side with FastAPI) is benchmarks/uploads.py's;
this holds the claim in CI at a quarter of that size.
"""

import socket

import pytest

from benchmarks import procstat, uploads

pytestmark = pytest.mark.slow

MiB = 1024 * 1024


def test_a_256_mib_upload_grows_the_servers_rss_by_a_few_mib_only(tmp_path):
    piece = memoryview(bytes(range(256)) * (uploads.SEND_PIECE // 256))
    with (
        uploads.running("rawbg", tmp_path) as (pid, port),
        socket.create_connection((uploads.HOST, port)) as sock,
    ):
        sock.settimeout(120)
        uploads.upload(sock, 10 * MiB, piece)  # warm: the spooled file path, the thread pool
        before = procstat.rss_bytes(pid)
        with uploads.RssSampler(pid) as sampler:
            uploads.upload(sock, 256 * MiB, piece)  # raises unless answered {"size": ...}
    growth = (sampler.peak - before) / MiB
    assert growth < 16, f"RSS grew by {growth:.1f} MiB during a 256 MiB upload"
