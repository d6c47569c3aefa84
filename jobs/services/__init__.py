"""Writes of the jobs app. Import from the submodules; this index lists the public entries.

- submit: ``job_submit``            - cancel: ``job_cancel``
- dispatch: ``job_offer_next``, ``offer_expire``, ``attempt_lose``, ``jobs_reap``
- attempts: ``attempt_accept``, ``attempt_reject``, ``attempt_start``, ``attempt_finish``,
  ``attempt_budget_exhaust``
- usage (reports, docs/metering.md): ``usage_ingest_fast``, ``usage_ingest``,
  ``attempt_final_usage_record``; usage_async: ``usage_ingest_fast_async``
- leases (called by the hosts consumer): ``leases_renew``, ``welcome_decide``,
  ``cancels_pending``
- logs: ``log_append``, ``log_read``            - outputs: ``output_store``
- holds (ledger): ``job_fund``; the rest of a job's money is ``jobs.billing``
  (``usage_charges_post``, ``attempt_charges_reverse``, ``job_settle``)
"""
