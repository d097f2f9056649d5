"""``gwclient``: the command line, a thin layer over the public API.

    gwclient [global options] COMMAND [command options]

Commands: ``call METHOD``, ``health``, ``status``, ``watch``, ``pair``, ``connections``,
``demo``.  Global options (``--url``, ``--token``, ``--password``, ``--config``,
``--timeout``, ``--json``, ``-v``) are accepted before *or* after the command name.
The gateway is resolved like the library does (:meth:`GatewayConfig.from_environment`
with the options as overrides).

Exit codes:

===  ===========================================================================
0    success
1    gateway or request error (unreachable, refused, timed out, ``ok:false``...)
2    usage or configuration error (bad arguments, bad ``--params``, bad URL/config,
     a ``--config`` file that does not exist)
3    ``connections`` found a process holding more than one gateway connection
4    this device must be paired (approve it: ``openclaw devices approve <id>``)
130  interrupted (Ctrl-C); ``watch`` treats Ctrl-C as its normal end and exits 0
===  ===========================================================================

Errors are one line on stderr (``gwclient: error: <message>``); ``--verbose`` adds the
traceback and DEBUG logging.  Secrets (token, password, URL credentials) are never
printed: they are scrubbed from every message, log line and traceback.

Layout: :mod:`._main` (entry point, Ctrl-C, dispatch) and :mod:`._parser` import only the
standard library, so ``--help``, ``--version`` and usage errors never load the client;
a command's module (:mod:`._commands`, :mod:`._watch`, :mod:`._pair`) is imported once
its command is known.  :mod:`._invocation` holds one run's state (streams, secrets,
config, the connection), :mod:`._render` the human-readable summaries.
"""

from __future__ import annotations

from ._codes import EXIT_DUPLICATES, EXIT_FAILURE, EXIT_INTERRUPTED, EXIT_OK, EXIT_PAIRING, EXIT_USAGE
from ._main import main

__all__ = [
    "EXIT_DUPLICATES",
    "EXIT_FAILURE",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_PAIRING",
    "EXIT_USAGE",
    "main",
]
