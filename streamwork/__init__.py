"""streamwork: a Python task queue and message broker on Redis Streams.

The public surface: every name a user needs, and every exception a public call raises.
Everything else lives in private packages (`_base`, `_redis`, `_send`, `_lifecycle`,
`_schedules`, `_workflows`, `_app`, `_worker`) that may change in any release; the public
modules are `streamwork.errors`, `streamwork.testing`, `streamwork.ops`, `streamwork.web`.
"""

from importlib import metadata as _metadata

from ._app.app import App
from ._app.handles import TaskHandle
from ._app.task import Task
from ._app.topic import Retention, Subscriber
from ._base.message import Message
from ._base.protocol import ChildFailed
from ._base.settings import Backoff, WorkerSettings
from ._lifecycle.events import Event
from ._lifecycle.lifecycle import TaskStatus, UnknownMessage
from ._schedules.definitions import ScheduleError
from ._schedules.schedules import Schedule, UnknownSchedule
from ._worker.worker import Worker
from ._workflows.canvas import chain, chord, group
from ._workflows.handle import NodeStatus, WorkflowHandle, WorkflowStatus
from ._workflows.nodes import UnknownWorkflow, WorkflowCancelled, WorkflowFailed
from .errors import (
    AppNotFound,
    BadArguments,
    ConfigurationError,
    ConnectionFailed,
    DecodeError,
    EncodeError,
    HandlerTimeout,
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
    UnknownDeadLetter,
    UnknownQueue,
    UnknownTask,
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
    "Event",
    "HandlerTimeout",
    "Message",
    "NodeStatus",
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
    "Schedule",
    "ScheduleError",
    "SendIncomplete",
    "StreamworkError",
    "Subscriber",
    "Task",
    "TaskCancelled",
    "TaskFailed",
    "TaskHandle",
    "TaskStatus",
    "UnknownDeadLetter",
    "UnknownMessage",
    "UnknownQueue",
    "UnknownSchedule",
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
