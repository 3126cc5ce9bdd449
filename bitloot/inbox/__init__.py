"""Inbound webhooks, stored once: the one home of `webhook_events`, used by the NOWPayments
IPN (payments) and the Kinguin order webhook (fulfillment)."""
