"""`POST /feedback`: what a user did with an item is kept in the repo's feedback log (every
event, on disk before the answer: serve.feedback_log) and a click reaches his history in the
online store at once, through Feast's write API, without a new materialization: the next
`/score` for him reads it. A click goes to the head of the user's `user_history` (kept in time
order, most recent first, `history_length` long); an impression without a click changes
nothing there. The merge is locked across the server's processes (HistoryLock), so clicks of
one user sent to two workers at once are both kept."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from recsys.data.history import merge_clicks
from recsys.schema import EVENT_TIMESTAMP, HISTORY_VIEW, ITEM_ID, UNKNOWN_CODE, USER_ID, \
    Schema
from recsys.serve.feedback_log import FeedbackLog, HistoryLock
from recsys.serve.scorer import RequestError

CLOCK_SKEW = timedelta(seconds=1)  # a client's clock may run this far ahead of ours


@dataclass
class Event:
    user_id: int | str
    item_id: int | str
    scenario: int | str
    clicked: bool
    timestamp: datetime | None = None  # None: now
    request_id: int = 0  # the served request the item was shown in (orders ties at an instant)


class HistoryWriter:
    """Logs events and merges clicks into the users' histories in the online store."""

    def __init__(self, scorer, schema: Schema):
        self.scorer, self.store = scorer, scorer.features.store
        self.length = schema.history_length
        self.present = HISTORY_VIEW.name in {v.name for v in schema.views}
        # the view's lists: items, scenarios, click times, then the item features each click
        # carries, read for a new click from the item's views in the online store
        self.lists = [f.name for f in schema.view_features(HISTORY_VIEW.name)]
        views = {f.name: f.view for f in schema.features}
        self.carried = [f"{views[f]}:{f}" for f in schema.history_item_features]
        self.log, self.lock = FeedbackLog.of(scorer.repo), HistoryLock.of(scorer.repo)

    def record(self, events: list[Event]) -> int:
        """Check every event, log them all, then write the clicks to the online histories;
        the number of clicks. A bad event refuses the whole batch before anything is
        written."""
        if not self.present:
            raise RequestError(f"this repo's schema has no {HISTORY_VIEW.name} view: import "
                               f"or generate the data again to give it one")
        now = datetime.now(timezone.utc)
        checked = [self._checked(i, e, now) for i, e in enumerate(events)]
        self.log.append([(u, i, s, e.clicked, at, r)
                         for (u, i, s, at, r), e in zip(checked, events)])
        clicks = [c for c, e in zip(checked, events) if e.clicked]
        if not clicks:
            return 0
        with self.lock:
            self._write(clicks, self.lock.stamp())
        return len(clicks)

    def _checked(self, i: int, event: Event, now: datetime) -> tuple[int, int, int, int, int]:
        """(user, item, scenario, time in µs, request) in the store's terms, or a
        RequestError."""
        where = f"events[{i}]."
        user, items = self.scorer.store_ids(event.user_id, [event.item_id], where, ITEM_ID)
        item = int(items[0])
        if user < 0:  # an imported repo's ID maps do not hold it (yet)
            raise RequestError(f"{where}user_id: {event.user_id!r} is not a user of this repo "
                               f"yet: a user arrives with the log (`recsys import ... "
                               f"--append`), before which a click has no ID to be kept under")
        if item < 0 or item >= self.scorer.features.n_items:
            raise RequestError(f"{where}item_id: {event.item_id!r} is not an item of this repo")
        try:
            scenario = self.scorer.scenario_code(event.scenario)
        except RequestError as e:
            raise RequestError(f"{where}{e}") from None
        at = event.timestamp or now
        if at.tzinfo is None:
            at = at.replace(tzinfo=timezone.utc)  # a time without a zone is UTC, as in the log
        if at > now + CLOCK_SKEW:
            raise RequestError(f"{where}timestamp: {at.isoformat()} is in the future (now "
                               f"{now.isoformat()}); send when the click happened")
        return user, item, scenario, int(at.timestamp() * 1_000_000), event.request_id

    def _write(self, clicks: list[tuple[int, int, int, int, int]], written: datetime) -> None:
        import pandas as pd

        users = sorted({c[0] for c in clicks})
        stored = self.store.get_online_features(
            features=[f"{HISTORY_VIEW.name}:{name}" for name in self.lists],
            entity_rows=[{USER_ID: u} for u in users]).to_dict()
        items = sorted({c[1] for c in clicks})
        carried = self.store.get_online_features(
            features=self.carried, entity_rows=[{ITEM_ID: i} for i in items]).to_dict() \
            if self.carried else {}
        item_values = {i: tuple(UNKNOWN_CODE if carried[ref.split(":")[1]][j] is None
                                else carried[ref.split(":")[1]][j] for ref in self.carried)
                       for j, i in enumerate(items)}
        rows = {name: [] for name in self.lists}
        for i, user in enumerate(users):
            old = list(zip(*(stored[name][i] or [] for name in self.lists)))
            new = [(request, (item, scenario, at, *item_values[item]))
                   for u, item, scenario, at, request in clicks if u == user]
            merged = merge_clicks(old, new, self.length)
            for name, values in zip(self.lists, zip(*merged)):
                rows[name].append(list(values))
        self.store.write_to_online_store(HISTORY_VIEW.name, pd.DataFrame(
            {USER_ID: users, EVENT_TIMESTAMP: [written] * len(users), **rows}))
