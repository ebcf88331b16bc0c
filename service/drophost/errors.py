"""Errors that carry their HTTP status; one handler turns them into JSON."""

from __future__ import annotations

from typing import Any


class DrophostError(Exception):
    """Base class: `message` is one readable sentence, safe to show to a client."""

    status_code = 500

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details = details

    def to_json(self) -> dict[str, Any]:
        return {"error": self.message, **self.details}


class BadRequestError(DrophostError):
    status_code = 400


class UnauthorizedError(DrophostError):
    status_code = 401


class ForbiddenError(DrophostError):
    status_code = 403


class NotFoundError(DrophostError):
    status_code = 404


class NoSuchSlotError(NotFoundError):
    """The one wording for a slot that has no row, version or deployment (a typo, most often)."""

    def __init__(self, slot: str) -> None:
        super().__init__(no_such_slot(slot))


def no_such_slot(slot: str) -> str:
    return f"no such slot '{slot[:80]}'"


class ConflictError(DrophostError):
    status_code = 409


class TooLargeError(DrophostError):
    status_code = 413


class UnsupportedMediaError(DrophostError):
    status_code = 415


class InvalidArchiveError(DrophostError):
    status_code = 422


class InvalidSlotError(DrophostError):
    status_code = 422


class ValidationError(DrophostError):
    status_code = 422


class UnsafeReleaseError(DrophostError):
    """A release holds something that is never published (a link, a special file, a dotfile)."""

    status_code = 422


class DeployFailedError(DrophostError):
    """Something on the server side failed after the input was accepted (e.g. nginx -t)."""

    status_code = 500


class SettingsError(DrophostError):
    """A setting is missing or malformed; raised at start, never per request."""


class CommandError(DrophostError):
    """A subprocess failed; `output` is for logs only, never for clients."""

    def __init__(self, message: str, *, returncode: int | None, output: str) -> None:
        super().__init__(message)
        self.returncode = returncode
        self.output = output


class ManifestError(ValidationError):
    """deploy.yaml is invalid; the message starts with "file:line field:"."""

    def __init__(self, message: str, *, file: str, line: int | None, field: str | None) -> None:
        where = f"{file}:{line}" if line else file
        text = f"{where} {field}: {message}" if field else f"{where}: {message}"
        super().__init__(text, file=file, line=line, field=field)


class BuildError(DrophostError):
    """A build failed, timed out, or could not be sandboxed; the message is for the deployment's error."""

    status_code = 422


class GitError(DrophostError):
    """Fetching or reading a repository failed; the message carries no server path, secret or raw stderr."""

    status_code = 422


class TooManyRequestsError(DrophostError):
    status_code = 429
