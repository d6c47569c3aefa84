"""The run step's network for a private pool's job (docs/pools.md "The run step's network"):
a Docker bridge per pool whose packets may reach the CIDRs the pool lists and nothing else —
not the internet, not the host itself, not another job's container.

Where the host owner allows it (agent setting ``pool_job_networks``) and the pool lists
``job_networks``, the run container joins the network ``communipute-pool-<id>-<digest>``
(``digest``: this installation, the server and the sorted CIDRs), a bridge named
``cpp<digest>`` with inter-container traffic off, and before any container starts on it the
agent (root) writes, with ``iptables -w``:

- ``DOCKER-USER`` (Docker's chain, evaluated first in ``FORWARD``): ``-i cpp<digest> -j
  CP-<digest>``, and that chain: ESTABLISHED,RELATED back ACCEPT, ACCEPT ``-d`` each listed
  CIDR, DROP the rest: the internet, other private networks, the resolvers the host's DNS
  goes to (Docker's embedded resolver forwards a container's queries from the container's
  own namespace, so they pass this chain too);
- ``INPUT``: ``-i cpp<digest> -j CP-<digest>-IN``, that chain DROP: packets to the host's own
  addresses (its gateway on the bridge, its LAN address even inside a listed CIDR) never
  pass ``FORWARD``, so they are dropped here.

Only private IPv4 networks are opened (RFC 1918 and the other non-global ranges; never
``0.0.0.0/0``, loopback, link-local, multicast or ``0.0.0.0/8``); the network has no IPv6 and
the container turns IPv6 off (``net.ipv6.conf.all.disable_ipv6``), so no link-local IPv6
reaches the host either. The rules are written again before every start (flushed and
refilled: idempotent), so a rebooted host or a restarted ``dockerd`` gets them back before a
job runs; any failure raises ``PoolNetworkError`` and the job does not start (fail closed).
Networks of this installation whose digest is stale (the pool changed its list) are removed
with their rules once no container uses them.
"""

from __future__ import annotations

import hashlib
import ipaddress
import logging
import subprocess
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

LABEL_POOL = "communipute.pool"
LABEL_POOL_DIGEST = "communipute.pool.digest"
_NEVER = tuple(
    ipaddress.ip_network(value)
    for value in ("0.0.0.0/8", "127.0.0.0/8", "169.254.0.0/16", "224.0.0.0/3")
)
Iptables = Callable[[Sequence[str]], subprocess.CompletedProcess[str]]


class PoolNetworkError(RuntimeError):
    """The pool's network could not be set up as it must be; the job does not start."""


def job_network_problem(cidr: str) -> str:
    """Why this host won't open ``cidr`` to a pool job's run step, or ""."""
    try:
        network = ipaddress.ip_network(cidr.strip(), strict=False)
    except ValueError:
        return f"{cidr!r} is not a CIDR network"
    if not isinstance(network, ipaddress.IPv4Network):
        return f"{network} is not an IPv4 network (job networks have no IPv6)"
    if any(network.overlaps(never) for never in _NEVER):
        return f"{network} covers loopback, link-local, multicast or 0.0.0.0/8"
    if not network.is_private:
        return f"{network} is not a private network (never the internet)"
    return ""


@dataclass(frozen=True)
class PoolNetwork:
    name: str
    bridge: str
    chain: str
    networks: tuple[str, ...]

    @property
    def chain_in(self) -> str:
        return f"{self.chain}-IN"


def pool_network_for(
    pool_id: int, networks: Sequence[str], *, install_id: str, server_id: str
) -> PoolNetwork:
    cidrs = tuple(sorted({str(ipaddress.ip_network(n.strip(), strict=False)) for n in networks}))
    seed = f"{server_id}|{install_id}|{pool_id}|{','.join(cidrs)}"
    digest = hashlib.sha256(seed.encode()).hexdigest()[:10]
    return PoolNetwork(
        name=f"communipute-pool-{pool_id}-{digest}",
        bridge=f"cpp{digest}",  # an interface name: at most 15 characters
        chain=f"CP-{digest}",
        networks=cidrs,
    )


def iptables_run(args: Sequence[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["iptables", "-w", "10", *args], capture_output=True, text=True, timeout=30, check=False
    )


class PoolNetworks:
    """Makes and keeps the pools' run networks of one installation (thread-safe)."""

    def __init__(
        self,
        client: Any,
        *,
        install_id: str,
        server_id: str,
        labels: dict[str, str],
        iptables: Iptables = iptables_run,
    ) -> None:
        self.client = client
        self.install_id = install_id
        self.server_id = server_id
        self.labels = dict(labels)
        self.iptables = iptables
        self._lock = threading.Lock()

    def ensure(self, pool_id: int, networks: Sequence[str]) -> str:
        """The Docker network a job of this pool runs on, its rules written now; raises
        PoolNetworkError (nothing may start) when anything is not as it must be."""
        problems = [p for p in (job_network_problem(n) for n in networks) if p]
        if problems or not networks:
            raise PoolNetworkError("; ".join(problems) or "the pool lists no job networks")
        wanted = pool_network_for(
            pool_id, networks, install_id=self.install_id, server_id=self.server_id
        )
        with self._lock:
            self._prune(pool_id, keep=wanted.name)
            self._network_ensure(wanted, pool_id)
            self._rules_write(wanted)
        return wanted.name

    def remove(self, pool_id: int) -> None:
        """Remove this installation's networks of the pool and their rules (unused ones)."""
        with self._lock:
            self._prune(pool_id, keep="")

    # --- Docker ----------------------------------------------------------------------------

    def _own(self, pool_id: int) -> list[Any]:
        labels = [f"{LABEL_POOL}={pool_id}", *(f"{k}={v}" for k, v in self.labels.items())]
        filters = {"label": labels}
        return list(self.client.networks.list(filters=filters))

    def _network_ensure(self, wanted: PoolNetwork, pool_id: int) -> None:
        found = [n for n in self._own(pool_id) if n.name == wanted.name]
        if found:
            network = found[0]
            network.reload()
            options = network.attrs.get("Options") or {}
            if options.get("com.docker.network.bridge.name") != wanted.bridge or options.get(
                "com.docker.network.bridge.enable_icc"
            ) not in ("false", False):
                raise PoolNetworkError(f"the network {wanted.name} is not the one this agent made")
            return
        try:
            self.client.networks.create(
                wanted.name,
                driver="bridge",
                enable_ipv6=False,
                internal=False,
                options={
                    "com.docker.network.bridge.name": wanted.bridge,
                    "com.docker.network.bridge.enable_icc": "false",
                    "com.docker.network.bridge.enable_ip_masquerade": "true",
                },
                labels={
                    **self.labels,
                    LABEL_POOL: str(pool_id),
                    LABEL_POOL_DIGEST: wanted.chain.removeprefix("CP-"),
                },
            )
        except Exception as exc:
            raise PoolNetworkError(f"cannot create the network {wanted.name}: {exc}") from None
        log.info("pool %s: network %s for %s", pool_id, wanted.name, ", ".join(wanted.networks))

    def _prune(self, pool_id: int, *, keep: str) -> None:
        for network in self._own(pool_id):
            if network.name == keep:
                continue
            network.reload()
            if network.attrs.get("Containers"):
                continue  # a job still runs on the pool's old list; removed after it
            digest = str(network.attrs.get("Labels", {}).get(LABEL_POOL_DIGEST, ""))
            bridge = (network.attrs.get("Options") or {}).get("com.docker.network.bridge.name")
            try:
                network.remove()
            except Exception as exc:  # in use since the reload: the next ensure tries again
                log.info("pool %s: keeping %s for now (%s)", pool_id, network.name, exc)
                continue
            if digest and bridge:
                self._rules_drop(f"CP-{digest}", str(bridge))

    # --- iptables --------------------------------------------------------------------------

    def _must(self, *args: str) -> None:
        done = self.iptables(args)
        if done.returncode != 0:
            raise PoolNetworkError(
                f"iptables {' '.join(args)} failed ({done.returncode}): {done.stderr.strip()}"
            )

    def _has(self, *args: str) -> bool:
        return self.iptables(args).returncode == 0

    def _rules_write(self, wanted: PoolNetwork) -> None:
        if not self._has("-n", "-L", "DOCKER-USER"):
            raise PoolNetworkError(
                "Docker's DOCKER-USER chain is missing (is dockerd running with iptables off?)"
            )
        for chain in (wanted.chain, wanted.chain_in):
            if not self._has("-n", "-L", chain):
                self._must("-N", chain)
            self._must("-F", chain)
        self._must(
            "-A", wanted.chain, "-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED", "-j",
            "ACCEPT",
        )  # fmt: skip
        for cidr in wanted.networks:
            self._must("-A", wanted.chain, "-d", cidr, "-j", "ACCEPT")
        self._must("-A", wanted.chain, "-j", "DROP")
        self._must("-A", wanted.chain_in, "-j", "DROP")
        for parent, chain in (("DOCKER-USER", wanted.chain), ("INPUT", wanted.chain_in)):
            if not self._has("-C", parent, "-i", wanted.bridge, "-j", chain):
                self._must("-I", parent, "1", "-i", wanted.bridge, "-j", chain)

    def _rules_drop(self, chain: str, bridge: str) -> None:
        for parent, target in (("DOCKER-USER", chain), ("INPUT", f"{chain}-IN")):
            while self._has("-C", parent, "-i", bridge, "-j", target):
                self._must("-D", parent, "-i", bridge, "-j", target)
            if self._has("-n", "-L", target):
                self._must("-F", target)
                self._must("-X", target)
