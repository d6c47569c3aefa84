"""Writes of the blobs app (docs/data.md). They run in the caller's transaction, except the
collector, which is its own entry point.

- uploads (the tus engine): ``upload_create``, ``upload_locked``, ``upload_receive``,
  ``upload_abort``, ``digest_mismatch_error``, ``quota_used``
- holdings: ``holding_delete``
- content (small blobs the server writes itself: a group task's argument): ``blob_content_store``
- collect: ``blobs_collect``
- the agents' fetch URL: ``blob_fetch_url`` (``blobs.urls_for_agents``)
"""

from blobs.urls_for_agents import blob_fetch_url

__all__ = ["blob_fetch_url"]
