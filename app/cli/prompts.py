"""``kb prompts``: list prompt versions and labels, move a label, roll it back, lock released versions.

Label positions live in the state store (``app.state``: Redis when ``REDIS_URL`` is set, else
the local state file under ``data_dir``), the one every running ``kb serve`` with the same
configuration reads: a label moved here is followed by every instance within
``prompts.refresh_s``. ``kb prompts lock`` works on the prompt folder itself (docs/prompts.md).
"""

from __future__ import annotations

import asyncio
import getpass
import logging
import socket
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import click
import msgspec

from app.config import load_settings
from app.errors import KBError
from app.logs import configure_logging
from app.prompting import LabelMove, PromptLabels, PromptRegistry, add_to_lock, check_lock
from app.prompting.overview import PromptsOverview, overview
from app.resources import prompts_dir
from app.settings import Settings
from app.state import open_state_store

__all__ = ["prompts_command"]

T = TypeVar("T")

_LABEL_OPTION = click.option(
    "--label", help="The label to move.", show_default="prompts.label, the one this environment follows"
)


@click.group("prompts")
def prompts_command() -> None:
    """Prompt versions and the labels that choose them (in the state store a running service reads)."""


@prompts_command.command("list")
@click.option("--json", "as_json", is_flag=True, help="One JSON object, as GET /admin/prompts returns it.")
def list_command(as_json: bool) -> None:
    """List prompts, versions, where each label points, experiments and pins."""
    settings = _settings()
    shown = _run(settings, overview)
    if as_json:
        sys.stdout.write(msgspec.json.encode(shown).decode() + "\n")
        return
    click.echo(_format(shown))


@prompts_command.command("promote")
@click.argument("name")
@click.argument("version")
@_LABEL_OPTION
def promote_command(name: str, version: str, label: str | None) -> None:
    """Point a label of prompt NAME at VERSION (e.g. `kb prompts promote answer v2`)."""
    settings = _settings()
    label = label or settings.prompts.label
    _report(_run(settings, lambda labels: labels.move(name, label, version, by=_who())), settings)


@prompts_command.command("rollback")
@click.argument("name")
@_LABEL_OPTION
def rollback_command(name: str, label: str | None) -> None:
    """Point a label of prompt NAME back at the version before its last move."""
    settings = _settings()
    label = label or settings.prompts.label
    _report(_run(settings, lambda labels: labels.rollback(name, label, by=_who())), settings)


@prompts_command.command("reset")
@click.argument("name")
@_LABEL_OPTION
def reset_command(name: str, label: str | None) -> None:
    """Forget where a label was moved: it follows the configuration (prompts.labels) again."""
    settings = _settings()
    label = label or settings.prompts.label
    _report(_run(settings, lambda labels: labels.reset(name, label, by=_who())), settings)


@prompts_command.command("lock")
@click.option("--check", is_flag=True, help="Change nothing; fail if a version is not locked or was edited.")
def lock_command(check: bool) -> None:
    """Release new prompt versions: add their content hashes to prompts.lock (existing entries
    are never changed)."""
    settings = _settings()
    directory = prompts_dir(settings.prompts.directory)
    try:
        if check:
            report = check_lock(directory)
            problems = [problem.message for problem in report.problems]
            problems += [
                f"{name}@{version} is not released yet: run `kb prompts lock`"
                for name, version in report.drafts
            ]
            if problems:
                raise click.ClickException("\n".join(problems))
            click.echo(f"{len(report.released)} released version(s) match {_lock_name(directory)}")
            return
        added = add_to_lock(directory)
    except KBError as exc:
        raise click.ClickException(exc.message) from None
    if not added:
        click.echo(f"nothing to release: every version is in {_lock_name(directory)}")
        return
    for name, version in added:
        click.echo(f"released {name}@{version}")


def _settings() -> Settings:
    try:
        settings = load_settings()
    except KBError as exc:
        raise click.ClickException(exc.message) from None
    configure_logging(json_lines=settings.env == "production", level=logging.WARNING)
    return settings


def _run(settings: Settings, work: Callable[[PromptLabels], Awaitable[T]]) -> T:
    """``work`` on the label positions in the configured state store, closed afterwards."""

    async def main() -> T:
        registry = PromptRegistry(prompts_dir(settings.prompts.directory))
        state = open_state_store(settings)
        try:
            return await work(PromptLabels(state, registry, settings.prompts))
        finally:
            await state.aclose()

    try:
        return asyncio.run(main())
    except KBError as exc:
        raise click.ClickException(exc.message) from None


def _who() -> str:
    try:
        user = getpass.getuser()
    except (OSError, KeyError):  # no login name in some containers
        user = "unknown"
    return f"{user}@{socket.gethostname()} (kb prompts)"


def _report(move: LabelMove, settings: Settings) -> None:
    if not move.changed:
        click.echo(f"{move.name} label {move.label} already points at {move.version}")
        return
    click.echo(
        f"{move.name} label {move.label}: {move.previous} -> {move.version} ({move.action}); every instance "
        f"follows within {settings.prompts.refresh_s:g}s"
    )


def _lock_name(directory: Path) -> str:
    return str(directory / "prompts.lock")


def _format(shown: PromptsOverview) -> str:
    lines = [
        f"this environment follows label {shown.label!r}; instances follow a moved label within {shown.refresh_s:g}s"
    ]
    for prompt in shown.prompts:
        lines += ["", prompt.name]
        for version in prompt.versions:
            state = "released" if version.released else "draft"
            lines.append(f"  {version.version:<8} {state:<8} {version.hash[:19]}  {version.description}")
        for view in prompt.labels:
            where = f"moved by {view.by} at {view.at}" if view.moved else "as configured"
            back = f"; rollback -> {view.rollback_to}" if view.rollback_to else ""
            mark = "  (followed here)" if view.followed else ""
            lines.append(f"  label {view.label} -> {view.version} ({where}{back}){mark}")
        for experiment in prompt.experiments:
            split = ", ".join(f"{v} {share:g}%" for v, share in experiment.weights.items())
            lines.append(f"  experiment {experiment.name}: {split}; the rest follow the label")
        for tenant, pinned in prompt.pins.items():
            lines.append(f"  pin tenant {tenant} -> {pinned}")
    return "\n".join(lines)
