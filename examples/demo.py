"""The demo behind `scripts/demo`: scan the example estate into a local Azurite.

    python -m examples.demo [--use-env-storage] [--use-env-webhooks]
    python -m examples.demo --stop

It reuses the Azurite already healthy on 127.0.0.1:10000-10002 or starts one whose data
lives in `.azurite/`, serves the estate's agent documents from a demo agent on a free
loopback port, runs `python -m shared scan` through the real agent collector and prints
`python -m shared findings`. Azurite keeps running afterwards so the findings stay
queryable. The scan never sees a storage account or webhook from the caller's
environment unless a flag asks for it.
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

from examples.azurite import AzuriteError, LocalAzurite
from examples.demo_agent import DemoAgent, load_estate, write_inventory

ROOT = Path(__file__).resolve().parent.parent
STATE = ROOT / ".azurite"

STORAGE_PREFIX = "AzureWebJobsStorage"
WEBHOOK_PREFIXES = ("TEAMS_", "SLACK_", "ALERT_")
# A proxy from the caller's shell must never carry loopback traffic to another host.
LOOPBACK_NO_PROXY = ("127.0.0.1", "localhost", "::1")


def scan_environment(
    environ: Mapping[str, str],
    connection_string: str | None,
    *,
    keep_webhooks: bool = False,
) -> dict[str, str]:
    """The environment the demo's scan runs in.

    With a connection string, every `AzureWebJobsStorage*` setting of the caller is
    replaced by it; with None (`--use-env-storage`) they pass through. Webhook settings
    are dropped unless `keep_webhooks`.
    """
    env = dict(environ)
    if connection_string is not None:
        for name in storage_names(env):
            del env[name]
        env[STORAGE_PREFIX] = connection_string
    if not keep_webhooks:
        for name in [name for name in env if name.upper().startswith(WEBHOOK_PREFIXES)]:
            del env[name]
    env.update(loopback_no_proxy(env))
    return env


def loopback_no_proxy(environ: Mapping[str, str]) -> dict[str, str]:
    """NO_PROXY and no_proxy with the loopback names added to what is there."""
    result = {}
    for name in ("NO_PROXY", "no_proxy"):
        present = [host for host in environ.get(name, "").split(",") if host.strip()]
        result[name] = ",".join(
            present + [host for host in LOOPBACK_NO_PROXY if host not in present]
        )
    return result


def storage_names(environ: Mapping[str, str]) -> list[str]:
    """The caller's storage settings: the connection string and its `__` forms."""
    return sorted(name for name in environ if name.startswith(STORAGE_PREFIX))


def query_prefix(environ: Mapping[str, str]) -> str:
    """What to put before `python -m shared findings` so it reads the demo's Azurite."""
    names = storage_names(environ)
    if not names:
        return ""
    return "env %s " % " ".join("-u %s" % shlex.quote(name) for name in names)


def _say(message: str) -> None:
    print("demo: %s" % message, flush=True)


def _shared(
    command: Sequence[str], env: Mapping[str, str]
) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "shared", *command], env=dict(env), cwd=ROOT, check=False
    )


def run(options: argparse.Namespace, environ: Mapping[str, str]) -> int:
    azurite = LocalAzurite(ROOT, STATE)
    connection: str | None = None
    if options.use_env_storage:
        if not storage_names(environ):
            print(
                "demo: --use-env-storage given, but AzureWebJobsStorage is not set; "
                "set it or drop the flag to use the local Azurite",
                file=sys.stderr,
            )
            return 2
        _say("using the storage account from AzureWebJobsStorage (--use-env-storage)")
    else:
        connection = azurite.connection_string
        if azurite.ensure_running():
            _say(
                "started Azurite on 127.0.0.1:10000-10002 (pid %s, data in %s)"
                % (azurite.recorded_pid(), STATE.relative_to(ROOT))
            )
        else:
            _say("reusing the Azurite already running on 127.0.0.1:10000-10002")
    env = scan_environment(environ, connection, keep_webhooks=options.use_env_webhooks)

    estate = load_estate()
    with DemoAgent.for_estate(estate) as agent, tempfile.TemporaryDirectory() as tmp:
        inventory = Path(tmp) / "inventory.json"
        write_inventory(inventory, agent.url_for)
        served = "demo agent on %s serves %d servers" % (
            agent.url,
            len(estate) - len(agent.down),
        )
        if agent.down:
            served += "; %s has its agent down (connections refused)" % ", ".join(
                sorted(agent.down)
            )
        _say(served)
        _say("scanning the demo estate: python -m shared scan --targets %s" % inventory)
        scanned = _shared(["scan", "--targets", str(inventory)], env)
    if scanned.returncode != 0:
        print(
            "demo: the scan failed (exit %d); see the messages above"
            % scanned.returncode,
            file=sys.stderr,
        )
        return scanned.returncode

    _say("findings stored for the demo estate: python -m shared findings")
    listed = _shared(["findings"], env)
    if listed.returncode != 0:
        return listed.returncode
    _next_steps(azurite, environ, options.use_env_storage)
    return 0


def _next_steps(
    azurite: LocalAzurite, environ: Mapping[str, str], use_env_storage: bool
) -> None:
    prefix = "" if use_env_storage else query_prefix(environ)
    python = ".venv/bin/python"
    lines = [
        "",
        "The findings stay queryable:",
        "  %s%s -m shared findings --status Open" % (prefix, python),
        "  %s%s -m shared findings --target EDGE-NYC01 --format json"
        % (prefix, python),
    ]
    pid = azurite.recorded_pid()
    if use_env_storage:
        lines.append("(they are in the account AzureWebJobsStorage names)")
    elif pid is not None:
        lines += [
            "Azurite keeps running (pid %d, data in .azurite/). Stop it with:" % pid,
            "  scripts/demo --stop      (or: kill $(cat .azurite/azurite.pid))",
        ]
    else:
        lines.append(
            "The Azurite on 127.0.0.1:10000-10002 was not started by this demo; "
            "stop it the way it was started."
        )
    print("\n".join(lines), flush=True)


def stop(azurite: LocalAzurite) -> int:
    pid = azurite.stop()
    if pid is not None:
        _say("stopped Azurite (pid %d); its data stays in .azurite/" % pid)
    elif azurite.healthy():
        _say(
            "the Azurite on 127.0.0.1:10000-10002 was not started by scripts/demo "
            "(no live pid in .azurite/azurite.pid); stop it the way it was started"
        )
    else:
        _say("no Azurite started by scripts/demo is running")
    return 0


def main(
    argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None
) -> int:
    parser = argparse.ArgumentParser(
        prog="scripts/demo",
        description="Scan the example estate into local Azurite; print the findings.",
    )
    parser.add_argument(
        "--stop",
        action="store_true",
        help="stop the Azurite the demo started, then exit",
    )
    parser.add_argument(
        "--use-env-storage",
        action="store_true",
        help="store into the account AzureWebJobsStorage names, not local Azurite",
    )
    parser.add_argument(
        "--use-env-webhooks",
        action="store_true",
        help="let alerts reach the TEAMS_/SLACK_/ALERT_ webhooks in the environment",
    )
    options = parser.parse_args(argv)
    environ = os.environ if environ is None else environ
    # The demo's own health checks talk to loopback Azurite, never through a proxy.
    os.environ.update(loopback_no_proxy(os.environ))
    try:
        if options.stop:
            return stop(LocalAzurite(ROOT, STATE))
        return run(options, environ)
    except AzuriteError as error:
        print("demo: %s" % error, file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
