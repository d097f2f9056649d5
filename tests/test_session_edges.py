"""Edge cases of the socket-free session core (_session, _effects, _encode, _deadline) that
mutation testing showed no other test pinned down.  Plain asserts: no threads, no sockets."""

from __future__ import annotations
