"""`recsys experiment online`: a simulated online A/B test, with the truth known.

A repo generated with `recsys generate --until T` holds the world's days before T; the world
(experiments.traffic) answers for its later days. Each simulated day the world sends
`requests` requests (a user, his scenario, the context, `candidates` candidate items); users
are split over the arms by a hash of their ID, so an arm serves the same users every day. An
arm ranks its request's candidates, the `shown` best are shown, and each shown item's click is
drawn from the world's own probability (every candidate's click is drawn once, when the request
is made: what the user would have done with it); the clicks go back to the arm through
`POST /feedback`, the served arms' servers log what they showed, and each updates from its own
logs (experiments.online_arms):

- popularity: the items' clicks in the log the repo holds (in process, never updated);
- frozen: `recsys serve` of the given run, never updated (its history reads the clicks);
- daily: the same, with one `recsys follow` cycle at the end of each day;
- minute: the same, with one cycle after each of the day's `slices` parts.

The servers run on the wall clock; the world's day of a request is only the truth's. Per arm
and day: online CTR (clicks per shown item, the mean over requests, with a normal 95% interval
over requests), clicks per request, and the offline AUC of the arm's scores on every candidate
of its requests against the drawn clicks (what replaying that day's candidates offline would
say), then whether the two orders of the arms agree. Beside the arms, on all the day's
requests: the oracle (the `shown` candidates of highest true probability) and random shows.

Results: results.json, report.md and online_ctr.png in the experiment's folder; each served
arm's repo, runs and server log in a folder of its own."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

from recsys.errors import UsageError
from recsys.experiments.context import Context
from recsys.experiments.spec import Experiment, Option
from recsys.files import write_text

if TYPE_CHECKING:
    import numpy as np

ARMS = {"popularity": None, "frozen": "never", "daily": "daily", "minute": "slice"}
SPLIT_STREAM = 101  # the hash stream of the users' split over the arms
Z95 = 1.96


class Online(Experiment):
    name = "online"
    about = ("A simulated online A/B test on a generated world's later days: popularity, the "
             "run frozen, updated daily and every part of a day, each through its own real "
             "server and logs; online CTR against offline AUC per arm and day.")
    plot_file = "online_ctr.png"
    on_dataset = False
    options = (
        Option("repo", Path, Path("feature_repo"), "A repo made by `recsys generate --until "
               "DAY`: the world's days from DAY on are simulated."),
        Option("run", Path, ..., "The finished run every served arm starts from."),
        Option("days", int, 3, "World days to simulate.", min=1),
        Option("requests", int, 2000, "Requests per simulated day, split over the arms.", min=1),
        Option("slices", int, 4, "Parts of a day: the minute arm updates after each.", min=1),
        Option("candidates", int, 20, "Candidate items per request.", min=2),
        Option("shown", int, 3, "Items shown per request: the arm's best candidates.", min=1),
        Option("seed", int, 0, "The simulation's seed (requests, clicks, the users' split).",
               min=0))

    def default_out(self, preset: str, options: dict) -> Path:
        return Path("runs") / f"online-{Path(options.get('run', '<run>')).name}"

    def collect(self, ctx: Context) -> dict:
        from recsys.experiments.online_arms import Popularity, Served

        o = ctx.options
        audience = _checked(ctx)
        arms = [Popularity(o["repo"])]
        try:
            for name, update in ARMS.items():
                if update is not None:
                    ctx.log(f"starting arm {name} (update: {update})")
                    arms.append(Served(name, update, o["repo"], o["run"], ctx.out / name,
                                       ctx.log))
            for arm in arms:
                arm.ready()
            days = [_day(ctx, audience, arms, d) for d in range(o["days"])]
        finally:
            for arm in arms:
                arm.close()
        return {"experiment": self.name, "repo": str(o["repo"]), "run": str(o["run"]),
                "world": {"held_days": audience.held, "feed": audience.world.preset.feed,
                          "preset": audience.world.preset.name},
                **{k: o[k] for k in ("days", "requests", "slices", "candidates", "shown",
                                     "seed")},
                "arms": {a.name: {"update": a.update, "cycle_seconds": a.cycle_seconds}
                         for a in arms}, "per_day": days,
                "agreement": _agreement(days, [a.name for a in arms])}

    def datasets(self, ctx: Context, results: dict) -> list[Path]:
        return []  # no dataset is read: the world answers

    def tables(self, results: dict) -> list[str]:
        return [table(results)]

    def report(self, results: dict, path: Path) -> None:
        a = results["agreement"]
        write_text(f"""# Online A/B test (simulated)

`{results['run']}` on `{results['repo']}` ({results['world']['preset']} world
{'with a feed' if results['world']['feed'] else ''}), the world's days {results['world']
['held_days']} .. {results['world']['held_days'] + results['days'] - 1} simulated:
{results['requests']:,} requests a day split over the arms by user, {results['candidates']}
candidates each, the best {results['shown']} shown, clicks drawn from the world's own
probability and sent back through `/feedback`. The minute arm updates after each of the
{results['slices']} parts of a day, the daily arm after the last. Online CTR: clicks per shown
item (mean over requests, 95% interval); offline AUC: the arm's scores of every candidate of its
requests against the drawn clicks.

{table(results)}

Offline AUC and online CTR order the arms the same way in {a['pairs_agreeing']} of
{a['pairs']} (day, pair of arms) comparisons; per arm, its rank by AUC / by CTR each day:
{', '.join(f"{arm} {' '.join(r)}" for arm, r in a['ranks'].items())}.

![online CTR and offline AUC](online_ctr.png)
""", path)

    def plot(self, results: dict, path: Path) -> None:
        """Online CTR (with its interval) and offline AUC per arm over the simulated days."""
        from recsys.eval.plots import plt, save

        fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
        days = [d["day"] for d in results["per_day"]]
        for i, arm in enumerate(results["arms"]):
            cells = [d["arms"][arm] for d in results["per_day"]]
            left.errorbar(days, [c["ctr"] for c in cells], yerr=[c["ctr_95"] for c in cells],
                          marker="o", capsize=3, color=f"C{i}", label=arm)
            right.plot(days, [c["auc"] for c in cells], marker="o", color=f"C{i}", label=arm)
        for key, style, label in (("oracle_ctr", ":", "oracle"), ("random_ctr", "--", "random")):
            left.plot(days, [d[key] for d in results["per_day"]], style, color="grey",
                      label=label)
        right.plot(days, [d["truth_auc"] for d in results["per_day"]], ":", color="grey",
                   label="the truth's")
        left.set(xlabel="world day", ylabel="online CTR (clicks per shown item)",
                 title="Online CTR, 95% interval")
        right.set(xlabel="world day", ylabel="AUC", title="Offline AUC on the same candidates")
        for ax in (left, right):
            ax.set_xticks(days)
            ax.legend(fontsize=8, frameon=False)
        save(fig, path)


def _checked(ctx: Context):
    """The world of the repo, once the options are checked against it."""
    from recsys.experiments.traffic import Audience
    from recsys.features.feature_store import state_paths
    from recsys.run import Run

    o = ctx.options
    if ctx.file or any(v is not None for v in ctx.flags.values()):
        raise UsageError("experiment online: the served arms update with their run's own "
                         "config; drop --config, --epochs and --batch-size",
                         fields=("config", "epochs", "batch_size"))
    if o["shown"] > o["candidates"]:
        raise UsageError(f"shown {o['shown']}: more than the {o['candidates']} candidates; show "
                         f"at most that many", fields="shown")
    Run(o["run"]).check_trained()
    if state_paths(o["repo"])[1] is None:
        raise UsageError(f"{o['repo']}: its online store is not SQLite; each arm serves a copy "
                         f"of the repo of its own, which a shared Redis would not be",
                         fields="repo")
    audience = Audience.of(o["repo"])
    if o["days"] > audience.days:
        raise UsageError(f"days {o['days']}: the repo holds the world's days before "
                         f"{audience.held} and the world has {audience.days} more; simulate at "
                         f"most {audience.days} (or generate with an earlier --until)",
                         fields="days")
    if ctx.out.exists() and any(ctx.out.iterdir()):
        if not ctx.force:
            raise UsageError(f"{ctx.out} exists: pass --force to replace it, or --out",
                             fields="out")
        import shutil

        shutil.rmtree(ctx.out)
    ctx.out.mkdir(parents=True, exist_ok=True)
    return audience


def _day(ctx: Context, audience, arms: list, d: int) -> dict:
    """Simulate world day held + d: serve, click, send back, update; its figures."""
    import numpy as np  # the CLI imports this module: numpy only when a day runs
    from recsys.data.synth import hash_uniform
    from recsys.metrics import auc

    o = ctx.options
    day = audience.held + d
    rng = np.random.default_rng([o["seed"], day])
    requests = audience.requests(day, o["requests"], o["candidates"], rng)
    p = audience.click_probability(requests)
    labels = rng.random(p.shape) < p  # what each user would do with each candidate if shown
    arm_of = (hash_uniform(o["seed"], SPLIT_STREAM, requests.user_id)[:, 0]
              * len(arms)).astype(np.int64)
    scores = np.full(p.shape, np.nan)
    bounds = np.linspace(0, len(requests), o["slices"] + 1).astype(np.int64)
    served = {a.name: set() for a in arms}  # the runs that answered the day's requests
    failed = threading.Event()  # one arm's failure stops the others' loops

    def serve(i: int, rows: np.ndarray) -> None:
        arm = arms[i]
        for r in rows:
            if failed.is_set():
                return
            try:
                scores[r], request_id = arm.score(
                    requests.user_id[r], requests.scenario[r], requests.candidates[r],
                    requests.context(r, getattr(arm, "context", [])), o["shown"])
                top = np.argsort(-scores[r], kind="stable")[:o["shown"]]
                arm.clicked([{"user_id": int(requests.user_id[r]),
                              "item_id": int(requests.candidates[r, j]),
                              "scenario": int(requests.scenario[r]), "clicked": True,
                              "request_id": request_id} for j in top if labels[r, j]])
            except BaseException:
                failed.set()
                raise

    for s in range(o["slices"]):
        part = np.arange(bounds[s], bounds[s + 1])
        for arm in arms:
            served[arm.name].add(arm.run)
        with ThreadPoolExecutor(len(arms)) as pool:
            for f in [pool.submit(serve, i, part[arm_of[part] == i]) for i in range(len(arms))]:
                f.result()
        for arm in arms:
            if arm.update == "slice" or (arm.update == "daily" and s == o["slices"] - 1):
                arm.updated()
        ctx.log(f"day {day}: part {s + 1}/{o['slices']} served")
    cells = {}
    for i, arm in enumerate(arms):
        rows = np.flatnonzero(arm_of == i)
        clicks = _shown_clicks(scores[rows], labels[rows], o["shown"])
        ctr = clicks / o["shown"]
        cells[arm.name] = {"requests": int(rows.size), "ctr": float(ctr.mean()),
                           "ctr_95": float(Z95 * ctr.std(ddof=1) / np.sqrt(rows.size)),
                           "clicks_per_request": float(clicks.mean()),
                           "auc": auc(labels[rows].ravel(), scores[rows].ravel()),
                           "runs": sorted(Path(r).name for r in served[arm.name])}
    return {"day": day, "arms": cells,
            "oracle_ctr": float(_shown_clicks(p, labels, o["shown"]).mean() / o["shown"]),
            "random_ctr": float(p.mean()), "truth_auc": auc(labels.ravel(), p.ravel())}


def _shown_clicks(scores: np.ndarray, labels: np.ndarray, shown: int) -> np.ndarray:
    """Per request: the clicks on its `shown` best-scored candidates (ties: the first)."""
    import numpy as np  # the CLI imports this module: numpy only when a day runs
    top = np.argsort(-scores, axis=1, kind="stable")[:, :shown]
    return np.take_along_axis(labels, top, axis=1).sum(1).astype(np.float64)


def _agreement(days: list[dict], names: list[str]) -> dict:
    """Do offline AUC and online CTR order the arms alike? Each day's pairs of arms, and each
    arm's rank (1: best) by either, per day."""
    pairs = agreeing = 0
    ranks = {n: [] for n in names}
    for d in days:
        cells = d["arms"]
        for i, a in enumerate(names):
            for b in names[i + 1:]:
                pairs += 1
                agreeing += (cells[a]["auc"] - cells[b]["auc"]) * \
                    (cells[a]["ctr"] - cells[b]["ctr"]) > 0
        by_auc = sorted(names, key=lambda n: -cells[n]["auc"])
        by_ctr = sorted(names, key=lambda n: -cells[n]["ctr"])
        for n in names:
            ranks[n].append(f"{by_auc.index(n) + 1}/{by_ctr.index(n) + 1}")
    return {"pairs": pairs, "pairs_agreeing": int(agreeing), "ranks": ranks}


def table(results: dict) -> str:
    """Per day and arm: requests, online CTR ± its 95% interval, clicks per request, offline
    AUC, the runs served; then the day's references."""
    lines = ["| day | arm | requests | online CTR | clicks / request | offline AUC | runs served |",
             "| ---: | --- | ---: | ---: | ---: | ---: | ---: |"]
    for d in results["per_day"]:
        for arm, c in d["arms"].items():
            lines.append(f"| {d['day']} | {arm} | {c['requests']:,} | {c['ctr']:.4f} ± "
                         f"{c['ctr_95']:.4f} | {c['clicks_per_request']:.3f} | {c['auc']:.4f} | "
                         f"{len(c['runs'])} |")
        lines.append(f"| {d['day']} | *oracle / random* | | {d['oracle_ctr']:.4f} / "
                     f"{d['random_ctr']:.4f} | | {d['truth_auc']:.4f} (truth) | |")
    return "\n".join(lines)
