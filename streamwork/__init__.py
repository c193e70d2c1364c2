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
    RateLimited,
    ReadOnlyReplica,
    RedisCommandError,
    RedisUnavailable,
    Reject,
    ReplicationTimeout,
    ResultTimeout,
    Retry,
    SendIncomplete,
    StreamworkError,
    TaskCancelled,
    TaskFailed,
    UnknownQueue,
    UnknownTask,
)
from .message import Message
from .protocol import ChildFailed
from .settings import Backoff, WorkerSettings
from .task import Task, TaskHandle
from .topic import Retention, Subscriber
from .worker import Worker
from .workflows import (
    UnknownWorkflow,
    WorkflowCancelled,
    WorkflowFailed,
    WorkflowHandle,
    WorkflowStatus,
    chain,
    chord,
    group,
)

try:
    __version__ = _metadata.version("streamwork")
except _metadata.PackageNotFoundError:  # running from a checkout that was never installed
    __version__ = "0.0.0+unknown"

__all__ = [
    "App",
    "AppNotFound",
    "Backoff",
    "BadArguments",
    "ChildFailed",
    "ConfigurationError",
    "ConnectionFailed",
    "DecodeError",
    "EncodeError",
    "Message",
    "OutOfMemory",
    "PermissionDenied",
    "RateLimited",
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
    "TaskCancelled",
    "TaskFailed",
    "TaskHandle",
    "UnknownQueue",
    "UnknownTask",
    "UnknownWorkflow",
    "Worker",
    "WorkerSettings",
    "WorkflowCancelled",
    "WorkflowFailed",
    "WorkflowHandle",
    "WorkflowStatus",
    "__version__",
    "chain",
    "chord",
    "group",
]
