"""Payment providers (Stripe, demo), Stripe webhooks, payouts to host owners.

Everything here that moves money calls the ledger's services; this package only talks to the
provider and routes its events.
"""
