"""The host's blob cache: inputs fetched once per digest, verified, and shared by attempts.

Files live at ``<work_root>/cache/blobs/<sha[:2]>/<sha>`` (0444). A download goes to
``<sha>.part`` first and resumes from it with an HTTP Range request after a cut; the whole
file is hashed and compared with the digest before it is renamed into place, so nothing
unverified is ever used. Attempts hard-link cache files into their ``inputs/`` directory: a
file whose link count is above one is in use and is never evicted; the rest are evicted
oldest first (by mtime, touched on every use) down to ``max_bytes``. One download per digest
at a time: attempts prepare in threads, and the second waits for the first and then hits.

Two kinds of URL (docs/protocol.md "Data"):

- store: the platform's blob store. A relative URL ("/api/v1/blobs/fetch/<token>") is joined
  to the agent's server URL; an absolute http(s) URL is the operator's store (S3 presigned).
- url: the renter's own URL, fetched under the host's policy: https only, every address the
  name resolves to checked (no loopback, private, link-local, multicast or reserved address
  unless in ``allow_networks``), the connection pinned to the checked address (so a second
  DNS answer can't swap it), TLS verified against the name, no redirects, size capped.

A pool job (the offer's ``pool``, docs/pools.md "Inputs stay inside") adds its pool's rules
to the host's policy for that job only, where the host owner takes them (``pool_fetch``):
addresses inside the pool's networks and names matching its names are fetched although
private, over http too; every address is still checked and the connection pinned, and no
pool rule ever opens the host itself (loopback, link-local, multicast, unspecified). Its URL
inputs are cached apart (``pool-<id>/``), so a job outside the pool that states the same
digest never gets the institution's bytes from this cache; and only its URLs under a prefix
of the host's ``fetch_credentials_file`` get that prefix's headers.

Whose fault a failure is (agent/runtime/types.py Fault): on a renter URL a digest mismatch,
an HTTP 4xx or 5xx answer, a redirect, a size over the stated one and a refused address are
the renter's; connection errors, a full disk, and anything the platform's store does wrong
are the host's (the job runs elsewhere, uncharged).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import http.client
import ipaddress
import logging
import os
import re
import shutil
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

from agent import __version__
from agent.runtime.types import Fault, InputSpec, PoolSpec

log = logging.getLogger(__name__)

T = TypeVar("T")
READ_BYTES = 64 * 1024
CANCEL_POLL_SECONDS = 0.2
CACHE_DIR = ("cache", "blobs")
_DIGEST_NAME = re.compile(r"[0-9a-f]{64}(\.part)?")
_HOST_PATTERN = re.compile(r"(\*\.)?[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?")
_POOL_DIR = re.compile(r"pool-[0-9]{1,18}")
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolver = Callable[..., Sequence[tuple[Any, ...]]]


class FetchError(Exception):
    """An input could not be fetched; ``fault`` says whose fault it is."""

    def __init__(self, message: str, *, fault: Fault) -> None:
        super().__init__(message)
        self.fault: Fault = fault


class FetchCancelled(Exception):
    """The attempt was cancelled while its inputs were being fetched."""


class _Retry(Exception):
    """A try failed in a way another try may fix (a cut, a 5xx); the .part is kept."""

    def __init__(self, message: str, *, fault: Fault) -> None:
        super().__init__(message)
        self.fault: Fault = fault


@dataclass(frozen=True)
class FetchPolicy:
    """The host owner's rules for renter URLs (agent settings ``fetch_*``)."""

    allow_networks: tuple[Network, ...] = ()
    # Empty: any public name. Otherwise only these names ("*.example.org": its subdomains).
    allow_hosts: tuple[str, ...] = ()
    max_bytes: int = 5 * 1024 * 1024 * 1024
    timeout_seconds: float = 60.0
    # A pool job's rules, for that job only (``BlobCache.scope_for``): addresses inside
    # ``pool_networks`` and any address of a name matching ``pool_hosts`` are fetched although
    # private; never the host itself. ``http_inside``: http:// too, to those names and to
    # addresses inside ``allow_networks`` or ``pool_networks`` (every resolved one).
    pool_networks: tuple[Network, ...] = ()
    pool_hosts: tuple[str, ...] = ()
    http_inside: bool = False

    def __post_init__(self) -> None:
        if self.max_bytes < 1:
            raise ValueError("max_bytes must be positive")
        for name in (*self.allow_hosts, *self.pool_hosts):
            if not _HOST_PATTERN.fullmatch(name):
                raise ValueError(f"{name!r} is not a host name (or *.domain)")


@dataclass(frozen=True)
class FetchScope:
    """How one job's inputs are fetched: the policy, the cache's namespace for its URL inputs
    ("" shared; "pool-<id>" a pool's) and whether the host's credentials may be sent."""

    policy: FetchPolicy
    namespace: str = ""
    credentials: bool = False


class FetchCredentials:
    """Headers the host holds for URL prefixes (``fetch_credentials_file``): sent only to a
    URL of the same scheme, host and port whose path is under the prefix's. The values never
    appear in a repr, a log line or an error."""

    def __init__(self, rules: Sequence[tuple[str, Sequence[tuple[str, str]]]] = ()) -> None:
        self._rules: list[tuple[tuple[str, str, int, str], dict[str, str]]] = []
        for prefix, headers in rules:
            self._rules.append((_url_key(prefix, folder=True), dict(headers)))

    def __repr__(self) -> str:
        return f"FetchCredentials({len(self._rules)} prefixes)"

    def __bool__(self) -> bool:
        return bool(self._rules)

    def headers_for(self, url: str) -> dict[str, str]:
        """The headers of every prefix ``url`` is under (the longest prefix wins a clash)."""
        try:
            scheme, host, port, path = _url_key(url, folder=False)
        except ValueError:
            return {}
        found: dict[str, str] = {}
        matching = [
            (key, headers)
            for key, headers in self._rules
            if key[:3] == (scheme, host, port) and path.startswith(key[3])
        ]
        for _key, headers in sorted(matching, key=lambda rule: len(rule[0][3])):
            found.update(headers)
        return found


def _url_key(url: str, *, folder: bool) -> tuple[str, str, int, str]:
    """(scheme, host, port, path) of an http(s) URL; a prefix's path ends with "/"."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{url!r} is not an http(s) URL")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    path = parts.path or "/"
    if folder and not path.endswith("/"):
        path += "/"
    return parts.scheme, parts.hostname.lower().rstrip("."), port, path


def networks_parse(values: Sequence[str]) -> tuple[Network, ...]:
    """CIDRs as networks; ValueError naming the first bad one."""
    return tuple(ipaddress.ip_network(value.strip(), strict=False) for value in values)


_NAT64 = ipaddress.ip_network("64:ff9b::/96")


Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def _address(address: str) -> Address:
    ip: Address = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip


def _within(ip: Address, networks: Sequence[Network]) -> bool:
    return any(ip in network for network in networks if network.version == ip.version)


def _is_the_host_itself(ip: Address) -> bool:
    return ip.is_loopback or ip.is_link_local or ip.is_multicast or ip.is_unspecified


def address_refusal(address: str, policy: FetchPolicy, *, named_inside: bool = False) -> str | None:
    """Why a renter URL may not connect to ``address``, or None. An IPv6 address that carries
    an IPv4 one (IPv4-mapped, NAT64 64:ff9b::/96, 6to4) is judged by that one too.
    ``named_inside``: the URL's name matches the pool's names, so a private address is fine;
    the pool's rules never open the host itself."""
    ip = _address(address)
    if _within(ip, policy.allow_networks):
        return None
    inside = named_inside or _within(ip, policy.pool_networks)
    judged = [ip]
    if isinstance(ip, ipaddress.IPv6Address):
        if ip in _NAT64:
            judged.append(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
        if ip.sixtofour is not None:
            judged.append(ip.sixtofour)
    for one in judged:
        if inside and _is_the_host_itself(one):
            return f"{one} is a loopback, link-local or multicast address, which no pool opens"
        if not inside and (one.is_multicast or not one.is_global):
            return f"{one} is a loopback, private, link-local, multicast or reserved address"
    return None


def address_inside(address: str, policy: FetchPolicy) -> bool:
    """The address is inside a network the host or the job's pool lists (http may go there)."""
    ip = _address(address)
    return _within(ip, policy.allow_networks) or _within(ip, policy.pool_networks)


def _name_matches(host: str, patterns: Sequence[str]) -> bool:
    host = host.lower().rstrip(".")
    for pattern in patterns:
        if pattern.startswith("*.") and host.endswith(pattern[1:]):
            return True
        if host == pattern:
            return True
    return False


def host_allowed(host: str, policy: FetchPolicy) -> bool:
    if not policy.allow_hosts or _name_matches(host, policy.pool_hosts):
        return True
    return _name_matches(host, policy.allow_hosts)


def name_inside(host: str, policy: FetchPolicy) -> bool:
    """The name matches one of the job's pool's names (not an IP literal)."""
    try:
        ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return _name_matches(host, policy.pool_hosts)
    return False


class PinnedHTTPConnection(http.client.HTTPConnection):
    """Plain HTTP (a pool job's URL inside the institution) to addresses checked beforehand:
    the TCP connection goes to one of ``addresses``; the Host header is the name."""

    def __init__(self, host: str, port: int, *, addresses: Sequence[str], timeout: float) -> None:
        super().__init__(host, port, timeout=timeout)
        self._addresses = list(addresses)

    def connect(self) -> None:
        last: OSError = OSError(f"no address to connect to for {self.host}")
        for address in self._addresses:
            try:
                self.sock = socket.create_connection((address, self.port), self.timeout)
            except OSError as exc:
                last = exc
                continue
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            return
        raise last


class PinnedHTTPSConnection(http.client.HTTPSConnection):
    """HTTPS to addresses checked beforehand: the TCP connection goes to one of ``addresses``
    (in order), while SNI, certificate verification and the Host header use the name."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        addresses: Sequence[str],
        context: ssl.SSLContext,
        timeout: float,
    ) -> None:
        super().__init__(host, port, timeout=timeout, context=context)
        self._addresses = list(addresses)
        self._pinned_context = context

    def connect(self) -> None:
        last: OSError = OSError(f"no address to connect to for {self.host}")
        for address in self._addresses:
            try:
                sock = socket.create_connection((address, self.port), self.timeout)
            except OSError as exc:
                last = exc
                continue
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                self.sock = self._pinned_context.wrap_socket(sock, server_hostname=self.host)
            except BaseException:
                sock.close()
                raise
            return
        raise last


def context_with_ca(ca_bundle: str = "") -> ssl.SSLContext:
    """The system's CAs, plus ``ca_bundle`` where set (a private CA for the server)."""
    context = ssl.create_default_context()
    if ca_bundle:
        context.load_verify_locations(cafile=ca_bundle)
    return context


class BlobCache:
    """The cache and fetcher. Thread-safe; ``fetch`` is what attempts call."""

    def __init__(
        self,
        root: Path,
        *,
        max_bytes: int,
        server: str,
        policy: FetchPolicy | None = None,
        store_context: ssl.SSLContext | None = None,
        renter_context: ssl.SSLContext | None = None,
        resolver: Resolver = socket.getaddrinfo,
        tries: int = 4,
        retry_seconds: float = 1.0,
        pool_fetch: bool = False,
        credentials: FetchCredentials | None = None,
    ) -> None:
        if max_bytes < 0:
            raise ValueError("max_bytes must not be negative")
        self.root = root
        self.max_bytes = max_bytes
        self.server = server.rstrip("/")
        self.policy = policy or FetchPolicy()
        self.store_context = store_context or context_with_ca()
        self.renter_context = renter_context or context_with_ca()
        self.resolver = resolver
        self.tries = max(1, tries)
        self.retry_seconds = retry_seconds
        # The host owner's word on pools' fetch rules (agent setting ``pool_fetch``) and the
        # headers it holds for URL prefixes (``fetch_credentials_file``).
        self.pool_fetch = pool_fetch
        self.credentials = credentials or FetchCredentials()
        self._locks: dict[str, threading.Lock] = {}
        self._locks_guard = threading.Lock()
        self._evict_lock = threading.Lock()

    @classmethod
    def for_work_root(cls, work_root: Path, **kwargs: Any) -> BlobCache:
        return cls(work_root.joinpath(*CACHE_DIR), **kwargs)

    def path_of(self, sha256: str, namespace: str = "") -> Path:
        base = self.root / namespace if namespace else self.root
        return base / sha256[:2] / sha256

    def scope_for(self, pool: PoolSpec | None) -> FetchScope:
        """How a job's inputs are fetched: the host's policy; for a pool job the pool's rules
        added where the host takes them (``pool_fetch``), its URL inputs cached apart, and the
        host's credentials allowed (docs/pools.md "Inputs stay inside")."""
        if pool is None:
            return FetchScope(self.policy)
        policy = replace(self.policy, http_inside=True)
        if self.pool_fetch:
            policy = replace(
                policy,
                pool_networks=networks_parse(pool.fetch_networks),
                pool_hosts=tuple(pool.fetch_hosts),
            )
        return FetchScope(policy, namespace=f"pool-{pool.id}", credentials=True)

    def pool_refusal(self, pool: PoolSpec | None, inputs: Sequence[InputSpec]) -> str:
        """Why this host won't take a pool job's URL inputs, or "": where the host owner does
        not take pools' rules (``pool_fetch`` off), an input only those rules allow (an IP
        literal in the pool's networks, a name of its names) is refused up front, so the job
        goes to a pool host that does."""
        if pool is None or self.pool_fetch:
            return ""
        rules = FetchPolicy(
            pool_networks=networks_parse(pool.fetch_networks), pool_hosts=tuple(pool.fetch_hosts)
        )
        for ref in inputs:
            if ref.source != "url":
                continue
            host = (urlsplit(ref.url).hostname or "").rstrip(".")
            try:
                only_pool = address_inside(host, rules) and not address_inside(host, self.policy)
            except ValueError:  # a name
                only_pool = name_inside(host, rules) and not (
                    self.policy.allow_hosts and _name_matches(host, self.policy.allow_hosts)
                )
            if only_pool:
                return (
                    f"this host does not fetch from its pools' networks (pool_fetch is off): "
                    f"the input {ref.path!r}"
                )
        return ""

    # --- using a blob ----------------------------------------------------------------------

    def fetch(
        self,
        ref: InputSpec,
        use: Callable[[Path], T],
        *,
        is_cancelled: Callable[[], bool] = lambda: False,
        scope: FetchScope | None = None,
    ) -> T:
        """Make sure the verified blob is in the cache, then call ``use`` with its path while
        no eviction can take it (link it, open it). Raises FetchError or FetchCancelled.
        ``scope``: the job's (``scope_for``); None: the host's policy, the shared cache."""
        scope = scope or FetchScope(self.policy)
        namespace = scope.namespace if ref.source == "url" else ""
        lock = self._lock(f"{namespace}/{ref.sha256}")
        while not lock.acquire(timeout=0.5):  # another attempt downloads it: wait, then hit
            if is_cancelled():
                raise FetchCancelled
        try:
            path = self.path_of(ref.sha256, namespace)
            if path.exists():
                with contextlib.suppress(OSError):
                    os.utime(path)  # the LRU clock
            else:
                self._download(ref, path, is_cancelled, scope)
            result = use(path)
        finally:
            lock.release()
        self.evict()
        return result

    def _lock(self, sha256: str) -> threading.Lock:
        with self._locks_guard:
            return self._locks.setdefault(sha256, threading.Lock())

    # --- eviction --------------------------------------------------------------------------

    def evict(self) -> int:
        """Remove cache files, oldest first, until the cache holds at most ``max_bytes``;
        files in use (linked into an attempt, nlink > 1) or being fetched stay. Returns the
        bytes freed."""
        with self._evict_lock:
            entries: list[tuple[float, int, Path]] = []
            total = 0
            for path in self._files():
                try:
                    info = path.stat()
                except OSError:
                    continue
                total += info.st_size
                entries.append((info.st_mtime, info.st_size, path))
            freed = 0
            for _mtime, size, path in sorted(entries):
                if total - freed <= self.max_bytes:
                    break
                sha256 = path.name.removesuffix(".part")
                namespace = path.parent.parent.name if path.parent.parent != self.root else ""
                lock = self._lock(f"{namespace}/{sha256}")
                if not lock.acquire(blocking=False):  # being fetched or used right now
                    continue
                try:
                    if path.stat().st_nlink > 1:
                        continue
                    path.unlink()
                    freed += size
                except OSError:
                    continue
                finally:
                    lock.release()
            if freed:
                log.info("blob cache: evicted %d bytes", freed)
            return freed

    def _files(self) -> list[Path]:
        if not self.root.is_dir():
            return []
        found = []
        directories: list[Path] = []
        for directory in self.root.iterdir():
            if not directory.is_dir() or directory.is_symlink():
                continue
            if _POOL_DIR.fullmatch(directory.name):
                directories.extend(
                    d for d in directory.iterdir() if d.is_dir() and not d.is_symlink()
                )
            else:
                directories.append(directory)
        for directory in directories:
            for path in directory.iterdir():
                if _DIGEST_NAME.fullmatch(path.name) and path.is_file():
                    found.append(path)
        return found

    def used_bytes(self) -> int:
        return sum(path.stat().st_size for path in self._files())

    # --- downloading -----------------------------------------------------------------------

    def _download(
        self, ref: InputSpec, final: Path, is_cancelled: Callable[[], bool], scope: FetchScope
    ) -> None:
        renter = ref.source == "url"
        fault: Fault = "renter" if renter else "host"
        policy = scope.policy
        limit = ref.size if ref.size is not None else policy.max_bytes
        if renter and limit > policy.max_bytes:
            raise FetchError(
                f"it is {limit} bytes; this host fetches at most {policy.max_bytes}",
                fault="renter",
            )
        final.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        part = final.with_name(final.name + ".part")
        if ref.size is not None:
            self._disk_check(final.parent, ref.size, part)
        tries = 0
        while True:
            if is_cancelled():
                raise FetchCancelled
            try:
                self._download_once(ref, part, limit, is_cancelled, scope)
                break
            except _Retry as exc:
                if is_cancelled():  # the watch cut the connection
                    raise FetchCancelled from None
                tries += 1
                if tries >= self.tries:
                    raise FetchError(str(exc), fault=exc.fault) from None
                log.info("fetching %s: %s; trying again", ref.sha256[:12], exc)
            deadline = time.monotonic() + self.retry_seconds * tries
            while time.monotonic() < deadline:
                if is_cancelled():
                    raise FetchCancelled
                time.sleep(min(0.2, self.retry_seconds))
        size, digest = _file_digest(part)
        if digest != ref.sha256 or (ref.size is not None and size != ref.size):
            part.unlink(missing_ok=True)
            raise FetchError(
                f"its sha256 is {digest} ({size} bytes), not the stated {ref.sha256}",
                fault=fault,
            )
        os.chmod(part, 0o444)
        os.replace(part, final)

    def _disk_check(self, directory: Path, size: int, part: Path) -> None:
        have = part.stat().st_size if part.exists() else 0
        free = shutil.disk_usage(directory).free
        if size - have > free:
            raise FetchError("the host ran out of disk space", fault="host")

    def _download_once(
        self,
        ref: InputSpec,
        part: Path,
        limit: int,
        is_cancelled: Callable[[], bool],
        scope: FetchScope,
    ) -> None:
        have = part.stat().st_size if part.exists() else 0
        if have > limit:
            part.unlink()
            have = 0
        if ref.size is not None and have == ref.size:
            return  # complete already: verified next
        connection, target = self._connection(ref, scope.policy)
        headers = {"User-Agent": f"communipute-agent/{__version__}", "Accept-Encoding": "identity"}
        if ref.source == "url" and scope.credentials:
            # After every address check (in _connection); redirects are never followed, so
            # the headers reach only this URL's checked address.
            headers.update(self.credentials.headers_for(ref.url))
        if have:
            headers["Range"] = f"bytes={have}-"
        with _cancel_watch(connection, is_cancelled):
            self._exchange(ref, connection, target, headers, part, have, limit, is_cancelled)

    def _exchange(
        self,
        ref: InputSpec,
        connection: http.client.HTTPConnection,
        target: str,
        headers: dict[str, str],
        part: Path,
        have: int,
        limit: int,
        is_cancelled: Callable[[], bool],
    ) -> None:
        fault: Fault = "renter" if ref.source == "url" else "host"
        try:
            try:
                connection.request("GET", target, headers=headers)
                response = connection.getresponse()
            except ssl.SSLCertVerificationError as exc:
                raise FetchError(f"its TLS certificate is not valid: {exc}", fault=fault) from None
            except (OSError, http.client.HTTPException) as exc:
                raise _Retry(f"cannot reach it: {exc}", fault="host") from None
            status = response.status
            if status == 200:
                mode, have = "wb", 0
            elif status == 206 and have and _range_start(response) == have:
                mode = "ab"
            elif status in (206, 416):  # a range we did not ask for, or a stale .part
                part.unlink(missing_ok=True)
                raise _Retry(f"HTTP {status} to a resumed fetch; starting over", fault=fault)
            elif 300 <= status < 400:
                raise FetchError(f"HTTP {status}: redirects are not followed", fault=fault)
            elif status >= 500 or status in (408, 429):
                raise _Retry(f"HTTP {status}", fault=fault)
            else:
                raise FetchError(f"HTTP {status}", fault=fault)
            length = response.getheader("Content-Length")
            # http.client's read(n) ends quietly at a cut: the end is checked against this.
            expected = ref.size
            if length is not None and length.isdigit():
                expected = have + int(length)
                if expected > limit:
                    raise FetchError(f"it is larger than {limit} bytes", fault=fault)
            total = self._body_write(response, part, mode, have, limit, fault, is_cancelled)
            if expected is not None and total < expected:
                raise _Retry(f"the connection broke after {total} bytes", fault="host")
        finally:
            connection.close()

    def _body_write(
        self,
        response: http.client.HTTPResponse,
        part: Path,
        mode: str,
        have: int,
        limit: int,
        fault: Fault,
        is_cancelled: Callable[[], bool],
    ) -> int:
        """Append the body to the part; the part's size once the body ended."""
        flags = os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | (os.O_TRUNC if mode == "wb" else 0)
        descriptor = os.open(part, flags | (os.O_APPEND if mode == "ab" else 0), 0o600)
        with os.fdopen(descriptor, "wb") as handle:
            total = have
            while True:
                if is_cancelled():
                    raise FetchCancelled
                try:
                    chunk = response.read(READ_BYTES)
                except (OSError, http.client.HTTPException) as exc:
                    message = f"the connection broke after {total} bytes: {exc}"
                    raise _Retry(message, fault="host") from None
                if not chunk:
                    return total
                total += len(chunk)
                if total > limit:
                    raise FetchError(f"it is larger than {limit} bytes", fault=fault)
                try:
                    handle.write(chunk)
                except OSError as exc:
                    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                        raise FetchError("the host ran out of disk space", fault="host") from None
                    raise

    def _connection(
        self, ref: InputSpec, policy: FetchPolicy
    ) -> tuple[http.client.HTTPConnection, str]:
        timeout = policy.timeout_seconds
        if ref.source == "store":
            url = self.server + ref.url if ref.url.startswith("/") else ref.url
            parts = urlsplit(url)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise FetchError("the store URL is not an http(s) URL", fault="host")
            connection: http.client.HTTPConnection
            if parts.scheme == "https":
                connection = http.client.HTTPSConnection(
                    parts.hostname, parts.port, timeout=timeout, context=self.store_context
                )
            else:
                connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
            return connection, _target(parts.path, parts.query)
        parts = urlsplit(ref.url)
        if parts.scheme not in ("https", "http") or (
            parts.scheme == "http" and not policy.http_inside
        ):
            raise FetchError("only https:// URLs are fetched", fault="renter")
        if parts.username is not None or parts.password is not None or not parts.hostname:
            raise FetchError("the URL must name a host and no user or password", fault="renter")
        host = parts.hostname
        try:
            port = parts.port or (443 if parts.scheme == "https" else 80)
        except ValueError:
            raise FetchError("the URL's port is not valid", fault="renter") from None
        named_inside = name_inside(host, policy)
        if not host_allowed(host, policy):
            raise FetchError(f"this host does not fetch from {host}", fault="renter")
        addresses = self._resolve(host, port, policy, named_inside)
        if parts.scheme == "http":
            if not named_inside and not all(address_inside(a, policy) for a in addresses):
                raise FetchError(
                    f"http:// only inside the pool's networks and names; {host} is not",
                    fault="renter",
                )
            return (
                PinnedHTTPConnection(host, port, addresses=addresses, timeout=timeout),
                _target(parts.path, parts.query),
            )
        return (
            PinnedHTTPSConnection(
                host, port, addresses=addresses, context=self.renter_context, timeout=timeout
            ),
            _target(parts.path, parts.query),
        )

    def _resolve(
        self, host: str, port: int, policy: FetchPolicy, named_inside: bool = False
    ) -> list[str]:
        """Every address of ``host``, each checked; FetchError when any is refused (a name
        that resolves to both a public and a private address is refused too)."""
        try:
            infos = self.resolver(host, port, type=socket.SOCK_STREAM)
        except socket.gaierror as exc:
            fault: Fault = (
                "renter"
                if exc.errno in (socket.EAI_NONAME, getattr(socket, "EAI_NODATA", -5))
                else "host"
            )
            raise FetchError(f"the name {host} does not resolve: {exc}", fault=fault) from None
        addresses: list[str] = []
        for info in infos:
            address = str(info[4][0])
            refusal = address_refusal(address, policy, named_inside=named_inside)
            if refusal is not None:
                raise FetchError(
                    f"{host} resolves to {address}, which this host does not fetch from "
                    f"({refusal})",
                    fault="renter",
                )
            if address not in addresses:
                addresses.append(address)
        if not addresses:
            raise FetchError(f"the name {host} has no address", fault="renter")
        return addresses


@contextlib.contextmanager
def _cancel_watch(
    connection: http.client.HTTPConnection, is_cancelled: Callable[[], bool]
) -> Iterator[None]:
    """While a request is under way, a cancel shuts its socket down: a read that waits for a
    stalled server returns at once instead of after the timeout."""
    done = threading.Event()

    def watch() -> None:
        while not done.wait(CANCEL_POLL_SECONDS):
            if is_cancelled():
                sock = connection.sock
                if sock is not None:
                    with contextlib.suppress(OSError):
                        sock.shutdown(socket.SHUT_RDWR)
                return

    watcher = threading.Thread(target=watch, name="fetch-cancel-watch", daemon=True)
    watcher.start()
    try:
        yield
    finally:
        done.set()


def _target(path: str, query: str) -> str:
    return (path or "/") + (f"?{query}" if query else "")


def _range_start(response: http.client.HTTPResponse) -> int | None:
    match = re.fullmatch(r"bytes (\d+)-\d+/(\d+|\*)", response.getheader("Content-Range", ""))
    return int(match.group(1)) if match else None


def _file_digest(path: Path) -> tuple[int, str]:
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as handle:
        while chunk := handle.read(1024 * 1024):
            size += len(chunk)
            digest.update(chunk)
    return size, digest.hexdigest()
