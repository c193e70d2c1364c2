"""streamwork: a Python task queue and message broker on Redis Streams."""

from .app import App
from .errors import (
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
    UnknownTask,
)
from .message import Message
from .settings import Backoff, WorkerSettings
from .task import Task, TaskHandle
from .worker import Worker

__version__ = "0.1.0"

__all__ = [
    "App",
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
    "Retry",
    "SendIncomplete",
    "StreamworkError",
    "Task",
    "TaskFailed",
    "TaskHandle",
    "UnknownTask",
    "Worker",
    "WorkerSettings",
    "__version__",
]
