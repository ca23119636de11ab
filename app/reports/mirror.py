"""Every system's stored readiness mirrored in the process, kept in step with the database
by reading only the systems stored since the last look, with the portfolio's counts kept
per stage and tier as entries change: `Mirror.counts`, the second producer of
`PortfolioCounts`, then costs what changed, not the portfolio, for any scope of stages and
tiers (/metrics/systems, one line per system, keeps its rendered lines until a system
changes).

Change tracking. Every store of an answer sets `systems.readiness_seq` to a marker of its
transaction (`marker.StoreMarker`); a look first takes a horizon (`_horizon`) and then reads, and
the next look reads the systems whose marker is at or past that horizon. On PostgreSQL the
marker is the writer's transaction id and the horizon the oldest transaction still running
when the look's snapshot was taken: a transaction that commits after the look, whatever
order sequence numbers or commits came in, has an id at or past it, so no change is missed
(at worst some are read twice). On SQLite writers take turns (BEGIN IMMEDIATE), so the
marker is one more than the largest stored marker and the horizon one more than the largest
a snapshot sees.

Time. A stored answer is true while `readiness_service.stored_answer_valid` says so when it
is read, and then until its `readiness_valid_until`; past that the mirror judges the system
afresh (as the drift report does) and keeps that answer until its own validity ends or the
system is stored again, so each stale system is evaluated once per process, not on every
call. A stored answer of other rules than the running code's is not counted at all: the
answer judged afresh takes its place, in every count, until the system is stored again.

Warm-up. Nothing reads from a mirror until its first look is done: `app.reports.warmup`
builds it on a background thread at start-up (`Mirror.build`, which a shutdown can stop) and
then `publish`es it; until then `mirror_for` finds none and the callers run their aggregate
queries, so no request ever waits for, or reads from, a mirror half built.

What is kept per system is small (stage, tier, score, gate readiness, the distinct blocking
(gate, control, code) triples, the rendered metric lines); the first look of a process reads
every system, blocking row and current evidence row once (on PostgreSQL aggregated in the
database to a row per system).

Running pilots (`RunningPilots`, for the stuck-pilot count) are followed apart: creating a
pilot stores no readiness, so no marker shows it; its event does.
"""

import heapq
import threading
import weakref
from bisect import bisect_left, bisect_right
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from itertools import islice
from typing import Any

from sqlalchemy import Engine, Executable, and_, case, func, select
from sqlmodel import Session, col

from app.events.service import EventType
from app.models import Event, Evidence, Pilot, PilotResult, ReadinessBlocker, System
from app.policies import service as policy_service
from app.readiness import service as readiness_service
from app.readiness.marker import horizon as _horizon
from app.readiness.tiers import Tier
from app.reports.counts import (
    GATE_AHEAD,
    Blocking,
    Judged,
    Need,
    PortfolioCounts,
    nonzero,
    ready_for_next_stage,
)
from app.systems.service import SystemFilters
from app.vocabulary import Stage

_CHUNK = 1000
_BUFFER = 5000
_PRODUCTION = Stage.production.value


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


@dataclass(slots=True)
class Entry:
    key: str
    stage: str
    tier: str
    seq: int
    # The stored answer, or for one of other rules the answer judged in its place.
    score: float
    pilot_ready: bool
    production_ready: bool
    valid_until: datetime | None
    blocking: Blocking
    other_rules: bool  # stored by other rules than the running code's
    # The answer now, once time has made the stored one stale: (score, pilot, production).
    fresh: tuple[float, bool, bool] | None = None
    fresh_until: datetime | None = None
    lines: tuple[str, str] | None = None  # rendered readiness_score and gate lines
    # When each current evidence row goes stale (expiry or the tier's freshness), sorted,
    # and how many had at the mirror's last look.
    stale_at: tuple[datetime, ...] = ()
    stale: int = 0
    # Its concluded pilots by outcome, and the findings its pilots' results report.
    outcomes: tuple[tuple[str, int], ...] = ()
    findings: tuple[tuple[str, int], ...] = ()

    def now(self) -> tuple[float, bool, bool]:
        if self.fresh is not None:
            return self.fresh
        return self.score, self.pilot_ready, self.production_ready

    def deadline(self) -> datetime | None:
        """When the answer judged now next needs judging again."""
        return self.valid_until if self.fresh is None else self.fresh_until


@dataclass(slots=True)
class _Tally:
    """The counts of the systems of one stage and tier, as `PortfolioCounts` has them."""

    systems: int = 0
    score_tenths: int = 0  # stored scores
    ready_next: int = 0  # stored answers
    drifted: int = 0  # judged now
    blocked_systems: Counter[tuple[str, str]] = field(default_factory=Counter)  # gate, control
    blocked: Counter[tuple[str, str, str]] = field(default_factory=Counter)  # ..., code
    stale_evidence: int = 0  # rows
    systems_with_stale_evidence: int = 0
    pilot_outcomes: Counter[str] = field(default_factory=Counter)
    findings: Counter[str] = field(default_factory=Counter)


class BuildStopped(Exception):
    """A first look given up because the process is shutting down."""


class Mirror:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        # Set only while `build` runs: the first look checks it between buffers of rows.
        self._stop: threading.Event | None = None
        self._horizon: int | None = None
        # One copy of each repeated value (stage, tier, gate, control, code, their blocking
        # triples, outcome and finding names): the database hands each row its own strings,
        # and those copies were half the mirror (measured at 10,000 systems). As many as the
        # distinct values stored, not as the systems.
        self._shared: dict[Any, Any] = {}
        self.entries: dict[int, Entry] = {}
        self._deadlines: list[tuple[datetime, int, int]] = []  # (when, system id, seq)
        self._order: list[str] = []  # keys, sorted
        self._ids: dict[str, int] = {}
        self._body: str | None = None
        # The counts of the systems of each (stage, tier), kept as entries change.
        self._tallies: dict[tuple[str, str], _Tally] = {}
        self._staling: list[tuple[datetime, int, int]] = []  # (when, system id, seq)
        # Systems whose stored answer was no longer valid when read: judged next.
        self._invalid: set[int] = set()
        self.pilots = RunningPilots()

    def build(self, session: Session, *, now: datetime, stop: threading.Event) -> None:
        """The first look: every system read and judged at `now`. Raises BuildStopped soon
        after `stop` is set, leaving this mirror to be thrown away."""
        with self._lock:
            self._stop = stop
            try:
                self._sync(session, now)
                self._judge(session, now)
                self._age(now)
                self.pilots.follow(session, now, self._stop)
            finally:
                self._stop = None

    @contextmanager
    def synced(self, session: Session, *, now: datetime) -> Iterator["Mirror"]:
        """The mirror in step with `session`'s database and judged at `now`, held for the
        caller alone while it reads."""
        with self._lock:
            self._sync(session, now)
            self._judge(session, now)
            self._age(now)
            self.pilots.follow(session, now)
            yield self

    # --- counting ----------------------------------------------------------------------

    def _count(self, entry: Entry, sign: int) -> None:
        place = (entry.stage, entry.tier)
        tally = self._tallies.get(place)
        if tally is None:
            tally = self._tallies[place] = _Tally()
        tally.systems += sign
        tally.score_tenths += sign * round(entry.score * 10)
        if ready_for_next_stage(entry.stage, entry.pilot_ready, entry.production_ready):
            tally.ready_next += sign
        if entry.stage == _PRODUCTION and not entry.now()[2]:
            tally.drifted += sign
        for gate, control in {(gate, control) for gate, control, _ in entry.blocking}:
            self._bump(tally.blocked_systems, (gate, control), sign)
        for triple in entry.blocking:
            self._bump(tally.blocked, triple, sign)
        for outcome, n in entry.outcomes:
            self._bump(tally.pilot_outcomes, outcome, sign * n)
        for finding, n in entry.findings:
            self._bump(tally.findings, finding, sign * n)
        if entry.stale:
            tally.stale_evidence += sign * entry.stale
            tally.systems_with_stale_evidence += sign
        self._body = None
        entry.lines = None

    @staticmethod
    def _bump(counter: Counter[Any], key: Any, by: int) -> None:
        value = counter[key] + by
        if value:
            counter[key] = value
        else:
            del counter[key]

    def _put(self, system_id: int, entry: Entry) -> None:
        old = self.entries.get(system_id)
        if old is not None:
            self._count(old, -1)
            if old.key != entry.key:  # keys do not change; kept correct regardless
                self._forget_key(old.key)
        if old is None or old.key != entry.key:
            position = bisect_left(self._order, entry.key)
            self._order.insert(position, entry.key)
            self._ids[entry.key] = system_id
        self.entries[system_id] = entry
        self._count(entry, +1)
        self._schedule(system_id, entry)

    def _forget_key(self, key: str) -> None:
        position = bisect_left(self._order, key)
        if position < len(self._order) and self._order[position] == key:
            del self._order[position]
        self._ids.pop(key, None)

    def _schedule(self, system_id: int, entry: Entry) -> None:
        deadline = entry.deadline()
        if deadline is not None:
            heapq.heappush(self._deadlines, (deadline, system_id, entry.seq))
        if entry.stale < len(entry.stale_at):
            heapq.heappush(self._staling, (entry.stale_at[entry.stale], system_id, entry.seq))

    def _age(self, now: datetime) -> None:
        """Count the evidence that time has made stale since the last look."""
        while self._staling and self._staling[0][0] <= now:
            when, system_id, seq = heapq.heappop(self._staling)
            entry = self.entries.get(system_id)
            if entry is None or entry.seq != seq or entry.stale_at[entry.stale :][:1] != (when,):
                continue
            self._count(entry, -1)
            entry.stale = bisect_right(entry.stale_at, now)
            self._count(entry, +1)
            if entry.stale < len(entry.stale_at):
                heapq.heappush(self._staling, (entry.stale_at[entry.stale], system_id, seq))

    # --- keeping in step -----------------------------------------------------------------

    def _sync(self, session: Session, now: datetime) -> None:
        horizon = _horizon(session)  # before reading: see the module's docstring
        stored_answer = (
            col(System.id),
            col(System.key),
            col(System.stage),
            col(System.risk_tier),
            col(System.score),
            col(System.pilot_ready),
            col(System.production_ready),
            col(System.readiness_valid_until),
            col(System.readiness_seq),
            readiness_service.stored_answer_valid(now),
            readiness_service.other_rules(),
        )
        blockers = (
            col(ReadinessBlocker.gate),
            col(ReadinessBlocker.control),
            col(ReadinessBlocker.code),
        )
        # One statement, so a system and its blocking rows come from one snapshot: on
        # PostgreSQL a row per system with its blocking items in arrays (a row per item
        # was most of a first look's reading), elsewhere a row per item.
        aggregated = session.get_bind().dialect.name == "postgresql"
        found = (
            [
                func.array_agg(column).filter(col(ReadinessBlocker.gate).is_not(None))
                for column in blockers
            ]
            if aggregated
            else list(blockers)
        )
        query = select(*stored_answer, *found).outerjoin(
            ReadinessBlocker,
            and_(
                col(ReadinessBlocker.system_id) == col(System.id),
                col(ReadinessBlocker.control).is_not(None),
            ),
        )
        if aggregated:
            query = query.group_by(col(System.id))
        changed: list[int] = []
        if self._horizon is not None:
            stored = select(col(System.id)).where(col(System.readiness_seq) >= self._horizon)
            changed = list(session.execute(stored).scalars())
            if not changed:
                self._horizon = horizon
                return
        rows: dict[int, tuple[Any, ...]] = {}
        blocking: dict[int, set[tuple[str, str, str]]] = {}
        invalid: set[int] = set()
        of_other_rules: set[int] = set()
        # By id as well, so the blocking rows are found through their index whatever the
        # planner guesses of the marker; a system stored after the first read has a marker
        # at or past `horizon` and is read next time.
        for batch in _batches(changed, everything=self._horizon is None):
            chosen = query if batch is None else query.where(col(System.id).in_(batch))
            # Core rows on the session's connection: no ORM result machinery per row.
            for row in _rows(session, chosen, self._stop):
                system_id: int = row[0]
                if system_id not in rows:
                    rows[system_id] = tuple(row[1:9])
                    blocking[system_id] = set()
                    if not row[9]:
                        invalid.add(system_id)
                    if row[10]:
                        of_other_rules.add(system_id)
                if row[11] is None:
                    continue
                triples = zip(row[11], row[12], row[13], strict=True) if aggregated else [row[11:]]
                blocking[system_id].update(self._blocker(*triple) for triple in triples)
        everything = self._horizon is None
        stale_at = self._stale_at(session, rows, everything=everything)
        outcomes, findings = _pilots(session, list(rows), everything=everything, stop=self._stop)
        for system_id, (key, stage, tier, score, pilot, production, until, seq) in rows.items():
            old = self.entries.get(system_id)
            if old is not None and old.seq == seq and self._horizon is not None:
                continue  # read again only because its writer was running at the last look
            times = tuple(sorted(stale_at.get(system_id, ())))
            entry = Entry(
                key=key,
                stage=self._share(stage),
                tier=self._share(tier),
                seq=seq,
                score=score,
                pilot_ready=pilot,
                production_ready=production,
                valid_until=until,
                blocking=tuple(sorted(blocking[system_id])),
                other_rules=system_id in of_other_rules,
                stale_at=times,
                stale=bisect_right(times, now),
                outcomes=self._counted(outcomes.get(system_id)),
                findings=self._counted(findings.get(system_id)),
            )
            self._put(system_id, entry)
            if system_id in invalid:
                self._invalid.add(system_id)
        self._horizon = horizon

    def _share(self, value: Any) -> Any:
        return self._shared.setdefault(value, value)

    def _blocker(self, gate: str, control: str, code: str) -> tuple[str, str, str]:
        triple = (self._share(gate), self._share(control), self._share(code))
        shared: tuple[str, str, str] = self._share(triple)
        return shared

    def _counted(self, counts: Counter[str] | None) -> tuple[tuple[str, int], ...]:
        if not counts:
            return ()
        return tuple(sorted((self._share(name), n) for name, n in counts.items()))

    def _stale_at(
        self, session: Session, rows: dict[int, tuple[Any, ...]], *, everything: bool
    ) -> dict[int, list[datetime]]:
        """When each current evidence row of these systems goes stale, as the portfolio's
        stale-evidence count judges it: at its expiry, or once older than its tier's
        freshness limit (strictly, hence the microsecond)."""
        rules = policy_service.active_rules(session).rules
        fresh = {
            tier.value: timedelta(days=days, microseconds=1)
            for tier in Tier
            if (days := rules.tier(tier).evidence_fresh_days) is not None
        }
        ids = list(rows)
        batches = (
            [None] if everything else [ids[i : i + _CHUNK] for i in range(0, len(ids), _CHUNK)]
        )
        found: dict[int, list[datetime]] = {}
        if session.get_bind().dialect.name == "postgresql":
            # Worked out in the database, a row per system: a first look reads over a
            # million evidence rows, and fetching each into Python was most of its time.
            # (A CASE needs a WHEN: with no tier's freshness limit, expiry alone.)
            stale_at = (
                func.least(
                    col(Evidence.expires_at),
                    col(Evidence.recorded_at) + case(fresh, value=col(System.risk_tier)),
                )
                if fresh
                else col(Evidence.expires_at)
            )
            by_system = (
                select(col(Evidence.system_id), func.array_agg(stale_at))
                .join(System, col(System.id) == col(Evidence.system_id))
                .where(col(Evidence.is_current), stale_at.is_not(None))
                .group_by(col(Evidence.system_id))
            )
            for batch in batches:
                chosen = (
                    by_system
                    if batch is None
                    else by_system.where(col(Evidence.system_id).in_(batch))
                )
                for system_id, times in _rows(session, chosen, self._stop):
                    if system_id in rows:
                        found[system_id] = times
            return found
        each_row = select(
            col(Evidence.system_id), col(Evidence.recorded_at), col(Evidence.expires_at)
        ).where(col(Evidence.is_current))
        for batch in batches:
            rows_of = (
                each_row if batch is None else each_row.where(col(Evidence.system_id).in_(batch))
            )
            for system_id, recorded_at, expires_at in _rows(session, rows_of, self._stop):
                row = rows.get(system_id)
                if row is None:
                    continue
                limit = fresh.get(row[2])
                times = [] if expires_at is None else [expires_at]
                if limit is not None:
                    times.append(recorded_at + limit)
                if times:
                    found.setdefault(system_id, []).append(min(times))
        return found

    def _judge(self, session: Session, now: datetime) -> None:
        """Judge afresh the systems whose stored answer was read no longer valid, and those
        whose answer time has made stale since the last look."""
        due, self._invalid = self._invalid, set()
        while self._deadlines and self._deadlines[0][0] <= now:
            when, system_id, seq = heapq.heappop(self._deadlines)
            entry = self.entries.get(system_id)
            if entry is not None and entry.seq == seq and entry.deadline() == when:
                due.add(system_id)
        in_order = sorted(due)
        for first in range(0, len(in_order), readiness_service.REEVALUATE_BATCH):
            _check(self._stop)
            ids = in_order[first : first + readiness_service.REEVALUATE_BATCH]
            systems = list(session.execute(select(System).where(col(System.id).in_(ids))).scalars())
            evaluations = readiness_service.evaluate_many(session, systems, now=now)
            for system, (evaluation, _) in zip(systems, evaluations, strict=True):
                assert system.id is not None
                entry = self.entries[system.id]
                if system.readiness_seq != entry.seq:
                    continue  # stored since the sync: the next look reads it
                self._count(entry, -1)
                judged = Judged.of(entry.stage, entry.tier, evaluation)
                if entry.other_rules:  # the stored answer is replaced, not only judged now
                    entry.score = judged.score
                    entry.pilot_ready = judged.pilot_ready
                    entry.production_ready = judged.production_ready
                    entry.blocking = tuple(self._blocker(*triple) for triple in judged.blocking)
                    entry.valid_until = evaluation.valid_until
                else:
                    entry.fresh = (judged.score, judged.pilot_ready, judged.production_ready)
                    entry.fresh_until = evaluation.valid_until
                self._count(entry, +1)
                self._schedule(system.id, entry)

    # --- reading -------------------------------------------------------------------------

    @staticmethod
    def answers(filters: SystemFilters, needs: Need) -> bool:
        """Whether `counts` counts this scope: the mirror keeps its counts by stage and tier,
        not by owner or label, and the stuck pilots only of every system."""
        if filters.owner_team or filters.labels or filters.ready_for:
            return False
        return Need.STUCK not in needs or not (filters.stage or filters.risk_tier)

    def counts(
        self, session: Session, *, filters: SystemFilters, now: datetime, needs: Need
    ) -> PortfolioCounts:
        """What `app.reports.queries.counts` gives for the same scope (one that `answers`
        says it counts), from the mirror once in step with `session`'s database and judged
        at `now`: the cost of what changed since the last look, then of the (stage, tier)
        counts, not of the systems."""
        if not self.answers(filters, needs):
            raise ValueError(f"the mirror does not count {filters}")
        with self.synced(session, now=now):
            return self._counts(filters, needs)

    def _counts(self, filters: SystemFilters, needs: Need) -> PortfolioCounts:
        tallies = [
            (place, tally)
            for place, tally in self._tallies.items()
            if tally.systems
            and filters.stage in (None, place[0])
            and filters.risk_tier in (None, place[1])
        ]
        found: dict[str, Any] = {}
        if Need.SYSTEMS in needs:
            found["systems"] = nonzero((place, tally.systems) for place, tally in tallies)
            found["score_tenths"] = sum(tally.score_tenths for _, tally in tallies)
        if Need.READY in needs:
            found["ready_for_next_stage"] = sum(tally.ready_next for _, tally in tallies)
        if Need.DRIFT in needs:
            found["drifted"] = sum(tally.drifted for _, tally in tallies)
        if Need.BLOCKING in needs:
            blocking: Counter[tuple[str, str]] = Counter()
            for _, tally in tallies:
                blocking.update(tally.blocked_systems)
            found["blocking"] = nonzero(blocking.items())
        if Need.GAPS in needs:
            by_tier: Counter[tuple[str, str, str]] = Counter()
            by_reason: Counter[tuple[str, str, str]] = Counter()
            for (stage, tier), tally in tallies:
                gate = GATE_AHEAD.get(stage)
                for (at, control), n in tally.blocked_systems.items():
                    if at == gate:
                        by_tier[(at, control, tier)] += n
                for (at, control, code), n in tally.blocked.items():
                    if at == gate:
                        by_reason[(at, control, code)] += n
            found["heading_blocked"] = nonzero(by_tier.items())
            found["heading_reasons"] = nonzero(by_reason.items())
        if Need.STALE in needs:
            found["stale_evidence"] = sum(tally.stale_evidence for _, tally in tallies)
            found["systems_with_stale_evidence"] = sum(
                tally.systems_with_stale_evidence for _, tally in tallies
            )
        if Need.PILOT_RESULTS in needs:
            outcomes: Counter[str] = Counter()
            findings: Counter[str] = Counter()
            for _, tally in tallies:
                outcomes.update(tally.pilot_outcomes)
                findings.update(tally.findings)
            found["pilot_outcomes"] = nonzero(outcomes.items())
            found["findings"] = nonzero(findings.items())
        if Need.STUCK in needs:
            found["stuck_pilots"] = self.pilots.stuck
        return PortfolioCounts(needs=needs, **found)

    def metric_lines(self) -> str:
        """readiness_score and readiness_gate_ready for every system, by key."""
        if self._body is None:
            scores = []
            gates = []
            for key in self._order:
                entry = self.entries[self._ids[key]]
                if entry.lines is None:
                    entry.lines = system_lines(entry.key, entry.tier, entry.stage, entry.now())
                scores.append(entry.lines[0])
                gates.append(entry.lines[1])
            self._body = metrics_body(scores, gates)
        return self._body


class RunningPilots:
    """The running pilots and how many are stuck (running past their planned end or the
    policy's max_pilot_days, as `app.reports.queries.stuck_pilot` judges), kept in step through
    the pilot events: each pilot is created and concluded with one, in the same
    transaction, and event ids become visible in commit order (`events.append_many`), so
    the events past the last one read name every pilot changed since. Those are read again
    as they are now. The first look, and a change of max_pilot_days, read every running
    pilot."""

    _CHANGES = (EventType.pilot_created.value, EventType.pilot_concluded.value)

    def __init__(self) -> None:
        self._last_event: int | None = None
        self._max_days: int | None = None
        self._stuck_from: dict[int, datetime] = {}  # running pilot id: stuck once past this
        self._waiting: list[tuple[datetime, int]] = []  # (stuck from, pilot id), a heap
        self._stuck: set[int] = set()

    @property
    def stuck(self) -> int:
        return len(self._stuck)

    def follow(self, session: Session, now: datetime, stop: threading.Event | None = None) -> None:
        max_days = policy_service.active_rules(session).rules.max_pilot_days
        columns = (col(Pilot.id), col(Pilot.planned_end), col(Pilot.created_at))
        running = select(*columns).where(col(Pilot.status) == "running")
        if self._last_event is None or max_days != self._max_days:
            # The last event first: a pilot changed after it is read again next time.
            last = session.execute(select(func.max(col(Event.id)))).scalar_one()
            self._last_event = None  # a read that fails half-way leaves a reload to do
            self._max_days = max_days
            self._stuck_from.clear()
            self._waiting.clear()
            self._stuck.clear()
            for pilot_id, planned_end, created_at in _rows(session, running, stop):
                self._track(pilot_id, planned_end, created_at, now)
            self._last_event = last or 0
        else:
            changes = select(col(Event.id), col(Event.data)).where(
                col(Event.type).in_(self._CHANGES), col(Event.id) > self._last_event
            )
            last = self._last_event
            changed: set[int] = set()
            for event_id, data in session.execute(changes):
                changed.add(int(data["pilot_id"]))
                last = max(last, event_id)
            ids = sorted(changed)
            for first in range(0, len(ids), _CHUNK):
                batch = ids[first : first + _CHUNK]
                for pilot_id in batch:
                    self._stuck_from.pop(pilot_id, None)
                    self._stuck.discard(pilot_id)
                for pilot_id, planned_end, created_at in session.execute(
                    running.where(col(Pilot.id).in_(batch))
                ):
                    self._track(pilot_id, planned_end, created_at, now)
            # Only once they are read: a read that fails leaves them to read next time.
            self._last_event = last
        while self._waiting and self._waiting[0][0] < now:
            when, pilot_id = heapq.heappop(self._waiting)
            if self._stuck_from.get(pilot_id) == when:
                self._stuck.add(pilot_id)

    def _track(
        self, pilot_id: int, planned_end: datetime | None, created_at: datetime, now: datetime
    ) -> None:
        assert self._max_days is not None
        when = created_at + timedelta(days=self._max_days)
        if planned_end is not None:
            when = min(when, planned_end)
        self._stuck_from[pilot_id] = when
        if when < now:
            self._stuck.add(pilot_id)
        else:
            heapq.heappush(self._waiting, (when, pilot_id))


def system_lines(
    key: str, tier: str, stage: str, answer: tuple[float, bool, bool]
) -> tuple[str, str]:
    """One system's readiness_score line and its two readiness_gate_ready lines."""
    labels = f'system="{_escape(key)}",tier="{_escape(tier)}",stage="{_escape(stage)}"'
    score, pilot, production = answer
    return (
        f"readiness_score{{{labels}}} {score}\n",
        f'readiness_gate_ready{{{labels},gate="pilot"}} {int(pilot)}\n'
        f'readiness_gate_ready{{{labels},gate="production"}} {int(production)}\n',
    )


def metrics_body(scores: list[str], gates: list[str]) -> str:
    """The per-system gauges from `system_lines`, in key order."""
    return "".join(
        [
            "# HELP readiness_score Readiness score (0-100) now.\n",
            "# TYPE readiness_score gauge\n",
            *scores,
            "# HELP readiness_gate_ready 1 when the gate to the stage passes now.\n",
            "# TYPE readiness_gate_ready gauge\n",
            *gates,
        ]
    )


def _rows(
    session: Session, statement: Executable, stop: threading.Event | None = None
) -> Iterator[Any]:
    """Core rows on the session's connection (no ORM machinery per row), fetched a buffer
    at a time (a server-side cursor on PostgreSQL): a first look reads over a million rows,
    which need not all sit in memory at once. With `stop`, BuildStopped once it is set."""
    streamed = statement.execution_options(stream_results=True, max_row_buffer=_BUFFER)
    rows = iter(session.connection().execute(streamed))
    return rows if stop is None else _until(stop, rows)


def _until(stop: threading.Event, rows: Iterator[Any]) -> Iterator[Any]:
    # A buffer's worth at a time through islice: Result.partitions() made a first look
    # about a fifth slower.
    while buffer := list(islice(rows, _BUFFER)):
        _check(stop)
        yield from buffer


def _check(stop: threading.Event | None) -> None:
    if stop is not None and stop.is_set():
        raise BuildStopped


def _batches(ids: list[int], *, everything: bool) -> list[list[int] | None]:
    """The ids a chunk at a time for IN lists, or one pass over every row."""
    if everything:
        return [None]
    return [ids[first : first + _CHUNK] for first in range(0, len(ids), _CHUNK)]


def _pilots(
    session: Session, ids: list[int], *, everything: bool, stop: threading.Event | None = None
) -> tuple[dict[int, Counter[str]], dict[int, Counter[str]]]:
    """Per system, its concluded pilots by outcome and its results' findings."""
    outcomes: dict[int, Counter[str]] = {}
    findings: dict[int, Counter[str]] = {}
    concluded = select(col(Pilot.system_id), col(Pilot.outcome)).where(
        col(Pilot.status) == "concluded"
    )
    reported = select(col(Pilot.system_id), col(PilotResult.findings)).join(
        Pilot, col(Pilot.id) == col(PilotResult.pilot_id)
    )
    for batch in _batches(ids, everything=everything):
        where = [] if batch is None else [col(Pilot.system_id).in_(batch)]
        rows: list[Any] = list(_rows(session, concluded.where(*where), stop))
        for system_id, outcome in rows:
            outcomes.setdefault(system_id, Counter())[outcome] += 1
        rows = list(_rows(session, reported.where(*where), stop))
        for system_id, reports in rows:
            if reports:
                findings.setdefault(system_id, Counter()).update(reports)
    return outcomes, findings


# Built mirrors only, one per engine (so per app and process).
_mirrors: "weakref.WeakKeyDictionary[Engine, Mirror]" = weakref.WeakKeyDictionary()
_mirrors_lock = threading.Lock()


def _engine(session: Session) -> Engine:
    engine = session.get_bind()
    assert isinstance(engine, Engine)
    return engine


def mirror_for(session: Session) -> Mirror | None:
    """The built mirror of the database `session` reads, or None while none is built yet:
    the caller then counts with its aggregate queries. Never waits for a build."""
    with _mirrors_lock:
        return _mirrors.get(_engine(session))


def publish(session: Session, mirror: Mirror) -> None:
    """From now on, reports and scrapes on `session`'s database read `mirror` (built)."""
    with _mirrors_lock:
        _mirrors[_engine(session)] = mirror
