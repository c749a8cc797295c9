from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Size(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SIZE_UNSPECIFIED: _ClassVar[Size]
    SMALL: _ClassVar[Size]
    MEDIUM: _ClassVar[Size]
    LARGE: _ClassVar[Size]
    XLARGE: _ClassVar[Size]

class Enforcement(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ENFORCEMENT_UNSPECIFIED: _ClassVar[Enforcement]
    STRICT: _ClassVar[Enforcement]
    WARN: _ClassVar[Enforcement]
    OFF: _ClassVar[Enforcement]
SIZE_UNSPECIFIED: Size
SMALL: Size
MEDIUM: Size
LARGE: Size
XLARGE: Size
ENFORCEMENT_UNSPECIFIED: Enforcement
STRICT: Enforcement
WARN: Enforcement
OFF: Enforcement

class ClientMessage(_message.Message):
    __slots__ = ("open", "run", "finish", "stop")
    OPEN_FIELD_NUMBER: _ClassVar[int]
    RUN_FIELD_NUMBER: _ClassVar[int]
    FINISH_FIELD_NUMBER: _ClassVar[int]
    STOP_FIELD_NUMBER: _ClassVar[int]
    open: SessionOpen
    run: RunTests
    finish: Finish
    stop: Stop
    def __init__(self, open: _Optional[_Union[SessionOpen, _Mapping]] = ..., run: _Optional[_Union[RunTests, _Mapping]] = ..., finish: _Optional[_Union[Finish, _Mapping]] = ..., stop: _Optional[_Union[Stop, _Mapping]] = ...) -> None: ...

class SessionOpen(_message.Message):
    __slots__ = ("python", "cwd", "env", "pytest_args", "workers", "enforcement", "max_worker_restart", "class_hint", "launch")
    class EnvEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    PYTHON_FIELD_NUMBER: _ClassVar[int]
    CWD_FIELD_NUMBER: _ClassVar[int]
    ENV_FIELD_NUMBER: _ClassVar[int]
    PYTEST_ARGS_FIELD_NUMBER: _ClassVar[int]
    WORKERS_FIELD_NUMBER: _ClassVar[int]
    ENFORCEMENT_FIELD_NUMBER: _ClassVar[int]
    MAX_WORKER_RESTART_FIELD_NUMBER: _ClassVar[int]
    CLASS_HINT_FIELD_NUMBER: _ClassVar[int]
    LAUNCH_FIELD_NUMBER: _ClassVar[int]
    python: str
    cwd: str
    env: _containers.ScalarMap[str, str]
    pytest_args: _containers.RepeatedScalarFieldContainer[str]
    workers: int
    enforcement: Enforcement
    max_worker_restart: int
    class_hint: _containers.RepeatedScalarFieldContainer[str]
    launch: str
    def __init__(self, python: _Optional[str] = ..., cwd: _Optional[str] = ..., env: _Optional[_Mapping[str, str]] = ..., pytest_args: _Optional[_Iterable[str]] = ..., workers: _Optional[int] = ..., enforcement: _Optional[_Union[Enforcement, str]] = ..., max_worker_restart: _Optional[int] = ..., class_hint: _Optional[_Iterable[str]] = ..., launch: _Optional[str] = ...) -> None: ...

class TestItem(_message.Message):
    __slots__ = ("nodeid", "size", "timeout_s", "fixture_timeout_s", "hold")
    NODEID_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_S_FIELD_NUMBER: _ClassVar[int]
    FIXTURE_TIMEOUT_S_FIELD_NUMBER: _ClassVar[int]
    HOLD_FIELD_NUMBER: _ClassVar[int]
    nodeid: str
    size: Size
    timeout_s: float
    fixture_timeout_s: float
    hold: bool
    def __init__(self, nodeid: _Optional[str] = ..., size: _Optional[_Union[Size, str]] = ..., timeout_s: _Optional[float] = ..., fixture_timeout_s: _Optional[float] = ..., hold: _Optional[bool] = ...) -> None: ...

class RunTests(_message.Message):
    __slots__ = ("items",)
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[TestItem]
    def __init__(self, items: _Optional[_Iterable[_Union[TestItem, _Mapping]]] = ...) -> None: ...

class Finish(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class Stop(_message.Message):
    __slots__ = ("reason",)
    REASON_FIELD_NUMBER: _ClassVar[int]
    reason: str
    def __init__(self, reason: _Optional[str] = ...) -> None: ...

class DaemonMessage(_message.Message):
    __slots__ = ("ready", "result", "end", "output", "results", "outside", "node_down", "collection")
    READY_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    END_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_FIELD_NUMBER: _ClassVar[int]
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    OUTSIDE_FIELD_NUMBER: _ClassVar[int]
    NODE_DOWN_FIELD_NUMBER: _ClassVar[int]
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    ready: SessionReady
    result: TestResult
    end: SessionEnd
    output: WorkerOutput
    results: TestResults
    outside: OutsideTests
    node_down: NodeDown
    collection: Collection
    def __init__(self, ready: _Optional[_Union[SessionReady, _Mapping]] = ..., result: _Optional[_Union[TestResult, _Mapping]] = ..., end: _Optional[_Union[SessionEnd, _Mapping]] = ..., output: _Optional[_Union[WorkerOutput, _Mapping]] = ..., results: _Optional[_Union[TestResults, _Mapping]] = ..., outside: _Optional[_Union[OutsideTests, _Mapping]] = ..., node_down: _Optional[_Union[NodeDown, _Mapping]] = ..., collection: _Optional[_Union[Collection, _Mapping]] = ...) -> None: ...

class Collection(_message.Message):
    __slots__ = ("tests", "deselected", "collected", "reports_json", "warnings", "plugin_state_json", "usage_error", "exit", "internal_error")
    TESTS_FIELD_NUMBER: _ClassVar[int]
    DESELECTED_FIELD_NUMBER: _ClassVar[int]
    COLLECTED_FIELD_NUMBER: _ClassVar[int]
    REPORTS_JSON_FIELD_NUMBER: _ClassVar[int]
    WARNINGS_FIELD_NUMBER: _ClassVar[int]
    PLUGIN_STATE_JSON_FIELD_NUMBER: _ClassVar[int]
    USAGE_ERROR_FIELD_NUMBER: _ClassVar[int]
    EXIT_FIELD_NUMBER: _ClassVar[int]
    INTERNAL_ERROR_FIELD_NUMBER: _ClassVar[int]
    tests: _containers.RepeatedCompositeFieldContainer[CollectedTest]
    deselected: _containers.RepeatedScalarFieldContainer[str]
    collected: int
    reports_json: _containers.RepeatedScalarFieldContainer[bytes]
    warnings: _containers.RepeatedCompositeFieldContainer[RecordedWarning]
    plugin_state_json: bytes
    usage_error: str
    exit: SessionExit
    internal_error: str
    def __init__(self, tests: _Optional[_Iterable[_Union[CollectedTest, _Mapping]]] = ..., deselected: _Optional[_Iterable[str]] = ..., collected: _Optional[int] = ..., reports_json: _Optional[_Iterable[bytes]] = ..., warnings: _Optional[_Iterable[_Union[RecordedWarning, _Mapping]]] = ..., plugin_state_json: _Optional[bytes] = ..., usage_error: _Optional[str] = ..., exit: _Optional[_Union[SessionExit, _Mapping]] = ..., internal_error: _Optional[str] = ...) -> None: ...

class CollectedTest(_message.Message):
    __slots__ = ("nodeid", "file", "line", "domain", "size", "marked", "timeout_s", "fixtures", "marks")
    class FixturesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NODEID_FIELD_NUMBER: _ClassVar[int]
    FILE_FIELD_NUMBER: _ClassVar[int]
    LINE_FIELD_NUMBER: _ClassVar[int]
    DOMAIN_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    MARKED_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_S_FIELD_NUMBER: _ClassVar[int]
    FIXTURES_FIELD_NUMBER: _ClassVar[int]
    MARKS_FIELD_NUMBER: _ClassVar[int]
    nodeid: str
    file: str
    line: int
    domain: str
    size: Size
    marked: bool
    timeout_s: float
    fixtures: _containers.ScalarMap[str, str]
    marks: _containers.RepeatedCompositeFieldContainer[CollectedMark]
    def __init__(self, nodeid: _Optional[str] = ..., file: _Optional[str] = ..., line: _Optional[int] = ..., domain: _Optional[str] = ..., size: _Optional[_Union[Size, str]] = ..., marked: _Optional[bool] = ..., timeout_s: _Optional[float] = ..., fixtures: _Optional[_Mapping[str, str]] = ..., marks: _Optional[_Iterable[_Union[CollectedMark, _Mapping]]] = ...) -> None: ...

class CollectedMark(_message.Message):
    __slots__ = ("name", "args_json")
    NAME_FIELD_NUMBER: _ClassVar[int]
    ARGS_JSON_FIELD_NUMBER: _ClassVar[int]
    name: str
    args_json: bytes
    def __init__(self, name: _Optional[str] = ..., args_json: _Optional[bytes] = ...) -> None: ...

class NodeDown(_message.Message):
    __slots__ = ("worker", "workeroutput_json", "error")
    WORKER_FIELD_NUMBER: _ClassVar[int]
    WORKEROUTPUT_JSON_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    worker: str
    workeroutput_json: bytes
    error: str
    def __init__(self, worker: _Optional[str] = ..., workeroutput_json: _Optional[bytes] = ..., error: _Optional[str] = ...) -> None: ...

class OutsideTests(_message.Message):
    __slots__ = ("worker", "events", "last_test")
    WORKER_FIELD_NUMBER: _ClassVar[int]
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    LAST_TEST_FIELD_NUMBER: _ClassVar[int]
    worker: str
    events: _containers.RepeatedCompositeFieldContainer[SpawnEvent]
    last_test: str
    def __init__(self, worker: _Optional[str] = ..., events: _Optional[_Iterable[_Union[SpawnEvent, _Mapping]]] = ..., last_test: _Optional[str] = ...) -> None: ...

class TestResults(_message.Message):
    __slots__ = ("results",)
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[TestResult]
    def __init__(self, results: _Optional[_Iterable[_Union[TestResult, _Mapping]]] = ...) -> None: ...

class SessionReady(_message.Message):
    __slots__ = ("workers", "backend", "session_id")
    WORKERS_FIELD_NUMBER: _ClassVar[int]
    BACKEND_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    workers: int
    backend: str
    session_id: str
    def __init__(self, workers: _Optional[int] = ..., backend: _Optional[str] = ..., session_id: _Optional[str] = ...) -> None: ...

class TestResult(_message.Message):
    __slots__ = ("nodeid", "size", "reports", "events", "intents", "worker", "interruption", "warnings", "recorded_warnings", "events_dropped", "keywords")
    NODEID_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    REPORTS_FIELD_NUMBER: _ClassVar[int]
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    INTENTS_FIELD_NUMBER: _ClassVar[int]
    WORKER_FIELD_NUMBER: _ClassVar[int]
    INTERRUPTION_FIELD_NUMBER: _ClassVar[int]
    WARNINGS_FIELD_NUMBER: _ClassVar[int]
    RECORDED_WARNINGS_FIELD_NUMBER: _ClassVar[int]
    EVENTS_DROPPED_FIELD_NUMBER: _ClassVar[int]
    KEYWORDS_FIELD_NUMBER: _ClassVar[int]
    nodeid: str
    size: Size
    reports: _containers.RepeatedCompositeFieldContainer[PhaseReport]
    events: _containers.RepeatedCompositeFieldContainer[SpawnEvent]
    intents: _containers.RepeatedCompositeFieldContainer[Intent]
    worker: str
    interruption: Interruption
    warnings: _containers.RepeatedScalarFieldContainer[str]
    recorded_warnings: _containers.RepeatedCompositeFieldContainer[RecordedWarning]
    events_dropped: int
    keywords: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, nodeid: _Optional[str] = ..., size: _Optional[_Union[Size, str]] = ..., reports: _Optional[_Iterable[_Union[PhaseReport, _Mapping]]] = ..., events: _Optional[_Iterable[_Union[SpawnEvent, _Mapping]]] = ..., intents: _Optional[_Iterable[_Union[Intent, _Mapping]]] = ..., worker: _Optional[str] = ..., interruption: _Optional[_Union[Interruption, _Mapping]] = ..., warnings: _Optional[_Iterable[str]] = ..., recorded_warnings: _Optional[_Iterable[_Union[RecordedWarning, _Mapping]]] = ..., events_dropped: _Optional[int] = ..., keywords: _Optional[_Iterable[str]] = ...) -> None: ...

class PhaseReport(_message.Message):
    __slots__ = ("when", "report_json", "t_ns", "outcome", "duration", "start", "stop", "sections")
    WHEN_FIELD_NUMBER: _ClassVar[int]
    REPORT_JSON_FIELD_NUMBER: _ClassVar[int]
    T_NS_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    DURATION_FIELD_NUMBER: _ClassVar[int]
    START_FIELD_NUMBER: _ClassVar[int]
    STOP_FIELD_NUMBER: _ClassVar[int]
    SECTIONS_FIELD_NUMBER: _ClassVar[int]
    when: str
    report_json: bytes
    t_ns: int
    outcome: str
    duration: float
    start: float
    stop: float
    sections: _containers.RepeatedCompositeFieldContainer[ReportSection]
    def __init__(self, when: _Optional[str] = ..., report_json: _Optional[bytes] = ..., t_ns: _Optional[int] = ..., outcome: _Optional[str] = ..., duration: _Optional[float] = ..., start: _Optional[float] = ..., stop: _Optional[float] = ..., sections: _Optional[_Iterable[_Union[ReportSection, _Mapping]]] = ...) -> None: ...

class ReportSection(_message.Message):
    __slots__ = ("title", "content")
    TITLE_FIELD_NUMBER: _ClassVar[int]
    CONTENT_FIELD_NUMBER: _ClassVar[int]
    title: str
    content: str
    def __init__(self, title: _Optional[str] = ..., content: _Optional[str] = ...) -> None: ...

class SpawnEvent(_message.Message):
    __slots__ = ("t_ns", "pid", "tid", "ppid", "syscall", "abi", "decision", "latency_ns", "path", "argv", "cwd", "clone_flags", "argv_complete", "phase", "offset_s", "child_pid", "family", "sock_type", "protocol", "host", "port", "violation")
    class Violation(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        NO_VIOLATION: _ClassVar[SpawnEvent.Violation]
        PROCESS: _ClassVar[SpawnEvent.Violation]
        NETWORK: _ClassVar[SpawnEvent.Violation]
        REMOTE_NETWORK: _ClassVar[SpawnEvent.Violation]
    NO_VIOLATION: SpawnEvent.Violation
    PROCESS: SpawnEvent.Violation
    NETWORK: SpawnEvent.Violation
    REMOTE_NETWORK: SpawnEvent.Violation
    T_NS_FIELD_NUMBER: _ClassVar[int]
    PID_FIELD_NUMBER: _ClassVar[int]
    TID_FIELD_NUMBER: _ClassVar[int]
    PPID_FIELD_NUMBER: _ClassVar[int]
    SYSCALL_FIELD_NUMBER: _ClassVar[int]
    ABI_FIELD_NUMBER: _ClassVar[int]
    DECISION_FIELD_NUMBER: _ClassVar[int]
    LATENCY_NS_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    ARGV_FIELD_NUMBER: _ClassVar[int]
    CWD_FIELD_NUMBER: _ClassVar[int]
    CLONE_FLAGS_FIELD_NUMBER: _ClassVar[int]
    ARGV_COMPLETE_FIELD_NUMBER: _ClassVar[int]
    PHASE_FIELD_NUMBER: _ClassVar[int]
    OFFSET_S_FIELD_NUMBER: _ClassVar[int]
    CHILD_PID_FIELD_NUMBER: _ClassVar[int]
    FAMILY_FIELD_NUMBER: _ClassVar[int]
    SOCK_TYPE_FIELD_NUMBER: _ClassVar[int]
    PROTOCOL_FIELD_NUMBER: _ClassVar[int]
    HOST_FIELD_NUMBER: _ClassVar[int]
    PORT_FIELD_NUMBER: _ClassVar[int]
    VIOLATION_FIELD_NUMBER: _ClassVar[int]
    t_ns: int
    pid: int
    tid: int
    ppid: int
    syscall: str
    abi: str
    decision: str
    latency_ns: int
    path: str
    argv: _containers.RepeatedScalarFieldContainer[str]
    cwd: str
    clone_flags: int
    argv_complete: bool
    phase: str
    offset_s: float
    child_pid: int
    family: int
    sock_type: int
    protocol: int
    host: str
    port: int
    violation: SpawnEvent.Violation
    def __init__(self, t_ns: _Optional[int] = ..., pid: _Optional[int] = ..., tid: _Optional[int] = ..., ppid: _Optional[int] = ..., syscall: _Optional[str] = ..., abi: _Optional[str] = ..., decision: _Optional[str] = ..., latency_ns: _Optional[int] = ..., path: _Optional[str] = ..., argv: _Optional[_Iterable[str]] = ..., cwd: _Optional[str] = ..., clone_flags: _Optional[int] = ..., argv_complete: _Optional[bool] = ..., phase: _Optional[str] = ..., offset_s: _Optional[float] = ..., child_pid: _Optional[int] = ..., family: _Optional[int] = ..., sock_type: _Optional[int] = ..., protocol: _Optional[int] = ..., host: _Optional[str] = ..., port: _Optional[int] = ..., violation: _Optional[_Union[SpawnEvent.Violation, str]] = ...) -> None: ...

class Intent(_message.Message):
    __slots__ = ("event", "argv", "tid", "offset_s", "site")
    EVENT_FIELD_NUMBER: _ClassVar[int]
    ARGV_FIELD_NUMBER: _ClassVar[int]
    TID_FIELD_NUMBER: _ClassVar[int]
    OFFSET_S_FIELD_NUMBER: _ClassVar[int]
    SITE_FIELD_NUMBER: _ClassVar[int]
    event: str
    argv: _containers.RepeatedScalarFieldContainer[str]
    tid: int
    offset_s: float
    site: str
    def __init__(self, event: _Optional[str] = ..., argv: _Optional[_Iterable[str]] = ..., tid: _Optional[int] = ..., offset_s: _Optional[float] = ..., site: _Optional[str] = ...) -> None: ...

class Interruption(_message.Message):
    __slots__ = ("kind", "message", "limit_s", "elapsed_s", "exit_code", "signal", "session_exit", "phase", "call_outcome", "setup_outcome")
    class Kind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        KIND_UNSPECIFIED: _ClassVar[Interruption.Kind]
        TIMEOUT: _ClassVar[Interruption.Kind]
        WORKER_CRASHED: _ClassVar[Interruption.Kind]
        WORKER_REPLACED: _ClassVar[Interruption.Kind]
        NOT_RUN: _ClassVar[Interruption.Kind]
        SESSION_EXIT: _ClassVar[Interruption.Kind]
    KIND_UNSPECIFIED: Interruption.Kind
    TIMEOUT: Interruption.Kind
    WORKER_CRASHED: Interruption.Kind
    WORKER_REPLACED: Interruption.Kind
    NOT_RUN: Interruption.Kind
    SESSION_EXIT: Interruption.Kind
    KIND_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    LIMIT_S_FIELD_NUMBER: _ClassVar[int]
    ELAPSED_S_FIELD_NUMBER: _ClassVar[int]
    EXIT_CODE_FIELD_NUMBER: _ClassVar[int]
    SIGNAL_FIELD_NUMBER: _ClassVar[int]
    SESSION_EXIT_FIELD_NUMBER: _ClassVar[int]
    PHASE_FIELD_NUMBER: _ClassVar[int]
    CALL_OUTCOME_FIELD_NUMBER: _ClassVar[int]
    SETUP_OUTCOME_FIELD_NUMBER: _ClassVar[int]
    kind: Interruption.Kind
    message: str
    limit_s: float
    elapsed_s: float
    exit_code: int
    signal: int
    session_exit: SessionExit
    phase: str
    call_outcome: str
    setup_outcome: str
    def __init__(self, kind: _Optional[_Union[Interruption.Kind, str]] = ..., message: _Optional[str] = ..., limit_s: _Optional[float] = ..., elapsed_s: _Optional[float] = ..., exit_code: _Optional[int] = ..., signal: _Optional[int] = ..., session_exit: _Optional[_Union[SessionExit, _Mapping]] = ..., phase: _Optional[str] = ..., call_outcome: _Optional[str] = ..., setup_outcome: _Optional[str] = ...) -> None: ...

class WorkerOutput(_message.Message):
    __slots__ = ("worker", "data", "stderr")
    WORKER_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    STDERR_FIELD_NUMBER: _ClassVar[int]
    worker: str
    data: bytes
    stderr: bool
    def __init__(self, worker: _Optional[str] = ..., data: _Optional[bytes] = ..., stderr: _Optional[bool] = ...) -> None: ...

class SessionEnd(_message.Message):
    __slots__ = ("tests", "workers_started", "worker_crashes", "error", "wall_s")
    TESTS_FIELD_NUMBER: _ClassVar[int]
    WORKERS_STARTED_FIELD_NUMBER: _ClassVar[int]
    WORKER_CRASHES_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    WALL_S_FIELD_NUMBER: _ClassVar[int]
    tests: int
    workers_started: int
    worker_crashes: int
    error: str
    wall_s: float
    def __init__(self, tests: _Optional[int] = ..., workers_started: _Optional[int] = ..., worker_crashes: _Optional[int] = ..., error: _Optional[str] = ..., wall_s: _Optional[float] = ...) -> None: ...

class StatusRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class StatusReply(_message.Message):
    __slots__ = ("version", "backend", "backend_reason", "kernel_features", "sessions", "workers", "pid", "listen")
    class KernelFeaturesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: bool
        def __init__(self, key: _Optional[str] = ..., value: _Optional[bool] = ...) -> None: ...
    VERSION_FIELD_NUMBER: _ClassVar[int]
    BACKEND_FIELD_NUMBER: _ClassVar[int]
    BACKEND_REASON_FIELD_NUMBER: _ClassVar[int]
    KERNEL_FEATURES_FIELD_NUMBER: _ClassVar[int]
    SESSIONS_FIELD_NUMBER: _ClassVar[int]
    WORKERS_FIELD_NUMBER: _ClassVar[int]
    PID_FIELD_NUMBER: _ClassVar[int]
    LISTEN_FIELD_NUMBER: _ClassVar[int]
    version: str
    backend: str
    backend_reason: str
    kernel_features: _containers.ScalarMap[str, bool]
    sessions: int
    workers: int
    pid: int
    listen: str
    def __init__(self, version: _Optional[str] = ..., backend: _Optional[str] = ..., backend_reason: _Optional[str] = ..., kernel_features: _Optional[_Mapping[str, bool]] = ..., sessions: _Optional[int] = ..., workers: _Optional[int] = ..., pid: _Optional[int] = ..., listen: _Optional[str] = ...) -> None: ...

class WorkerCommand(_message.Message):
    __slots__ = ("run", "finish", "stop", "release")
    RUN_FIELD_NUMBER: _ClassVar[int]
    FINISH_FIELD_NUMBER: _ClassVar[int]
    STOP_FIELD_NUMBER: _ClassVar[int]
    RELEASE_FIELD_NUMBER: _ClassVar[int]
    run: TestItem
    finish: Finish
    stop: Stop
    release: Release
    def __init__(self, run: _Optional[_Union[TestItem, _Mapping]] = ..., finish: _Optional[_Union[Finish, _Mapping]] = ..., stop: _Optional[_Union[Stop, _Mapping]] = ..., release: _Optional[_Union[Release, _Mapping]] = ...) -> None: ...

class Release(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class WorkerEvent(_message.Message):
    __slots__ = ("collected", "started", "report", "finished", "batch", "node_down", "forked")
    COLLECTED_FIELD_NUMBER: _ClassVar[int]
    STARTED_FIELD_NUMBER: _ClassVar[int]
    REPORT_FIELD_NUMBER: _ClassVar[int]
    FINISHED_FIELD_NUMBER: _ClassVar[int]
    BATCH_FIELD_NUMBER: _ClassVar[int]
    NODE_DOWN_FIELD_NUMBER: _ClassVar[int]
    FORKED_FIELD_NUMBER: _ClassVar[int]
    collected: Collected
    started: TestStarted
    report: PhaseReport
    finished: TestFinished
    batch: WorkerEvents
    node_down: NodeDown
    forked: Forked
    def __init__(self, collected: _Optional[_Union[Collected, _Mapping]] = ..., started: _Optional[_Union[TestStarted, _Mapping]] = ..., report: _Optional[_Union[PhaseReport, _Mapping]] = ..., finished: _Optional[_Union[TestFinished, _Mapping]] = ..., batch: _Optional[_Union[WorkerEvents, _Mapping]] = ..., node_down: _Optional[_Union[NodeDown, _Mapping]] = ..., forked: _Optional[_Union[Forked, _Mapping]] = ...) -> None: ...

class Forked(_message.Message):
    __slots__ = ("pid",)
    PID_FIELD_NUMBER: _ClassVar[int]
    pid: int
    def __init__(self, pid: _Optional[int] = ...) -> None: ...

class WorkerEvents(_message.Message):
    __slots__ = ("events",)
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    events: _containers.RepeatedCompositeFieldContainer[WorkerEvent]
    def __init__(self, events: _Optional[_Iterable[_Union[WorkerEvent, _Mapping]]] = ...) -> None: ...

class Collected(_message.Message):
    __slots__ = ("nodeids", "errors", "watched", "watched_mtime_ns", "watched_dirs", "watched_dir_digests", "collection", "cache_selects")
    NODEIDS_FIELD_NUMBER: _ClassVar[int]
    ERRORS_FIELD_NUMBER: _ClassVar[int]
    WATCHED_FIELD_NUMBER: _ClassVar[int]
    WATCHED_MTIME_NS_FIELD_NUMBER: _ClassVar[int]
    WATCHED_DIRS_FIELD_NUMBER: _ClassVar[int]
    WATCHED_DIR_DIGESTS_FIELD_NUMBER: _ClassVar[int]
    COLLECTION_FIELD_NUMBER: _ClassVar[int]
    CACHE_SELECTS_FIELD_NUMBER: _ClassVar[int]
    nodeids: _containers.RepeatedScalarFieldContainer[str]
    errors: _containers.RepeatedScalarFieldContainer[str]
    watched: _containers.RepeatedScalarFieldContainer[str]
    watched_mtime_ns: _containers.RepeatedScalarFieldContainer[int]
    watched_dirs: _containers.RepeatedScalarFieldContainer[str]
    watched_dir_digests: _containers.RepeatedScalarFieldContainer[int]
    collection: Collection
    cache_selects: bool
    def __init__(self, nodeids: _Optional[_Iterable[str]] = ..., errors: _Optional[_Iterable[str]] = ..., watched: _Optional[_Iterable[str]] = ..., watched_mtime_ns: _Optional[_Iterable[int]] = ..., watched_dirs: _Optional[_Iterable[str]] = ..., watched_dir_digests: _Optional[_Iterable[int]] = ..., collection: _Optional[_Union[Collection, _Mapping]] = ..., cache_selects: _Optional[bool] = ...) -> None: ...

class TestStarted(_message.Message):
    __slots__ = ("nodeid", "t_ns")
    NODEID_FIELD_NUMBER: _ClassVar[int]
    T_NS_FIELD_NUMBER: _ClassVar[int]
    nodeid: str
    t_ns: int
    def __init__(self, nodeid: _Optional[str] = ..., t_ns: _Optional[int] = ...) -> None: ...

class TestFinished(_message.Message):
    __slots__ = ("nodeid", "intents", "exit", "warnings", "reports", "keywords")
    NODEID_FIELD_NUMBER: _ClassVar[int]
    INTENTS_FIELD_NUMBER: _ClassVar[int]
    EXIT_FIELD_NUMBER: _ClassVar[int]
    WARNINGS_FIELD_NUMBER: _ClassVar[int]
    REPORTS_FIELD_NUMBER: _ClassVar[int]
    KEYWORDS_FIELD_NUMBER: _ClassVar[int]
    nodeid: str
    intents: _containers.RepeatedCompositeFieldContainer[Intent]
    exit: SessionExit
    warnings: _containers.RepeatedCompositeFieldContainer[RecordedWarning]
    reports: _containers.RepeatedCompositeFieldContainer[PhaseReport]
    keywords: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, nodeid: _Optional[str] = ..., intents: _Optional[_Iterable[_Union[Intent, _Mapping]]] = ..., exit: _Optional[_Union[SessionExit, _Mapping]] = ..., warnings: _Optional[_Iterable[_Union[RecordedWarning, _Mapping]]] = ..., reports: _Optional[_Iterable[_Union[PhaseReport, _Mapping]]] = ..., keywords: _Optional[_Iterable[str]] = ...) -> None: ...

class SessionExit(_message.Message):
    __slots__ = ("reason", "returncode", "keyboard_interrupt")
    REASON_FIELD_NUMBER: _ClassVar[int]
    RETURNCODE_FIELD_NUMBER: _ClassVar[int]
    KEYBOARD_INTERRUPT_FIELD_NUMBER: _ClassVar[int]
    reason: str
    returncode: int
    keyboard_interrupt: bool
    def __init__(self, reason: _Optional[str] = ..., returncode: _Optional[int] = ..., keyboard_interrupt: _Optional[bool] = ...) -> None: ...

class RecordedWarning(_message.Message):
    __slots__ = ("message", "category", "filename", "lineno", "when")
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    CATEGORY_FIELD_NUMBER: _ClassVar[int]
    FILENAME_FIELD_NUMBER: _ClassVar[int]
    LINENO_FIELD_NUMBER: _ClassVar[int]
    WHEN_FIELD_NUMBER: _ClassVar[int]
    message: str
    category: str
    filename: str
    lineno: int
    when: str
    def __init__(self, message: _Optional[str] = ..., category: _Optional[str] = ..., filename: _Optional[str] = ..., lineno: _Optional[int] = ..., when: _Optional[str] = ...) -> None: ...

class ZygoteCommand(_message.Message):
    __slots__ = ("fork",)
    FORK_FIELD_NUMBER: _ClassVar[int]
    fork: ForkWorker
    def __init__(self, fork: _Optional[_Union[ForkWorker, _Mapping]] = ...) -> None: ...

class ForkWorker(_message.Message):
    __slots__ = ("name", "worker_class", "env", "filter")
    class EnvEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    WORKER_CLASS_FIELD_NUMBER: _ClassVar[int]
    ENV_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    name: str
    worker_class: str
    env: _containers.ScalarMap[str, str]
    filter: bytes
    def __init__(self, name: _Optional[str] = ..., worker_class: _Optional[str] = ..., env: _Optional[_Mapping[str, str]] = ..., filter: _Optional[bytes] = ...) -> None: ...

class ZygoteEvent(_message.Message):
    __slots__ = ("collected", "forked", "exited", "refused")
    COLLECTED_FIELD_NUMBER: _ClassVar[int]
    FORKED_FIELD_NUMBER: _ClassVar[int]
    EXITED_FIELD_NUMBER: _ClassVar[int]
    REFUSED_FIELD_NUMBER: _ClassVar[int]
    collected: Collected
    forked: WorkerSpawned
    exited: WorkerExited
    refused: ForkRefused
    def __init__(self, collected: _Optional[_Union[Collected, _Mapping]] = ..., forked: _Optional[_Union[WorkerSpawned, _Mapping]] = ..., exited: _Optional[_Union[WorkerExited, _Mapping]] = ..., refused: _Optional[_Union[ForkRefused, _Mapping]] = ...) -> None: ...

class WorkerSpawned(_message.Message):
    __slots__ = ("name", "pid")
    NAME_FIELD_NUMBER: _ClassVar[int]
    PID_FIELD_NUMBER: _ClassVar[int]
    name: str
    pid: int
    def __init__(self, name: _Optional[str] = ..., pid: _Optional[int] = ...) -> None: ...

class WorkerExited(_message.Message):
    __slots__ = ("pid", "status")
    PID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    pid: int
    status: int
    def __init__(self, pid: _Optional[int] = ..., status: _Optional[int] = ...) -> None: ...

class ForkRefused(_message.Message):
    __slots__ = ("reason",)
    REASON_FIELD_NUMBER: _ClassVar[int]
    reason: str
    def __init__(self, reason: _Optional[str] = ...) -> None: ...
