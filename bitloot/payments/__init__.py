"""Payments: when a NOWPayments report pays an order (`service`), the IPN endpoint (`routes`)
and the reconciler (`tasks`). The NOWPayments client, models and signature are
`bitloot.nowpayments`."""
