"""How every snf command-line tool ends: exit codes and one-line errors.

Each console script and each Ganeti-facing shim is a few lines that call
``run_main(main, prog=...)``. ``run_main`` runs ``main`` and turns its outcome into what an
operator (or Ganeti, which keeps a hook's or provider's stderr) sees:

- ``main`` returns: the exit status is its return value (``None`` means 0);
- an snf error (:class:`snf.common.errors.SnfError`): one line ``prog: error: <message>`` on
  standard error and the error's ``exit_code`` (2 for bad configuration or input, else 1);
- Ctrl-C: ``prog: interrupted``, status 130;
- a bug (any other exception): one line ``prog: internal error: <class>: <message>`` and
  status 70 (EX_SOFTWARE). Set ``SNF_DEBUG=1`` in the environment to get the traceback too
  (for snf errors as well);
- argparse's usage errors and ``--help`` keep argparse's behaviour (status 2 and 0), and so
  does any other ``sys.exit()``.
"""

from __future__ import annotations

import contextlib
import os
import sys
import traceback
from collections.abc import Callable
from typing import NoReturn

from snf.common.errors import SnfError

EXIT_INTERNAL = 70
EXIT_INTERRUPTED = 130
DEBUG_ENV = "SNF_DEBUG"


def run_main(
    main: Callable[[list[str]], int | None], argv: list[str] | None = None, *, prog: str
) -> NoReturn:
    """Run ``main(argv)`` (default: ``sys.argv[1:]``) and exit as described above."""
    args = sys.argv[1:] if argv is None else argv
    debug = os.environ.get(DEBUG_ENV) == "1"
    try:
        code = main(args)
        sys.stdout.flush()
    except SnfError as exc:
        _fail(prog, f"error: {_one_line(str(exc))}", exc.exit_code, debug)
    except KeyboardInterrupt:
        _fail(prog, "interrupted", EXIT_INTERRUPTED, debug=False)
    except Exception as exc:
        text = _one_line(str(exc))
        what = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
        hint = "" if debug else f" (set {DEBUG_ENV}=1 for the traceback)"
        _fail(prog, f"internal error: {what}{hint}", EXIT_INTERNAL, debug)
    sys.exit(0 if code is None else code)


def _fail(prog: str, message: str, code: int, debug: bool) -> NoReturn:
    with contextlib.suppress(OSError, ValueError):
        sys.stdout.flush()
    if debug:
        traceback.print_exc(file=sys.stderr)
    print(f"{prog}: {message}", file=sys.stderr, flush=True)
    sys.exit(code)


def _one_line(text: str) -> str:
    """Keep a message on one line, whatever it holds."""
    return " ".join(line.strip() for line in text.splitlines() if line.strip())
