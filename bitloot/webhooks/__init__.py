"""Outbound webhooks to storefronts: endpoints, signing secrets, the delivery of events."""
