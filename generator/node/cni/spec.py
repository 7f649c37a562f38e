"""CNI 1.0.0 plumbing shared by kgen's plugins: environment, config, errors, exec.

Plugins are executables: parameters in CNI_* environment variables, the
network configuration as JSON on stdin, the result (or an error object) as
JSON on stdout; exit status 1 on error.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from typing import Any, cast

from generator.node import proc
from generator.node.cni.types import CniResult, ErrorDoc, NetConf

SUPPORTED_VERSIONS = ["0.3.0", "0.3.1", "0.4.0", "1.0.0"]

# Error codes of the CNI specification.
INCOMPATIBLE_VERSION = 1
UNSUPPORTED_FIELD = 2
UNKNOWN_CONTAINER = 3
INVALID_ENV = 4
IO_FAILURE = 5
DECODE_FAILURE = 6
INVALID_CONFIG = 7
TRY_AGAIN_LATER = 11
INTERNAL = 999  # what the reference plugins answer for their own errors


class CNIError(Exception):
    def __init__(self, code: int, msg: str, details: str = "") -> None:
        super().__init__(msg)
        self.code, self.msg, self.details = code, msg, details

    def to_json(self, version: str = "1.0.0") -> ErrorDoc:
        doc: ErrorDoc = {"cniVersion": version, "code": self.code, "msg": self.msg}
        if self.details:
            doc["details"] = self.details
        return doc

    def __str__(self) -> str:
        return f"{self.msg} (code {self.code}{': ' + self.details if self.details else ''})"


REQUIRED_ENV = {
    "ADD": ("CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME", "CNI_PATH"),
    "DEL": ("CNI_CONTAINERID", "CNI_IFNAME", "CNI_PATH"),
    "CHECK": ("CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME", "CNI_PATH"),
    "VERSION": (),
}


def read_env(environ: dict[str, str]) -> dict[str, str]:
    command = environ.get("CNI_COMMAND", "")
    if not command:
        raise CNIError(INVALID_ENV, "required env variables [CNI_COMMAND] missing")
    if command not in REQUIRED_ENV:
        raise CNIError(INVALID_ENV, f"unknown CNI_COMMAND: {command}")
    missing = [k for k in REQUIRED_ENV[command] if not environ.get(k)]
    if missing:
        raise CNIError(INVALID_ENV, f"required env variables [{','.join(missing)}] missing")
    return {k: v for k, v in environ.items() if k.startswith("CNI_")}


def read_config(raw: bytes) -> NetConf:
    try:
        conf = json.loads(raw or b"{}")
    except ValueError as err:
        raise CNIError(DECODE_FAILURE, "decoding version from network config", str(err)) from None
    if not isinstance(conf, dict):
        raise CNIError(DECODE_FAILURE, "decoding version from network config",
                       "not a JSON object")
    version = conf.get("cniVersion", "0.1.0")
    if version not in SUPPORTED_VERSIONS:
        raise CNIError(INCOMPATIBLE_VERSION, "incompatible CNI versions",
                       f"config is {version!r}, plugin supports {SUPPORTED_VERSIONS}")
    return cast(NetConf, conf)


Handler = Callable[[dict[str, str], NetConf], CniResult | None]


def plugin_handlers(module: Any) -> dict[str, Handler]:
    """A plugin module's handlers by CNI_COMMAND (each module has add, delete, check)."""
    return {"ADD": module.add, "DEL": module.delete, "CHECK": module.check}


def plugin_main(add: Handler, delete: Handler, check: Handler) -> None:
    """Dispatch on CNI_COMMAND; print the result or the error object."""
    version = "1.0.0"
    try:
        raw = sys.stdin.buffer.read() if not sys.stdin.isatty() else b""
        env = read_env(dict(os.environ))
        if env["CNI_COMMAND"] == "VERSION":
            conf = json.loads(raw) if raw.strip() else {}
            print(json.dumps({"cniVersion": conf.get("cniVersion", version),
                              "supportedVersions": SUPPORTED_VERSIONS}))
            return
        conf = read_config(raw)
        version = conf.get("cniVersion", version)
        handler = {"ADD": add, "DEL": delete, "CHECK": check}[env["CNI_COMMAND"]]
        result = handler(env, conf)
        if result is not None:
            print(json.dumps(result))
    except CNIError as err:
        print(json.dumps(err.to_json(version)))
        sys.exit(1)


def _go_quote(text: str) -> str:
    return json.dumps(text)  # Go's %q for printable text


def load_args(env: dict[str, str], fields: dict[str, Callable[[str], Any]]) -> dict[str, Any]:
    """CNI_ARGS (`K1=V1;K2=V2`) as the reference plugins' `types.LoadArgs` reads it.

    `fields` are the keys this plugin understands (a parser each, raising ValueError);
    an unknown key is an error unless `IgnoreUnknown` is 1/true, as the spec's
    convention says. Returns the parsed known keys.
    """
    raw = env.get("CNI_ARGS", "")
    found: dict[str, Any] = {}
    if not raw:
        return found
    unknown = []
    for pair in raw.split(";"):
        kv = pair.split("=")
        if len(kv) != 2:
            raise CNIError(INTERNAL, f"ARGS: invalid pair {_go_quote(pair)}")
        key, value = kv
        parser = _parse_bool if key == "IgnoreUnknown" else fields.get(key)
        if parser is None:
            unknown.append(pair)
            continue
        try:
            found[key] = parser(value)
        except ValueError as err:
            raise CNIError(INTERNAL, f"ARGS: error parsing value of pair {_go_quote(pair)}: "
                                     f"{err}") from None
    if unknown and not found.get("IgnoreUnknown"):
        listed = " ".join(_go_quote(u) for u in unknown)
        raise CNIError(INTERNAL, f"ARGS: unknown args [{listed}]")
    return found


def _parse_bool(text: str) -> bool:
    value = text.lower()
    if value in ("1", "true"):
        return True
    if value in ("0", "false"):
        return False
    raise ValueError(f"boolean unmarshal error: invalid input {value}")


def find_plugin(name: str, cni_path: str) -> str:
    for directory in cni_path.split(":"):
        path = os.path.join(directory, name)
        if directory and os.access(path, os.X_OK):
            return path
    raise CNIError(INTERNAL, f'failed to find plugin "{name}" in path [{cni_path}]')


def exec_plugin(path: str, env: dict[str, str], conf: NetConf) -> CniResult | None:
    """Run a plugin as a runtime (or a delegating plugin) does: exec the file, or call
    kgen's own plugin in this process when the file is kgen's wrapper (see inprocess)."""
    from generator.node.cni.inprocess import run_in_process

    ran, in_process = run_in_process(path, env, conf)
    if ran:
        return in_process
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("CNI_")}
    full_env.update(env)
    result = proc.run([path], input=json.dumps(conf), env=full_env)
    out = result.stdout.strip()
    if result.returncode != 0:
        try:
            doc = json.loads(out)
            raise CNIError(int(doc.get("code", INTERNAL)), str(doc.get("msg", "")),
                           str(doc.get("details", "")))
        except ValueError:
            raise CNIError(INTERNAL, f"plugin {path} failed",
                           (out + result.stderr).strip()[:500]) from None
    return cast(CniResult, json.loads(out)) if out else None


def in_ns(netns: str, *cmd: str) -> list[str]:
    """A command inside the netns at a path (CNI_NETNS is a path, not a name)."""
    return ["nsenter", f"--net={netns}", *cmd]


def run(cmd: list[str], what: str) -> str:
    """Run an iproute2 command; a failure is a CNI error that says what was tried."""
    try:
        return proc.check(cmd)
    except proc.CommandFailed as err:
        raise CNIError(INTERNAL, f"failed to {what}", str(err)) from None
