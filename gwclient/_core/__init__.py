"""The pure floor: the protocol state machine, frames, effects, encoding, deadlines,
retry, pushes, refusals, handshake params, run and session reducers, payload views.

Inputs in, effects out: nothing here imports threading, socket, select, ssl, time, os,
queue, concurrent, pykka or websocket (``tests/test_layers.py`` keeps it so)."""
