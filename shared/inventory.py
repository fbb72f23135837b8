"""Targets to scan: what the inventory file says about each Exchange server.

The types are fixed here; loading and validating an inventory file lives below them.

    {"targets": [{"id": "EDGE01", "collector": "agent", "url": "https://...",
                  "scope": "api://<app-id>/.default", "auth": "managedIdentity",
                  "policy": {...} or "policy.json"}, ...],
     "policy": {...} or "policy.json"}

A problem with one entry never stops the others: it becomes an `EntryProblem` (one line
naming the target) and the scan stores that target as Not_Reviewed with the reason. A
problem with the file as a whole — unreadable, not JSON, no `targets` list, a bad
top-level policy every target would use — is a UsageError.

Each valid target also gets a `spec`: its entry made self-contained (the policy inlined,
a file path made absolute), which plan stores in the scan's planned row and `check`
validates again with `target_from_spec`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeGuard
from urllib.parse import urljoin, urlsplit

from shared.endpoints import display_url, is_loopback
from shared.errors import InputError, UsageError
from shared.model import Policy
from shared.parse import decode_text
from shared.policy import policy_from_obj
from shared.psobject import PSObject


@dataclass(frozen=True)
class AgentSource:
    """An HTTPS agent beside Exchange, behind Entra ID."""

    url: str
    scope: str | None
    # managedIdentity | clientSecret | clientCertificate | none (loopback only)
    auth: str


@dataclass(frozen=True)
class ArcSource:
    """An Azure Arc-enabled server reached through a run command."""

    machine_id: str  # the ARM resource id of the Microsoft.HybridCompute machine
    location: str
    output_blob: str | None = None  # container URL for large outputs, when asked for


@dataclass(frozen=True)
class FileSource:
    """An agent document on disk (local runs, tests)."""

    path: Path


Source = AgentSource | ArcSource | FileSource


@dataclass(frozen=True)
class Target:
    id: str
    source: Source
    policy: Policy | None = None


INVENTORY_CAP = 16 * 1024 * 1024
MAX_ID_LENGTH = 256
AUTH_MODES = ("managedIdentity", "clientSecret", "clientCertificate", "none")
COLLECTORS = ("agent", "arc", "file")
_FIELDS = {
    "agent": {"url", "scope", "auth"},
    "arc": {"machineId", "location", "outputBlob"},
    "file": {"path"},
}
_COMMON = {"id", "collector", "policy"}
_MACHINE_ID = re.compile(
    r"^/subscriptions/[^/]+/resourceGroups/[^/]+/providers/"
    r"Microsoft\.HybridCompute/machines/[^/]+$",
    re.IGNORECASE,
)
_LOCATION = re.compile(r"^[A-Za-z0-9]+$")

# Reads a policy named by a path in the inventory; returns its parsed JSON.
PolicyReader = Callable[[str], Any]


@dataclass(frozen=True)
class EntryProblem:
    """One inventory entry that cannot be scanned, and why."""

    where: str  # "target 'EDGE01'" or "targets[3]"
    message: str
    target_id: str | None = None  # where to store the Not_Reviewed; None: nowhere

    def __str__(self) -> str:
        return "%s: %s" % (self.where, self.message)


@dataclass(frozen=True)
class PlannedTarget:
    target: Target
    spec: Mapping[str, Any]  # self-contained JSON for the scan's planned row


@dataclass(frozen=True)
class Inventory:
    source: str
    targets: tuple[PlannedTarget, ...]
    problems: tuple[EntryProblem, ...] = ()


class _EntryError(Exception):
    """One problem with one entry (becomes an EntryProblem)."""


def load_inventory_file(path: Path) -> Inventory:
    """Read and validate an inventory file; policy paths are relative to it."""
    try:
        with path.open("rb") as handle:
            data = handle.read(INVENTORY_CAP + 1)
    except OSError as error:
        raise UsageError(
            "cannot open inventory %s: %s" % (path, error.strerror or error)
        ) from None
    base = path.resolve().parent

    def read_policy(name: str) -> Any:
        policy_path = Path(name) if Path(name).is_absolute() else base / name
        try:
            with policy_path.open("rb") as handle:
                return _json(handle.read(INVENTORY_CAP + 1), "policy %s" % policy_path)
        except OSError as error:
            raise _EntryError(
                "cannot open policy %s: %s" % (policy_path, error.strerror or error)
            ) from None

    raw = _json(data, "inventory %s" % path)
    return inventory_from_obj(raw, source=str(path), read_policy=read_policy, base=base)


def load_inventory_blob(url: str, read_blob: Callable[[str], bytes]) -> Inventory:
    """Read and validate an inventory blob; policy paths are relative to its URL.

    `read_blob` fetches a blob's bytes by URL (with the managed identity, in Azure).
    """

    def read_policy(name: str) -> Any:
        policy_url = urljoin(url, name)
        return _json(read_blob(policy_url), "policy %s" % display_url(policy_url))

    raw = _json(read_blob(url), "inventory %s" % display_url(url))
    return inventory_from_obj(
        raw, source=display_url(url), read_policy=read_policy, base=None
    )


def inventory_from_obj(
    raw: Any, *, source: str, read_policy: PolicyReader, base: Path | None
) -> Inventory:
    """Validate a parsed inventory; `base` resolves relative file paths (None: none)."""
    if not isinstance(raw, dict):
        raise UsageError(
            "inventory %s must be a JSON object with a 'targets' list" % source
        )
    unknown = sorted(set(raw) - {"targets", "policy"})
    if unknown:
        raise UsageError(
            "inventory %s: unknown key %r; an inventory has 'targets' and an "
            "optional 'policy'" % (source, unknown[0])
        )
    entries = raw.get("targets")
    if not isinstance(entries, list):
        raise UsageError("inventory %s: 'targets' must be a list of targets" % source)
    shared_policy = None
    if raw.get("policy") is not None:
        try:
            shared_policy = _policy_json(raw["policy"], read_policy)
        except _EntryError as error:
            raise UsageError("inventory %s: top-level %s" % (source, error)) from None

    targets: list[PlannedTarget] = []
    problems: list[EntryProblem] = []
    seen: dict[str, str] = {}
    for index, entry in enumerate(entries):
        where = "targets[%d]" % index
        target_id = entry.get("id") if isinstance(entry, dict) else None
        if not _usable_id(target_id):
            problems.append(EntryProblem(where, _id_problem(entry)))
            continue
        earlier = seen.get(target_id.lower())
        if earlier is not None:
            problems.append(
                EntryProblem(
                    "%s (target %r)" % (where, target_id),
                    "id repeats %s; give each target its own id" % earlier,
                )
            )
            continue
        seen[target_id.lower()] = where
        try:
            duplicates = getattr(entry, "duplicates", None)
            if duplicates:
                raise _EntryError("field %r appears twice" % duplicates[0])
            spec = _spec(entry, read_policy, base, shared_policy)
            targets.append(PlannedTarget(target_from_spec(spec), spec))
        except _EntryError as error:
            problems.append(
                EntryProblem("target %r" % target_id, str(error), target_id)
            )
    return Inventory(source, tuple(targets), tuple(problems))


def target_from_spec(spec: Mapping[str, Any]) -> Target:
    """The Target a self-contained entry describes; raises _EntryError."""
    collector = spec.get("collector")
    if collector not in COLLECTORS:
        raise _EntryError(
            "collector %r is not one of %s" % (collector, ", ".join(COLLECTORS))
        )
    unknown = sorted(set(spec) - _COMMON - _FIELDS[collector])
    if unknown:
        raise _EntryError(
            "unknown field %r for collector %r; it takes %s"
            % (unknown[0], collector, ", ".join(sorted(_FIELDS[collector])))
        )
    source: AgentSource | ArcSource | FileSource
    if collector == "agent":
        source = _agent(spec)
    elif collector == "arc":
        source = _arc(spec)
    else:
        source = _file(spec)
    policy = None
    if spec.get("policy") is not None:
        try:
            policy = policy_from_obj(spec["policy"], where="policy")
        except UsageError as error:
            raise _EntryError(str(error)) from None
    return Target(id=spec["id"], source=source, policy=policy)


def target_from_message(spec: Any) -> Target:
    """A queue message's target; UsageError saying what is wrong with it."""
    if not isinstance(spec, dict) or not _usable_id(spec.get("id")):
        raise UsageError("the message's target has no usable id: %r" % (spec,))
    try:
        return target_from_spec(spec)
    except _EntryError as error:
        raise UsageError("target %r: %s" % (spec["id"], error)) from None


def _spec(
    entry: Mapping[str, Any],
    read_policy: PolicyReader,
    base: Path | None,
    shared_policy: Any,
) -> dict[str, Any]:
    spec = {name: value for name, value in entry.items() if name != "policy"}
    if entry.get("policy") is not None:
        spec["policy"] = _policy_json(entry["policy"], read_policy)
    elif shared_policy is not None:
        spec["policy"] = shared_policy
    if spec.get("collector") == "file" and isinstance(spec.get("path"), str):
        path = Path(spec["path"])
        if not path.is_absolute():
            if base is None:
                raise _EntryError(
                    "file path %r is relative, and an inventory read from a blob has "
                    "no folder to resolve it against; give an absolute path"
                    % spec["path"]
                )
            spec["path"] = str(base / path)
    return spec


def _policy_json(value: Any, read_policy: PolicyReader) -> Any:
    """A policy object as JSON, read from its file when given as a path; checked."""
    if isinstance(value, str):
        value = read_policy(value)
    elif not isinstance(value, dict):
        raise _EntryError(
            "policy must be an object or a path to a policy file, not %r" % (value,)
        )
    try:
        policy_from_obj(value, where="policy")
    except UsageError as error:
        raise _EntryError(str(error)) from None
    return value


def _agent(spec: Mapping[str, Any]) -> AgentSource:
    url = _text(spec, "url")
    shown = display_url(url)  # messages never quote user info or a query string
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 -- raises ValueError for a port out of range
    except ValueError as error:
        raise _EntryError(
            "url cannot be read (%s); write it as https://host[:port]/path" % error
        ) from None
    if parts.username or parts.password:
        raise _EntryError(
            "url must not carry a user name or password; the agent is reached with "
            "an Entra ID token"
        )
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise _EntryError("url %r is not an https:// URL" % shown)
    auth = spec.get("auth")
    if auth not in AUTH_MODES:
        raise _EntryError("auth %r is not one of %s" % (auth, ", ".join(AUTH_MODES)))
    loopback = is_loopback(parts.hostname)
    if parts.scheme == "http" and not loopback:
        raise _EntryError(
            "url %r uses http; an agent off this machine must use https" % shown
        )
    if auth == "none" and not loopback:
        raise _EntryError(
            "auth 'none' is only for an agent on this machine (127.0.0.1); %r needs "
            "managedIdentity, clientSecret or clientCertificate" % parts.hostname
        )
    scope = spec.get("scope")
    if auth != "none":
        scope = _text(spec, "scope")
        if not scope.endswith("/.default"):
            raise _EntryError(
                "scope %r must end in /.default (e.g. api://<app-id>/.default)" % scope
            )
    elif scope is not None and not isinstance(scope, str):
        raise _EntryError("scope must be a string, not %r" % (scope,))
    return AgentSource(url=url, scope=scope, auth=auth)


def _arc(spec: Mapping[str, Any]) -> ArcSource:
    machine_id = _text(spec, "machineId")
    if not _MACHINE_ID.match(machine_id):
        raise _EntryError(
            "machineId %r is not the resource id of an Arc machine "
            "(/subscriptions/<s>/resourceGroups/<g>/providers/"
            "Microsoft.HybridCompute/machines/<name>)" % machine_id
        )
    location = _text(spec, "location")
    if not _LOCATION.match(location):
        raise _EntryError(
            "location %r is not an Azure region name such as westeurope" % location
        )
    output_blob = spec.get("outputBlob")
    if output_blob is not None and (
        not isinstance(output_blob, str) or urlsplit(output_blob).scheme != "https"
    ):
        raise _EntryError(
            "outputBlob %r is not an https:// container URL" % (output_blob,)
        )
    return ArcSource(machine_id=machine_id, location=location, output_blob=output_blob)


def _file(spec: Mapping[str, Any]) -> FileSource:
    path = Path(_text(spec, "path"))
    if not path.is_absolute():
        raise _EntryError("file path %r must be absolute here" % str(path))
    return FileSource(path=path)


def _text(spec: Mapping[str, Any], name: str) -> str:
    value = spec.get(name)
    if not isinstance(value, str) or not value.strip():
        collector = spec.get("collector")
        raise _EntryError(
            "%s is missing or not a text value; a %s target needs %s"
            % (name, collector, ", ".join(sorted(_FIELDS.get(str(collector), ()))))
        )
    return value.strip()


def _usable_id(value: Any) -> TypeGuard[str]:
    return (
        isinstance(value, str)
        and bool(value.strip())
        and value == value.strip()
        and len(value) <= MAX_ID_LENGTH
    )


def _id_problem(entry: Any) -> str:
    if not isinstance(entry, dict):
        return "a target must be a JSON object, not %s" % type(entry).__name__
    value = entry.get("id")
    if value is None:
        return "the target has no 'id'; give it a unique name such as the server's"
    if not isinstance(value, str):
        return "id %r must be text" % (value,)
    if len(value) > MAX_ID_LENGTH:
        return "id %r... is longer than %d characters" % (value[:40], MAX_ID_LENGTH)
    return "id %r is blank or has spaces at its ends" % value


def _json(data: bytes, what: str) -> Any:
    if len(data) > INVENTORY_CAP:
        raise UsageError("%s is larger than %d bytes" % (what, INVENTORY_CAP))
    try:
        return json.loads(decode_text(data), object_pairs_hook=PSObject)
    except (InputError, ValueError, RecursionError) as error:
        raise UsageError("%s is not valid JSON: %s" % (what, error)) from None
