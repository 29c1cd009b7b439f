"""Render benchmarks/RESULTS.md from what `make bench` and `make bench-quality` measured.

    python benchmarks/render.py bench BENCH_JSON        # the pytest-benchmark JSON of a run
    python benchmarks/render.py quality QUALITY_DIR     # the experiments + gates of a run
    python benchmarks/render.py spread SPREAD_DIR       # the multi-scenario spread over seeds
    python benchmarks/render.py rolling ROLLING_DIR     # updated against retrained, by day
    python benchmarks/render.py feed FEED_DIR           # history and retrieval, a feed world
    python benchmarks/render.py cycle CYCLE_DIR         # one day's steps against all days'
    python benchmarks/render.py real REAL_DIR           # MovieLens-100K beside the references
    python benchmarks/render.py online ONLINE_DIR       # the simulated online A/B test

Each writes its own part of the file (between its markers) and keeps the other, so the
throughput tables and the quality tables can be measured at different times; each part says
the commit and the machine it was measured on."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from recsys.files import write_text  # noqa: E402

RESULTS_MD = ROOT / "benchmarks" / "RESULTS.md"
TITLE = """# Benchmark results

Written by `make bench`, `make bench-quality`, `make bench-spread`, `make bench-rolling`,
`make bench-feed`, `make bench-online`, `make bench-real` and `benchmarks/daily_cycle.py`
(`benchmarks/render.py`); not edited by hand.
Every figure below is from the run its part names, on the machine it names.
"""

# area title per benchmark module, in the order of the data flow
AREAS = {"bench_generate": "Generation", "bench_import": "Import",
         "bench_build_dataset": "Point-in-time build", "bench_training": "Loader and training step",
         "bench_cold_start": "Cold-start training", "bench_scale": "Sharded training",
         "bench_text": "Text encoding", "bench_serve": "Serving",
         "bench_refusal": "Refusals: how soon bad input is answered",
         "bench_peer": "A real peer: torch-rechub's MMOE and DIN beside recsys's mmoe and din"}


def machine_line(m: dict) -> str:
    versions = ", ".join(f"{k} {v}" for k, v in m.get("versions", {}).items())
    commit = (m.get("commit") or "unknown")[:7] + (" with uncommitted changes"
                                                   if m.get("dirty") else "")
    return (f"Commit `{commit}`. Machine: {m.get('cpu_model')}, {m.get('cores')} cores, "
            f"{m.get('memory_gib')} GiB memory, {m.get('gpu') or 'no GPU'}; Python "
            f"{m.get('python')}; {versions}.")


def _number(v: float) -> str:
    return f"{v:,.0f}" if abs(v) >= 1000 else f"{v:,.4g}"


def bench_part(data: dict) -> str:
    own = data.get("recsys", {})
    preset = own.get("preset", "small")
    lines = ["## Throughput and memory (`make bench`)", "",
             f"Preset `{preset}`, {data.get('datetime', '')[:19]} UTC. "
             + machine_line(data["machine_info"]), "",
             "Ratios are of two figures measured side by side in the same run; read them "
             "rather than the absolute rates on a shared machine.", ""]
    benches = data.get("benchmarks", [])
    for module, title in AREAS.items():
        timed = [b for b in benches if b["fullname"].split("::")[0].endswith(f"{module}.py")]
        figures = [r for r in own.get("results", []) if r["module"] == module]
        ratios = [r for r in own.get("ratios", []) if r["module"] == module]
        if not (timed or figures):
            continue
        lines += [f"### {title}", "", "```bash",
                  f"RECSYS_BENCH_PRESET={preset} python -m pytest benchmarks/{module}.py "
                  f"--benchmark-only", "```", ""]
        if timed:
            lines += ["| benchmark | mean s | min s | max s | rounds |",
                      "| --- | ---: | ---: | ---: | ---: |"]
            for b in timed:
                s = b["stats"]
                lines.append(f"| {b['name']} | {s['mean']:.4g} | {s['min']:.4g} | "
                             f"{s['max']:.4g} | {s['rounds']} |")
            lines.append("")
        if figures or ratios:
            lines += ["| figure | value |", "| --- | ---: |"]
            lines += [f"| {r['name']} | {_number(r['value'])} |" for r in figures]
            lines += [f"| **{r['name']}** | **{r['value']:.2f}** |" for r in ratios]
            lines.append("")
    other = [r for r in own.get("results", []) if r["module"] not in AREAS]
    if other:  # a figure no area claimed is still shown
        lines += ["### Other figures of the run", "", "| figure | value |", "| --- | ---: |",
                  *(f"| {r['name']} | {_number(r['value'])} |" for r in other), ""]
    return "\n".join(lines)


def plots(folder: Path, prefix: str, alt: str) -> list[str]:
    """The PNG plots of `folder`, copied into benchmarks/plots as `<prefix>-<name>`: their
    Markdown image lines."""
    lines = []
    for png in sorted(folder.glob("*.png")):
        target = ROOT / "benchmarks" / "plots" / f"{prefix}-{png.name}"
        target.parent.mkdir(exist_ok=True)
        target.write_bytes(png.read_bytes())
        lines.append(f"![{alt}](plots/{target.name})")
    return lines


def quality_part(folder: Path) -> str:
    """The experiments of one `make bench-quality` run: its commands, the tables and plots
    each experiment wrote, and the gates' verdict."""
    run = json.loads((folder / "quality.json").read_text())
    lines = ["## Quality gates (`make bench-quality`)", "",
             f"Preset `{run['preset']}`, {run['seeds']} seed(s), {run['finished'][:19]} UTC. "
             + machine_line(run["machine"]), "", "```bash", *run["commands"], "```", "",
             (f"Gates `{run['gates']}` recorded from this run: {run['cells']} cells."
              if run["recorded"] else
              f"Gates `{run['gates']}`: **{run['passed']} of {run['cells']} cells within "
              f"tolerance**" + ("." if not run["failed"] else ", moved:")), ""]
    lines += [f"- {line}" for line in run["failed"]]
    for name in run["experiments"]:
        lines += experiment_lines(folder, name, run["seeds"], name)
    return "\n".join(lines)


def experiment_lines(folder: Path, name: str, seeds: int, prefix: str) -> list[str]:
    """One experiment's tables (mean ± std over seeds), its paired gains and its plots."""
    from recsys.eval.gates import auc_blocks
    from recsys.eval.report import auc_table, gain_table

    results = json.loads((folder / name / "results.json").read_text())
    lines = ["", f"### {name}", ""]
    over = "mean ± std over seeds" if seeds > 1 else "one seed"
    for table, block in auc_blocks(results).items():
        what = block.get("metric", "AUC").replace("recall", "Recall")
        lines += [f"{what}, {table} ({over}):", "", auc_table(block), ""]
    if results.get("gains") and seeds > 1:
        lines += ["Paired gain, seed by seed:", "", gain_table(results), ""]
    return lines + plots(folder / name, prefix, name)


def spread_part(folder: Path) -> str:
    """The multi-scenario experiment over seeds on both backbones (`make bench-spread`): every
    model's AUC per scenario, mean ± std, and its gain over dnn paired seed by seed."""
    from recsys.eval.report import auc_table, gain_table

    run = json.loads((folder / "spread.json").read_text())
    results = json.loads((folder / "results.json").read_text())
    lines = ["## Multi-scenario over seeds (`make bench-spread`)", "",
             f"Preset `{run['preset']}`, {run['seeds']} seed(s), {run['finished'][:19]} UTC. "
             + machine_line(run["machine"]), "", "```bash", *run["commands"], "```", "",
             "Test AUC per scenario (the AntM2C paper's table; a `+dcn` model sits on DCN-v2 "
             "cross layers):", "", auc_table(results), ""]
    if results.get("gains"):
        lines += ["Paired gain over dnn, seed by seed:", "", gain_table(results), ""]
    lines += plots(folder, "spread", "multi-scenario over seeds")
    return "\n".join(lines)


def rolling_part(folder: Path) -> str:
    """The rolling evaluation (`make bench-rolling`): its criteria's verdict, the next-day AUC
    of update and retrain (mean ± std over the days), the cost of each, the plot."""
    from recsys.eval.report import auc_table

    run = json.loads((folder / "rolling.json").read_text())
    results = json.loads((folder / "rolling" / "results.json").read_text())
    held = sum(c["ok"] for c in run["checked"])
    totals = results["totals"]
    lines = ["## Rolling: updated against retrained, day by day (`make bench-rolling`)", "",
             f"{run['finished'][:19]} UTC. " + machine_line(run["machine"]), "", "```bash",
             *run["commands"], "```", "",
             f"Criteria `benchmarks/rolling_gates.json`: **{held} of {len(run['checked'])} "
             f"hold**:", "", *(f"- {c['line']}" for c in run["checked"]), "",
             f"Next-day AUC, mean ± std over {results['seeds']} days:", "",
             auc_table(results), "",
             "| arm | examples trained | training seconds |", "| --- | ---: | ---: |",
             *(f"| {arm} | {t['examples']:,} | {t['seconds']:,.0f} |"
               for arm, t in totals.items()), ""]
    lines += plots(folder / "rolling", "rolling", "rolling")
    return "\n".join(lines)


def feed_part(folder: Path) -> str:
    """The history and retrieval criteria on a feed world (`make bench-feed`): the verdict,
    each experiment's tables and plots."""
    run = json.loads((folder / "feed.json").read_text())
    held = sum(c["ok"] for c in run["checked"])
    lines = ["## History and retrieval in a feed world (`make bench-feed`)", "",
             f"Preset `{run['criteria']['preset']}` generated with `--feed`, {run['seeds']} "
             f"seed(s), {run['finished'][:19]} UTC. " + machine_line(run["machine"]), "",
             "```bash", *run["commands"], "```", "",
             f"Criteria `benchmarks/feed_gates.json`: **{held} of {len(run['checked'])} "
             f"hold**:", "", *(f"- {c['line']}" for c in run["checked"])]
    for name in ("history", "retrieval"):
        lines += experiment_lines(folder, name, run["seeds"], f"feed-{name}")
    return "\n".join(lines)


def online_part(folder: Path) -> str:
    """The simulated online A/B test (`make bench-online`): the criteria's verdict, the table
    per arm and day, the agreement of offline AUC and online CTR, the update cycles' time."""
    from recsys.experiments.online import table

    run = json.loads((folder / "online.json").read_text())
    results = json.loads((folder / "online" / "results.json").read_text())
    held = sum(c["ok"] for c in run["checked"])
    a = results["agreement"]
    lines = ["## A simulated online A/B test (`make bench-online`)", "",
             f"Preset `{run['criteria']['preset']}` with `--feed`, generated up to day "
             f"{results['world']['held_days']}; its days {results['world']['held_days']} .. "
             f"{results['world']['held_days'] + results['days'] - 1} served to the arms "
             f"(`recsys experiment online`), {results['requests']:,} requests a day, "
             f"{results['candidates']} candidates each, the best {results['shown']} shown, "
             f"{results['slices']} parts a day; {run['finished'][:19]} UTC. "
             + machine_line(run["machine"]), "", "```bash", *run["commands"], "```", "",
             f"Criteria `benchmarks/online_gates.json`: **{held} of {len(run['checked'])} "
             f"hold**:", "", *(f"- {c['line']}" for c in run["checked"]), "",
             table(results), "",
             f"Offline AUC and online CTR order the arms alike in {a['pairs_agreeing']} of "
             f"{a['pairs']} (day, pair) comparisons; each arm's rank by AUC / by CTR per day: "
             + "; ".join(f"{arm} {' '.join(r)}" for arm, r in a["ranks"].items()) + ".", "",
             "A `recsys follow` cycle (served log to a published run answering), seconds: "
             + "; ".join(f"{arm} {', '.join(f'{s:g}' for s in c['cycle_seconds'])}"
                         for arm, c in results["arms"].items() if c["cycle_seconds"]) + ".", ""]
    lines += plots(folder / "online", "online", "online A/B")
    return "\n".join(lines)


def cycle_part(folder: Path) -> str:
    """benchmarks/daily_cycle.py: each step of one day of a growing log against the same step
    over every day before it, wall time and peak RSS."""
    run = json.loads((folder / "daily_cycle.json").read_text())
    lines = ["## A day of a growing log (`benchmarks/daily_cycle.py`)", "",
             f"Preset `{run['preset']}`, a world of {run['days']} days; {run['finished'][:19]} "
             f"UTC. " + machine_line(run["machine"]), "",
             f"The first {run['days'] - 1} days from scratch, then the last day alone (each "
             f"step under `/usr/bin/time -v`; the commands are in the script):", "",
             "| step | wall s | peak RSS (GiB) |", "| --- | ---: | ---: |"]
    lines += [f"| {s['kind']}: {s['step']} | {s['wall_s']:,.1f} | {s['rss_kib'] / 2**20:.2f} |"
              for s in run["steps"]]
    return "\n".join(lines)


def real_part(folder: Path) -> str:
    """`make bench-real`: MovieLens-100K in its task forms, the references beside every recsys
    model family at its defaults (mean ± std over seeds), the criteria's verdicts."""
    run = json.loads((folder / "real.json").read_text())
    lines = ["## Real data: MovieLens-100K (`make bench-real`)", "",
             f"{run['seeds']} seed(s), {run['finished'][:19]} UTC. " +
             machine_line(run["machine"]), "", "```bash", *run["commands"], "```", ""]
    if run.get("checked"):
        held = sum(c["ok"] for c in run["checked"])
        lines += [f"Criteria `benchmarks/real_gates.json` (click form): **{held} of "
                  f"{len(run['checked'])} hold**:", "",
                  *(f"- {c['line']}" for c in run["checked"]), ""]
    if run.get("tune"):
        t = run["tune"]
        lines += [f"`recsys tune` of `{t['arm']}` on the click form: {t['trials']} trials in "
                  f"{t['seconds']:.0f} s; best trial {t['best']['number']}, validation AUC "
                  f"{t['best']['val_auc']:.4f} (the defaults' {t['default_val_auc']:.4f}), "
                  f"test AUC {t['best']['test_auc']:.4f}; its parameters: " +
                  ", ".join(f"{k} {v:.3g}" if isinstance(v, float) else f"{k} {v}"
                            for k, v in t["best"]["params"].items()) + ".", ""]
    for form, r in run["forms"].items():
        scen = [f"scenario_{i}" for i in range(len(r["scenarios"]))] \
            if len(r["scenarios"]) > 1 else []
        rows = ", ".join(f"{s} {n:,}" for s, n in r["rows"].items())
        names = [r["scenarios"][int(c.split("_")[1])] for c in scen]
        lines += [f"### Form `{form}` ({rows} rows; scenarios: "
                  f"{', '.join(r['scenarios'])})", "",
                  f"Its runs were trained at commit(s) {', '.join(r.get('trained_at', []))} "
                  f"(a finished run is reused by the next invocation; + marks uncommitted "
                  f"changes).", "", *_val_vs_test(r),
                  ("| | model | val AUC | test AUC | " + "".join(f"{n} | " for n in names)
                   ).rstrip(),
                  "| --- | --- | ---: | ---: |" + " ---: |" * len(scen)]
        for side, table in (("reference", r["references"]), ("peer", r.get("peers", {})),
                            ("recsys", r["recsys"])):
            for name, cells in table.items():
                m, sd = cells["overall"]
                val = f"{cells['val'][0]:.4f}" if "val" in cells else "-"
                per = "".join(f"{cells[c][0]:.4f} | " if c in cells else "- | " for c in scen)
                lines.append(f"| {side} | {name} | {val} | {m:.4f} ± {sd:.4f} | "
                             f"{per}".rstrip())
        lines.append("")
    return "\n".join(lines)


def _val_vs_test(form: dict) -> list[str]:
    """Whether validation (on which every run and reference keeps its epoch) and test rank
    the same arm first: a line, when every arm has its validation AUC."""
    arms = {**form["references"], **form.get("peers", {}), **form["recsys"]}
    if not all("val" in cells for cells in arms.values()):
        return []
    by_val = max(arms, key=lambda n: arms[n]["val"][0])
    by_test = max(arms, key=lambda n: arms[n]["overall"][0])

    def cell(n: str) -> str:
        return f"{n} (val {arms[n]['val'][0]:.4f}, test {arms[n]['overall'][0]:.4f})"
    if by_val == by_test:
        return [f"Validation and test rank the same arm first: {cell(by_val)}.", ""]
    return [f"Validation and test disagree: validation ranks {cell(by_val)} first, test "
            f"ranks {cell(by_test)} first.", ""]


def replace_part(text: str, part: str, body: str) -> str:
    start, end = f"<!-- {part}:start -->", f"<!-- {part}:end -->"
    block = f"{start}\n{body}\n{end}"
    if start in text:
        return re.sub(re.escape(start) + ".*?" + re.escape(end), lambda _: block, text,
                      flags=re.S)
    return text.rstrip("\n") + "\n\n" + block + "\n"


def main(part: str, source: str) -> None:
    path = Path(source)
    body = {"bench": lambda: bench_part(json.loads(path.read_text())),
            "quality": lambda: quality_part(path), "spread": lambda: spread_part(path),
            "rolling": lambda: rolling_part(path), "cycle": lambda: cycle_part(path),
            "feed": lambda: feed_part(path), "real": lambda: real_part(path),
            "online": lambda: online_part(path)}[part]()
    text = RESULTS_MD.read_text() if RESULTS_MD.exists() else TITLE
    write_text(replace_part(text, part, body), RESULTS_MD)
    print(f"{RESULTS_MD}: {part} part from {source}")


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] not in ("bench", "quality", "spread", "rolling",
                                                 "cycle", "feed", "real", "online"):
        sys.exit("usage: python benchmarks/render.py bench BENCH_JSON | quality QUALITY_DIR | "
                 "spread SPREAD_DIR | rolling ROLLING_DIR | cycle CYCLE_DIR | feed FEED_DIR")
    main(*sys.argv[1:])
