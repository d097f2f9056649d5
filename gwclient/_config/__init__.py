"""Values and state files: GatewayConfig (frozen, hashable: the sharing key), the
environment and openclaw.json, the plaintext rule, proxies, locations, private files, the
device identity and token store.  Imports only ``_core`` and ``_errors``."""
