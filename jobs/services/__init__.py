"""Writes of the jobs app. Import from the submodules; this index lists the public entries.

- submit: ``job_submit``            - cancel: ``job_cancel``
- dispatch: ``job_offer_next``, ``offer_expire``, ``attempt_lose``, ``jobs_reap``
- attempts: ``attempt_accept``, ``attempt_reject``, ``attempt_start``, ``attempt_finish``,
  ``attempt_usage_record``
- leases (called by the hosts consumer): ``leases_renew``, ``welcome_decide``,
  ``cancels_pending``
- logs: ``log_append``, ``log_read``            - outputs: ``output_store``
- holds (ledger): ``job_fund``, ``job_settle``
"""
