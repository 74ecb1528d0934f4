"""API keys of the service: the key store (`store`), scoped search tokens (`tokens`), the per-host
rate limiter (`bucket`) and the audit trail (`audit`). Imports only the standard library and core:
the stub runtime authorises requests with it, the control tools manage keys through the server."""
