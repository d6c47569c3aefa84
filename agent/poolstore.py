"""A private pool's own output store, from the agent's side (docs/pools.md, "Outputs leave only
when released").

A pool may keep its jobs' outputs (and logs) on an S3-compatible store on the institution's
side: the offer's ``pool.output_store`` says where (endpoint, bucket, prefix, region), and the
credentials are this host's own settings (agent/config.py ``pool_store_*``), never sent to the
server. The agent writes each output to ``<prefix>jobs/<job>/<attempt>/outputs/<name>`` with
its sha256 as ``ChecksumSHA256`` (the store refuses other bytes) and tells the server only
names, sizes and digests; when a steward releases one, the server sends ``output.release``
and a host of the pool reads the object back, checks its digest and uploads it with tus.

boto3 is an optional extra of the agent (``pip install communipute-agent[pools]``), imported
only here and only when a pool job needs it: a host without it, or without credentials for the
pool, fails such a job as a host fault before running it.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent.config import AgentConfig, ConfigError
from agent.protocol import OutputRelease, PoolRef, PoolStore

logger = logging.getLogger("agent.pools")

NO_BOTO3_REASON = (
    "this host can't write to the pool's output store: the agent was installed without boto3 "
    "(pip install 'communipute-agent[pools]')"
)
_READ_BYTES = 1024 * 1024


def no_credentials_reason(pool_id: int) -> str:
    return (
        f"this host has no credentials for the output store of pool {pool_id} "
        "(pool_store_access_key_id / pool_store_credentials_file)"
    )


class PoolStoreError(Exception):
    """Writing or reading the pool's store failed (the host's side: its store, its network)."""


@dataclass(frozen=True)
class StoreCredentials:
    access_key_id: str
    secret_access_key: str
    session_token: str = ""


def credentials_file_read(path: Path) -> dict[str, StoreCredentials]:
    """A JSON object ``{"<pool id>" | "*": {access_key_id, secret_access_key,
    session_token?}}``; ValueError naming what is wrong."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ValueError(f"cannot read {path}: {exc}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path} must hold a JSON object of pool id -> credentials")
    found: dict[str, StoreCredentials] = {}
    for key, value in data.items():
        if key != "*" and not str(key).isdigit():
            raise ValueError(f"{path}: {key!r} is not a pool id (or '*')")
        if not isinstance(value, dict) or not all(
            isinstance(value.get(name), str) and value.get(name)
            for name in ("access_key_id", "secret_access_key")
        ):
            raise ValueError(f"{path}: pool {key} needs access_key_id and secret_access_key")
        token = value.get("session_token", "")
        if not isinstance(token, str):
            raise ValueError(f"{path}: pool {key}'s session_token must be a string")
        found[str(key)] = StoreCredentials(
            value["access_key_id"], value["secret_access_key"], token
        )
    return found


def _boto3_missing() -> bool:
    try:
        import boto3  # noqa: F401
    except ImportError:
        return True
    return False


class PoolStores:
    """This host's credentials for pools' stores: per pool id, else the one set ("*")."""

    def __init__(self, credentials: dict[str, StoreCredentials] | None = None) -> None:
        self.credentials = credentials or {}

    def credentials_for(self, pool_id: int) -> StoreCredentials | None:
        return self.credentials.get(str(pool_id)) or self.credentials.get("*")

    def problem(self, pool: PoolRef | None) -> str:
        """Why this host can't keep this pool job's outputs or log, or "" (also "" for a job
        that keeps nothing on a pool's store)."""
        if pool is None or not needs_store(pool):
            return ""
        if _boto3_missing():
            return NO_BOTO3_REASON
        if self.credentials_for(pool["id"]) is None:
            return no_credentials_reason(pool["id"])
        return ""

    def _client(self, pool_id: int, store: PoolStore) -> Any:
        import boto3
        from botocore.config import Config

        credentials = self.credentials_for(pool_id)
        if credentials is None:
            raise PoolStoreError(no_credentials_reason(pool_id))
        return boto3.client(
            "s3",
            endpoint_url=store["endpoint_url"],
            region_name=store["region"] or "us-east-1",
            aws_access_key_id=credentials.access_key_id,
            aws_secret_access_key=credentials.secret_access_key,
            aws_session_token=credentials.session_token or None,
            config=Config(retries={"max_attempts": 3, "mode": "standard"}),
        )

    def put(self, pool_id: int, store: PoolStore, key: str, path: Path, sha256: str) -> None:
        """Write ``path`` as ``key``, its sha256 sent as ``ChecksumSHA256`` so the store keeps
        only these bytes; then check what it holds: its stored checksum, or (a store that keeps
        none) the object read back and hashed. Blocking."""
        from botocore.exceptions import BotoCoreError, ClientError

        checksum = base64.b64encode(bytes.fromhex(sha256)).decode("ascii")
        client = self._client(pool_id, store)
        try:
            with path.open("rb") as body:
                client.put_object(
                    Bucket=store["bucket"], Key=key, Body=body, ChecksumSHA256=checksum
                )
            head = client.head_object(Bucket=store["bucket"], Key=key, ChecksumMode="ENABLED")
        except (BotoCoreError, ClientError, OSError) as exc:
            raise PoolStoreError(f"writing {key} to the pool's store failed: {exc}") from None
        stored = head.get("ChecksumSHA256")
        if stored is not None:
            if stored != checksum:
                raise PoolStoreError(f"the pool's store holds other bytes for {key}")
            return
        # A store that keeps no checksum (not every S3-compatible one does): read it back.
        self.fetch(pool_id, store, key, path.stat().st_size, sha256, None)

    def fetch(
        self, pool_id: int, store: PoolStore, key: str, size: int, sha256: str, into: Path | None
    ) -> None:
        """Read ``key``, checking its size and sha256 as it streams, into the file ``into``
        (None: only check it). A mismatch leaves no file. Blocking."""
        from botocore.exceptions import BotoCoreError, ClientError

        client = self._client(pool_id, store)
        digest, length = hashlib.sha256(), 0
        handle = into.open("wb") if into is not None else None
        try:
            body = client.get_object(Bucket=store["bucket"], Key=key)["Body"]
            for block in iter(lambda: body.read(_READ_BYTES), b""):
                length += len(block)
                if length > size:
                    break
                digest.update(block)
                if handle is not None:
                    handle.write(block)
        except (BotoCoreError, ClientError, OSError) as exc:
            raise PoolStoreError(f"reading {key} from the pool's store failed: {exc}") from None
        finally:
            if handle is not None:
                handle.close()
            if into is not None and (length != size or digest.hexdigest() != sha256):
                into.unlink(missing_ok=True)
        if length != size or digest.hexdigest() != sha256:
            raise PoolStoreError(
                f"{key} on the pool's store is not the output the job reported "
                f"({size} bytes, sha256 {sha256})"
            )


def pool_stores_from_config(config: AgentConfig) -> PoolStores:
    """The host's credentials: the file's per-pool sets, and the one set as "*" (the file's
    own "*" wins over it)."""
    found: dict[str, StoreCredentials] = {}
    if config.pool_store_access_key_id:
        found["*"] = StoreCredentials(
            config.pool_store_access_key_id,
            config.pool_store_secret_access_key,
            config.pool_store_session_token,
        )
    if config.pool_store_credentials_file:
        try:
            found |= credentials_file_read(Path(config.pool_store_credentials_file).expanduser())
        except ValueError as exc:
            raise ConfigError(f"pool_store_credentials_file: {exc}") from None
    return PoolStores(found)


def needs_store(pool: PoolRef) -> bool:
    """The pool keeps this job's outputs or its log on its own store."""
    return "output_store" in pool or pool["logs"] == "store"


def release_carry(
    stores: PoolStores,
    release: OutputRelease,
    upload: Any,
    work_dir: Path,
) -> bool:
    """``output.release``: read the approved output from the pool's store into a temporary file
    under ``work_dir``, check it, and hand it to ``upload(release_id, OutputFile)`` (the tus
    uploader, which raises on failure). False, logged, when it did not go through (the server
    sends it again later, maybe to another host). Blocking."""
    from agent.runtime.types import OutputFile

    problem = stores.problem(
        PoolRef(
            id=release["pool_id"],
            fetch_networks=[],
            fetch_hosts=[],
            job_networks=[],
            output_store=release["store"],
            logs="central",
            airlock=True,
        )
    )
    if problem:
        logger.warning("release %s: %s", release["release_id"], problem)
        return False
    folder = work_dir / "releases"
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    descriptor, name = tempfile.mkstemp(dir=folder, prefix=f"{release['release_id']}-")
    os.close(descriptor)
    path = Path(name)
    try:
        stores.fetch(
            release["pool_id"],
            release["store"],
            release["key"],
            release["size"],
            release["sha256"],
            path,
        )
        upload(
            release["release_id"],
            OutputFile(release["name"], release["size"], release["sha256"], path),
        )
    except Exception as exc:  # the store, the network, the server's refusal: try again later
        logger.warning("release %s of %s failed: %s", release["release_id"], release["key"], exc)
        return False
    finally:
        path.unlink(missing_ok=True)
    logger.info("released %s (job %s) to the server", release["name"], release["job_id"])
    return True
