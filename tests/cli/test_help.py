"""``--help`` of every subcommand documents every flag it accepts, with its default."""

from __future__ import annotations

import argparse

import pytest

from cli.main import build_parser
from cli.training_kit_commands import KIT_COMMANDS
from tests.cli.run_cli import ROOT, run_cli

COMMANDS = (
    *("serve", "train", "evaluate", "export", "enroll-folder", "make-key"),
    *("compact", "backup", "restore", "export-hard-cases", "migrate"),
)


def _subparsers() -> dict[str, argparse.ArgumentParser]:
    (action,) = (a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def test_the_top_level_help_lists_every_command() -> None:
    done = run_cli("--help")
    assert done.returncode == 0, done.stderr
    assert list(_subparsers()) == list(COMMANDS)
    for command in COMMANDS:
        assert command in done.stdout


@pytest.mark.parametrize("command", ["serve", "enroll-folder", "make-key"])
def test_help_documents_every_flag_and_its_default(command: str) -> None:
    parser = _subparsers()[command]
    done = run_cli(command, "--help")
    assert done.returncode == 0, done.stderr
    flags = [a for a in parser._actions if a.option_strings and a.dest != "help"]
    assert flags
    for action in flags:
        assert action.help and action.help != argparse.SUPPRESS, action.option_strings
        assert "default" in action.help, action.option_strings
        for flag in action.option_strings:
            assert flag in done.stdout, flag


def test_enroll_folder_help_says_how_it_resumes() -> None:
    text = " ".join(run_cli("enroll-folder", "--help").stdout.split())
    assert "Resumable: the state file (ROOT/.centroid-retrieval-enroll.json unless --state)" in text
    for outcome in ("enrolled", "duplicate", "skipped-already", "rejected"):
        assert outcome in text


def test_kit_commands_pass_every_argument_to_the_kit() -> None:
    # --help included: the module's own, which lists its flags. One of the three is run (each
    # start imports torch, seconds on a shared CPU); they share the code path, and the table
    # below names a real module for each.
    done = run_cli("train", "--help")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage: python -m model.train")
    assert {c.name: c.module for c in KIT_COMMANDS} == {
        "train": "model.train",
        "evaluate": "model.evaluate",
        "export": "model.export",
    }
    for command in KIT_COMMANDS:
        source = (ROOT / command.module.replace(".", "/")).with_suffix(".py").read_text()
        assert "\ndef main(argv: list[str] | None = None) -> int:" in source, command.module
