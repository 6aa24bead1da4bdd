#!/usr/bin/env python3
"""puahost beside Kamailio 5.6 (Debian's packages), in the same run, with the same sipp scenarios.

    bench/compare.py [--runs 3] [--step-seconds 5] [--quick] [--out bench/results]

Build first (cargo build --workspace --release). Installs what it needs from Debian when it is
missing (kamailio, kamailio-presence-modules, kamailio-sqlite-modules, sip-tester, gnuplot-nox).

For each scenario, each server (puahost, Kamailio, and sipp answering itself: the load
generator's own ceiling) gets a ramp of offered rates; a step runs `--step-seconds` and reports
the rate achieved, failures, p50/p99 of the request's response time (sipp's rtd), the server's
CPU per request (utime + stime of all its processes, from /proc) and its peak memory (puahost:
VmHWM; Kamailio: the sum of its processes' PSS, sampled, since they share its memory). The
ramp stops at the first step with 1% failures or more. The whole ramp runs `--runs` times; each
figure is the median of the runs. Reported per scenario and server:
  - the maximum rate with under 1% failures (marked "generator-bound" when within 10% of
    sipp's own ceiling on this machine),
  - CPU per request at the scenario's fixed load (the target's measure, which no generator can
    flatter) and its ratio to Kamailio's,
  - p50/p99 at that load and at 80% of the maximum.
Then memory per presentity at 10k and 100k presentities (heap for puahost from /metrics,
shared memory used for Kamailio from kamcmd core.shmmem), after completed transactions expired.

Writes OUT/results.json, OUT/results.md and OUT/latency.png (p99 against offered load).

Scenarios (bench/sipp/*.xml; each PUBLISH a new presentity, each SUBSCRIBE a new watcher):
  publish-memory    PUBLISH, memory mode (Kamailio publ_cache=2, subs_db_mode=0, 2 children)
  publish-sqlite    PUBLISH with SQLite WAL + synchronous FULL, write-through on both
                    (Kamailio 1 child: its db_sqlite has no busy timeout)
  subscribe-sqlite  SUBSCRIBE + NOTIFY with SQLite (subs_db_mode=1)
With --scaleout: PUBLISH through Kamailio's dispatcher (tests/kamailio/dispatcher.cfg) to one
and to two puahost servers sharing a PostgreSQL database in database-only mode.
pua.publish over RPC and REGISTER with pua_usrloc have their own scripts (bench/pua_mi.sh,
bench/registrar.sh); docs/performance.md collects their latest figures.
"""

import argparse
import glob
import json
import os
import shutil
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RELEASE = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target")).resolve() / "release"
PUAHOST = RELEASE / "puahost"
KAMAILIO = os.environ.get("KAMAILIO", "/usr/sbin/kamailio")
KAM_MODULES = "/usr/lib/x86_64-linux-gnu/kamailio/modules"
KAM_SQL = "/usr/share/kamailio/db_sqlite"
CLK_TCK = os.sysconf("SC_CLK_TCK")

SCENARIOS = {
    # name: (sipp scenario, fixed rate, ramp, puahost presence modparams, udp_workers,
    #        Kamailio extra lines, Kamailio children)
    "publish-memory": (
        "presence_publish", 4000, [2000, 4000, 8000, 12000, 16000, 20000, 24000, 28000],
        "", 2,
        'modparam("presence", "publ_cache", 2) modparam("presence", "subs_db_mode", 0)', 2,
    ),
    "publish-sqlite": (
        "presence_publish", 4000, [1000, 2000, 4000, 6000, 8000, 12000],
        'db_url = "sqlite://{db}?synchronous=full"\npubl_cache = 1\nsubs_db_mode = 1', 16,
        "", 1,
    ),
    "subscribe-sqlite": (
        "presence_subscribe", 1000, [500, 1000, 2000, 3000, 4000, 6000],
        'db_url = "sqlite://{db}?synchronous=full"\npubl_cache = 1\nsubs_db_mode = 1', 16,
        "", 1,
    ),
}


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def need(cmds_pkgs):
    missing = [pkg for cmd, pkg in cmds_pkgs if not (shutil.which(cmd) or Path(cmd).exists())]
    if missing:
        print(f"installing {' '.join(missing)}", file=sys.stderr)
        sudo = [] if os.geteuid() == 0 else ["sudo"]
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        subprocess.run(sudo + ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing], check=True, env=env)


def children(pid):
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
    return [int(p) for p in out]


def cpu(pid):
    """CPU seconds of a process and its children."""
    total = 0.0
    for p in [pid, *children(pid)]:
        try:
            f = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(f[11]) + int(f[12])) / CLK_TCK
        except (FileNotFoundError, IndexError):
            pass
    return total


def memory(pid, tree):
    """Peak RSS of one process (kB), or the PSS sum of a process tree (processes sharing memory)."""
    if not tree:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
        return 0
    total = 0
    for p in [pid, *children(pid)]:
        try:
            for line in Path(f"/proc/{p}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1])
        except FileNotFoundError:
            pass
    return total


def wait_port(port, tcp=True, timeout=20):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port}")


class Server:
    def __init__(self, name, kind, proc, port, http=None, ctl=None):
        self.name, self.kind, self.proc, self.port, self.http, self.ctl = name, kind, proc, port, http, ctl
        self.peak = 0

    def sample_memory(self):
        if self.proc:
            self.peak = max(self.peak, memory(self.proc.pid, self.kind == "kamailio"))

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def start_puahost(work, name, params, workers, xml="force_active = 1", port=None, kids=2):
    port, http = port or free_port(), free_port()
    db = work / f"{name}.sqlite"
    config = work / f"{name}.toml"
    config.write_text(f"""loadmodule = ["presence", "presence_xml"]
[core]
listen = ["udp:127.0.0.1:{port}"]
children = {kids}
udp_workers = {workers}
log_level = "warn"
modules_path = ["{RELEASE}"]
[rpc]
http = "127.0.0.1:{http}"
[modparam.presence]
{params.format(db=db)}
[modparam.presence_xml]
{xml}
[[route]]
method = "PUBLISH"
do = ["handle_publish()"]
[[route]]
method = "SUBSCRIBE"
do = ["handle_subscribe()"]
[[route]]
method = "OPTIONS"
reply = "200 OK"
""")
    log = open(work / f"{name}.log", "w")
    proc = subprocess.Popen([str(PUAHOST), "run", "-c", str(config)], stdout=log, stderr=log)
    try:
        wait_port(http)
    except RuntimeError:
        proc.kill()
        sys.exit(f"puahost did not start:\n{(work / f'{name}.log').read_text()}")
    return Server(name, "puahost", proc, port, http=http)


def start_kamailio(work, name, extra, kids):
    port = free_port()
    db = work / f"{name}.sqlite"
    c = sqlite3.connect(db)
    c.execute("PRAGMA journal_mode=WAL")
    for f in ("standard-create.sql", "presence-create.sql"):
        c.executescript(Path(KAM_SQL, f).read_text())
    c.commit()
    c.close()
    ctl = work / f"{name}.ctl"
    extra += f' loadmodule "ctl.so" modparam("ctl", "binrpc", "unix:{ctl}")'
    text = (ROOT / "tests/kamailio/presence.cfg").read_text()
    text = (text.replace("@PORT@", str(port)).replace("@DB@", str(db)).replace("@MODULES@", KAM_MODULES)
            .replace("@EXTRA@", extra).replace("\nchildren=2", f"\nchildren={kids}").replace("\ndebug=2", "\ndebug=1"))
    config = work / f"{name}.cfg"
    config.write_text(text)
    log = open(work / f"{name}.log", "w")
    proc = subprocess.Popen([KAMAILIO, "-f", str(config), "-DD", "-E", "-Y", str(work), "-m", "1024", "-M", "32"],
                            stdout=log, stderr=log)
    wait_port(port)
    return Server(name, "kamailio", proc, port, ctl=ctl)


def start_sipp_uas(work):
    port = free_port()
    proc = subprocess.Popen(["sipp", "-sf", str(ROOT / "bench/sipp/publish_uas.xml"), "-i", "127.0.0.1", "-p", str(port),
                             "-buff_size", "4194304", "-nostdin"], cwd=work,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.5)
    return Server("sipp UAS", "sipp", proc, port)


def load(work, server, scenario, rate, secs):
    """One step: sipp at `rate` for `secs`; returns the step's figures."""
    run = Path(tempfile.mkdtemp(dir=work))
    stat = run / "stat.csv"
    c0 = cpu(server.proc.pid) if server.kind != "sipp" else 0.0
    cmd = ["sipp", "-sf", str(ROOT / f"bench/sipp/{scenario}.xml"), "-r", str(rate), "-rp", "1000",
           "-m", str(secs * rate), "-l", str(rate * 2), "-i", "127.0.0.1", "-p", str(free_port()), "-nostdin",
           "-timeout", f"{secs * 3}s", "-recv_timeout", "5000", "-buff_size", "4194304",
           "-trace_stat", "-stf", str(stat), "-trace_rtt", "-rtt_freq", "200", "-fd", "1",
           f"127.0.0.1:{server.port}"]
    sipp = subprocess.Popen(cmd, cwd=run, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while sipp.poll() is None:
        server.sample_memory()
        time.sleep(0.5)
    used = (cpu(server.proc.pid) - c0) if server.kind != "sipp" else 0.0
    rows = [line.split(";") for line in stat.read_text().splitlines()] if stat.exists() else []
    ok = failed = 0
    achieved = 0.0
    if len(rows) >= 2:
        head, last = rows[0], rows[-1]
        ok = int(last[head.index("SuccessfulCall(C)")])
        failed = int(last[head.index("FailedCall(C)")])
        achieved = float(last[head.index("CallRate(C)")])
    rtts = sorted(float(line.split(";")[1]) for f in glob.glob(str(run / "*_rtt.csv"))
                  for line in open(f) if line[:1].isdigit())
    pct = lambda q: rtts[min(len(rtts) - 1, int(len(rtts) * q))] if rtts else None
    shutil.rmtree(run, ignore_errors=True)
    total = ok + failed
    return {
        "offered": rate, "achieved": round(achieved, 1), "ok": ok, "failed": failed,
        "failure_ratio": (failed / total) if total else 1.0,
        "cpu_us": round(1e6 * used / ok, 1) if ok and server.kind != "sipp" else None,
        "p50_ms": pct(0.50), "p99_ms": pct(0.99),
    }


def ramp(work, server, scenario, rates, secs):
    steps = []
    for r in rates:
        s = load(work, server, scenario, r, secs)
        steps.append(s)
        print(f"    {server.name:10} {r:>6}/s: {s['achieved']:>8.0f}/s ok {s['ok']} failed {s['failed']} "
              f"cpu {s['cpu_us']} us p50 {s['p50_ms']} p99 {s['p99_ms']} ms", flush=True)
        if s["failure_ratio"] >= 0.01:
            break
    return steps


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def summarize(runs, fixed):
    """Medians over runs: max rate under 1% failures, the fixed-load step, the 80% step."""
    maxima = []
    for steps in runs:
        good = [s["achieved"] for s in steps if s["failure_ratio"] < 0.01]
        maxima.append(max(good) if good else 0.0)
    max_rate = median(maxima)
    at = lambda rate, key: median([s[key] for steps in runs for s in steps if s["offered"] == rate])
    eighty = None
    if max_rate:
        offered = sorted({s["offered"] for steps in runs for s in steps if s["failure_ratio"] < 0.01})
        under = [r for r in offered if r <= 0.8 * max_rate]
        eighty = under[-1] if under else None
    return {
        "max_rate": max_rate,
        "fixed_rate": fixed,
        "cpu_us_at_fixed": at(fixed, "cpu_us"),
        "p50_ms_at_fixed": at(fixed, "p50_ms"),
        "p99_ms_at_fixed": at(fixed, "p99_ms"),
        "rate_at_80pct": eighty,
        "p99_ms_at_80pct": at(eighty, "p99_ms") if eighty else None,
    }


def shm_used(server):
    out = subprocess.run(["kamcmd", "-s", f"unix:{server.ctl}", "core.shmmem"], capture_output=True, text=True).stdout
    for line in out.splitlines():
        parts = line.split()
        if parts[:1] == ["used:"]:
            return int(parts[1])
    return None


def heap(server):
    import urllib.request
    text = urllib.request.urlopen(f"http://127.0.0.1:{server.http}/metrics", timeout=5).read().decode()
    for line in text.splitlines():
        if line.startswith("puahost_heap_allocated_bytes "):
            return float(line.split()[1])
    return None


def memory_per_presentity(work, counts, rate):
    """Bytes per presentity (puahost heap, Kamailio shared memory) at each count, each count on
    fresh servers (sipp numbers its calls from 1, so a second batch would reuse presentities)."""
    out = []
    for n in counts:
        p = start_puahost(work, f"mem-puahost-{n}", "", 2)
        k = start_kamailio(work, f"mem-kamailio-{n}", SCENARIOS["publish-memory"][5], 2)
        try:
            base = {"puahost": heap(p), "kamailio": shm_used(k)}
            for s in (p, k):
                load(work, s, "presence_publish", rate, max(1, n // rate))
            # Completed transactions live 32 s (timer J): wait them out.
            time.sleep(35)
            row = {"presentities": n}
            for name, s, f in (("puahost", p, heap), ("kamailio", k, shm_used)):
                v = f(s)
                row[name] = round((v - base[name]) / n) if v is not None and base[name] is not None else None
            out.append(row)
            print(f"    {n} presentities: {row}", flush=True)
        finally:
            p.stop()
            k.stop()
    return out


def start_balancer(work, name, ports):
    """Kamailio's dispatcher (tests/kamailio/dispatcher.cfg) in front of puahost servers."""
    port = free_port()
    lst = work / f"{name}.list"
    lst.write_text("".join(f"1 sip:127.0.0.1:{p}\n" for p in ports))
    text = (ROOT / "tests/kamailio/dispatcher.cfg").read_text()
    text = (text.replace("@PORT@", str(port)).replace("@MODULES@", KAM_MODULES).replace("\ndebug=2", "\ndebug=1")
            .replace("@EXTRA@", f'modparam("dispatcher", "list_file", "{lst}")'))
    config = work / f"{name}.cfg"
    config.write_text(text)
    log = open(work / f"{name}.log", "w")
    proc = subprocess.Popen([KAMAILIO, "-f", str(config), "-DD", "-E", "-Y", str(work), "-m", "256", "-M", "16"],
                            stdout=log, stderr=log)
    time.sleep(1.5)
    return Server(name, "kamailio", proc, port)


def scaleout(work, rates, secs, runs):
    """PUBLISH through Kamailio's dispatcher to one and to two puahost servers sharing a
    PostgreSQL database in database-only mode (subs_db_mode 3, publ_cache 0): the combined
    rate of two beside one's. On two cores shared with PostgreSQL, the balancer and sipp it
    cannot double; it is a figure to report, not a target."""
    pg = os.environ.get("PUAHOST_BENCH_POSTGRES", "postgres://postgres@127.0.0.1:5432")
    hostport = pg.split("@", 1)[1].split("/")[0]
    host, _, pgport = hostport.partition(":")
    user = pg.split("://", 1)[1].split("@", 1)[0]
    psql = ["psql", "-h", host, "-p", pgport or "5432", "-U", user, "-d", "postgres", "-q", "-c"]
    out = {}
    for n in (1, 2):
        per_run = []
        for run in range(runs):
            db = f"puahost_bench_{os.getpid()}_{n}_{run}"
            subprocess.run(psql + [f"CREATE DATABASE {db}"], check=True)
            url = f"{pg.rstrip('/')}/{db}"
            ports = [free_port() for _ in range(n)]
            params = f'db_url = "{url}"\nsubs_db_mode = 3\npubl_cache = 0'
            servers = []
            try:
                servers = [start_puahost(work, f"scale-{n}-{i}-{run}", params, 16, f'db_url = "{url}"\nforce_active = 1', p, kids=8)
                           for i, p in enumerate(ports)]
                lb = start_balancer(work, f"balancer-{n}-{run}", ports)
                servers.append(lb)
                steps = []
                for r in rates:
                    st = load(work, lb, "presence_publish", r, secs)
                    steps.append(st)
                    print(f"    {n} server(s) {r:>6}/s: {st['achieved']:>8.0f}/s ok {st['ok']} failed {st['failed']} "
                          f"p99 {st['p99_ms']} ms", flush=True)
                    if st["failure_ratio"] >= 0.01:
                        break
                per_run.append(steps)
            finally:
                for sv in servers:
                    sv.stop()
                subprocess.run(psql + [f"DROP DATABASE IF EXISTS {db}"], check=False)
        maxima = [max([x["achieved"] for x in steps if x["failure_ratio"] < 0.01] or [0.0]) for steps in per_run]
        out[f"{n} server(s)"] = {"runs": per_run, "max_rate": median(maxima)}
    return out


def plot(out, results):
    data = out / "latency.dat"
    with open(data, "w") as f:
        for scen, per in results["scenarios"].items():
            for server, r in per.items():
                if server == "sipp UAS":
                    continue
                f.write(f"# {scen} {server}\n")
                for step in r["runs"][0]:
                    if step["p99_ms"] is not None:
                        # sipp's resolution is 1 ms: 0 means under 1 ms (0.5 on the log scale).
                        f.write(f"{step['offered']} {max(step['p99_ms'], 0.5)} {max(step['p50_ms'] or 0, 0.5)}\n")
                f.write("\n\n")
    blocks = [(scen, server) for scen, per in results["scenarios"].items() for server in per if server != "sipp UAS"]
    if not blocks:
        return
    plots = ", ".join(f"'{data}' index {i} with linespoints title '{scen} {server} p99'"
                      for i, (scen, server) in enumerate(blocks))
    script = (f"set terminal png size 1100,700; set output '{out / 'latency.png'}';"
              "set logscale y; set xlabel 'offered load (requests/s)'; set ylabel 'p99 response time (ms)';"
              "set key outside right; set grid;"
              f"plot {plots}")
    subprocess.run(["gnuplot", "-e", script], check=True)


def markdown(results):
    lines = [f"# puahost beside Kamailio 5.6: {results['date']}", "",
             f"Machine: {results['cpus']} CPUs; each figure the median of {results['runs']} ramps "
             f"({results['step_seconds']} s per step); generator: sipp {results['sipp']}.", "",
             "| scenario | server | max rate (<1% failed) | CPU per request at fixed load | ratio to Kamailio | "
             "p50 / p99 at fixed load | p99 at 80% of max |", "|---|---|---|---|---|---|---|"]
    for scen, per in results["scenarios"].items():
        kam = per.get("Kamailio", {}).get("summary", {}).get("cpu_us_at_fixed")
        ceiling = per.get("sipp UAS", {}).get("summary", {}).get("max_rate")
        for server, r in per.items():
            s = r["summary"]
            mark = ""
            if server != "sipp UAS" and ceiling and s["max_rate"] and s["max_rate"] >= 0.9 * ceiling:
                mark = " (generator-bound)"
            cpu_us = s["cpu_us_at_fixed"]
            ratio = f"{cpu_us / kam:.2f}" if cpu_us and kam and server == "puahost" else ""
            fmt = lambda v, unit="": "" if v is None else f"{v:g}{unit}"
            lines.append(
                f"| {scen} | {server} | {fmt(s['max_rate'], '/s')}{mark} | "
                f"{fmt(cpu_us, ' µs')} at {s['fixed_rate']}/s | {ratio} | "
                f"{fmt(s['p50_ms_at_fixed'])} / {fmt(s['p99_ms_at_fixed'], ' ms')} | "
                f"{fmt(s['p99_ms_at_80pct'], ' ms')} at {fmt(s['rate_at_80pct'], '/s')} |")
    if results.get("memory"):
        lines += ["", "| presentities | puahost heap per presentity | Kamailio shared memory per presentity |",
                  "|---|---|---|"]
        for row in results["memory"]:
            lines.append(f"| {row['presentities']} | {row['puahost']} B | {row['kamailio']} B |")
    if results.get("scaleout"):
        lines += ["", "Scale-out (PUBLISH through Kamailio's dispatcher; database-only mode on PostgreSQL):", "",
                  "| servers | max rate (<1% failed) |", "|---|---|"]
        for label, r in results["scaleout"].items():
            lines.append(f"| {label} | {r['max_rate']:g}/s |")
    lines += ["", "Peak memory during the ramps (puahost VmHWM, Kamailio PSS sum):", ""]
    for scen, per in results["scenarios"].items():
        for server, r in per.items():
            if server != "sipp UAS":
                lines.append(f"- {scen}, {server}: {r['peak_kb'] / 1024:.0f} MiB")
    return "\n".join(lines) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--step-seconds", type=int, default=5)
    ap.add_argument("--quick", action="store_true", help="one run, 2 s steps, short ramps, memory at 10k only")
    ap.add_argument("--scenarios", nargs="*", default=list(SCENARIOS))
    ap.add_argument("--no-memory", action="store_true")
    ap.add_argument("--scaleout", action="store_true",
                    help="also PUBLISH through Kamailio's dispatcher to one and two servers on PostgreSQL "
                         "(PUAHOST_BENCH_POSTGRES, default postgres://postgres@127.0.0.1:5432)")
    ap.add_argument("--out", type=Path, default=ROOT / "bench/results")
    a = ap.parse_args()
    if a.quick:
        a.runs, a.step_seconds = 1, 2
    if not PUAHOST.exists():
        sys.exit(f"{PUAHOST} is missing: cargo build --workspace --release first")
    need([(KAMAILIO, "kamailio"), (f"{KAM_MODULES}/presence_xml.so", "kamailio-presence-modules"),
          (f"{KAM_MODULES}/db_sqlite.so", "kamailio-sqlite-modules"), ("sipp", "sip-tester"),
          ("gnuplot", "gnuplot-nox")])
    a.out.mkdir(parents=True, exist_ok=True)
    v = subprocess.run(["sipp", "-v"], capture_output=True, text=True)
    sipp_version = next((w for w in (v.stdout + v.stderr).split() if w.startswith("v3") or w.startswith("v4")), "?")
    results = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "cpus": os.cpu_count(), "runs": a.runs,
               "step_seconds": a.step_seconds, "sipp": sipp_version, "scenarios": {}}
    with tempfile.TemporaryDirectory(prefix="puahost-compare-") as tmp:
        work = Path(tmp)
        for scen in a.scenarios:
            scenario, fixed, rates, params, workers, kextra, kids = SCENARIOS[scen]
            if a.quick:
                rates = [r for r in rates if r <= fixed * 2]
            print(f"== {scen}", flush=True)
            per = {}
            for run in range(a.runs):
                # Fresh servers per run: every PUBLISH adds a presentity, every SUBSCRIBE a watcher.
                servers = [start_puahost(work, f"{scen}-puahost-{run}", params, workers),
                           start_kamailio(work, f"{scen}-kamailio-{run}", kextra, kids)]
                if scenario == "presence_publish":
                    servers.append(start_sipp_uas(work))
                labels = ["puahost", "Kamailio", "sipp UAS"]
                try:
                    for label, s in zip(labels, servers):
                        entry = per.setdefault(label, {"runs": [], "peak_kb": 0})
                        entry["runs"].append(ramp(work, s, scenario, rates, a.step_seconds))
                        entry["peak_kb"] = max(entry["peak_kb"], s.peak)
                finally:
                    for s in servers:
                        s.stop()
            for label, entry in per.items():
                entry["summary"] = summarize(entry["runs"], fixed)
            results["scenarios"][scen] = per
        if not a.no_memory:
            print("== memory per presentity", flush=True)
            counts = [10_000] if a.quick else [10_000, 100_000]
            results["memory"] = memory_per_presentity(work, counts, 5000)
        if a.scaleout:
            print("== scale-out: PUBLISH through the dispatcher to one and to two servers on PostgreSQL", flush=True)
            rates = [500, 1000, 2000] if a.quick else [500, 1000, 2000, 3000, 4000, 6000, 8000]
            results["scaleout"] = scaleout(work, rates, a.step_seconds, a.runs)
    (a.out / "results.json").write_text(json.dumps(results, indent=1) + "\n")
    (a.out / "results.md").write_text(markdown(results))
    plot(a.out, results)
    print((a.out / "results.md").read_text())
    print(f"wrote {a.out}/results.json, results.md, latency.png")


if __name__ == "__main__":
    main()
