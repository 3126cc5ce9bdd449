"""NOWPayments (docs/external-apis.md, Part 2): the typed API client (`client`), the
payment and IPN models (`models`) and the IPN signature (`signature`). Transport only: when
a payment pays an order is `bitloot.payments.service`."""
