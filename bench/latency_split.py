#!/usr/bin/env python3
"""bench/latency_split.py: splits one-connection latency into its hops, from the system
calls `perf record` saw (bench/latency_split.sh runs it; standard library only).

Input: `perf script --ns -F comm,pid,tid,cpu,time,event,trace` of raw_syscalls enter
and exit events, filtered to the reads and writes of the agent (wrk), the forwarder and
the upstream. One request at one connection is then eight events in a row:

    agent write -> forwarder read -> forwarder write -> upstream read
    -> upstream write -> forwarder read -> forwarder write -> agent read

A read counts when it returned data (nginx's EAGAIN reads do not), at its exit; a write
at its entry. The gaps between them are the hops: the forwarder's own time on the way
in and on the way out, the upstream's time to serve, and four kernel transits (the
loopback hop and the wake-up of the reader). Sequences that interleave with anything
else (a timer, a health check) are skipped.

Usage:
  latency_split.py split SCRIPT_FILE --agent PID --forwarder PID[,PID...] --upstream PID
                         [--name NAME] [--arch x86_64|aarch64]
      one JSON object: the medians (microseconds) of each hop over the requests seen
  latency_split.py summary RESULTS_JSONL
      a table: per forwarder, the median over the rounds of each hop
"""

import argparse
import json
import re
import statistics
import sys

# Reads and writes the three use, by architecture: read, recvfrom, recvmsg, readv;
# write, writev, sendto, sendmsg.
SYSCALLS = {
    "x86_64": ({0, 45, 47, 19}, {1, 20, 44, 46}),
    "aarch64": ({63, 207, 212, 65}, {64, 66, 206, 211}),
}

LINE = re.compile(
    r"^\s*(?P<comm>.+?)\s+(?P<pid>\d+)/(?P<tid>\d+)\s+\[(?P<cpu>\d+)\]\s+(?P<ts>[\d.]+):\s+"
    r"raw_syscalls:sys_(?P<kind>enter|exit):\s+NR (?P<nr>\d+)\s*(?:=\s*(?P<ret>-?\d+))?"
)

HOPS = [
    "agent_to_forwarder",
    "forwarder_request",
    "forwarder_to_upstream",
    "upstream_serve",
    "upstream_to_forwarder",
    "forwarder_answer",
    "forwarder_to_agent",
]
CHAIN = [("A", "W"), ("F", "R"), ("F", "W"), ("U", "R"), ("U", "W"), ("F", "R"), ("F", "W"), ("A", "R")]


def events(lines, roles, reads, writes):
    """The data-carrying reads (at exit) and the writes (at entry), by time."""
    entered = {}
    out = []
    for line in lines:
        m = LINE.match(line)
        if not m:
            continue
        role = roles.get(int(m["pid"]))
        if role is None:
            continue
        nr, tid, ts = int(m["nr"]), int(m["tid"]), float(m["ts"]) * 1e6
        if m["kind"] == "enter":
            entered[tid] = nr
            if nr in writes:
                out.append((ts, role, "W", int(m["cpu"])))
        elif entered.pop(tid, None) == nr and nr in reads and int(m["ret"] or 0) > 0:
            out.append((ts, role, "R", int(m["cpu"])))
    out.sort()
    return out


def split(evs):
    gaps = [[] for _ in HOPS]
    totals = []
    cross_cpu = [0] * len(HOPS)
    i = 0
    while i + len(CHAIN) <= len(evs):
        window = evs[i : i + len(CHAIN)]
        if [(e[1], e[2]) for e in window] != CHAIN:
            i += 1
            continue
        for k in range(len(HOPS)):
            gaps[k].append(window[k + 1][0] - window[k][0])
            cross_cpu[k] += window[k + 1][3] != window[k][3]
        totals.append(window[-1][0] - window[0][0])
        i += len(CHAIN)
    return gaps, totals, cross_cpu


SHORT = {
    "agent_to_forwarder": "in",
    "forwarder_request": "fwd-req",
    "forwarder_to_upstream": "to-up",
    "upstream_serve": "up-serve",
    "upstream_to_forwarder": "from-up",
    "forwarder_answer": "fwd-ans",
    "forwarder_to_agent": "out",
}


def summary(path):
    with open(path, encoding="utf-8") as f:
        rows = [json.loads(line) for line in f if line.strip()]
    names = list(dict.fromkeys(r["forwarder"] for r in rows))
    print("median over rounds, microseconds (traced: compare forwarders, not with run.sh)")
    print(f"{'forwarder':24s}" + "".join(f"{SHORT[h]:>9s}" for h in HOPS) + f"{'own':>8s}{'transits':>10s}{'trip':>8s}")
    for name in names:
        runs = [r for r in rows if r["forwarder"] == name]

        def med(get):
            return statistics.median(get(r) for r in runs)

        cells = [med(lambda r, h=h: r["median_us"][h]) for h in HOPS]
        print(
            f"{name[:24]:24s}"
            + "".join(f"{c:9.1f}" for c in cells)
            + f"{med(lambda r: r['forwarder_own_us']):8.1f}"
            + f"{med(lambda r: r['transits_us']):10.1f}"
            + f"{med(lambda r: r['round_trip_us']):8.1f}"
        )


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "summary":
        summary(sys.argv[2])
        return
    if len(sys.argv) < 2 or sys.argv[1] != "split":
        sys.exit(__doc__)
    ap = argparse.ArgumentParser(prog="latency_split.py split")
    ap.add_argument("script")
    ap.add_argument("--agent", type=int, required=True)
    ap.add_argument("--forwarder", required=True)
    ap.add_argument("--upstream", type=int, required=True)
    ap.add_argument("--name", default="forwarder")
    ap.add_argument("--arch", default="x86_64", choices=sorted(SYSCALLS))
    args = ap.parse_args(sys.argv[2:])
    roles = {args.agent: "A", args.upstream: "U"}
    for pid in args.forwarder.split(","):
        roles[int(pid)] = "F"
    reads, writes = SYSCALLS[args.arch]
    with open(args.script, encoding="utf-8", errors="replace") as f:
        evs = events(f, roles, reads, writes)
    gaps, totals, cross_cpu = split(evs)
    if len(totals) < 100:
        sys.exit(f"latency_split: only {len(totals)} whole requests in {args.script}")
    med = {hop: round(statistics.median(g), 1) for hop, g in zip(HOPS, gaps)}
    result = {
        "forwarder": args.name,
        "requests": len(totals),
        "median_us": med,
        "forwarder_own_us": round(med["forwarder_request"] + med["forwarder_answer"], 1),
        "transits_us": round(
            sum(med[h] for h in HOPS if h.endswith(("_to_forwarder", "_to_upstream", "_to_agent"))), 1
        ),
        "round_trip_us": round(statistics.median(totals), 1),
        "cross_cpu_share": {hop: round(c / len(totals), 2) for hop, c in zip(HOPS, cross_cpu)},
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
