"""streamwork: a Python task queue and message broker on Redis Streams."""

from importlib import metadata as _metadata

from .app import App
from .errors import (
    AppNotFound,
    BadArguments,
    ConfigurationError,
    ConnectionFailed,
    DecodeError,
    EncodeError,
    OutOfMemory,
    PermissionDenied,
    ReadOnlyReplica,
    RedisCommandError,
    RedisUnavailable,
    Reject,
    ReplicationTimeout,
    ResultTimeout,
    Retry,
    SendIncomplete,
    StreamworkError,
    TaskFailed,
    UnknownQueue,
    UnknownTask,
)
from .message import Message
from .settings import Backoff, WorkerSettings
from .task import Task, TaskHandle
from .topic import Retention, Subscriber
from .worker import Worker

try:
    __version__ = _metadata.version("streamwork")
except _metadata.PackageNotFoundError:  # running from a checkout that was never installed
    __version__ = "0.0.0+unknown"

__all__ = [
    "App",
    "AppNotFound",
    "Backoff",
    "BadArguments",
    "ConfigurationError",
    "ConnectionFailed",
    "DecodeError",
    "EncodeError",
    "Message",
    "OutOfMemory",
    "PermissionDenied",
    "ReadOnlyReplica",
    "RedisCommandError",
    "RedisUnavailable",
    "Reject",
    "ReplicationTimeout",
    "ResultTimeout",
    "Retention",
    "Retry",
    "SendIncomplete",
    "StreamworkError",
    "Subscriber",
    "Task",
    "TaskFailed",
    "TaskHandle",
    "UnknownQueue",
    "UnknownTask",
    "Worker",
    "WorkerSettings",
    "__version__",
]
