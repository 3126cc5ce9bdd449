"""`bitloot demo` and `bitloot up`: the whole system on one machine with nothing configured."""
