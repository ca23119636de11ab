"""`readiness`: gate a promotion, show readiness, record evidence and post pilot results from
a pipeline (docs/integrations/cli.md). It reads the service's address from READINESS_URL and
its credentials from READINESS_TOKEN, and talks to the service over HTTP only.

Exit codes: 0 allowed or done, 1 gate denied, 2 usage, 3 service unreachable (or 429/503
after the retries, or another 5xx), 4 a 401 or 403, 5 another 4xx."""

import json
import math
import os
import sys
from collections.abc import Mapping
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, NoReturn
from urllib.parse import quote, urlsplit

import httpx
import typer

from readiness_cli import output
from readiness_cli.http import (
    Client,
    CliError,
    RetryPolicy,
    UsageError,
    new_idempotency_key,
    tool_version,
)

OK, DENIED, USAGE, UNREACHABLE, REFUSED, REJECTED = 0, 1, 2, 3, 4, 5


# The service's values (openapi/openapi.json, checked by tests/cli/test_usage.py), kept here
# so that a typo is a usage error before anything is sent.
class GateStage(StrEnum):
    pilot = "pilot"
    production = "production"


class EvidenceStatus(StrEnum):
    met = "met"
    partial = "partial"
    not_met = "not_met"
    not_applicable = "not_applicable"


class GateFormat(StrEnum):
    text = "text"
    json = "json"
    github = "github"


class Format(StrEnum):
    text = "text"
    json = "json"


app = typer.Typer(
    name="readiness",
    help=(
        "Ask the Readiness service whether an AI system may enter a stage, and feed it"
        " evidence and pilot results. Reads READINESS_URL and READINESS_TOKEN."
    ),
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
evidence_app = typer.Typer(help="Record evidence for a control.")
pilot_app = typer.Typer(help="Post pilot results.")
app.add_typer(evidence_app, name="evidence")
app.add_typer(pilot_app, name="pilot")


def _show_version(value: bool) -> None:
    if value:
        print(f"readiness {tool_version() or 'unknown (not installed)'}")
        raise typer.Exit(OK)


@app.callback()
def _root(
    _version: Annotated[
        bool,
        typer.Option(
            "--version",
            help="Print the tool's version and exit.",
            is_eager=True,
            callback=_show_version,
        ),
    ] = False,
) -> None:
    # Options given before the command; the help text is the Typer app's.
    pass


SystemKey = Annotated[
    str, typer.Argument(help="The system's key.", metavar="SYSTEM", show_default=False)
]
TextFormat = Annotated[
    Format, typer.Option("--format", metavar="text|json", help="How to print the answer.")
]


def _setting(name: str, default: float, *, minimum: float, whole: bool = False) -> float:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise UsageError(f"{name} must be a number, not {raw!r}") from None
    if not math.isfinite(value) or value < minimum or (whole and not value.is_integer()):
        kind = "a whole number" if whole else "a number"
        raise UsageError(f"{name} must be {kind} of at least {minimum:g}, not {raw!r}")
    return value


def _client() -> Client:
    """A client for READINESS_URL with READINESS_TOKEN; READINESS_TIMEOUT (seconds per try,
    default 30), READINESS_RETRIES (default 4) and READINESS_RETRY_WAIT (seconds before the
    first retry, doubled for each next one, default 1) tune it."""
    url = os.environ.get("READINESS_URL", "").strip()
    if not url:
        raise UsageError("READINESS_URL is not set: the service's address, as https://host")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise UsageError("READINESS_URL must be an http:// or https:// address")
    token = os.environ.get("READINESS_TOKEN", "").strip()
    if not token:
        raise UsageError("READINESS_TOKEN is not set: an API key or OIDC token for the service")
    if not all("!" <= char <= "~" for char in token):
        # Said without the value: a header could not carry it, and an error would show it.
        raise UsageError("READINESS_TOKEN holds spaces or characters a header cannot carry")
    policy = RetryPolicy(
        retries=int(_setting("READINESS_RETRIES", 4, minimum=0, whole=True)),
        base_wait=_setting("READINESS_RETRY_WAIT", 1.0, minimum=0),
    )
    timeout = _setting("READINESS_TIMEOUT", 30.0, minimum=0.1)
    return Client(url, token, timeout=timeout, policy=policy)


def _segment(value: str) -> str:
    return quote(value, safe="")


def _problem_message(response: httpx.Response, problem: Any) -> str:
    status = response.status_code
    if not isinstance(problem, Mapping):
        return f"HTTP {status} {response.reason_phrase}".rstrip()
    slug = str(problem.get("type", "")).rsplit("/", 1)[-1]
    detail = problem.get("detail") or problem.get("title") or response.reason_phrase
    errors = problem.get("errors")
    if isinstance(errors, list) and errors:
        fields = "; ".join(
            f"{error.get('field')}: {error.get('message')}"
            for error in errors
            if isinstance(error, Mapping)
        )
        detail = f"{detail} ({fields})" if fields else detail
    return " ".join(f"HTTP {status} {slug}: {detail}".split())


def _exit_code(status: int) -> int:
    if status in (401, 403):
        return REFUSED
    if 400 <= status < 500:
        return REJECTED
    return UNREACHABLE


def _answer(response: httpx.Response) -> dict[str, Any]:
    """The JSON object of a 2xx answer; a CliError for anything else."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if response.is_success:
        if isinstance(body, dict):
            return body
        raise CliError(
            f"HTTP {response.status_code} from {response.request.url.path} is not a JSON"
            " object: is READINESS_URL the Readiness service?",
            UNREACHABLE,
        )
    raise CliError(_problem_message(response, body), _exit_code(response.status_code), body)


def _done(code: int) -> NoReturn:
    raise typer.Exit(code)


def _release(version: str | None, uri: str | None) -> dict[str, str] | None:
    if version is None:
        if uri is not None:
            raise UsageError("--release-uri needs --release")
        return None
    release = {"version": version}
    if uri is not None:
        release["uri"] = uri
    return release


def _show_denied(check: Mapping[str, Any], form: GateFormat) -> None:
    if form is GateFormat.json:
        output.print_json(check)
    elif form is GateFormat.github:
        output.print_github_gate(check)
    else:
        output.print_gate(check)


@app.command()
def gate(
    system: SystemKey,
    stage: Annotated[
        GateStage,
        typer.Option(
            "--stage", metavar="pilot|production", help="The stage to enter.", show_default=False
        ),
    ],
    release: Annotated[
        str | None,
        typer.Option(
            "--release", metavar="VERSION", help="The release (model version) to enter it."
        ),
    ] = None,
    release_uri: Annotated[
        str | None,
        typer.Option("--release-uri", metavar="URI", help="Where the release is (with --release)."),
    ] = None,
    record: Annotated[
        bool,
        typer.Option(
            "--record",
            help=(
                "When the gate allows it, record the move too, refused (exit 5) if the"
                " system left the stage the gate saw."
            ),
        ),
    ] = False,
    reason: Annotated[
        str | None,
        typer.Option("--reason", metavar="TEXT", help="Why the move is made (with --record)."),
    ] = None,
    form: Annotated[
        GateFormat,
        typer.Option("--format", metavar="text|json|github", help="How to print the answer."),
    ] = GateFormat.text,
    github_output: Annotated[
        str | None,
        typer.Option(
            "--github-output",
            metavar="FILE",
            help=(
                "Append the answer as step outputs to FILE (GitHub's $GITHUB_OUTPUT): allowed,"
                " score, gate-check-id, transition-id, already-recorded."
            ),
        ),
    ] = None,
) -> None:
    """May SYSTEM enter STAGE now? Exit 0 when allowed, 1 when denied (every blocking item
    printed)."""
    if reason is not None and not record:
        raise UsageError("--reason needs --record")
    if reason is not None and not reason.strip():
        raise UsageError("--reason must not be empty")
    release_body = _release(release, release_uri)
    key = new_idempotency_key()
    path = f"/v1/systems/{_segment(system)}"
    body: dict[str, Any] = {"target_stage": stage.value}
    if release_body:
        body["release"] = release_body
    with _client() as client:
        check = _answer(
            client.request(
                "POST", f"{path}/gate-checks", json=body, idempotency_key=f"{key}:gate-check"
            )
        )
        if not check.get("allowed"):
            _write_outputs(github_output, check)
            _show_denied(check, form)
            _done(DENIED)
        transition = None
        already = False
        if record:
            move: dict[str, Any] = {
                "to_stage": stage.value,
                "reason": reason or _default_reason(stage, release),
                "expected_stage": check["current_stage"],
            }
            if release_body:
                move["release"] = release_body
            response = client.request(
                "POST", f"{path}/transitions", json=move, idempotency_key=f"{key}:transition"
            )
            transition = _moved(response, check, form, github_output)
            # The service answers 200, not 201, when the release named is the one current in
            # that stage already: the transition that recorded it, nothing recorded anew. A
            # re-run of the same deploy job is done, not refused.
            already = response.status_code == 200
    _write_outputs(github_output, check, transition, already=already)
    if form is GateFormat.json:
        recorded = {"transition": transition, "already_recorded": already}
        output.print_json({**check, **recorded} if record else check)
    elif form is GateFormat.github:
        output.print_github_gate(check, transition, already=already)
    else:
        output.print_gate(check, transition, already=already)


def _default_reason(stage: GateStage, release: str | None) -> str:
    named = f" for release {release}" if release else ""
    return f"Gate to {stage.value} passed{named} (readiness gate --record)"


def _write_outputs(
    target: str | None,
    check: Mapping[str, Any],
    transition: Mapping[str, Any] | None = None,
    *,
    already: bool = False,
) -> None:
    if target is None:
        return
    values = {
        "allowed": "true" if check.get("allowed") else "false",
        "score": output.number(check.get("score")),
        "gate-check-id": str(check.get("id", "")),
        "transition-id": str(transition["id"]) if transition else "",
        "already-recorded": "true" if already else "false",
    }
    try:
        output.write_step_outputs(target, values)
    except OSError as error:
        raise UsageError(
            f"--github-output {target}: cannot be written ({error.strerror})"
        ) from None


def _moved(
    response: httpx.Response,
    check: Mapping[str, Any],
    form: GateFormat,
    github_output: str | None,
) -> dict[str, Any]:
    """The recorded transition. The transition re-checks the gate in its own transaction:
    a gate that closed since the check is a denial (exit 1), shown with its blocking items."""
    try:
        return _answer(response)
    except CliError as error:
        problem = error.problem
        if (
            response.status_code == 409
            and isinstance(problem, dict)
            and str(problem.get("type", "")).endswith("/gate-denied")
        ):
            if form is GateFormat.json:
                output.print_json(problem)
            else:
                closed = {**check, "allowed": False, "blocking": problem.get("blocking") or []}
                _show_denied(closed, form)
            _write_outputs(github_output, {**check, "allowed": False})
            _done(DENIED)
        raise


@app.command()
def status(
    system: SystemKey,
    form: TextFormat = Format.text,
) -> None:
    """SYSTEM's readiness: stage, tier, score and what blocks each gate."""
    with _client() as client:
        answer = _answer(client.request("GET", f"/v1/systems/{_segment(system)}/readiness"))
    if form is Format.json:
        output.print_json(answer)
    else:
        output.print_readiness(answer)


# The service's largest page (`limit` on its list operations).
MAX_PAGE = 200


@app.command()
def releases(
    system: SystemKey,
    limit: Annotated[
        int,
        typer.Option("--limit", min=1, metavar="N", help="Show at most N, newest first."),
    ] = 20,
    form: TextFormat = Format.text,
) -> None:
    """SYSTEM's releases, newest first: one line per period a release spent in a stage."""
    path = f"/v1/systems/{_segment(system)}/releases"
    items: list[Any] = []
    cursor: str | None = None
    with _client() as client:
        while len(items) < limit:
            params: dict[str, str | int] = {"limit": min(limit - len(items), MAX_PAGE)}
            if cursor:
                params["cursor"] = cursor
            page = _answer(client.request("GET", path, params=params))
            found = page.get("items")
            if not isinstance(found, list):
                raise CliError(f"GET {path} did not answer a page of items", UNREACHABLE)
            items += found[: limit - len(items)]
            cursor = page.get("next_cursor") or None
            if not cursor or not found:
                break
    if form is Format.json:
        # The service's page shape: next_cursor says there are more than --limit showed.
        output.print_json({"items": items, "next_cursor": cursor})
    else:
        output.print_releases(system, items, more=cursor is not None)


def _moment(value: str | None, option: str) -> str | None:
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        raise UsageError(f"{option} must be an RFC 3339 time, not {value!r}") from None
    if moment.tzinfo is None:
        raise UsageError(f"{option} needs a time zone, as 2027-06-30T00:00:00Z")
    return moment.isoformat()


@evidence_app.command("put")
def evidence_put(
    system: SystemKey,
    control: Annotated[
        str,
        typer.Argument(
            help="A control key (GET /v1/controls).", metavar="CONTROL", show_default=False
        ),
    ],
    status: Annotated[
        EvidenceStatus,
        typer.Option(
            "--status",
            metavar="met|partial|not_met|not_applicable",
            help="The control's status.",
            show_default=False,
        ),
    ],
    summary: Annotated[
        str | None, typer.Option("--summary", metavar="TEXT", help="What shows it.")
    ] = None,
    uri: Annotated[
        str | None, typer.Option("--uri", metavar="URI", help="Where the evidence is.")
    ] = None,
    expires_at: Annotated[
        str | None,
        typer.Option("--expires-at", metavar="TIME", help="RFC 3339 time after which it is stale."),
    ] = None,
    form: TextFormat = Format.text,
) -> None:
    """Record a new version of the evidence for CONTROL of SYSTEM."""
    body: dict[str, Any] = {"status": status.value}
    for name, value in (
        ("summary", summary),
        ("uri", uri),
        ("expires_at", _moment(expires_at, "--expires-at")),
    ):
        if value is not None:
            body[name] = value
    path = f"/v1/systems/{_segment(system)}/evidence/{_segment(control)}"
    with _client() as client:
        answer = _answer(client.request("PUT", path, json=body))
    if form is Format.json:
        output.print_json(answer)
    else:
        output.print_evidence(answer)


def _reject_constant(name: str) -> float:
    raise ValueError(f"{name} is not a number JSON allows")


def read_metrics(source: str) -> dict[str, float]:
    """The metrics file: one JSON object of metric names to numbers (`-`: standard input)."""
    label = "standard input" if source == "-" else f"metrics file {source}"
    try:
        text = sys.stdin.read() if source == "-" else Path(source).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UsageError(f"{label}: no such file") from None
    except (OSError, UnicodeDecodeError) as error:
        reason = error.strerror if isinstance(error, OSError) and error.strerror else error
        raise UsageError(f"{label}: cannot be read ({reason})") from None
    try:
        metrics = json.loads(text, parse_constant=_reject_constant)
    except ValueError as error:
        raise UsageError(f"{label} is not JSON: {error}") from None
    if not isinstance(metrics, dict):
        raise UsageError(
            f"{label} must hold a JSON object of metric names to numbers, not"
            f" {type(metrics).__name__ if metrics is not None else 'null'}"
        )
    if not metrics:
        raise UsageError(f"{label} holds no metrics")
    for name, value in metrics.items():
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise UsageError(f"{label}: metric {name!r} is not a number: {json.dumps(value)}")
    return metrics


@pilot_app.command("result")
def pilot_result(
    pilot_id: Annotated[
        int, typer.Argument(help="The pilot's id.", min=1, show_default=False, metavar="PILOT_ID")
    ],
    metrics_file: Annotated[
        str,
        typer.Option(
            "--metrics-file",
            metavar="FILE",
            help="A JSON object of metric names to numbers; - reads standard input.",
            show_default=False,
        ),
    ],
    run_id: Annotated[
        str | None, typer.Option("--run-id", metavar="ID", help="The run that measured them.")
    ] = None,
    pipeline: Annotated[
        str | None,
        typer.Option("--pipeline", metavar="NAME", help="The pipeline that measured them."),
    ] = None,
    sample_size: Annotated[
        int | None,
        typer.Option("--sample-size", min=0, metavar="N", help="How many cases were measured."),
    ] = None,
    finding: Annotated[
        list[str] | None,
        typer.Option(
            "--finding", metavar="FINDING", help="An organisational gap seen (repeatable)."
        ),
    ] = None,
    form: TextFormat = Format.text,
) -> None:
    """Post one result (the metrics measured) to pilot PILOT_ID."""
    body: dict[str, Any] = {"metrics": read_metrics(metrics_file)}
    source = {name: value for name, value in (("pipeline", pipeline), ("run_id", run_id)) if value}
    if source:
        body["source"] = source
    if sample_size is not None:
        body["sample_size"] = sample_size
    if finding:
        body["findings"] = finding
    with _client() as client:
        answer = _answer(
            client.request(
                "POST",
                f"/v1/pilots/{pilot_id}/results",
                json=body,
                idempotency_key=f"{new_idempotency_key()}:pilot-result",
            )
        )
    if form is Format.json:
        output.print_json(answer)
    else:
        output.print_pilot_result(answer)


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _format_option(args: list[str]) -> str | None:
    for index, arg in enumerate(args):
        if arg == "--format" and index + 1 < len(args):
            return args[index + 1]
        if arg.startswith("--format="):
            return arg.split("=", 1)[1]
    return None


def _report(error: CliError, args: list[str]) -> None:
    form = _format_option(args)
    message = _one_line(error.message)
    token = os.environ.get("READINESS_TOKEN", "").strip()
    if token:
        message = message.replace(token, "[READINESS_TOKEN]")  # never shown, whatever failed
    if form == "json" and error.problem is not None:
        output.print_json(error.problem)
    elif form == "github" and error.exit_code != USAGE:
        print(output.workflow_command("error", message, "readiness"), flush=True)
    print(f"readiness: {message}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    """Run one command; its exit code. Usage errors are one line on standard error (exit 2),
    never a traceback."""
    args = list(sys.argv[1:] if argv is None else argv)
    command = typer.main.get_command(app)
    try:
        result = command.main(args=args, prog_name="readiness", standalone_mode=False)
    except typer.TyperException as error:  # what the command line parser refused
        context = getattr(error, "ctx", None)
        where = getattr(context, "command_path", None) or "readiness"
        print(f"{where}: {_one_line(error.format_message())} (see {where} --help)", file=sys.stderr)
        return USAGE
    except typer.Abort:
        print("readiness: aborted", file=sys.stderr)
        return 130
    except CliError as error:
        _report(error, args)
        return error.exit_code
    return result if isinstance(result, int) else OK


def run() -> None:
    """The console script."""
    sys.exit(main())
