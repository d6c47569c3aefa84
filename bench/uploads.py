"""A big tus upload through a real daphne, cut mid-PATCH and resumed, and daphne's memory.

One renter (an API token) uploads ``--mb`` MiB (default 1024) in 8 MiB PATCHes to a daphne
subprocess on loopback (config.asgi, the local-disk blob store in a temporary folder). Halfway
the client sends a PATCH's headers and half its body, then closes the connection; it HEADs for
the offset and resends from there. The bytes are made on the fly from a seed (the client never
holds more than one part), and the stored blob is hashed again from disk at the end: it must
have the digest the client stated.

It prints daphne's RSS before the upload (the baseline), its peak during the upload (sampled
every 20 ms with psutil) and the growth, the throughput, and fails when the growth is 50 MB or
more: the body of a PATCH is spooled to disk by twisted and by Django's ASGI handler, parts and
blobs stream through the store in 64 KiB reads (docs/data.md, "Memory").

Run: ``python -m bench.uploads [--mb N]``; needs PostgreSQL (``DATABASE_URL``). It uses a
scratch database and drops it.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import http.client
import os
import socket
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import psutil

from bench._django import django_setup, scratch_database
from bench._processes import daphne_start, free_port

PART = 8 * 1024 * 1024
RSS_GROWTH_LIMIT = 50 * 1024 * 1024


@dataclass(frozen=True)
class Result:
    size: int
    sha256: str
    stored_sha256: str
    rss_before: int
    rss_peak: int
    seconds: float
    cut_at: int
    resumed_from: int

    @property
    def growth(self) -> int:
        return self.rss_peak - self.rss_before

    def report(self) -> str:
        mib = 1024 * 1024
        return (
            f"uploaded {self.size / mib:.0f} MiB in {self.seconds:.1f} s "
            f"({self.size / mib / self.seconds:.0f} MiB/s), cut at byte {self.cut_at} and "
            f"resumed from {self.resumed_from}; digest {'ok' if self.ok else 'MISMATCH'}\n"
            f"daphne RSS: {self.rss_before / mib:.1f} MiB before (baseline), "
            f"{self.rss_peak / mib:.1f} MiB peak, growth {self.growth / mib:.1f} MiB "
            f"(limit {RSS_GROWTH_LIMIT / mib:.0f})"
        )

    @property
    def ok(self) -> bool:
        return self.stored_sha256 == self.sha256


def part_bytes(index: int) -> bytes:
    """Part ``index`` of the upload: deterministic, different for every part."""
    seed = hashlib.sha256(index.to_bytes(8, "big")).digest()
    return (seed * (PART // len(seed) + 1))[:PART]


def parts(size: int) -> Iterator[tuple[int, bytes]]:
    for index in range((size + PART - 1) // PART):
        yield index * PART, part_bytes(index)[: min(PART, size - index * PART)]


def digest_of(size: int) -> str:
    digest = hashlib.sha256()
    for _, data in parts(size):
        digest.update(data)
    return digest.hexdigest()


class RssSampler(threading.Thread):
    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.process = psutil.Process(pid)
        self.peak = self.process.memory_info().rss
        self.running = True

    def run(self) -> None:
        while self.running:
            self.peak = max(self.peak, self.process.memory_info().rss)
            time.sleep(0.02)


class TusClient:
    def __init__(self, port: int, token: str) -> None:
        self.port = port
        self.headers = {"Authorization": f"Token {token}", "Tus-Resumable": "1.0.0"}

    def _call(
        self, method: str, path: str, body: bytes = b"", **headers: str
    ) -> tuple[int, dict[str, str]]:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)
        try:
            connection.request(method, path, body=body, headers={**self.headers, **headers})
            response = connection.getresponse()
            response.read()
            return response.status, {k.lower(): v for k, v in response.getheaders()}
        finally:
            connection.close()

    def create(self, size: int, sha256: str) -> str:
        meta = f"sha256 {base64.b64encode(sha256.encode()).decode()}"
        status, headers = self._call(
            "POST", "/api/v1/uploads/", b"", **{"Upload-Length": str(size), "Upload-Metadata": meta}
        )
        assert status == 201, status
        return headers["location"]

    def patch(self, location: str, offset: int, data: bytes) -> int:
        status, headers = self._call(
            "PATCH",
            location,
            data,
            **{"Upload-Offset": str(offset), "Content-Type": "application/offset+octet-stream"},
        )
        assert status == 204, (status, headers)
        return int(headers["upload-offset"])

    def patch_cut(self, location: str, offset: int, data: bytes) -> None:
        """Headers and half the body, then the connection closes (a network cut)."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=30) as raw:
            head = [
                f"PATCH {location} HTTP/1.1",
                f"Host: 127.0.0.1:{self.port}",
                *(f"{k}: {v}" for k, v in self.headers.items()),
                f"Upload-Offset: {offset}",
                "Content-Type: application/offset+octet-stream",
                f"Content-Length: {len(data)}",
            ]
            raw.sendall(("\r\n".join(head) + "\r\n\r\n").encode())
            raw.sendall(data[: len(data) // 2])

    def offset(self, location: str) -> int:
        status, headers = self._call("HEAD", location)
        assert status == 200, status
        return int(headers["upload-offset"])


def upload_through_daphne(size: int, database_url: str, blob_dir: Path, log: Path) -> Result:
    """The measurement, against the database of ``database_url`` (migrated, Django set up)."""
    from accounts.models import User
    from accounts.services import api_token_create

    user = User.objects.create_user(username=f"bench-{os.getpid()}-{time.time_ns()}")
    _, token = api_token_create(user=user, name="bench")
    port = free_port()
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings_test",
        "DATABASE_URL": database_url,
        "BLOB_DIR": str(blob_dir),
        "BLOB_STORE": "filesystem",
        "BLOB_QUOTA_BYTES": str(size * 2),
    }
    daphne = daphne_start(port, env, log)
    try:
        return upload_measured(TusClient(port, token), daphne.pid, size, blob_dir)
    finally:
        daphne.kill()
        daphne.wait(30)


def upload_measured(client: TusClient, pid: int, size: int, blob_dir: Path) -> Result:
    """Upload ``size`` bytes through ``client`` with the cut, sampling the RSS of the server
    process ``pid``; ``blob_dir``: its BLOB_DIR, where the stored blob is hashed again."""
    sha256 = digest_of(size)
    location = client.create(size, sha256)  # warms daphne's code paths before the baseline
    time.sleep(0.5)
    sampler = RssSampler(pid)
    rss_before = sampler.peak
    sampler.start()
    started = time.monotonic()
    cut_index = (size // PART) // 2
    cut_at = resumed_from = 0
    for offset, data in parts(size):
        if offset // PART == cut_index and not cut_at:
            cut_at = offset + len(data) // 2
            client.patch_cut(location, offset, data)
            resumed_from = client.offset(location)
            assert resumed_from == offset, (resumed_from, offset)
        client.patch(location, offset, data)
    seconds = time.monotonic() - started
    sampler.running = False
    sampler.join()
    stored = hashlib.sha256()
    with (blob_dir / "blobs" / sha256[:2] / sha256).open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            stored.update(block)
    return Result(
        size=size,
        sha256=sha256,
        stored_sha256=stored.hexdigest(),
        rss_before=rss_before,
        rss_peak=sampler.peak,
        seconds=seconds,
        cut_at=cut_at,
        resumed_from=resumed_from,
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.uploads", description=__doc__)
    parser.add_argument("--mb", type=int, default=1024, help="upload size in MiB (default 1024)")
    args = parser.parse_args(argv)
    django_setup()
    from django.db import connection

    with scratch_database("bench_uploads") as name, tempfile.TemporaryDirectory() as folder:
        db = connection.settings_dict
        password = f":{db['PASSWORD']}" if db.get("PASSWORD") else ""
        url = f"postgres://{db['USER']}{password}@{db['HOST']}:{db['PORT'] or 5432}/{name}"
        result = upload_through_daphne(
            args.mb * 1024 * 1024, url, Path(folder) / "blobs", Path(folder) / "daphne.log"
        )
        connection.close()
    print(result.report())
    if not result.ok:
        print("FAIL: the stored blob does not have the stated digest")
        return 1
    if result.growth >= RSS_GROWTH_LIMIT:
        print("FAIL: daphne's RSS grew by 50 MB or more")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
