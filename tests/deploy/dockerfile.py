"""What the image runs, read from the Dockerfile itself, so the deploy tests check the
command that ships rather than a copy of it."""

import json
import shlex
from dataclasses import dataclass
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Dockerfile:
    cmd: list[str]
    exposed_port: int
    user: str
    env: dict[str, str]

    def option(self, name: str) -> str:
        return self.cmd[self.cmd.index(name) + 1]


def instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined and comments dropped."""
    logical: list[str] = []
    pending = ""
    for line in path.read_text().splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    pairs = []
    for line in logical:
        keyword, _, arguments = line.strip().partition(" ")
        pairs.append((keyword.upper(), arguments.strip()))
    return pairs


def read_dockerfile(path: Path = PROJECT_ROOT / "Dockerfile") -> Dockerfile:
    found = instructions(path)
    starts = [index for index, (keyword, _) in enumerate(found) if keyword == "FROM"]
    image = found[starts[-1] :]  # the last stage is the image
    env: dict[str, str] = {}
    for keyword, arguments in image:
        if keyword == "ENV":
            env.update(pair.split("=", 1) for pair in shlex.split(arguments))
    last = dict(image)
    cmd = json.loads(last["CMD"])
    assert isinstance(cmd, list), "CMD must be the exec (JSON) form, so SIGTERM reaches uvicorn"
    return Dockerfile(cmd=cmd, exposed_port=int(last["EXPOSE"]), user=last["USER"], env=env)
