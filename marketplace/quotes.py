"""Price quotes: what a job spec would cost and which hosts would take it. Creates nothing."""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

from accounts.models import Membership, User
from agent.metering import Rates
from config.errors import ValidationFailed
from hosts.models import Host
from marketplace.placement import (
    JobSpec,
    Ranked,
    hosts_rank,
    minimum_cap_micros,
    misfit_reason,
    ranked_entry,
)
from marketplace.placement_selectors import placement_candidate, placement_candidates


@dataclass(frozen=True)
class HostQuote:
    host_id: int
    name: str
    rates: Rates
    per_hour_micros: int
    estimate_micros: int
    minimum_cap_micros: int
    reliability: Fraction


@dataclass(frozen=True)
class Quote:
    """The best host's figures (None when no host fits) and every fitting host, best first."""

    per_hour_micros: int | None
    estimate_micros: int | None
    minimum_cap_micros: int | None
    hosts: list[HostQuote]
    host_misfit: str | None = None


def _host_quote(spec: JobSpec, ranked: Ranked) -> HostQuote:
    c = ranked.candidate
    return HostQuote(
        host_id=c.host_id,
        name=c.name,
        rates=c.rates,
        per_hour_micros=ranked.per_hour_micros,
        estimate_micros=ranked.estimate_micros,
        minimum_cap_micros=minimum_cap_micros(spec, c.rates),
        reliability=ranked.reliability,
    )


def quote_build(
    user: User,
    spec: JobSpec,
    *,
    host_id: int | None = None,
    max_cost_micros: int | None = None,
    pool_id: int | None = None,
) -> Quote:
    """Quote a chosen host, or every host auto placement could use (cheapest first); in a
    pool (an organisation the user belongs to), only the pool's hosts."""
    if (
        pool_id is not None
        and not Membership.objects.filter(user=user, organisation_id=pool_id).exists()
    ):
        raise ValidationFailed(
            "no such pool",
            code="unknown_pool",
            fields={"pool": [f"no pool #{pool_id} that you belong to"]},
        )
    if host_id is not None:
        try:
            chosen = placement_candidate(user, host_id, pool_id=pool_id)
        except Host.DoesNotExist:
            where = "that you may use" if pool_id is None else f"in pool #{pool_id}"
            raise ValidationFailed(
                "no such host",
                code="unknown_host",
                fields={"host": [f"no host #{host_id} {where}"]},
            ) from None
        why_not = misfit_reason(spec, chosen, max_cost_micros=max_cost_micros)
        ranked = [] if why_not else [ranked_entry(spec, chosen)]
    else:
        why_not = None
        candidates = placement_candidates(user, pool_id=pool_id)
        ranked = hosts_rank(spec, candidates, max_cost_micros=max_cost_micros)
    hosts = [_host_quote(spec, r) for r in ranked]
    best = hosts[0] if hosts else None
    return Quote(
        per_hour_micros=best.per_hour_micros if best else None,
        estimate_micros=best.estimate_micros if best else None,
        minimum_cap_micros=best.minimum_cap_micros if best else None,
        hosts=hosts,
        host_misfit=why_not,
    )
