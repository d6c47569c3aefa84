"""What the ledger needs from the apps above it, registered in code by those apps.

The ledger knows jobs and hosts only by id and imports neither (jobs -> marketplace -> hosts ->
ledger). Some of its features need their facts: reconciliation's job checks (is a job finished,
its cap: ``JobFactsProvider``), the billing reports' host names (``HostLabelsProvider``), the
wallet history's job names (``JobNamesProvider``) and an organisation report's usage of its
pool jobs (``PoolUsageProvider``). The app that knows them sets them here at startup, in its
``AppConfig.ready`` (``jobs.apps``: ``job_facts``, ``job_names``, ``pool_usage``;
``hosts.apps``: ``host_labels``); a reader follows the call from there. Unset, the job checks
are skipped (the run says so in ``checks``), reports show host ids only (and no usage) and the
wallet history job ids only. A test sets or clears one with
``monkeypatch.setattr(providers, ...)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ledger.history import JobNamesProvider
    from ledger.organisation_reports import PoolUsageProvider
    from ledger.reports import HostLabelsProvider
    from ledger.services.reconcile import JobFactsProvider


@dataclass
class Providers:
    job_facts: JobFactsProvider | None = None
    host_labels: HostLabelsProvider | None = None
    job_names: JobNamesProvider | None = None
    pool_usage: PoolUsageProvider | None = None


providers = Providers()
