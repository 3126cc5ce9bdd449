"""Admin endpoints: payments, fulfillment timelines, retries and resends, all audited."""
