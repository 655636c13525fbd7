"""Docs stay true: every command has help, every option is in the README, AGENTS.md names only real
commands and options, and the generated command reference in README.md is current (cog)."""

import re
import subprocess
import sys
from pathlib import Path

import click
import pytest

from ibg_audit.cli import cli

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
COMMANDS = sorted(cli.commands)


def all_option_names(command: click.Command) -> set[str]:
    return {opt for p in command.params if isinstance(p, click.Option) for opt in p.opts + p.secondary_opts}


@pytest.mark.parametrize("name", COMMANDS)
def test_every_command_has_help(name):
    assert cli.commands[name].help and cli.commands[name].help.strip()


@pytest.mark.parametrize("name", COMMANDS)
def test_every_option_is_documented_in_readme(name):
    command = cli.commands[name]
    for p in command.params:
        if isinstance(p, click.Option):
            assert p.help, f"{name} {p.opts} has no help text"
            for opt in p.opts:
                if opt.startswith("--"):
                    assert opt in README, f"{name} {opt} is not in README.md"


def test_readme_command_reference_is_current():
    result = subprocess.run(
        [sys.executable, "-m", "cogapp", "--check", str(ROOT / "README.md")],
        capture_output=True, text=True, cwd=ROOT,
    )
    assert result.returncode == 0, "README.md is out of date: run .venv/bin/cog -r README.md\n" + result.stdout + result.stderr


def _code_in(text: str) -> list[str]:
    """The text of fenced code blocks and inline `code` spans: where a doc shows commands to run."""
    fenced = re.findall(r"^```[^\n]*\n(.*?)^```", text, flags=re.S | re.M)
    prose = re.sub(r"^```[^\n]*\n.*?^```", "", text, flags=re.S | re.M)
    return fenced + re.findall(r"`([^`\n]+)`", prose)


def _named_in(text: str) -> list[tuple[str, str]]:
    """(command, option) pairs for every ibg-audit / tools/ wrapper invocation shown in a doc's code."""
    aliases = {"tools/ibg_dump": "dump", "tools/ibg_order_smoke": "smoke"}
    pairs = []
    for code in _code_in(text):
        for line in code.splitlines():
            for match in re.finditer(r"(ibg-audit\s+([a-z][a-z-]*)|tools/ibg_dump|tools/ibg_order_smoke)([^|]*)", line):
                command = match.group(2) or aliases[match.group(1)]
                pairs.append((command, ""))
                pairs.extend((command, opt) for opt in re.findall(r"(?<![\w-])(--[a-z][a-z-]*)", match.group(3)))
    return pairs


@pytest.mark.parametrize("doc", ["README.md", "AGENTS.md"])
def test_docs_name_only_real_commands_and_options(doc):
    path = ROOT / doc
    if not path.exists():
        pytest.fail(f"{doc} is missing")
    named = _named_in(path.read_text())
    assert named, f"{doc} names no commands"
    for command, option in named:
        assert command in cli.commands, f"{doc} names `ibg-audit {command}`, which does not exist"
        if option:
            known = all_option_names(cli.commands[command]) | {"--help"}
            assert option in known, f"{doc} names `{command} {option}`, which does not exist"
