"""The exceptions streamwork raises, and the two a handler raises to steer its message.

Every error a caller can meet derives from `StreamworkError`, and its message says what
happened and what to do about it. `Retry` and `Reject` are not errors: a handler raises
them to ask for a retry or to send its message straight to the dead letters.
"""

from __future__ import annotations

from typing import Any


class StreamworkError(Exception):
    """Base of every error streamwork raises."""


class ConfigurationError(StreamworkError, ValueError):
    """A setting, name or option that cannot work (bad URL, bad queue name, duplicate task)."""


class AppNotFound(ConfigurationError):
    """A `MODULE:APP` spec that does not name a streamwork App."""


class ConnectionFailed(StreamworkError, ConnectionError):
    """Redis could not be reached or went away."""


class RedisUnavailable(ConnectionFailed):
    """Redis answers but cannot serve now: loading its data, or a cluster down or resharding.

    Transient: retrying later usually works.
    """


class RedisCommandError(StreamworkError):
    """Redis refused a command (the reply is in the message; redis-py's error is the cause)."""


class PermissionDenied(RedisCommandError, PermissionError):
    """The Redis user may not run a command or touch a key (ACL rules)."""


class OutOfMemory(RedisCommandError):
    """Redis reached maxmemory and, with noeviction, refuses writes: nothing was written."""


class ReadOnlyReplica(RedisCommandError):
    """The URL points at a read-only replica, which refuses writes."""


class SendIncomplete(StreamworkError):
    """A `send_many` / `publish_many` stopped part way: `sent` were queued, the rest were not.

    `sent` holds the handles (send_many) or event ids (publish_many) of the items queued,
    in order; `index` is the position of the first item not queued. Retrying with
    `items[index:]` queues each item once. The Redis error is in `__cause__`.
    """

    def __init__(self, message: str, sent: list[Any], index: int) -> None:
        super().__init__(message)
        self.sent = sent
        self.index = index


class ReplicationTimeout(StreamworkError, TimeoutError):
    """Fewer replicas than asked acknowledged a send in time (the message is queued)."""


class BadArguments(StreamworkError, TypeError):
    """A task was sent with arguments that do not fit its signature."""


class EncodeError(StreamworkError, TypeError):
    """A value cannot be carried by the msgpack wire format."""


class DecodeError(StreamworkError, ValueError):
    """A stream entry is not a valid streamwork message."""


class UnknownTask(StreamworkError, LookupError):
    """A message names a task this app does not have."""


class UnknownDeadLetter(StreamworkError, LookupError):
    """No dead letter has that id (never, or replayed or purged since)."""


class UnknownQueue(StreamworkError, LookupError):
    """A queue no task of the app uses and nothing ever sent to (or a topic, or a
    subscriber group, no subscriber reads)."""


class ResultTimeout(StreamworkError, TimeoutError):
    """A task's result did not arrive within the time asked for."""


class TaskFailed(StreamworkError):
    """The task ended in the dead letters; its result is this error.

    `error_type` and `error` name what the handler raised, `traceback` is its traceback text
    ("" when no handler raised: undecodable, delivered too often). streamwork does not re-raise the
    handler's own exception type, as Celery does: the caller may not be able to import it
    (another service, another version), and an error that crossed a queue is data, not a
    live exception — `except TaskFailed as failed: if failed.error_type == "KeyError"`.
    """

    def __init__(self, error_type: str, error: str, traceback: str = "") -> None:
        super().__init__(f"{error_type}: {error}")
        self.error_type = error_type
        self.error = error
        self.traceback = traceback


class HandlerTimeout(StreamworkError, TimeoutError):
    """A run went past its task's `timeout`: a failed attempt, not retried unless the task's
    `retry_on` names HandlerTimeout (or TimeoutError). A TimeoutError the handler raises
    itself (a network timeout) is an ordinary error, retried as usual."""


class TaskCancelled(StreamworkError):
    """The message was cancelled: it has no result, and never will."""

    def __init__(self, message: str, reason: str | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        """The reason given to `cancel()`, if any."""


class Retry(Exception):
    """Raised by a handler to ask for another attempt, after `delay` seconds if given (else
    the task's `retry_delay`, else its backoff).

    The attempt counts against the task's `max_retries`; past it the message is dead-lettered.
    With `exc` (Celery's `self.retry(exc=exc)`), the status, the logs and, once the retries
    run out, the dead letter record that error (its type, text and traceback), as if the
    handler had raised it.
    """

    def __init__(
        self,
        delay: float | None = None,
        reason: str = "retry requested",
        *,
        exc: BaseException | None = None,
    ) -> None:
        if exc is not None and not isinstance(exc, BaseException):
            raise TypeError(f"exc must be an exception, got {exc!r}")
        super().__init__(reason)
        self.delay = delay
        self.reason = reason
        self.exc = exc
        if exc is not None:
            self.__cause__ = exc


class Reject(Exception):
    """Raised by a handler to send its message straight to the dead letters, with `reason`."""

    def __init__(self, reason: str = "rejected by handler") -> None:
        super().__init__(reason)
        self.reason = reason


class RateLimited(Exception):
    """Raised by a handler (on an HTTP 429, say) to hand its message back, to run again
    after `retry_after` seconds: not an attempt — never retried for it, never dead-lettered."""

    def __init__(self, retry_after: float = 1.0, reason: str = "rate limited") -> None:
        if isinstance(retry_after, bool) or not isinstance(retry_after, (int, float)):
            raise TypeError(f"retry_after must be a number of seconds, got {retry_after!r}")
        super().__init__(reason)
        self.retry_after = max(0.0, float(retry_after))
        self.reason = reason
