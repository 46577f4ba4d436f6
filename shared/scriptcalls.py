"""One typed call per Lua script of shared/scripts/, all of one shape: KEYS the keys the script touches,
ARGV the clock ("now" in epoch ms, or "-1" for Redis's) and one JSON plan; the reply is JSON.

The plan of each script is a TypedDict, so a call site cannot miss a field the script reads or pass one
it does not; the script reads the same names from `cjson.decode(ARGV[2])` (its header lists them). The
engine (shared/engine.py) is the only caller.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Generic, Literal, NotRequired, TypedDict, TypeVar

from shared.codec import dumps
from shared.store import Store

P = TypeVar("P")


@dataclass(frozen=True)
class Script(Generic[P]):
    name: str

    def argv(self, plan: P) -> list[str]:
        return [dumps(plan)]

    async def run(self, store: Store, keys: list[str], now: str, plan: P) -> Any:
        return json.loads(await store.script(self.name, keys, [now, *self.argv(plan)]))


class EnqueueJob(TypedDict):
    i: int  # position in the batch
    u: str  # unique id
    d: str  # immutable JSON
    pr: int
    delay: int  # ms
    at: int | None  # run-at ms
    o: str
    ik: int  # KEYS index of the idempotency key, 0: none
    ih: str  # request hash
    ix: list[int]  # KEYS indexes of listing indexes
    ln: str  # consumer lane
    sg: NotRequired[str]  # singleton key digest (keys.hold_digest)
    db: NotRequired[str]  # debounce key digest
    dw: NotRequired[int]  # debounce window ms
    dm: NotRequired[int]  # debounce: longest wait after the first submit, ms
    fc: NotRequired[list[str]]  # its flow children's ids (created in this call)
    fp: NotRequired[list[tuple[str, str]]]  # its flow parent's id and the failure policy code
    dx: NotRequired[list[str]]  # ids of existing jobs it depends on


# Blocks of the queues a call may reach through flows: (queue, KEYS index before its block), its own first.
FlowQueues = list[tuple[str, int]]


class EnqueueGroup(TypedDict):
    q: str
    b: int  # KEYS index before the queue's block
    jobs: list[EnqueueJob]


class EnqueuePlan(TypedDict):
    w: int  # idempotency window ms
    tr: int  # trigger expiry ms
    cap: int  # listing index cap
    g: list[EnqueueGroup]
    fq: FlowQueues


class ClaimPlan(TypedDict):
    n: int
    lease: int  # ms; -1: each job's timeout + margin
    margin: int  # ms
    nonce: str
    max_timeout: float  # s; -1: any
    lanes: list[str]  # lanes whose pending trigger a claim that takes jobs clears; ["*"]: all
    fq: NotRequired[FlowQueues]


class FinishOutcome(TypedDict):
    id: str  # unique id
    k: str  # token
    st: str  # status
    r: str | None  # result JSON
    e: dict[str, str] | None  # {kind, message}
    ra: int | None  # retry after ms
    p: int | None  # progress
    g: list[str]  # log lines
    sn: NotRequired[str]  # status "sleep": the sleep's step name as JSON text


class FinishPlan(TypedDict):
    o: list[FinishOutcome]
    u: float  # jitter draw in [0, 1)
    fq: NotRequired[FlowQueues]


class StepPlan(TypedDict):
    id: str  # unique id
    k: str  # token
    n: str  # step name as JSON text
    r: str  # result JSON


class LeasePlan(TypedDict):
    leases: list[tuple[str, str]]  # unique id, token


class ExtendPlan(LeasePlan):
    ms: int


class ProgressItem(TypedDict):
    id: str
    k: str
    p: int | None
    g: list[str]


class ReportPlan(TypedDict):
    u: list[ProgressItem]


class JobPlan(TypedDict):
    id: str  # unique id
    owner: str  # "" for any
    fq: NotRequired[FlowQueues]


class RerunPlan(TypedDict, total=False):
    mode: Literal["job", "queue"]
    id: str
    owner: str
    limit: int
    fq: FlowQueues


class ListPlan(TypedDict):
    mode: Literal["index", "queue"]
    cursor: str
    limit: int
    state: str
    type: str
    owner: str


class StatsPlan(TypedDict):
    metrics: bool


class PausePlan(TypedDict):
    paused: bool


class CleanPlan(TypedDict):
    state: str
    older_than: int  # ms
    limit: int


class PolicyPlan(TypedDict):
    policy: str  # QueueOptions.stored() as JSON text


class WakePlan(TypedDict):
    at: int  # ms


class Nothing(TypedDict):
    pass


class SchedulePlan(TypedDict):
    op: Literal["put", "delete"]
    id: str
    v: int  # the version read; 0: a new schedule
    rec: str  # the record's JSON text ("" for delete)
    next: int | None  # next slot ms
    cap: int  # most schedules of an owner in the queue


class FireItem(TypedDict):
    id: str
    v: int  # the version read
    rec: str  # the record after this firing
    next: int | None  # next slot ms
    j: list[int]  # batch positions of its jobs in the enqueue plan


class FirePlan(TypedDict):
    f: list[FireItem]
    e: EnqueuePlan  # one group: the queue's


class ScheduleListPlan(TypedDict):
    limit: int


A = TypeVar("A")
B = TypeVar("B")


class TwoParts(Script[tuple[A, B]]):
    """A composed script (two state changes in one call): each part keeps its own plan (ARGV[2], ARGV[3])."""

    def argv(self, plan: tuple[A, B]) -> list[str]:
        return [dumps(plan[0]), dumps(plan[1])]


ENQUEUE = Script[EnqueuePlan]("enqueue")
CLAIM = Script[ClaimPlan]("claim")
FINISH = Script[FinishPlan]("finish")
CYCLE = TwoParts[FinishPlan, ClaimPlan]("cycle")  # finish, then claim
EXTEND = Script[ExtendPlan]("extend")
STEP = Script[StepPlan]("step")
REPORT = Script[ReportPlan]("report")
RELEASE = Script[LeasePlan]("release")
CANCEL = Script[JobPlan]("cancel")
RERUN = Script[RerunPlan]("rerun")
LIST = Script[ListPlan]("list")
STATS = Script[StatsPlan]("stats")
PAUSE = Script[PausePlan]("pause")
CLEAN = Script[CleanPlan]("clean")
OBLITERATE = Script[Nothing]("obliterate")
POLICY = Script[PolicyPlan]("policy")
WAKE = Script[WakePlan]("wake")
SCHEDULE = Script[SchedulePlan]("schedule")
FIRE = Script[FirePlan]("fire")
SCHEDULE_LIST = Script[ScheduleListPlan]("schedule_list")
