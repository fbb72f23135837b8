"""infra/: the Bicep, parsed (no Bicep compiler is reachable here) and held to the code.

The template is read with pycep-parser into plain data and checked on that structure:
storage and Key Vault hardening, the roles and where they are scoped, the Flex
Consumption shape, and that the names the code uses (queues, tables, app settings)
are the ones deployed. App settings are found by reading the Python source: every
name passed to `setting()` (and to functions that pass a name on to it, such as
`number_setting` or `read_options`) must be deployed or be listed below with the
reason it is not, so a new setting without infra fails here.
"""

from __future__ import annotations

import ast
import itertools
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any, cast

import pytest
from pycep import BicepParser

from shared.alerts.notify import ALERTS_QUEUE, DEFAULT_SCAN_SCHEDULE, DELIVERIES_TABLE
from shared.alerts.schedule import schedule_period
from shared.queueing import POISON_QUEUE, SCAN_QUEUE
from shared.settings import CLOUDS
from shared.store import TableNames
from tests.conftest import ROOT

INFRA = ROOT / "infra"
MAIN = INFRA / "main.bicep"
ARC_MODULE = INFRA / "modules" / "arc-access.bicep"

# Role definition ids (PLATFORM-NOTES, "Infrastructure"; Azure's built-in roles).
BLOB_DATA_OWNER = "b7e6dc6d-f1e8-4753-8033-0f276bb0955b"
QUEUE_DATA_CONTRIBUTOR = "974c5e8b-45b9-4653-ba55-5f855dd0fb88"
TABLE_DATA_CONTRIBUTOR = "0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3"
KEY_VAULT_SECRETS_USER = "4633458b-17de-408a-b874-0445c86b69e6"
BLOB_DELEGATOR = "db58b8e5-c6ad-4a2a-8342-4190687cbf4a"
MONITORING_METRICS_PUBLISHER = "3913510d-42f4-4e42-8a64-420c390055eb"
CONNECTED_MACHINE_RESOURCE_ADMINISTRATOR = "cd570a14-e51a-42ad-bac8-bafd67325302"

# Settings the code reads that the template does not deploy, and why. A setting the
# code reads must be deployed or be here; an entry the code no longer reads fails too.
LOCAL_ONLY = {
    # A connection string: local runs against Azurite. In Azure the host and the
    # code use the identity-based AzureWebJobsStorage__* parts instead.
    "AzureWebJobsStorage": "local connection string",
}
NOT_DEPLOYED = {
    # Tuning with a code default; a deployer sets them through extraAppSettings.
    **dict.fromkeys(
        [
            "AGENT_TIMEOUT_SECONDS",
            "AGENT_CONNECT_TIMEOUT_SECONDS",
            "AGENT_MAX_ATTEMPTS",
            "AGENT_RETRY_AFTER_MAX_SECONDS",
            "ARC_TIMEOUT_SECONDS",
            "ARC_CONNECT_TIMEOUT_SECONDS",
            "ARC_MAX_ATTEMPTS",
            "ARC_RETRY_AFTER_MAX_SECONDS",
            "ARC_RUN_TIMEOUT_SECONDS",
            "ARC_POLL_SECONDS",
            "DOCUMENT_MAX_BYTES",
            "ALERT_DIGEST_THRESHOLD",
        ],
        "tuning with a code default",
    ),
    # Paths to a PEM file shipped in the app package, for agents behind a private CA.
    "AGENT_CA_BUNDLE": "file in the package",
    "ARC_CA_BUNDLE": "file in the package",
    # clientCertificate auth reads a key file; Flex Consumption offers no certificate
    # store to load it from, so the template supports clientSecret (from Key Vault)
    # and managedIdentity only.
    "AGENT_CLIENT_CERTIFICATE_PATH": "not supported by the template",
    # Table-name overrides: the template creates the default names (checked below).
    "FINDINGS_TABLE": "override",
    "HISTORY_TABLE": "override",
    "SCANS_TABLE": "override",
    "ALERT_DELIVERIES_TABLE": "override",
}
# Deployed for the platform, not read by our code.
PLATFORM_SETTINGS = {
    "APPLICATIONINSIGHTS_CONNECTION_STRING",
    "APPLICATIONINSIGHTS_AUTHENTICATION_STRING",
}
# Settings whose values are secrets: only ever Key Vault references.
SECRET_SETTINGS = {
    "TEAMS_WEBHOOK_URL",
    "SLACK_WEBHOOK_URL",
    "ALERT_WEBHOOK_URL",
    "ALERT_WEBHOOK_SECRET",
    "AGENT_CLIENT_SECRET",
}
FLEX_REJECTED = {"FUNCTIONS_WORKER_RUNTIME", "FUNCTIONS_EXTENSION_VERSION"}


# --- the parsed template ---------------------------------------------------------


@cache
def _parsed(path: Path) -> dict[str, Any]:
    return cast("dict[str, Any]", BicepParser().parse(file_path=path))


def _main() -> dict[str, Any]:
    return _parsed(MAIN)


def _resource(name: str, template: dict[str, Any] | None = None) -> dict[str, Any]:
    """A resource's body, past a loop or condition wrapper."""
    config: dict[str, Any] = (template or _main())["resources"][name]["config"]
    while "config" in config and ("condition" in config or "loop_type" in config):
        config = config["config"]
    return config


def _condition(name: str, template: dict[str, Any] | None = None) -> Any:
    return (template or _main())["resources"][name]["config"].get("condition")


def _variable(name: str, template: dict[str, Any] | None = None) -> Any:
    return (template or _main())["variables"][name]["value"]


def _accessor(node: Any) -> list[Any]:
    """`a.b.c` as ['a', 'b', 'c']; anything else as [node]."""
    if isinstance(node, dict) and node.get("operator", {}).get("type") == (
        "property_accessor"
    ):
        operands = node["operator"]["operands"]
        return _accessor(operands["operand_1"]) + _accessor(operands["operand_2"])
    return [node]


def _expand(node: Any, template: dict[str, Any], seen: frozenset[str]) -> Any:
    """`node` with variable references replaced by the variables' values."""
    variables = template["variables"]
    if isinstance(node, str) and node in variables and node not in seen:
        return _expand(variables[node]["value"], template, seen | {node})
    if isinstance(node, dict):
        return {key: _expand(value, template, seen) for key, value in node.items()}
    if isinstance(node, list):
        return [_expand(value, template, seen) for value in node]
    return node


def _walk(node: Any) -> Iterator[Any]:
    yield node
    if isinstance(node, dict):
        for value in node.values():
            yield from _walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from _walk(value)


def _site() -> dict[str, Any]:
    return _resource("functionApp")


def _app_settings() -> dict[str, list[Any]]:
    """Every app setting the template can deploy (any branch), name to its values."""
    expression = _site()["properties"]["siteConfig"]["appSettings"]
    settings: dict[str, list[Any]] = {}
    for node in _walk(_expand(expression, _main(), frozenset())):
        # The extraAppSettings loop's entries have computed names; they are skipped.
        is_setting = isinstance(node, dict) and set(node) == {"name", "value"}
        if is_setting and isinstance(node["name"], str):
            settings.setdefault(node["name"], []).append(node["value"])
    return settings


def _role_assignments(template: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Role assignment resources by symbol: their body and the role id they grant."""
    found = {}
    for symbol, resource in template["resources"].items():
        if resource["type"] != "Microsoft.Authorization/roleAssignments":
            continue
        body = _resource(symbol, template)
        definition = body["properties"]["roleDefinitionId"]["function"]
        assert definition["type"] == "subscription_resource_id", symbol
        parameters = definition["parameters"]
        assert parameters["resource_type"] == "Microsoft.Authorization/roleDefinitions"
        path = _accessor(parameters["resource_name_1"])
        role = _expand(path[0], template, frozenset())
        for key in path[1:]:
            role = role[key]
        found[symbol] = {"body": body, "role": role}
    return found


# --- reading setting names from the Python source --------------------------------


@dataclass(frozen=True)
class Param:
    """A function parameter inside a setting-name template."""

    name: str


Template = tuple[str | Param, ...]


def _join(*parts: Template) -> Template:
    merged: list[str | Param] = []
    for part in itertools.chain(*parts):
        if isinstance(part, str) and merged and isinstance(merged[-1], str):
            merged[-1] += part
        else:
            merged.append(part)
    return tuple(merged)


def _params(function: ast.FunctionDef | None) -> list[str]:
    if function is None:
        return []
    names = [a.arg for a in function.args.posonlyargs + function.args.args]
    names += [a.arg for a in function.args.kwonlyargs]
    return names[1:] if names[:1] in (["self"], ["cls"]) else names


@dataclass
class Source:
    """Python modules, and what the scan found in them."""

    modules: dict[str, ast.Module]
    names: dict[str, set[str]] = field(default_factory=dict)  # name -> where
    unresolved: list[str] = field(default_factory=list)
    # function name -> (parameter position, parameter name, templates it reads)
    readers: dict[str, dict[tuple[int, str], set[Template]]] = field(
        default_factory=dict
    )
    constants: dict[str, dict[str, set[str]]] = field(default_factory=dict)


def _module_constants(source: Source) -> None:
    for module_name, module in source.modules.items():
        found: dict[str, set[str]] = {}
        for node in module.body:
            if isinstance(node, ast.Assign | ast.AnnAssign):
                targets = (
                    node.targets if isinstance(node, ast.Assign) else [node.target]
                )
                if len(targets) == 1 and isinstance(targets[0], ast.Name):
                    if node.value is None:
                        continue
                    values = _literal_strings(node.value, found)
                    if values is not None:
                        found[targets[0].id] = values
        source.constants[module_name] = found


def _literal_strings(node: ast.expr, known: dict[str, set[str]]) -> set[str] | None:
    """Strings a module-level expression can be (constants, +, dict values, items)."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return {node.value}
    if isinstance(node, ast.Name):
        return known.get(node.id)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        left = _literal_strings(node.left, known)
        right = _literal_strings(node.right, known)
        if left is None or right is None:
            return None
        return {a + b for a in left for b in right}
    if isinstance(node, ast.Dict):
        values: set[str] = set()
        for value in node.values:
            strings = _literal_strings(value, known)
            if strings is None:
                return None
            values |= strings
        return values
    if isinstance(node, ast.Tuple | ast.List | ast.Set):
        items: set[str] = set()
        for item in node.elts:
            strings = _literal_strings(item, known)
            if strings is None:
                return None
            items |= strings
        return items
    return None


def _constant(source: Source, module_name: str, name: str) -> set[str] | None:
    local = source.constants[module_name].get(name)
    if local is not None:
        return local
    # An imported constant: the one module that defines it.
    defined = [c[name] for c in source.constants.values() if name in c]
    return defined[0] if len(defined) == 1 else None


def _loop_values(
    source: Source, module_name: str, function: ast.FunctionDef, name: str
) -> set[str] | None:
    """Values of a loop variable over a module constant (`for k, v in D.items()`)."""
    for node in ast.walk(function):
        if not isinstance(node, ast.For):
            continue
        iterable = node.iter
        if isinstance(iterable, ast.Call) and isinstance(iterable.func, ast.Attribute):
            method, base = iterable.func.attr, iterable.func.value
        else:
            method, base = "", iterable
        if not isinstance(base, ast.Name):
            continue
        target = node.target
        if isinstance(target, ast.Name) and target.id == name and method != "items":
            return _constant(source, module_name, base.id)
        if (
            method == "items"
            and isinstance(target, ast.Tuple)
            and len(target.elts) == 2
            and isinstance(target.elts[1], ast.Name)
            and target.elts[1].id == name
        ):
            return _constant(source, module_name, base.id)
    return None


def _templates(
    source: Source,
    module_name: str,
    function: ast.FunctionDef | None,
    node: ast.expr,
) -> set[Template] | None:
    """The setting-name templates an argument expression can be; None if unknown."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return {(node.value,)}
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        left = _templates(source, module_name, function, node.left)
        right = _templates(source, module_name, function, node.right)
        if left is None or right is None:
            return None
        return {_join(a, b) for a in left for b in right}
    if not isinstance(node, ast.Name):
        return None
    if node.id in _params(function):
        return {(Param(node.id),)}
    values = None
    if function is not None:
        values = _loop_values(source, module_name, function, node.id)
    if values is None:
        values = _constant(source, module_name, node.id)
    return None if values is None else {(value,) for value in values}


def _functions(module: ast.Module) -> Iterator[ast.FunctionDef | None]:
    yield None  # module level
    for node in ast.walk(module):
        if isinstance(node, ast.FunctionDef):
            yield node


def _calls(module: ast.Module, function: ast.FunctionDef | None) -> Iterator[ast.Call]:
    if function is not None:
        yield from (n for n in ast.walk(function) if isinstance(n, ast.Call))
        return
    for statement in module.body:
        if not isinstance(statement, ast.FunctionDef | ast.ClassDef):
            yield from (n for n in ast.walk(statement) if isinstance(n, ast.Call))


def _name_arguments(
    source: Source, call: ast.Call
) -> Iterator[tuple[ast.expr, set[Template]]]:
    """(argument, templates of the reader) for each setting name this call passes."""
    func = call.func
    callee = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
    if (
        callee == "get"
        and isinstance(func, ast.Attribute)
        and ast.unparse(func.value).endswith("environ")
        and call.args
    ):
        yield call.args[0], {(Param("_"),)}
        return
    for (position, name), templates in source.readers.get(callee, {}).items():
        keyword = next((k.value for k in call.keywords if k.arg == name), None)
        if keyword is not None:
            yield keyword, {_rename(t, name, "_") for t in templates}
        elif position < len(call.args):
            yield call.args[position], {_rename(t, name, "_") for t in templates}


def _rename(template: Template, old: str, new: str) -> Template:
    return tuple(Param(new) if p == Param(old) else p for p in template)


def _substitute(template: Template, argument: Template) -> Template:
    parts: list[Template] = [
        argument if part == Param("_") else (part,) for part in template
    ]
    return _join(*parts)


def _scan_once(source: Source) -> bool:
    changed = False
    for module_name, module in source.modules.items():
        for function in _functions(module):
            params = _params(function)
            for call in _calls(module, function):
                for argument, templates in _name_arguments(source, call):
                    values = _templates(source, module_name, function, argument)
                    where = "%s:%d" % (module_name, call.lineno)
                    if values is None:
                        problem = "%s: %s" % (where, ast.unparse(argument))
                        if problem not in source.unresolved:
                            source.unresolved.append(problem)
                        continue
                    for template, value in itertools.product(templates, values):
                        changed |= _record(
                            source,
                            function,
                            params,
                            _substitute(template, value),
                            where,
                        )
    return changed


def _record(
    source: Source,
    function: ast.FunctionDef | None,
    params: list[str],
    template: Template,
    where: str,
) -> bool:
    """A concrete name found, or `function` learnt to be a reader of a parameter."""
    open_params = {p.name for p in template if isinstance(p, Param)}
    if not open_params:
        name = "".join(str(p) for p in template)
        before = len(source.names.get(name, ()))
        source.names.setdefault(name, set()).add(where)
        return len(source.names[name]) != before
    assert function is not None and len(open_params) == 1, where
    (param,) = open_params
    key = (params.index(param), param)
    known = source.readers.setdefault(function.name, {}).setdefault(key, set())
    if template in known:
        return False
    known.add(template)
    return True


def read_setting_names(files: dict[str, str]) -> Source:
    """Every app setting name the given sources read, with where each is read."""
    source = Source({name: ast.parse(text) for name, text in files.items()})
    _module_constants(source)
    for _ in range(20):
        if not _scan_once(source):
            return source
    raise AssertionError("setting reader scan did not settle")


def _code_files() -> dict[str, str]:
    paths = [ROOT / "function_app.py", *sorted((ROOT / "shared").rglob("*.py"))]
    return {str(p.relative_to(ROOT)): p.read_text(encoding="utf-8") for p in paths}


@cache
def _code() -> Source:
    return read_setting_names(_code_files())


def _binding_settings() -> tuple[set[str], set[str]]:
    """`%NAME%` settings and `connection=` names in function_app.py's decorators."""
    tree = ast.parse((ROOT / "function_app.py").read_text(encoding="utf-8"))
    percent, connections = set(), set()
    for node in ast.walk(tree):
        if isinstance(node, ast.keyword) and isinstance(node.value, ast.Constant):
            value = node.value.value
            if isinstance(value, str):
                percent |= set(re.findall(r"%(\w+)%", value))
                if node.arg == "connection":
                    connections.add(value)
    return percent, connections


# --- the scanner itself ----------------------------------------------------------

SAMPLE_SOURCES = {
    "sample/settings.py": (
        "def setting(environ, name, default=None):\n"
        "    return environ.get(name, default)\n"
    ),
    "sample/http.py": (
        "PREFIX_DEFAULT = 'AGENT'\n"
        "def number(environ, name, default, *, minimum):\n"
        "    return float(setting(environ, name) or default)\n"
        "def options(environ, prefix):\n"
        "    return (number(environ, prefix + '_TIMEOUT', 1, minimum=0),\n"
        "            setting(environ, prefix + '_CA'))\n"
    ),
    "sample/use.py": (
        "CONNECTION = 'Storage'\n"
        "CHANNELS = {1: 'TEAMS_URL', 2: 'SLACK_URL'}\n"
        "class Reader:\n"
        "    def read(self, environ):\n"
        "        options(environ, 'ARC')\n"
        "        setting(environ, CONNECTION + '__uri')\n"
        "        for kind, name in CHANNELS.items():\n"
        "            setting(environ, name)\n"
        "        return os.environ.get('PLAIN')\n"
    ),
}


def test_scanner_follows_constants_prefixes_loops_and_wrappers() -> None:
    source = read_setting_names(SAMPLE_SOURCES)

    assert set(source.names) == {
        "ARC_TIMEOUT",
        "ARC_CA",
        "Storage__uri",
        "TEAMS_URL",
        "SLACK_URL",
        "PLAIN",
    }
    assert source.unresolved == []


def test_scanner_reports_a_name_it_cannot_work_out() -> None:
    files = dict(SAMPLE_SOURCES)
    files["sample/bad.py"] = (
        "def f(environ, kind):\n    setting(environ, kind.upper())\n"
    )

    source = read_setting_names(files)

    assert source.unresolved == ["sample/bad.py:2: kind.upper()"]


def test_scanner_finds_the_settings_the_readme_documents() -> None:
    names = set(_code().names)

    assert {
        "INVENTORY_BLOB_URL",
        "AGENT_TIMEOUT_SECONDS",
        "ARC_POLL_SECONDS",
        "TEAMS_WEBHOOK_URL",
        "AzureWebJobsStorage__clientId",
        "AZURE_CLOUD",
    } <= names
    assert _code().unresolved == [], "make these setting names literals or constants"


# --- app settings ----------------------------------------------------------------


def test_every_setting_the_code_reads_is_deployed_or_explained() -> None:
    percent, _ = _binding_settings()
    read = set(_code().names) | percent
    deployed = set(_app_settings())

    missing = read - deployed - set(LOCAL_ONLY) - set(NOT_DEPLOYED)
    stale = (set(LOCAL_ONLY) | set(NOT_DEPLOYED)) - set(_code().names)

    assert not missing, "deploy these in infra/main.bicep or explain them: %s" % sorted(
        missing
    )
    assert not stale, "no longer read by the code: %s" % sorted(stale)
    assert not deployed & (set(LOCAL_ONLY) | set(NOT_DEPLOYED))


def test_every_deployed_setting_is_read_by_the_code_or_the_platform() -> None:
    percent, _ = _binding_settings()

    unknown = set(_app_settings()) - set(_code().names) - percent - PLATFORM_SETTINGS

    assert not unknown, "misspelt or unused settings: %s" % sorted(unknown)


def test_binding_connections_are_identity_based() -> None:
    _, connections = _binding_settings()
    settings = _app_settings()

    assert connections == {"AzureWebJobsStorage"}
    for connection in connections:
        assert connection not in settings  # a connection string
        for part in ("blobServiceUri", "queueServiceUri", "tableServiceUri"):
            (value,) = settings["%s__%s" % (connection, part)]
            kind = part.removesuffix("ServiceUri")
            assert _accessor(value) == [
                "storage",
                "properties",
                "primaryEndpoints",
                kind,
            ]
        assert settings[connection + "__credential"] == ["managedidentity"]
        assert [_accessor(v) for v in settings[connection + "__clientId"]] == [
            ["identity", "properties", "clientId"]
        ]
    assert [_accessor(v) for v in settings["AZURE_CLIENT_ID"]] == [
        ["identity", "properties", "clientId"]
    ]


def _called_functions(template: dict[str, Any]) -> set[str]:
    """Names of the functions a template calls, `x.listKeys()` style included."""
    called = set()
    for node in _walk(template):
        if not isinstance(node, dict):
            continue
        function = node.get("function")
        if isinstance(function, dict):
            called.add(function["type"])
            called.add(function.get("parameters", {}).get("func_name", ""))
        operator = node.get("operator")
        if isinstance(operator, dict) and operator["type"] == "function_accessor":
            called.add(operator["operands"]["func_name"])
    return called


def test_no_account_key_or_storage_connection_string_anywhere() -> None:
    called = _called_functions(_main()) | _called_functions(_parsed(ARC_MODULE))
    strings = [s for s in _walk(_main()) if isinstance(s, str)]

    # listKeys, listAccountSas, list_func ...: every way to read a key or a SAS.
    assert not {f for f in called if f.lower().startswith("list")}, called
    assert not [s for s in strings if "AccountKey" in s or "EndpointsProtocol" in s]
    assert not [n for n in _app_settings() if n.upper().startswith("WEBSITE_CONTENT")]


def test_secret_settings_are_key_vault_references_only() -> None:
    settings = _app_settings()
    secret_names = _variable("secretNames")
    readme = (INFRA / "README.md").read_text(encoding="utf-8")

    assert _variable("vaultSecretUri") == "${vault.properties.vaultUri}secrets/"
    assert set(settings) & SECRET_SETTINGS == SECRET_SETTINGS
    for name in SECRET_SETTINGS:
        for value in settings[name]:
            match = re.fullmatch(
                r"@Microsoft\.KeyVault\(SecretUri=\$\{vaultSecretUri\}"
                r"\$\{secretNames\.(\w+)\}\)",
                value,
            )
            assert match, "%s must be a Key Vault reference, not %r" % (name, value)
            # The deployer sets the secret by hand: the README must name it.
            assert "`%s`" % secret_names[match.group(1)] in readme, name
    secure = [
        name
        for name, parameter in _main()["parameters"].items()
        if any(d["type"] == "secure" for d in parameter["decorators"])
    ]
    assert secure == []  # no secret passes through the deployment itself


def test_no_setting_flex_consumption_rejects() -> None:
    site = _site()
    site_config = site["properties"]["siteConfig"]

    assert not set(_app_settings()) & FLEX_REJECTED
    assert not {"linuxFxVersion", "alwaysOn"} & {
        key for node in _walk(site) if isinstance(node, dict) for key in node
    }
    assert site_config["minTlsVersion"] == "1.2"


# --- names the code uses ---------------------------------------------------------


def test_queues_are_the_code_queues() -> None:
    assert _resource("queues")["parent"] == "queueService"
    assert _main()["resources"]["queues"]["config"]["loop_type"]["detail"] == {
        "item_name": "queueName",
        "array_name": "queueNames",
    }
    assert _resource("queues")["name"] == "queueName"
    assert set(_variable("queueNames")) == {
        SCAN_QUEUE,
        POISON_QUEUE,
        ALERTS_QUEUE,
        ALERTS_QUEUE + "-poison",
    }


def test_tables_are_the_code_tables() -> None:
    defaults = TableNames()

    assert _main()["resources"]["tables"]["config"]["loop_type"]["detail"] == {
        "item_name": "tableName",
        "array_name": "tableNames",
    }
    assert _resource("tables")["name"] == "tableName"
    assert set(_variable("tableNames")) == {
        defaults.findings,
        defaults.history,
        defaults.scans,
        DELIVERIES_TABLE,
    }


def test_schedules_default_to_valid_ncrontab_and_the_code_default() -> None:
    parameters = _main()["parameters"]
    scan = parameters["scanSchedule"]["default"]
    watchdog = parameters["watchdogSchedule"]["default"]

    assert scan == DEFAULT_SCAN_SCHEDULE
    assert schedule_period(watchdog, "WATCHDOG_SCHEDULE") < schedule_period(scan)
    assert _app_settings()["SCAN_SCHEDULE"] == ["scanSchedule"]
    assert _app_settings()["WATCHDOG_SCHEDULE"] == ["watchdogSchedule"]


def test_azure_cloud_follows_the_deployment_cloud() -> None:
    parameter = _main()["parameters"]["azureCloud"]
    allowed = next(d for d in parameter["decorators"] if d["type"] == "allowed")
    condition = _variable("appCloud")["operator"]["operands"]
    by_environment = _variable("cloudByEnvironment")

    assert set(allowed["argument"]) == {"", *CLOUDS}
    assert by_environment == {
        "AzureCloud": "public",
        "AzureUSGovernment": "usgovernment",
        "AzureChinaCloud": "china",
    }
    lookup = condition["true_value"]["operator"]["operands"]
    assert lookup["operand_1"] == "cloudByEnvironment"
    assert _accessor(lookup["operand_2"]) == [
        {"function": {"type": "environment"}},
        "name",
    ]
    assert _app_settings()["AZURE_CLOUD"] == [_expand("appCloud", _main(), frozenset())]


def test_inventory_setting_points_into_the_inventory_container() -> None:
    (value,) = _app_settings()["INVENTORY_BLOB_URL"]

    assert value == (
        "${storage.properties.primaryEndpoints.blob}"
        "${inventoryContainerName}/${inventoryBlobName}"
    )
    assert _resource("inventoryContainer")["name"] == "inventoryContainerName"
    assert _resource("inventoryContainer")["parent"] == "blobService"


# --- hardening -------------------------------------------------------------------


def test_storage_account_is_entra_only_and_tls_12() -> None:
    properties = _resource("storage")["properties"]

    assert properties["allowSharedKeyAccess"] is False
    assert properties["allowBlobPublicAccess"] is False
    assert properties["minimumTlsVersion"] == "TLS1_2"
    assert properties["supportsHttpsTrafficOnly"] is True
    assert properties["defaultToOAuthAuthentication"] is True


def test_containers_are_private() -> None:
    containers = [
        symbol
        for symbol, resource in _main()["resources"].items()
        if resource["type"].endswith("/blobServices/containers")
    ]

    assert set(containers) >= {"deploymentContainer", "inventoryContainer"}
    for symbol in containers:
        assert _resource(symbol)["properties"]["publicAccess"] == "None"


def test_key_vault_uses_rbac_and_purge_protection() -> None:
    properties = _resource("vault")["properties"]

    assert properties["enableRbacAuthorization"] is True
    assert properties["enablePurgeProtection"] is True
    assert properties["enableSoftDelete"] is True


def test_app_insights_takes_only_entra_telemetry() -> None:
    properties = _resource("appInsights")["properties"]
    (authentication,) = _app_settings()["APPLICATIONINSIGHTS_AUTHENTICATION_STRING"]

    assert properties["DisableLocalAuth"] is True
    assert _accessor(properties["WorkspaceResourceId"]) == ["workspace", "id"]
    assert authentication == (
        "ClientId=${identity.properties.clientId};Authorization=AAD"
    )


# --- roles -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("role", "scope", "conditional"),
    [
        (BLOB_DATA_OWNER, "storage", False),
        (QUEUE_DATA_CONTRIBUTOR, "storage", False),
        (TABLE_DATA_CONTRIBUTOR, "storage", False),
        (KEY_VAULT_SECRETS_USER, "vault", False),
        (MONITORING_METRICS_PUBLISHER, "appInsights", False),
        (BLOB_DELEGATOR, "storage", True),
    ],
)
def test_identity_holds_role_on_its_resource(
    role: str, scope: str, conditional: bool
) -> None:
    matches = {
        symbol: found
        for symbol, found in _role_assignments(_main()).items()
        if found["role"] == role
    }

    assert len(matches) == 1, "one assignment of %s, found %s" % (role, matches)
    ((symbol, found),) = matches.items()
    body = found["body"]
    assert body["scope"] == scope
    assert _accessor(body["properties"]["principalId"]) == [
        "identity",
        "properties",
        "principalId",
    ]
    assert body["properties"]["principalType"] == "ServicePrincipal"
    assert (_condition(symbol) is not None) is conditional


def test_no_role_is_granted_above_its_resource() -> None:
    for symbol, found in _role_assignments(_main()).items():
        assert found["body"]["scope"] in {"storage", "vault", "appInsights"}, symbol


def test_the_app_waits_for_its_roles() -> None:
    depends = set(_site()["dependsOn"])
    unconditional = {
        symbol for symbol in _role_assignments(_main()) if _condition(symbol) is None
    }

    assert unconditional <= depends


def test_arc_access_is_scoped_to_the_machines_resource_group() -> None:
    module = _main()["modules"]["arcAccess"]
    scope = module["config"]["config"]["scope"]["function"]
    condition = module["config"]["condition"]["operator"]

    assert module["detail"]["path"] == "modules/arc-access.bicep"
    assert scope["type"] == "resource_group"
    assert scope["parameters"] == {
        "resource_group_name": "arcResourceGroupName",
        "subscription_id": "arcSubscriptionId",
    }
    assert condition["type"] == "not"  # only when a resource group is named
    arc = _parsed(ARC_MODULE)
    assert arc["globals"]["scope"]["value"] == "resourceGroup"
    (assignment,) = _role_assignments(arc).values()
    assert "scope" not in assignment["body"]  # the module's resource group
    choice = assignment["role"]["operator"]["operands"]
    assert _expand(choice["true_value"], arc, frozenset()) == {
        "function": {
            "type": "guid",
            "parameters": _variable("customRoleId", arc)["function"]["parameters"],
        }
    }
    assert (
        _expand(choice["false_value"], arc, frozenset())
        == CONNECTED_MACHINE_RESOURCE_ADMINISTRATOR
    )


def test_arc_custom_role_grants_what_the_agent_guide_lists() -> None:
    arc = _parsed(ARC_MODULE)
    role = _resource("arcCollectorRole", arc)["properties"]
    (permission,) = role["permissions"]
    guide = (ROOT / "agent" / "README.md").read_text(encoding="utf-8")
    block = next(
        json.loads(b)
        for b in re.findall(r"```json\n(.*?)```", guide, re.DOTALL)
        if '"Actions"' in b
    )

    actions = _expand(permission["actions"], arc, frozenset())
    assert sorted(actions) == sorted(block["Actions"])
    assert permission["notActions"] == []
    assert [_accessor(s) for s in role["assignableScopes"]] == [
        [
            {
                "function": {
                    "type": "resource_group",
                    "parameters": {
                        "resource_group_name": None,
                        "subscription_id": None,
                    },
                }
            },
            "id",
        ]
    ]


# --- Flex Consumption ------------------------------------------------------------


def test_plan_is_flex_consumption_on_linux() -> None:
    plan = _resource("plan")

    assert plan["sku"] == {"name": "FC1", "tier": "FlexConsumption"}
    assert plan["properties"]["reserved"] is True
    assert "linux" in _site()["kind"].split(",")


def test_function_app_config_uses_the_identity_for_its_package() -> None:
    site = _site()
    config = site["properties"]["functionAppConfig"]
    storage = config["deployment"]["storage"]
    python = _main()["parameters"]["pythonVersion"]
    allowed = next(d for d in python["decorators"] if d["type"] == "allowed")

    assert storage["type"] == "blobContainer"
    assert storage["value"] == (
        "${storage.properties.primaryEndpoints.blob}${deploymentContainerName}"
    )
    assert storage["authentication"]["type"] == "UserAssignedIdentity"
    assert _accessor(storage["authentication"]["userAssignedIdentityResourceId"]) == [
        "identity",
        "id",
    ]
    assert set(config["scaleAndConcurrency"]) == {
        "instanceMemoryMB",
        "maximumInstanceCount",
    }
    assert config["runtime"] == {"name": "python", "version": "pythonVersion"}
    assert set(allowed["argument"]) <= {"3.11", "3.12"}
    assert python["default"] == "3.11"
    assert site["properties"]["httpsOnly"] is True
    assert _accessor(site["properties"]["keyVaultReferenceIdentity"]) == [
        "identity",
        "id",
    ]
    assert site["identity"]["type"] == "UserAssigned"


# --- the example parameters ------------------------------------------------------


def test_example_parameters_fit_the_template() -> None:
    example = json.loads(
        (INFRA / "main.parameters.example.json").read_text(encoding="utf-8")
    )
    parameters = _main()["parameters"]
    kinds = {"string": str, "bool": bool, "int": int, "object": dict}

    for name, entry in example["parameters"].items():
        assert name in parameters, name
        declared = parameters[name]
        assert isinstance(entry["value"], kinds[declared["type"]]), name
        for decorator in declared["decorators"]:
            if decorator["type"] == "allowed":
                assert entry["value"] in decorator["argument"], name
    extras = example["parameters"].get("extraAppSettings", {}).get("value", {})
    assert set(extras) <= set(NOT_DEPLOYED), "extraAppSettings is for tuning"
