"""The `arc` collector: the agent script through an Azure Arc run command.

The path to prefer for Edge servers in a perimeter network: the Connected Machine agent
only connects outbound, so nothing listens in the DMZ. One collection is:

    GET    {machine}                           connected? agent >= 1.33? extensions on?
    PUT    {machine}/runCommands/{name}        the script inline, run with -Compress
    GET    {machine}/runCommands/{name}        until instanceView.executionState ends
    DELETE {machine}/runCommands/{name}        always, also after a failure or timeout

all on Resource Manager (`AZURE_CLOUD` picks it), api-version 2025-06-01, with a token
for Resource Manager from the injected provider. The script prints the compressed form
(shared/agentdoc.py); Arc keeps only the last 4 KB of inline output, so a target whose
inventory entry names an output blob container gets its output written there instead
(a short-lived SAS the run command can append with; Arc run command cannot yet use a
managed identity for blobs). Either way the framing is checked, and `collect()` returns
the plain UTF-8 document for the parser.

Every way this fails ends as CollectError with a reason a person can act on (the
target becomes Not_Reviewed); throttling and 5xx answers are TransientCollectError
after the shared HTTP helper's bounded retries, except while polling, where the loop
keeps trying until its deadline.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any, Protocol

import requests

from shared import agentdoc
from shared.collectors.arc_blobs import ContainerOutputBlobs
from shared.collectors.credentials import token_provider_for
from shared.collectors.http import (
    HttpAnswer,
    HttpOptions,
    read_options,
    request,
)
from shared.endpoints import retry_after_seconds
from shared.errors import CollectError, InputError, TransientCollectError
from shared.inventory import ArcSource, Target
from shared.settings import cloud, number_setting

log = logging.getLogger(__name__)

API_VERSION = "2025-06-01"
MINIMUM_AGENT = (1, 33)  # the first Connected Machine agent with run command
# The script ships with the app: agent/ sits beside shared/ in the checkout and in the
# deployed Function app package alike.
SCRIPT_PATH = (
    Path(__file__).resolve().parents[2] / "agent" / "Get-StigwatchDocument.ps1"
)
RUN_COMMAND_HANDLER = "microsoft.cplat.core/runcommandhandlerwindows"

_MACHINE_ID = re.compile(
    r"^/subscriptions/[^/]+/resourceGroups/[^/]+/providers/"
    r"Microsoft\.HybridCompute/machines/[^/]+$",
    re.IGNORECASE,
)
_RUNNING = frozenset({"", "unknown", "pending", "running"})
_REASON_TAIL = 400  # characters of the script's error output quoted in a reason

TokenProvider = Callable[[str], str]
Clock = Callable[[], float]


class OutputBlobs(Protocol):
    """Where a run command appends its output when inline output is too small."""

    def writable_url(self, name: str, expires: datetime) -> str:
        """A URL (with a SAS) the run command may create and append `name` with."""
        ...

    def read(self, name: str, max_bytes: int) -> bytes | None:
        """The blob's content, or None when it does not exist."""
        ...

    def delete(self, name: str) -> None: ...


@dataclass(frozen=True)
class ArcOptions:
    deadline: float = 900.0  # seconds for the whole collection, ARC_RUN_TIMEOUT_SECONDS
    poll_interval: float = 10.0  # ARC_POLL_SECONDS; Retry-After overrides it
    poll_interval_cap: float = 60.0


def read_arc_options(environ: Mapping[str, str]) -> ArcOptions:
    defaults = ArcOptions()
    return ArcOptions(
        deadline=number_setting(
            environ, "ARC_RUN_TIMEOUT_SECONDS", defaults.deadline, minimum=60
        ),
        poll_interval=number_setting(
            environ, "ARC_POLL_SECONDS", defaults.poll_interval, minimum=1
        ),
    )


@cache
def agent_script() -> str:
    """The agent script, read once from the app package."""
    try:
        return SCRIPT_PATH.read_text(encoding="utf-8-sig")
    except OSError as error:
        raise CollectError(
            "the agent script %s cannot be read (%s); deploy the agent/ folder with "
            "the app" % (SCRIPT_PATH, error.strerror)
        ) from None


def inline_script(script: str) -> str:
    """The script as one run command source, called with -Compress.

    Wrapping it in a script block passes the switch without relying on how the run
    command handler turns `parameters` into arguments.
    """
    return "& {\n%s\n} -Compress\n" % script


class ArcCollector:
    """Collects one `arc` target's agent document."""

    def __init__(
        self,
        target: Target,
        environ: Mapping[str, str],
        session: requests.Session | None = None,
        *,
        token_provider: TokenProvider | None = None,
        output_blobs: Callable[[str], OutputBlobs] | None = None,
        base_url: str | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Clock = time.monotonic,
    ) -> None:
        self.target = target  # the default for collect(); collector_for passes it
        self.environ = environ
        self.session = session or requests.Session()
        self.http: HttpOptions = read_options(environ, "ARC")
        self.options = read_arc_options(environ)
        self.base_url = (base_url or cloud(environ).resource_manager).rstrip("/")
        self._token_provider = token_provider
        self._output_blobs = output_blobs or _default_output_blobs(environ)
        self._sleep = sleep
        self._clock = clock

    def __repr__(self) -> str:
        return "ArcCollector(target=%r)" % self.target.id

    def collect(self, target: Target | None = None) -> bytes:
        """The plain agent document; CollectError with the reason when there is none."""
        target = target or self.target
        source = target.source
        if not isinstance(source, ArcSource):
            raise CollectError(
                "target %r is not an arc target (%s); the arc collector cannot collect "
                "it" % (target.id, type(source).__name__)
            )
        machine_id = source.machine_id.rstrip("/")
        if not _MACHINE_ID.match(machine_id):
            raise CollectError(
                "arc target %r: machine id %r is not a Microsoft.HybridCompute machine "
                "resource id (/subscriptions/<id>/resourceGroups/<rg>/providers/"
                "Microsoft.HybridCompute/machines/<name>); fix the inventory"
                % (target.id, source.machine_id)
            )
        started = self._clock()
        run = _Run(self, target.id, source, machine_id, started)
        outcome = "error"
        try:
            run.check_machine()
            document = run.execute()
            outcome = "collected"
            return document
        finally:
            log.info(
                "arc collect target=%s run_command=%s state=%s exit_code=%s "
                "seconds=%.1f outcome=%s",
                target.id,
                run.name,
                run.state or "-",
                run.exit_code if run.exit_code is not None else "-",
                self._clock() - started,
                outcome,
            )

    def token(self) -> str:
        if self._token_provider is None:
            self._token_provider = token_provider_for("managedIdentity", self.environ)
        if self._token_provider is None:  # pragma: no cover - managedIdentity is set
            raise CollectError("no token provider for Resource Manager")
        return self._token_provider(cloud(self.environ).resource_manager_scope)


class _Run:
    """One run command's life: create, poll, read, delete."""

    def __init__(
        self,
        collector: ArcCollector,
        target_id: str,
        source: ArcSource,
        machine_id: str,
        started: float,
    ) -> None:
        self.c = collector
        self.target_id = target_id
        self.source = source
        self.machine_id = machine_id
        self.deadline = started + collector.options.deadline
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        self.name = "stigwatch-%s-%s" % (stamp, uuid.uuid4().hex[:8])
        self.state: str | None = None
        self.exit_code: int | None = None

    # --- requests --------------------------------------------------------------------

    def _url(self, path: str = "") -> str:
        return "%s%s%s?api-version=%s" % (
            self.c.base_url,
            self.machine_id,
            path,
            API_VERSION,
        )

    def _call(
        self,
        method: str,
        url: str,
        *,
        json: Any = None,
        allow: tuple[int, ...] = (),
    ) -> HttpAnswer:
        headers = {"Authorization": "Bearer " + self.c.token()}
        return request(
            self.c.session,
            method,
            url,
            options=self.c.http,
            peer="Azure Resource Manager",
            headers=headers,
            json=json,
            allow_statuses=allow,
            sleep=self.c._sleep,
        )

    # --- the machine -----------------------------------------------------------------

    def check_machine(self) -> None:
        """Refuse early, with the reason, what a run command could not reach."""
        answer = self._call("GET", self._url(), allow=(404,))
        if answer.status == 404:
            raise CollectError(
                "Arc machine %s was not found; check the machine id in the inventory "
                "and that the app's identity can read it" % self.machine_id
            )
        properties = _properties(answer.json("Azure Resource Manager"))
        name = self.machine_id.rsplit("/", 1)[-1]
        status = str(properties.get("status") or "unknown")
        if status.lower() != "connected":
            raise CollectError(
                "Arc machine %s is %s (last status change %s), so a run command cannot "
                "reach it; check the Azure Connected Machine Agent service (himds) and "
                "its outbound connection ('azcmagent check' on the server)"
                % (name, status, properties.get("lastStatusChange") or "unknown")
            )
        version = str(properties.get("agentVersion") or "")
        if _version(version) < MINIMUM_AGENT:
            raise CollectError(
                "Arc machine %s runs Connected Machine agent %s; run command needs "
                "%d.%d or later — upgrade the agent on the server"
                % (name, version or "of unknown version", *MINIMUM_AGENT)
            )
        os_type = str(properties.get("osType") or "windows")
        if os_type.lower() != "windows":
            raise CollectError(
                "Arc machine %s runs %s; the agent script needs Windows with Exchange"
                % (name, os_type)
            )
        self._check_extensions(name, properties.get("agentConfiguration") or {})

    def _check_extensions(self, name: str, config: Mapping[str, Any]) -> None:
        # Run command is carried out by an extension handler the local agent may block.
        enabled = str(config.get("extensionsEnabled", "true")).lower()
        allow = [str(x).lower() for x in config.get("extensionsAllowList") or []]
        block = [str(x).lower() for x in config.get("extensionsBlockList") or []]
        blocked = (
            enabled == "false"
            or any(RUN_COMMAND_HANDLER in item for item in block)
            or (bool(allow) and not any(RUN_COMMAND_HANDLER in item for item in allow))
        )
        if blocked:
            raise CollectError(
                "Arc machine %s does not allow run commands (extensions disabled, or "
                "%s not allowed by the agent's extension allow/block list); allow it "
                "with 'azcmagent config' on the server" % (name, RUN_COMMAND_HANDLER)
            )

    # --- the run command -------------------------------------------------------------

    def execute(self) -> bytes:
        blobs = None
        if self.source.output_blob:
            blobs = self.c._output_blobs(self.source.output_blob)
        try:
            self._create(blobs)
            view = self._wait()
            return self._read(view, blobs)
        finally:
            # Also after a failed PUT: one that timed out may have created it anyway.
            self._delete()
            if blobs is not None:
                self._delete_blob(blobs)

    def _create(self, blobs: OutputBlobs | None) -> None:
        remaining = self.deadline - self.c._clock()
        properties: dict[str, Any] = {
            "source": {"script": inline_script(agent_script())},
            "asyncExecution": True,
            # The machine gives up a little before we do, so its TimedOut state is seen.
            "timeoutInSeconds": max(30, int(remaining) - 30),
        }
        if blobs is not None:
            expires = datetime.now(UTC) + timedelta(seconds=remaining + 600)
            properties["outputBlobUri"] = blobs.writable_url(self._blob_name, expires)
        body = {"location": self.source.location, "properties": properties}
        self._call("PUT", self._url("/runCommands/" + self.name), json=body)

    @property
    def _blob_name(self) -> str:
        return self.name + ".txt"

    def _wait(self) -> Mapping[str, Any]:
        """The instance view once the script has ended; CollectError at the deadline."""
        interval = self.c.options.poll_interval
        last_problem = ""
        while True:
            wait = interval
            try:
                answer = self._call(
                    "GET", self._url("/runCommands/" + self.name), allow=(404,)
                )
            except TransientCollectError as error:
                # Throttling or a 5xx while polling: the run command goes on anyway.
                last_problem = " (last poll: %s)" % error
                log.warning("arc poll target=%s failed: %s", self.target_id, error)
            else:
                if answer.status != 404:  # 404: an accepted PUT not visible yet
                    properties = _properties(answer.json("Azure Resource Manager"))
                    view = properties.get("instanceView") or {}
                    self.state = str(view.get("executionState") or "")
                    if self.state.lower() not in _RUNNING:
                        return view
                    if str(properties.get("provisioningState", "")).lower() == "failed":
                        raise CollectError(
                            "Arc could not start the run command on %s (provisioning "
                            "failed: %s); check the machine's extension status"
                            % (self._machine, _message(view))
                        )
                asked = retry_after_seconds(
                    answer.headers.get("Retry-After"), datetime.now(UTC)
                )
                if asked is not None:
                    wait = min(max(asked, 1.0), self.c.options.poll_interval_cap)
            if self.c._clock() + wait > self.deadline:
                raise CollectError(
                    "the run command on %s did not finish within %g s (state %s)%s; "
                    "check the machine, or raise ARC_RUN_TIMEOUT_SECONDS"
                    % (
                        self._machine,
                        self.c.options.deadline,
                        self.state or "not started",
                        last_problem,
                    )
                )
            self.c._sleep(wait)

    @property
    def _machine(self) -> str:
        return self.machine_id.rsplit("/", 1)[-1]

    def _read(self, view: Mapping[str, Any], blobs: OutputBlobs | None) -> bytes:
        state = self.state or ""
        code = view.get("exitCode")
        self.exit_code = code if isinstance(code, int) else None
        if state.lower() == "timedout":
            raise CollectError(
                "the agent script timed out on %s; check that Exchange answers there, "
                "or raise ARC_RUN_TIMEOUT_SECONDS" % self._machine
            )
        if state.lower() != "succeeded" or self.exit_code not in (0, None):
            raise CollectError(
                "the agent script failed on %s (state %s, exit code %s): %s"
                % (self._machine, state, code, _message(view))
            )
        if blobs is not None:
            data = blobs.read(self._blob_name, self.c.http.max_bytes)
            if data is None:
                raise CollectError(
                    "the run command on %s wrote no output blob; check that the "
                    "server can reach the storage account and that the container "
                    "exists" % self._machine
                )
        else:
            data = str(view.get("output") or "").encode("utf-8")
        try:
            return agentdoc.decode(data, size_cap=self.c.http.max_bytes)
        except InputError as error:
            raise CollectError(
                "Arc run command output from %s: %s" % (self._machine, error)
            ) from None

    def _delete(self) -> None:
        try:
            self._call("DELETE", self._url("/runCommands/" + self.name), allow=(404,))
        except CollectError as error:
            # The verdict does not depend on the cleanup; say what is left behind.
            log.warning(
                "arc cleanup target=%s run_command=%s left behind: %s",
                self.target_id,
                self.name,
                error,
            )

    def _delete_blob(self, blobs: OutputBlobs) -> None:
        try:
            blobs.delete(self._blob_name)
        except CollectError as error:
            log.warning(
                "arc cleanup target=%s blob=%s left behind: %s",
                self.target_id,
                self._blob_name,
                error,
            )


def _properties(resource: Any) -> Mapping[str, Any]:
    properties = resource.get("properties") if isinstance(resource, dict) else None
    if not isinstance(properties, dict):
        raise CollectError(
            "Azure Resource Manager answered without a 'properties' object; retry later"
        )
    return properties


def _message(view: Mapping[str, Any]) -> str:
    """What the run command said went wrong: its error output's tail, else a status."""
    text = str(view.get("error") or "").strip()
    if not text:
        text = str(view.get("executionMessage") or "").strip()
    if not text:
        statuses = view.get("statuses") or []
        text = "; ".join(
            str(s.get("message") or s.get("code"))
            for s in statuses
            if isinstance(s, dict)
        )
    if len(text) > _REASON_TAIL:
        text = "..." + text[-_REASON_TAIL:]
    return text or "no error output"


def _version(text: str) -> tuple[int, ...]:
    parts = re.findall(r"\d+", text)[:2]
    return tuple(int(p) for p in parts) if parts else (0,)


def _default_output_blobs(environ: Mapping[str, str]) -> Callable[[str], OutputBlobs]:
    def build(container_url: str) -> OutputBlobs:
        return ContainerOutputBlobs.with_managed_identity(container_url, environ)

    return build
