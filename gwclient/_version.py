"""The version, in one place (setup.cfg reads it; nothing here imports gwclient)."""

__version__ = "0.1.0"
