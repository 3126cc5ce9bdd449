"""NOWPayments: IPN signature checking, the API client and its models."""
