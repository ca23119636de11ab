"""How the CLI shows the service's answers: readable text (rich tables), the answer itself as
JSON, or for GitHub Actions the text plus `::error::` workflow commands and a Markdown job
summary. Everything the service sent is shown as plain text, never as rich markup."""

import io
import json
import os
import shutil
import sys
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TextIO

from rich.console import Console
from rich.table import Table
from rich.text import Text

Answer = Mapping[str, Any]

# The GitHub Actions job summary file, where `--format github` appends its Markdown.
STEP_SUMMARY = "GITHUB_STEP_SUMMARY"
# Columns for tables written to a log or a pipe (a terminal's own width, or COLUMNS, wins):
# wide enough that a blocking item's detail stays on its line.
LOG_WIDTH = 160


@contextmanager
def console(file: TextIO | None = None) -> Iterator[Console]:
    """A rich console whose output reaches `file` (standard output) when the block ends, each
    line without the trailing blanks that pad table cells."""
    stream = file or sys.stdout
    columns = os.environ.get("COLUMNS", "")
    if columns.isdigit() and int(columns) > 0:
        width = int(columns)
    elif stream.isatty():
        width = shutil.get_terminal_size().columns
    else:
        width = LOG_WIDTH
    buffer = io.StringIO()
    yield Console(
        file=buffer, width=width, color_system=None, highlight=False, markup=False, emoji=False
    )
    for line in buffer.getvalue().splitlines():
        stream.write(line.rstrip() + "\n")
    stream.flush()


def print_json(answer: Any, file: TextIO | None = None) -> None:
    print(json.dumps(answer, indent=2, ensure_ascii=False), file=file or sys.stdout)


def number(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return "-" if value is None else str(value)


def _release(answer: Answer) -> str:
    release = answer.get("release") or {}
    return str(release.get("version")) if release.get("version") else ""


def blocking_table(items: Iterable[Answer], title: str | None = None) -> Table:
    table = Table(title=title, title_justify="left", show_edge=False, pad_edge=False)
    table.add_column("code", no_wrap=True)
    table.add_column("control", no_wrap=True)
    table.add_column("detail", overflow="fold")
    for item in items:
        table.add_row(
            Text(str(item.get("code", ""))),
            Text(str(item.get("control") or "-")),
            Text(str(item.get("detail", ""))),
        )
    return table


def gate_headline(check: Answer) -> str:
    key, target, current = check["system_key"], check["target_stage"], check["current_stage"]
    release = _release(check)
    if check.get("release_move") and release:
        # The system is in that stage already: what enters it is the release.
        subject = f"release {release} of {key}"
        if check["allowed"]:
            return f"ALLOWED: {subject} may enter {target}, the stage {key} is in"
        return f"DENIED: {subject} may not enter {target} yet, the stage {key} is in"
    if check["allowed"]:
        return f"ALLOWED: {key} may enter {target} (now {current})"
    if not check.get("move_valid", True):
        return (
            f"DENIED: {key} may not enter {target}: the lifecycle has no move {current} -> {target}"
        )
    return f"DENIED: {key} may not enter {target} yet (now {current})"


def gate_facts(check: Answer) -> str:
    facts = [
        f"score {number(check.get('score'))}, needs {number(check.get('required_score'))}",
        f"policy v{check.get('policy_version')}",
    ]
    if release := _release(check):
        facts.append(f"release {release}")
    return ", ".join(facts)


def recorded_line(transition: Answer, *, already: bool = False) -> str:
    """What --record did: a move between stages, a release entering the stage the system is
    in, or nothing, the release named being the one current there already."""
    release = _release(transition)
    stage, number = transition["to_stage"], transition["id"]
    if already:
        return f"release {release} was already recorded in {stage} (transition {number})"
    if transition["from_stage"] == stage and release:
        return (
            f"RECORDED: release {release} of {transition['system_key']} entered {stage}"
            f" (transition {number})"
        )
    return (
        f"RECORDED: {transition['system_key']} moved {transition['from_stage']} -> {stage}"
        f" (transition {number})"
    )


def print_gate(
    check: Answer,
    transition: Answer | None = None,
    file: TextIO | None = None,
    *,
    already: bool = False,
) -> None:
    with console(file) as out:
        out.print(gate_headline(check))
        out.print(gate_facts(check))
        blocking = check.get("blocking") or []
        if blocking:
            out.print()
            out.print(blocking_table(blocking, title=f"Blocking items ({len(blocking)})"))
        if transition is not None:
            out.print(recorded_line(transition, already=already))


def _escape_data(value: str) -> str:
    return value.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _escape_property(value: str) -> str:
    return _escape_data(value).replace(":", "%3A").replace(",", "%2C")


def workflow_command(kind: str, message: str, title: str | None = None) -> str:
    """A GitHub Actions workflow command (`::error title=...::message`), escaped as the
    runner expects so that no text from the service can start a command of its own."""
    properties = f" title={_escape_property(title)}" if title else ""
    return f"::{kind}{properties}::{_escape_data(message)}"


def _cell(value: Any) -> str:
    text = " ".join(str(value).split())
    text = text.replace("\\", "\\\\").replace("|", "\\|").replace("<", "&lt;")
    return text or "-"


def gate_summary(check: Answer, transition: Answer | None = None, *, already: bool = False) -> str:
    """The gate check as Markdown for the job summary."""
    verdict = "allowed" if check["allowed"] else "denied"
    lines = [
        f"### Readiness gate: `{check['system_key']}` to {check['target_stage']}: {verdict}",
        "",
        f"{_cell(gate_headline(check))}; {_cell(gate_facts(check))}.",
        "",
    ]
    blocking = check.get("blocking") or []
    if blocking:
        lines += ["| code | control | detail |", "| --- | --- | --- |"]
        lines += [
            f"| {_cell(item.get('code'))} | {_cell(item.get('control') or '-')} |"
            f" {_cell(item.get('detail'))} |"
            for item in blocking
        ]
        lines.append("")
    if transition is not None:
        line = recorded_line(transition, already=already).removeprefix("RECORDED: ")
        lines += [f"Recorded: {_cell(line)}.", ""]
    return "\n".join(lines) + "\n"


def print_github_gate(
    check: Answer,
    transition: Answer | None = None,
    file: TextIO | None = None,
    *,
    already: bool = False,
) -> None:
    print_gate(check, transition, file, already=already)
    out = file or sys.stdout
    title = f"Readiness gate: {check['system_key']} to {check['target_stage']}"
    if transition is not None and already:
        print(workflow_command("notice", recorded_line(transition, already=True), title), file=out)
    if not check["allowed"] and not check.get("blocking"):
        print(workflow_command("error", gate_headline(check), title), file=out)
    for item in check.get("blocking") or []:
        control = f" {item['control']}" if item.get("control") else ""
        message = f"{item.get('code')}{control}: {item.get('detail', '')}"
        print(workflow_command("error", message, title), file=out)
    out.flush()
    append_step_summary(gate_summary(check, transition, already=already))


def write_step_outputs(target: str, values: Mapping[str, str]) -> None:
    """Append `name=value` lines to GitHub's step outputs file. Each value is one line (the
    runner would read a line break as the start of another output)."""
    with Path(target).open("a", encoding="utf-8") as outputs:
        for name, value in values.items():
            outputs.write(f"{name}={' '.join(value.split())}\n")


def append_step_summary(markdown: str) -> None:
    target = os.environ.get(STEP_SUMMARY)
    if target:
        with Path(target).open("a", encoding="utf-8") as summary:
            summary.write(markdown)


def print_readiness(answer: Answer, file: TextIO | None = None) -> None:
    with console(file) as out:
        out.print(
            f"{answer['system_key']}: stage {answer['stage']}, risk tier {answer['risk_tier']},"
            f" score {number(answer['score'])} ({answer['level']}), policy"
            f" v{answer['policy_version']}"
        )
        for name, gate in (answer.get("gates") or {}).items():
            blocking = gate.get("blocking") or []
            if gate.get("ready"):
                out.print(f"{name} gate: ready")
                continue
            out.print(f"{name} gate: blocked by {len(blocking)} item(s)")
            if blocking:
                out.print(blocking_table(blocking))
        findings = answer.get("open_findings") or []
        if findings:
            named = ", ".join(f"{f['finding']} ({f['control']})" for f in findings)
            out.print(f"open findings: {named}")


def print_releases(
    system: str, items: Iterable[Answer], *, more: bool = False, file: TextIO | None = None
) -> None:
    rows = list(items)
    with console(file) as out:
        if not rows:
            out.print(f"{system}: no release recorded yet")
            return
        table = Table(show_edge=False, pad_edge=False)
        for column in ("version", "stage", "entered", "left", "transition"):
            table.add_column(column, no_wrap=column != "version", overflow="fold")
        for item in rows:
            table.add_row(
                Text(str(item.get("version"))),
                Text(str(item.get("stage"))),
                Text(str(item.get("entered_at"))),
                # No left_at: the release is in that stage now.
                Text(str(item.get("left_at") or "current")),
                Text(str(item.get("transition_id"))),
            )
        out.print(table)
        if more:
            out.print(f"older releases not shown: raise --limit (now {len(rows)})")


def print_evidence(answer: Answer, file: TextIO | None = None) -> None:
    stale = ", stale" if answer.get("stale") else ""
    with console(file) as out:
        out.print(
            f"Recorded {answer['system_key']} {answer['control']}: {answer['status']}"
            f" (version {answer['version']}{stale})"
        )


def _criteria_table(criteria: Iterable[Answer]) -> Table:
    table = Table(show_edge=False, pad_edge=False)
    for column in ("metric", "criterion", "value", "result"):
        table.add_column(column, no_wrap=column != "metric", overflow="fold")
    for criterion in criteria:
        table.add_row(
            Text(str(criterion["metric"])),
            Text(f"{criterion['op']} {number(criterion['target'])}"),
            Text(number(criterion.get("value"))),
            Text(str(criterion.get("result"))),
        )
    return table


def print_pilot_result(answer: Answer, file: TextIO | None = None) -> None:
    result, evaluation = answer["result"], answer["evaluation"]
    outcome = evaluation.get("outcome") or "not yet judged"
    with console(file) as out:
        out.print(
            f"Recorded result {result['id']} of pilot {result['pilot_id']}: pilot score"
            f" {number(evaluation.get('score'))}, outcome {outcome}"
        )
        if evaluation.get("criteria"):
            out.print(_criteria_table(evaluation["criteria"]))
        if result.get("unknown_metrics"):
            out.print(f"metrics no criterion uses: {', '.join(result['unknown_metrics'])}")
