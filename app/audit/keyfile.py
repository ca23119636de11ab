"""The file that keeps the generated checkpoint signing key when READINESS_AUDIT_SIGNING_KEY
is unset: readable by its owner only, never in the database (whoever can rewrite the log
could otherwise read the key and sign a checkpoint for the rewritten log)."""

import base64
import os
import secrets
import stat
from pathlib import Path

from sqlalchemy import make_url

from app.audit.seed import SEED_BYTES, decode_seed

KEY_FILE_NAME = "readiness-audit.key"
# A key file is one line of base64; anything much longer is not one.
_MAX_READ = 1024


class KeyFileError(Exception):
    """A key file the service will not sign with, or cannot make: the message names the
    file and what to do."""


def default_path(database_url: str) -> Path:
    """Beside the SQLite file, so the key goes where the data does; otherwise (PostgreSQL,
    an in-memory SQLite) in the working directory."""
    url = make_url(database_url)
    database = url.database or ""
    in_memory = database in ("", ":memory:") or database.startswith("file:")
    if url.get_backend_name() == "sqlite" and not in_memory:
        return Path(database).absolute().parent / KEY_FILE_NAME
    return Path.cwd() / KEY_FILE_NAME


def load_or_create(path: Path) -> tuple[bytes, bool]:
    """The seed the file at `path` holds, made first when there is none; and whether this
    call made it. Processes starting at once all end up with the same one."""
    try:
        return _read(path), False
    except FileNotFoundError:
        pass
    made = _create(path)
    try:
        return _read(path), made
    except FileNotFoundError:
        raise KeyFileError(f"{path} disappeared as it was made") from None


def _read(path: Path) -> bytes:
    # Symbolic links are followed: a file mounted from a secret store (a Kubernetes Secret
    # volume) is one.
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise
    except OSError as exc:
        message = f"the audit signing key file {path} cannot be read: {exc.strerror}"
        raise KeyFileError(message) from None
    with os.fdopen(fd, "rb") as file:
        mode = os.fstat(file.fileno()).st_mode
        if not stat.S_ISREG(mode):
            raise KeyFileError(f"the audit signing key file {path} is not a regular file")
        # Checked before the key is read: a key others could read may have been copied.
        if mode & 0o077:
            raise KeyFileError(
                f"the audit signing key file {path} has mode {stat.S_IMODE(mode):04o}: it must"
                f" be readable by its owner only (chmod 600 {path}), or the key may be copied"
            )
        content = file.read(_MAX_READ)
    try:
        return decode_seed(content.decode("ascii"))
    except (UnicodeDecodeError, ValueError) as exc:
        reason = exc if isinstance(exc, ValueError) else "must be base64"
        raise KeyFileError(
            f"the audit signing key file {path} holds no key ({reason}): restore it, or remove"
            " it to make a new one (checkpoints signed before still verify by their key_id)"
        ) from None


def _create(path: Path) -> bool:
    """Writes a new key to a temporary file of its own and links it to `path`: the link is
    atomic and never replaces a file, so of processes racing here exactly one key wins and
    no process ever reads a half-written one. True when this process's key won."""
    seed = base64.b64encode(secrets.token_bytes(SEED_BYTES)) + b"\n"
    directory = path.parent
    temporary = directory / f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
    try:
        # 0600 from the start: the umask can only narrow it, and nobody else ever sees the
        # key with wider permissions.
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        raise KeyFileError(
            f"the audit signing key file {path} cannot be made: {exc.strerror}. Set"
            " READINESS_AUDIT_SIGNING_KEY (from a secret store, for real use), or"
            " READINESS_AUDIT_SIGNING_KEY_FILE to a file in a writable directory"
        ) from None
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(seed)
            file.flush()
            os.fsync(file.fileno())
        try:
            os.link(temporary, path)
            made = True
        except FileExistsError:
            made = False
        except OSError as exc:
            raise KeyFileError(
                f"the audit signing key file {path} cannot be made: {exc.strerror}"
            ) from None
        _sync_directory(directory)
    finally:
        temporary.unlink(missing_ok=True)
    return made


def _sync_directory(directory: Path) -> None:
    """So the new name survives a crash: a key that signed checkpoints must not vanish."""
    try:
        fd = os.open(directory, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
