"""The command line: `python -m shared evaluate|scan|findings …`.

Exit codes: 0 when a verdict (or a scan) was produced, whatever it says; 1 on a storage
or runtime failure; 2 with one line on stderr for a usage error.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from shared.assess import assess
from shared.errors import InputError, StigwatchError, UsageError
from shared.model import Domain, Policy, Verdict
from shared.parse import read_input
from shared.policy import load_policy
from shared.rules import not_reviewed
from shared.settings import document_max_bytes
from shared.stig import RULE

# Subcommands that live in their own modules: each module has
# `add_arguments(parser)` and `run(args) -> int`.
COMMAND_MODULES: dict[str, tuple[str, str]] = {
    "scan": (
        "shared.local",
        "scan every target of an inventory and store the findings",
    ),
    "findings": ("shared.local", "list the stored findings"),
}


class _Parser(argparse.ArgumentParser):
    """argparse that reports a usage error in one line."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, "%s: error: %s (see --help)\n" % (self.prog, message))


def main(argv: Sequence[str] | None = None) -> int:
    parser = _Parser(prog="python -m shared", description=RULE.title)
    commands = parser.add_subparsers(
        dest="command", required=True, parser_class=_Parser
    )
    evaluate = commands.add_parser(
        "evaluate",
        help="judge one agent document, ConvertTo-Json output or CliXML file",
    )
    evaluate.add_argument("input", type=Path, help="the file to judge")
    evaluate.add_argument("--policy", type=Path, help="the site policy (EDSP) as JSON")
    evaluate.add_argument(
        "--internal-domain",
        action="append",
        default=[],
        metavar="D",
        help="an internal SMTP domain (repeat for more); overrides the policy",
    )
    evaluate.add_argument("--format", choices=("text", "json"), default="text")
    evaluate.set_defaults(run=run_evaluate)
    for name, (module_name, help_text) in COMMAND_MODULES.items():
        # The module parses its own options (and --help) in _run_module.
        sub = commands.add_parser(name, help=help_text, add_help=False)
        sub.set_defaults(module=module_name, subcommand=name)

    args, extra = parser.parse_known_args(argv)
    try:
        if getattr(args, "module", None):
            return _run_module(args, extra)
        if extra:
            evaluate.error("unrecognized arguments: %s" % " ".join(extra))
        return int(args.run(args))
    except UsageError as error:
        print("python -m shared %s: error: %s" % (args.command, error), file=sys.stderr)
        return 2
    except StigwatchError as error:
        print(
            "python -m shared %s: failed: %s" % (args.command, error), file=sys.stderr
        )
        return 1


def _run_module(args: argparse.Namespace, extra: list[str]) -> int:
    module = importlib.import_module(args.module)
    parser = _Parser(prog="python -m shared %s" % args.subcommand)
    module.add_arguments(parser, args.subcommand)
    return int(module.run(parser.parse_args(extra), args.subcommand))


def run_evaluate(args: argparse.Namespace) -> int:
    policy = load_policy(args.policy) if args.policy else Policy()
    internal = [_domain_option(text) for text in args.internal_domain]
    path: Path = args.input
    if path.is_dir():
        raise UsageError("%s is a folder; give the file to judge" % path)
    try:
        data = read_input(path, document_max_bytes(os.environ))
    except InputError as error:
        verdict = not_reviewed(path.stem, str(error))
    else:
        verdict = assess(
            data,
            source_name=path.stem,
            policy=policy,
            internal_domains=internal or None,
        )
    if args.format == "json":
        print(json.dumps(verdict.as_dict(), indent=2, ensure_ascii=False))
    else:
        print(render_text(verdict))
    return 0


def _domain_option(text: str) -> Domain:
    try:
        domain = Domain.parse(text)
    except ValueError as error:
        raise UsageError("--internal-domain: %s" % error) from None
    if domain.is_wildcard:
        raise UsageError(
            "--internal-domain %r is a wildcard; give the domain itself, such as "
            "contoso.example (its subdomains are covered)" % text
        )
    return domain


def render_text(verdict: Verdict) -> str:
    """A readable table: the target's status on top, one row per connector."""
    lines = [
        "%s: %s   (%s %s, %s, %s)"
        % (
            verdict.target,
            verdict.status.value,
            RULE.stig_id,
            RULE.vuln_id,
            RULE.category,
            RULE.title,
        )
    ]
    if verdict.findings:
        width = max(len("CONNECTOR"), *(len(f.connector) for f in verdict.findings))
        width = min(width, 40)
        lines.append("")
        lines.append(
            "%-*s  %-14s  %-16s  %s"
            % (width, "CONNECTOR", "STATUS", "METHOD", "REASON")
        )
        for finding in verdict.findings:
            reason = "; ".join(finding.reasons) or finding.scope
            wrapped = textwrap.wrap(reason, 100) or [""]
            lines.append(
                "%-*s  %-14s  %-16s  %s"
                % (
                    width,
                    finding.connector[:width],
                    finding.status.value,
                    finding.method.value if finding.method else "-",
                    wrapped[0],
                )
            )
            indent = " " * (width + 36)
            lines.extend(indent + more for more in wrapped[1:])
            lines.extend(indent + "fix: " + line for line in finding.remediation)
    else:
        lines.append("")
        lines.append("no Send connector findings")
    if verdict.notes:
        lines.append("")
        lines.extend("note: " + note for note in verdict.notes)
    return "\n".join(lines)
