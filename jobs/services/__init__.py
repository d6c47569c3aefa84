"""Writes of the jobs app. Import from the submodules; this index lists the public entries.
They run in the caller's transaction and never open a durable one: the entry points
(``jobs.apis``, ``jobs.tasks``, the agent socket's handlers) do.

- submit: ``job_submit``            - cancel: ``job_cancel``
- dispatch: ``job_offer_next``, ``offer_expire``, ``attempt_lose``; the reaper's
  work lists (its pass is ``jobs.tasks.jobs_reap_pass``)
- attempts: ``attempt_accept``, ``attempt_reject``, ``attempt_start``, ``attempt_finish``,
  ``attempt_budget_exhaust``
- usage (reports, docs/metering.md): ``usage_ingest_fast``, ``usage_ingest``,
  ``attempt_final_usage_record``; usage_async: ``usage_ingest_fast_async``
- leases (called by the hosts consumer): ``leases_renew``, ``welcome_decide``,
  ``cancels_pending``
- logs: ``log_append``, ``log_read``
- outputs (tus, docs/data.md): ``output_upload_create``, ``output_upload_receive``
- a job's money is ``jobs.billing`` (``job_hold_place``, ``usage_charges_post``,
  ``attempt_charges_reverse``, ``job_settle``)
"""
