#!/usr/bin/python3
"""TD3 and PPO on Pendulum: the in-process PyTorch references (tools/torch_td3.py,
tools/torch_ppo.py) against the same algorithms through deltaserve (for TD3, --td3-impl cpp
(default): the C++ client of sim/td3_sim.cc through tools/td3_cpp.py, or --td3-impl python:
client/python/examples/td3_pendulum.py; for PPO, --ppo-impl cpp (default): the C++ simulators
of sim/ppo_sim.cc through tools/ppo_cpp.py, or --ppo-impl python: ppo_pendulum.py),
interleaved A, B, A, B, ... per seed.

    /usr/bin/python3 tools/bench_algorithms.py --out /tmp/bench_algorithms          # all, 5 seeds
    /usr/bin/python3 tools/bench_algorithms.py --algos ppo --seeds 1 2 --out /tmp/b  # a part

Each run is a child process; its learning curve goes to OUT/<algo>_<impl>_<seed>.csv and its
summary line, wall time, CPU time of the whole process tree (the deltaserve server included),
load average and steal to OUT/results.json (appended run by run; --resume skips runs already
there). At the end (and with --report-only, from results.json alone) it writes the medians
table between the bench_algorithms markers of docs/benchmarks.md, and draws the curves of both
implementations, every seed, into docs/td3_pendulum.png and docs/ppo_pendulum.png (gnuplot).

torch (and numpy) run with OpenBLAS unpacked in /tmp/openblas, one thread, as docs/algorithms.md
describes (Debian's default reference BLAS is ~50x slower at these sizes); the script stops if
it is missing, printing the two commands that unpack it.
"""

import argparse
import csv
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
EXAMPLES = os.path.join(ROOT, "client", "python", "examples")
OPENBLAS = "/tmp/openblas/usr/lib/x86_64-linux-gnu/openblas-pthread"
BEGIN, END = "<!-- bench_algorithms:begin -->", "<!-- bench_algorithms:end -->"
# ppo_sim's flags when --ppo-extra is empty: act on one policy replica shared by the simulator
# threads (docs/algorithms.md, "PPO in C++").
CPP_PPO_FLAGS = "--actions=shared_replica"
SUMMARY = re.compile(r"average of the last (\d+) returns (-?[\d.]+).*?after (\d+) env steps, "
                     r"([\d.]+) s wall, ([\d.]+) s CPU")


def commands(args):
    py = sys.executable
    td3 = ["--steps", str(args.td3_steps), "--hidden", "64"]
    return {
        "td3": {"torch": [py, os.path.join(ROOT, "tools", "torch_td3.py")] + td3,
                "deltaserve": [py, os.path.join(EXAMPLES, "td3_pendulum.py")] + td3
                + args.td3_extra.split() if args.td3_impl == "python" else
                [py, os.path.join(ROOT, "tools", "td3_cpp.py")] + td3
                + (["--sim-flags=" + args.td3_extra] if args.td3_extra else [])},
        "ppo": {"torch": [py, os.path.join(ROOT, "tools", "torch_ppo.py"), "--max-steps",
                          str(args.ppo_max_steps), "--target", str(args.ppo_target)],
                "deltaserve": ([py, os.path.join(EXAMPLES, "ppo_pendulum.py"), "--envs",
                                str(args.ppo_envs), "--max-steps", str(args.ppo_max_steps),
                                "--target-return", str(args.ppo_target)]
                               + args.ppo_extra.split()) if args.ppo_impl == "python" else
                ([py, os.path.join(ROOT, "tools", "ppo_cpp.py"), "--simulators",
                  str(args.ppo_envs), "--max-steps", str(args.ppo_max_steps), "--target",
                  str(args.ppo_target), "--sim-flags=" + (args.ppo_extra or CPP_PPO_FLAGS)])},
    }


def environment():
    if not os.path.isdir(OPENBLAS):
        raise SystemExit("OpenBLAS not unpacked at %s; run (nothing is installed):\n"
                         "  cd /tmp && apt-get download libopenblas0-pthread && "
                         "dpkg -x libopenblas0-pthread_*.deb /tmp/openblas" % OPENBLAS)
    env = dict(os.environ, LD_LIBRARY_PATH=OPENBLAS, OPENBLAS_NUM_THREADS="1",
               OMP_NUM_THREADS="1")
    for name in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"):
        env.pop(name, None)
    # A PYTHONPATH already set comes first (e.g. another build's client); then this tree's.
    env["PYTHONPATH"] = os.pathsep.join(
        [p for p in (env.get("PYTHONPATH", ""), os.path.join(ROOT, "client", "python")) if p])
    return env


def cpu_times():
    """(steal, total) jiffies of all CPUs from /proc/stat."""
    with open("/proc/stat") as f:
        fields = [int(v) for v in f.readline().split()[1:]]
    return fields[7], sum(fields)


def load_average():
    with open("/proc/loadavg") as f:
        return [float(v) for v in f.read().split()[:3]]


def run_one(algo, impl, seed, cmd, out, env):
    path = os.path.join(out, "%s_%s_%d.csv" % (algo, impl, seed))
    full = cmd + ["--seed", str(seed), "--csv", path]
    load_before, (steal0, total0) = load_average(), cpu_times()
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.monotonic()
    done = subprocess.run(full, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          env=env)
    wall = time.monotonic() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    steal1, total1 = cpu_times()
    line = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else ""
    if done.returncode != 0:
        print(done.stdout[-3000:], file=sys.stderr)
        raise SystemExit("%s failed (%d)" % (" ".join(full), done.returncode))
    m = SUMMARY.search(line)
    if not m:
        raise SystemExit("no summary line from %s:\n%s" % (" ".join(full), line))
    return {
        "algo": algo, "impl": impl, "seed": seed, "command": " ".join(full[1:]),
        "summary": line, "final_average": float(m.group(2)), "env_steps": int(m.group(3)),
        "wall_reported": float(m.group(4)), "cpu_process": float(m.group(5)),
        "wall": wall, "cpu_tree": (after.ru_utime - children.ru_utime)
        + (after.ru_stime - children.ru_stime),
        "reached": "not reached" not in line, "load_before": load_before,
        "load_after": load_average(),
        "steal_percent": 100.0 * (steal1 - steal0) / max(1, total1 - total0),
        "csv": path, "finished_at": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
    }


def curve(path):
    with open(path) as f:
        return [(int(r["env_steps"]), float(r["wall_seconds"]), float(r["average"]))
                for r in csv.DictReader(f)]


def first_at(path, threshold, window):
    """(env steps, wall) of the first episode whose running average reaches threshold."""
    for i, (steps, wall, avg) in enumerate(curve(path)):
        if i + 1 >= window and avg >= threshold:
            return steps, wall
    return None


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def fmt(v, spec="%.1f"):
    return "–" if v is None else spec % v


def plot(results, algo, png, title, window, yrange=""):
    runs = [r for r in results if r["algo"] == algo and os.path.exists(r["csv"])]
    if not runs:
        return
    lines = ["set terminal pngcairo size 1200,480 font ',10'" if has_cairo()
             else "set terminal png size 1200,480",
             "set output '%s'" % png, "set datafile separator ','", "set key bottom right",
             "set multiplot layout 1,2 title '%s'" % title, "set grid",
             "set ylabel 'average return of the last %d episodes'" % window]
    if yrange:
        lines.append("set yrange %s" % yrange)
    for xcol, xlabel in ((2, "env steps"), (3, "wall seconds")):
        lines.append("set xlabel '%s'" % xlabel)
        parts = []
        for impl, color in (("torch", "#1f77b4"), ("deltaserve", "#d62728")):
            mine = sorted((r for r in runs if r["impl"] == impl), key=lambda r: r["seed"])
            for k, r in enumerate(mine):
                name = ("%s (%d seeds)" % ("in-process torch" if impl == "torch"
                                           else "through deltaserve", len(mine))
                        if k == 0 else "")
                parts.append("'%s' every ::1 using %d:5 with lines lw 1.2 lc rgb '%s' %s" % (
                    r["csv"], xcol, color, "title '%s'" % name if name else "notitle"))
        lines.append("plot " + ", ".join(parts))
    lines.append("unset multiplot")
    subprocess.run(["gnuplot"], input="\n".join(lines) + "\n", text=True, check=True)


def has_cairo():
    out = subprocess.run(["gnuplot", "-e", "set terminal"], stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True).stdout
    return "pngcairo" in out


def report(results, args, machine):
    lines = [BEGIN, "", "## TD3 and PPO through deltaserve vs in-process PyTorch", "",
             "Written by `tools/bench_algorithms.py` (docs/algorithms.md describes both "
             "implementations). Command%s:" % ("s" if len(machine["commands"]) > 1 else ""), ""]
    lines += ["    /usr/bin/python3 tools/bench_algorithms.py %s" % c for c in machine["commands"]]
    lines += ["",
             "Runs interleaved per seed (torch, deltaserve, torch, ...), one at a time, each a "
             "child process; torch with OpenBLAS on one thread. *Wall* is the child's wall "
             "time as the summary line reports it (training loop only); *CPU* is the CPU time "
             "of the child's whole process tree (the deltaserve server included). "
             "Machine: %s." % machine["cpu"], "",
             "Load while it ran (`uptime` at start: %s; at end: %s); steal (`vmstat`, "
             "column st) at start: %s %%, at end: %s %%; per run, the load average before "
             "each run and the steal share over it are in the tables. Whatever else runs on "
             "the machine stretches wall times (a one-process program more than a "
             "two-process one); compare within a row." % (machine["uptime_start"], machine.get("uptime_end", "–"),
                       machine["steal_start"], machine.get("steal_end", "–")), ""]
    if args.note:
        lines += [args.note, ""]
    td3 = [r for r in results if r["algo"] == "td3"]
    if td3:
        lines += ["### TD3, %d env steps (hidden 64x64)" % args.td3_steps, "",
                  "Goal: average of the last 10 returns ≥ −200 at 20,000 steps, and wall time "
                  "to 20,000 steps ≤ 1.0× torch's.", "",
                  "deltaserve here: %s." % " and ".join(sorted({
                      "the C++ client (`sim/td3_sim.cc`, run by `tools/td3_cpp.py`)"
                      if "td3_cpp.py" in r["command"] else "the Python example "
                      "(`client/python/examples/td3_pendulum.py`)"
                      for r in td3 if r["impl"] == "deltaserve"})), "",
                  "| seed | impl | last-10 average | first avg ≥ −200 at (steps) | wall s | "
                  "CPU s (tree) | load before | steal % |", "|---|---|---:|---:|---:|---:|---:|---:|"]
        for r in sorted(td3, key=lambda r: (r["seed"], r["impl"] != "torch")):
            hit = first_at(r["csv"], -200.0, 10)
            lines.append("| %d | %s | %.1f | %s | %.0f | %.0f | %.1f | %.1f |" % (
                r["seed"], r["impl"], r["final_average"], "–" if not hit else "{:,}".format(
                    hit[0]), r["wall_reported"], r["cpu_tree"], r["load_before"][0],
                r["steal_percent"]))
        lines += ["", "| median | last-10 average | wall s | CPU s (tree) |", "|---|---:|---:|---:|"]
        med = {}
        for impl in ("torch", "deltaserve"):
            rs = [r for r in td3 if r["impl"] == impl]
            med[impl] = (median([r["final_average"] for r in rs]),
                         median([r["wall_reported"] for r in rs]), median([r["cpu_tree"] for r in rs]))
            lines.append("| %s (%d seeds) | %s | %s | %s |" % (impl, len(rs), fmt(med[impl][0]),
                                                               fmt(med[impl][1], "%.0f"),
                                                               fmt(med[impl][2], "%.0f")))
        ratios = paired_ratios(td3)
        if ratios:
            lines += ["", "Wall-time ratio deltaserve ÷ torch per seed (same seed, adjacent "
                      "runs): %s; median %.2f." % (", ".join("%.2f" % x for x in ratios),
                                                   statistics.median(ratios))]
        lines += ["", "![TD3 learning curves](td3_pendulum.png)", ""]
    ppo = [r for r in results if r["algo"] == "ppo"]
    if ppo:
        lines += ["### PPO, %d simulators, until the last-20 average ≥ %.0f (cap %d steps)" % (
            args.ppo_envs, args.ppo_target, args.ppo_max_steps), "",
            "Goal: through deltaserve with 8 simulators, average of the last 20 returns ≥ −250 "
            "in less wall time than in-process torch needs.", "",
            "deltaserve here: %s; its flags: `%s`." % (
                " and ".join(sorted({"the C++ simulators (`sim/ppo_sim.cc`, run by "
                                     "`tools/ppo_cpp.py`)" if "ppo_cpp.py" in r["command"]
                                     else "the Python example (`client/python/examples/"
                                     "ppo_pendulum.py`)"
                                     for r in ppo if r["impl"] == "deltaserve"})),
                " ".join(sorted({re.sub(r" --seed \d+ --csv \S+", "", r["command"].split(" ", 1)[1])
                                 for r in ppo if r["impl"] == "deltaserve"}))), "",
            "| seed | impl | reached | env steps | average then | wall s | CPU s (tree) | "
            "load before | steal % |", "|---|---|---|---:|---:|---:|---:|---:|---:|"]
        for r in sorted(ppo, key=lambda r: (r["seed"], r["impl"] != "torch")):
            lines.append("| %d | %s | %s | {:,} | %.1f | %.1f | %.1f | %.1f | %.1f |".format(
                r["env_steps"]) % (r["seed"], r["impl"], "yes" if r["reached"] else "no",
                                   r["final_average"], r["wall_reported"], r["cpu_tree"],
                                   r["load_before"][0], r["steal_percent"]))
        lines += ["", "| median | reached | env steps | wall s | CPU s (tree) |",
                  "|---|---|---:|---:|---:|"]
        for impl in ("torch", "deltaserve"):
            rs = [r for r in ppo if r["impl"] == impl]
            lines.append("| %s | %d of %d | %s | %s | %s |" % (
                impl, sum(r["reached"] for r in rs), len(rs),
                fmt(median([r["env_steps"] for r in rs]), "%.0f"),
                fmt(median([r["wall_reported"] for r in rs])),
                fmt(median([r["cpu_tree"] for r in rs]))))
        ratios = paired_ratios(ppo)
        if ratios:
            lines += ["", "Wall-time ratio deltaserve ÷ torch per seed: %s; median %.2f." % (
                ", ".join("%.2f" % x for x in ratios), statistics.median(ratios))]
        lines += ["", "![PPO learning curves](ppo_pendulum.png)", ""]
    lines.append(END)
    return "\n".join(lines) + "\n"


def paired_ratios(rows):
    by_seed = {}
    for r in rows:
        by_seed.setdefault(r["seed"], {})[r["impl"]] = r["wall_reported"]
    return [v["deltaserve"] / v["torch"] for _, v in sorted(by_seed.items())
            if "torch" in v and "deltaserve" in v and v["torch"] > 0]


def write_docs(text):
    path = os.path.join(ROOT, "docs", "benchmarks.md")
    with open(path) as f:
        doc = f.read()
    if BEGIN in doc and END in doc:
        doc = doc[:doc.index(BEGIN)] + text + doc[doc.index(END) + len(END) + 1:]
    else:
        doc = doc.rstrip("\n") + "\n\n" + text
    with open(path, "w") as f:
        f.write(doc)


def vmstat_steal():
    out = subprocess.run(["vmstat", "1", "2"], stdout=subprocess.PIPE, text=True).stdout
    rows = [line.split() for line in out.strip().splitlines()]
    header = rows[1]
    return rows[-1][header.index("st")]


def uptime():
    return subprocess.run(["uptime"], stdout=subprocess.PIPE, text=True).stdout.strip()


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--algos", nargs="+", default=["td3", "ppo"], choices=["td3", "ppo"])
    p.add_argument("--seeds", nargs="+", type=int, default=[1, 2, 3, 4, 5])
    p.add_argument("--out", default="/tmp/bench_algorithms")
    p.add_argument("--td3-steps", type=int, default=20000)
    p.add_argument("--ppo-max-steps", type=int, default=300000)
    p.add_argument("--ppo-target", type=float, default=-250.0)
    p.add_argument("--ppo-envs", type=int, default=8)
    p.add_argument("--td3-impl", default="cpp", choices=["cpp", "python"],
                   help="deltaserve TD3: 'cpp', the C++ client (sim/td3_sim.cc through "
                   "tools/td3_cpp.py), or 'python', client/python/examples/td3_pendulum.py")
    p.add_argument("--td3-extra", default="",
                   help="more flags for td3_sim (--td3-impl cpp) or td3_pendulum.py (python)")
    p.add_argument("--ppo-impl", default="cpp", choices=["cpp", "python"],
                   help="deltaserve PPO: 'cpp', the C++ simulators (sim/ppo_sim.cc through "
                   "tools/ppo_cpp.py), or 'python', client/python/examples/ppo_pendulum.py")
    p.add_argument("--ppo-extra", default="",
                   help="more flags for ppo_sim (--ppo-impl cpp; empty: %s) or "
                   "ppo_pendulum.py (python)" % CPP_PPO_FLAGS)
    p.add_argument("--resume", action="store_true", help="skip runs already in results.json")
    p.add_argument("--report-only", action="store_true",
                   help="write docs/ from OUT/results.json without running anything")
    p.add_argument("--note", default="", help="a paragraph for the report (e.g. which server)")
    p.add_argument("--no-docs", action="store_true", help="do not touch docs/")
    args = p.parse_args()
    args.argv = sys.argv[1:]
    os.makedirs(args.out, exist_ok=True)
    results_path = os.path.join(args.out, "results.json")
    state = {"results": [], "machine": {}}
    if (args.resume or args.report_only) and os.path.exists(results_path):
        with open(results_path) as f:
            state = json.load(f)

    def save():
        with open(results_path, "w") as f:
            json.dump(state, f, indent=1)

    if not args.report_only:
        env = environment()
        with open("/proc/cpuinfo") as f:
            model = next((line.split(":", 1)[1].strip() for line in f
                          if line.startswith("model name")), "unknown CPU")
        state["machine"].setdefault("cpu", "%s, %d CPUs" % (model, os.cpu_count()))
        state["machine"].setdefault("uptime_start", uptime())
        state["machine"].setdefault("steal_start", vmstat_steal())
        state["machine"].setdefault("commands", []).append(" ".join(args.argv))
        save()
        cmds = commands(args)
        for algo in args.algos:
            for seed in args.seeds:
                for impl in ("torch", "deltaserve"):
                    if any(r["algo"] == algo and r["impl"] == impl and r["seed"] == seed
                           for r in state["results"]):
                        continue
                    print("%s %s seed %d ... (%s)" % (algo, impl, seed, uptime()), flush=True)
                    r = run_one(algo, impl, seed, cmds[algo][impl], args.out, env)
                    print("  " + r["summary"], flush=True)
                    state["results"].append(r)
                    save()
        state["machine"]["uptime_end"] = uptime()
        state["machine"]["steal_end"] = vmstat_steal()
        save()
    if args.no_docs:
        return
    results = state["results"]
    write_docs(report(results, args, state["machine"]))
    plot(results, "td3", os.path.join(ROOT, "docs", "td3_pendulum.png"),
         "TD3 on Pendulum: in-process torch (blue) vs through deltaserve (red)", 10)
    plot(results, "ppo", os.path.join(ROOT, "docs", "ppo_pendulum.png"),
         "PPO on Pendulum, %d simulators: in-process torch (blue) vs through deltaserve (red)"
         % args.ppo_envs, 20, yrange="[*:0]")


if __name__ == "__main__":
    main()
