"""Running kgen's own plugins inside the runtime's process.

A runtime runs a plugin by exec'ing the file CNI_PATH names. When that file is one of
kgen's wrappers (`write_wrappers`), exec'ing it only starts a Python that imports the
same module the agent has loaded already: three interpreter starts per pod (bridge,
its delegated host-local, loopback), most of a pod's set-up CPU. So for those files
the runtime calls the module's handler directly, with the same environment and
network configuration it would have passed, the same checks `plugin_main` makes
first, and the result as the JSON a plugin prints. Any other file (a reference
plugin put in its place, a different wrapper) is exec'd, and KGEN_CNI_EXEC=1 execs
kgen's too: the file in CNI_PATH stays the interface.
"""

from __future__ import annotations

import importlib
import json
import os
import re
from typing import cast

from generator.node.cni.spec import INTERNAL, CNIError, plugin_handlers, read_config, read_env
from generator.node.cni.types import CniResult, NetConf

WRAPPED = re.compile(r"^#!/bin/sh\n.* -m (generator\.node\.cni\.(?:bridge|host_local|loopback))"
                     r" \"\$@\"\n\Z")
_modules: dict[str, str | None] = {}  # wrapper file (path, mtime, size) -> module


def wrapped_module(path: str) -> str | None:
    """The kgen plugin module a wrapper file runs, or None for any other file."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    key = f"{path}\0{st.st_mtime_ns}\0{st.st_size}"
    if key not in _modules:
        try:
            with open(path, encoding="utf-8", errors="replace") as handle:
                match = WRAPPED.match(handle.read(4096))
        except OSError:
            match = None
        _modules[key] = match.group(1) if match else None
    return _modules[key]


def run_in_process(path: str, env: dict[str, str], conf: NetConf) -> tuple[bool, CniResult | None]:
    """(True, result) when the plugin at `path` ran here; (False, None) when it must be exec'd."""
    module = wrapped_module(path)
    command = env.get("CNI_COMMAND", "")
    if module is None or command not in ("ADD", "DEL", "CHECK") or \
            os.environ.get("KGEN_CNI_EXEC") == "1":
        return False, None
    # What plugin_main checks before it dispatches, on the same inputs.
    checked_env = read_env({**env})
    checked_conf = read_config(json.dumps(conf).encode())
    handler = plugin_handlers(importlib.import_module(module))[command]
    try:
        result = handler(checked_env, checked_conf)
    except CNIError:
        raise
    except Exception as err:  # what an exec'd plugin's traceback and exit status 1 say
        raise CNIError(INTERNAL, f"plugin {path} failed", f"{type(err).__name__}: {err}") from None
    # Through JSON, as from a plugin's stdout: the caller gets plain data it may keep.
    return True, cast(CniResult, json.loads(json.dumps(result))) if result is not None else None
