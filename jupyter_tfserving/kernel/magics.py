"""``%tfserving``: the line magic ``%load_ext jupyter_tfserving`` registers.

Subcommands (``%tfserving help`` lists them): ``list`` / ``status [NAME]``, ``url``,
``canary NAME WEIGHT [VERSION]``, ``promote NAME``, ``rollback NAME``, ``unload NAME VERSION``,
``load NAME VERSION``, ``label NAME LABEL VERSION``, ``dashboard [NAME]``. Each calls the
management API over REST and prints the server's answer or error (never a traceback for a
server-side error); ``dashboard`` displays the live panel of ``kernel.widgets``.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable
from typing import Any

from .client import TFServingError
from .serving import connect

USAGE = """%tfserving list                      models, versions, states, labels, traffic
%tfserving status [NAME]             the same for one model, and where gRPC is served
%tfserving url                       where the REST API is
%tfserving canary NAME WEIGHT [V]    send WEIGHT (0..1) of NAME's traffic to version V
%tfserving promote NAME              the canary becomes stable
%tfserving rollback NAME             end the canary, or put the previous stable back
%tfserving unload NAME VERSION       stop serving a version (files stay)
%tfserving load NAME VERSION         serve an unloaded version again
%tfserving label NAME LABEL VERSION  set or move a version label
%tfserving dashboard [NAME]          a live panel of the models (or of NAME)
%tfserving export-config [PATH]      a models.config for tensorflow_model_server serving
                                     what is served now (printed, or written to PATH)"""


def format_models(models: list[dict[str, Any]]) -> str:
    """A plain-text table of models as the management API describes them."""
    if not models:
        return "No models."
    lines = []
    for model in models:
        traffic = ", ".join(f"v{v}: {share:.0%}" for v, share in model["traffic"].items())
        lines.append(f"{model['name']}  (traffic: {traffic or 'none'})")
        for entry in model["versions"]:
            labels = ",".join(entry["labels"])
            error = f"  error: {entry['error_message']}" if entry["error_message"] else ""
            lines.append(f"  v{entry['version']:<6} {entry['state']:<10} "
                         f"in-flight {entry['in_flight']:<4} {labels}{error}")
    return "\n".join(lines)


def tfserving_magic(line: str) -> None:
    """The body of ``%tfserving``."""
    args = shlex.split(line)
    command, rest = (args[0], args[1:]) if args else ("list", [])
    if command in ("help", "-h", "--help"):
        print(USAGE)
        return
    handlers: dict[str, tuple[int, Callable[..., Any]]] = {
        "canary": (2, lambda c, n, w, v=None: c.canary(n, float(w), int(v) if v else None)),
        "promote": (1, lambda c, n: c.promote(n)),
        "rollback": (1, lambda c, n: c.rollback(n)),
        "unload": (2, lambda c, n, v: c.unload(n, int(v))),
        "load": (2, lambda c, n, v: c.load(n, int(v))),
        "label": (3, lambda c, n, label, v: c.set_label(n, label, int(v))),
    }
    try:
        client = connect()
        if command in ("list", "status"):
            models = [client.model(rest[0])] if rest else client.models()
            print(format_models(models))
            if command == "status":
                print(f"gRPC: {client.grpc_target or 'not served'}")
        elif command == "export-config":
            handoff = client.tfserving_config()
            for skipped in handoff["skipped"]:
                print(f"# left out {skipped['name']}: {skipped['reason']}")
            if rest:
                with open(rest[0], "w", encoding="utf-8") as f:
                    f.write(handoff["model_config"])
                print(f"Wrote {rest[0]}: tensorflow_model_server --model_config_file={rest[0]}")
            else:
                print(handoff["model_config"], end="")
        elif command == "url":
            print(client.url)
        elif command == "dashboard":
            from IPython.display import display

            from .widgets import dashboard

            display(dashboard(rest[0] if rest else None, client=client))
        elif command in handlers:
            needed, fn = handlers[command]
            if len(rest) < needed:
                print(USAGE)
                return
            print(format_models([fn(client, *rest)]))
        else:
            print(f"Unknown subcommand {command!r}.\n{USAGE}")
    except (TFServingError, ValueError) as exc:
        print(f"jupyter_tfserving: {exc}")


def register(ipython: Any) -> None:
    """Register ``%tfserving`` and put ``serve``, ``dashboard``, ``bulk_predict`` and
    ``evaluate`` in the user namespace."""
    from .bulk import bulk_predict
    from .evaluation import evaluate
    from .serving import serve
    from .widgets import dashboard

    ipython.register_magic_function(tfserving_magic, magic_kind="line", magic_name="tfserving")
    ipython.push({"serve": serve, "dashboard": dashboard, "bulk_predict": bulk_predict,
                  "evaluate": evaluate})
