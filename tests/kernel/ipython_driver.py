"""A plain IPython shell in its own process, driven over stdin/stdout by the tests.

Each stdin line is a JSON ``{"code": ...}``; the cell runs in one ``InteractiveShell`` (so
``%load_ext`` and magics work as in a terminal IPython, with no Jupyter server around) and one
JSON line comes back: ``{"stdout": ..., "error": null | "..."}``.
"""

from __future__ import annotations

import contextlib
import io
import json
import sys


def main() -> None:
    from IPython.core.interactiveshell import InteractiveShell

    shell = InteractiveShell.instance()
    out = sys.stdout
    for line in sys.stdin:
        request = json.loads(line)
        buffer = io.StringIO()
        with contextlib.redirect_stdout(buffer):
            result = shell.run_cell(request["code"], store_history=False)
        error = None
        if not result.success:
            exc = result.error_in_exec or result.error_before_exec
            error = f"{type(exc).__name__}: {exc}"
        out.write(json.dumps({"stdout": buffer.getvalue(), "error": error}) + "\n")
        out.flush()


if __name__ == "__main__":
    main()
