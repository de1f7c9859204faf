"""Domain errors. Each carries the one human sentence a Slack user should see; details go to the log.

One error handler (bot.app) turns any AmibotError into a short message; anything else becomes
"something went wrong" with a reference the operator can grep for in the log.
"""

from __future__ import annotations


class AmibotError(Exception):
    """Base class: `str(error)` is safe to show to a Slack user."""

    # The audit row's one-line outcome, when the message is longer than a line (e.g. "refused: in use by 3").
    audit_outcome: str | None = None

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class ConfigError(AmibotError):
    """The environment or the policy file is wrong; one line per problem."""

    def __init__(self, problems: list[str]):
        super().__init__("\n".join(problems))
        self.problems = problems


class UsageError(AmibotError):
    """The command was not understood; `usage` tells how to write it."""

    def __init__(self, message: str, usage: str | None = None, show_help: bool = False):
        super().__init__(message)
        self.usage = usage
        self.show_help = show_help  # unknown subcommand: answer with the whole list
        self.specs: list | None = None  # the subcommands to list, filled in by the dispatcher


class NotFound(AmibotError):
    pass


class AccessDenied(AmibotError):
    """The Slack user or channel is not allowed to do this (amibot's own policy, not IAM)."""


class PolicyViolation(AmibotError):
    """The request is outside the configured policy."""


class AwsError(AmibotError):
    """AWS refused or failed; the message is one sentence, the code is kept for callers and logs."""

    def __init__(self, message: str, code: str | None = None, operation: str | None = None):
        super().__init__(message)
        self.code = code
        self.operation = operation


class AwsDenied(AwsError):
    pass


class Unsupported(AwsError):
    """The AWS endpoint does not implement the API (older partitions, LocalStack, moto)."""


class Ambiguous(UsageError):
    """A name matched several images; the user must say which (never silently pick one)."""

    def __init__(self, message: str, candidates: list | None = None):
        super().__init__(message)
        self.candidates = candidates or []
