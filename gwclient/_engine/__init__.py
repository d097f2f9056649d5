"""The threaded floor: the channel (the core under one lock, its reader), the lifecycle
actor, the registry of bindings, the transport seam, timers, bounded queues,
subscriptions and the per-process runtime.  Imports ``_config``, ``_core``, ``_errors``."""
