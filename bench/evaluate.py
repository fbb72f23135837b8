"""Parse and judge 100,000 Send connectors, and say how many per second.

    .venv/bin/python bench/evaluate.py [--documents 1000] [--connectors 100]

The documents are built in memory before the clock starts: agent documents of
`--connectors` connectors each, in the value forms DESIGN §3.1 lists (enum names,
numbers and objects, bools as strings, one-string and remoting-string address spaces,
smart-host objects), one in four written as UTF-16 LE with a BOM as Windows PowerShell
5.1 writes it. Parsing and evaluating are timed apart, so the figure says which of the
two the time goes to; plain `json.loads` of the same bytes is timed too, as the floor
under parsing.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from shared.model import Policy, Snapshot, Status
from shared.parse import parse_document
from shared.rules import evaluate

SHAPES: list[dict[str, Any]] = [
    # passes on DomainValidation
    {"AddressSpaces": ["SMTP:contoso.example;1"], "TlsAuthLevel": "DomainValidation"},
    # the EdgeSync inbound connector, enum as a number
    {"AddressSpaces": "SMTP:--;1", "SmartHosts": ["--"], "TlsAuthLevel": 4},
    # passes on DomainSecure
    {
        "AddressSpaces": ["SMTP:corp.contoso.example;1"],
        "DomainSecureEnabled": "True",
        "TlsAuthLevel": None,
        "TlsDomain": None,
        "RequireTLS": "False",
    },
    # open: certificate validation only, enum as an object
    {"AddressSpaces": ["SMTP:hub.contoso.example;1"], "TlsAuthLevel": {"value": 2}},
    # the internet connector: not applicable
    {"AddressSpaces": "{SMTP:*;100}", "RequireTLS": False, "TlsAuthLevel": None},
    # a partner: needs the EDSP
    {"AddressSpaces": ["SMTP:fabrikam.example;1"], "TlsDomain": "fabrikam.example"},
    # hybrid, smart host as an object: needs the EDSP
    {
        "AddressSpaces": [{"Type": "SMTP", "Address": "*", "Cost": 1}],
        "SmartHosts": [
            {
                "Address": "0.0.0.0",  # noqa: S104 - Exchange's value for a named host
                "IsIPAddress": False,
                "Domain": "contoso-com.mail.protection.outlook.com",
            }
        ],
        "DNSRoutingEnabled": False,
    },
    # open: wildcard TlsDomain hidden in a domain object
    {"TlsDomain": {"Domain": "contoso.example", "IncludeSubDomains": True}},
]


def connector(index: int) -> dict[str, Any]:
    base: dict[str, Any] = {
        "Name": "Connector %05d" % index,
        "Identity": "Connector %05d" % index,
        "Guid": "00000000-0000-4000-8000-%012d" % index,
        "Enabled": True,
        "AddressSpaces": ["SMTP:contoso.example;1"],
        "SmartHosts": [],
        "DNSRoutingEnabled": True,
        "RequireTLS": True,
        "TlsAuthLevel": "DomainValidation",
        "TlsDomain": "contoso.example",
        "DomainSecureEnabled": False,
        "IgnoreSTARTTLS": False,
        "SourceTransportServers": ["EDGE01"],
    }
    base.update(SHAPES[index % len(SHAPES)])
    return base


def documents(count: int, per_document: int) -> list[bytes]:
    built = []
    for number in range(count):
        doc = {
            "schemaVersion": 1,
            "collectedAt": "2026-11-30T06:00:05Z",
            "server": {"name": "EDGE%04d" % number, "role": "Edge"},
            "acceptedDomains": [
                {"DomainName": "contoso.example", "DomainType": "Authoritative"},
                {"DomainName": "corp.contoso.example", "DomainType": "Authoritative"},
            ],
            "transportConfig": {
                "TLSSendDomainSecureList": ["corp.contoso.example"],
                "TLSReceiveDomainSecureList": ["corp.contoso.example"],
            },
            "sendConnectors": [
                connector(number * per_document + index)
                for index in range(per_document)
            ],
        }
        text = json.dumps(doc, indent=2)
        if number % 4 == 3:
            built.append(b"\xff\xfe" + text.encode("utf-16-le"))
        else:
            built.append(text.encode("utf-8"))
    return built


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--documents", type=int, default=1000)
    parser.add_argument("--connectors", type=int, default=100)
    args = parser.parse_args(argv)

    inputs = documents(args.documents, args.connectors)
    total = args.documents * args.connectors
    size = sum(len(data) for data in inputs)
    policy = Policy()

    started = time.perf_counter()
    snapshots: list[Snapshot] = [
        parse_document(data, source_name="bench") for data in inputs
    ]
    parsed = time.perf_counter()
    verdicts = [evaluate(snapshot, policy) for snapshot in snapshots]
    judged = time.perf_counter()

    # The floor under parsing: the standard library decoding the same bytes.
    for data in inputs:
        json.loads(data.decode("utf-16" if data.startswith(b"\xff\xfe") else "utf-8"))
    decoded = time.perf_counter()

    statuses = Counter(f.status for v in verdicts for f in v.findings)
    assert sum(statuses.values()) == total, "every connector gets one finding"
    parse_seconds = parsed - started
    evaluate_seconds = judged - parsed
    seconds = judged - started
    print(
        "connectors=%d documents=%d input_mib=%.1f"
        % (total, args.documents, size / 1024 / 1024)
    )
    print(
        "parse_s=%.2f evaluate_s=%.2f total_s=%.2f"
        % (parse_seconds, evaluate_seconds, seconds)
    )
    print(
        "parse_share=%.0f%% evaluate_share=%.0f%% parse_to_evaluate=%.1f"
        % (
            100 * parse_seconds / seconds,
            100 * evaluate_seconds / seconds,
            parse_seconds / evaluate_seconds,
        )
    )
    print(
        "json_loads_s=%.2f parse_to_json_loads=%.1f"
        % (decoded - judged, parse_seconds / (decoded - judged))
    )
    print(
        "statuses %s"
        % " ".join("%s=%d" % (status.value, statuses[status]) for status in Status)
    )
    print("connectors_per_second=%.0f" % (total / seconds))
    return 0


if __name__ == "__main__":
    sys.exit(main())
