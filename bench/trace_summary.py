#!/usr/bin/env python3
"""Summarizes a decode-step block timeline (GPTQ_CUDA_TRACE=FILE, src/model/cuda/llama_cuda.c).

Each line of FILE: tag block grid smid t0 twait tend (ns).  The records of one tag are
cut into launches of `grid` blocks in order of start.  For each launch, in order:
  start   first block started          wait  first block's dependency wait returned
  lastw   last wait returned           end   last block finished
  gap     wait - previous launch's end (what the dependency costs)
Then per kind of launch (by tag and grid): mean span (end - wait) and mean gap.
Usage: trace_summary.py FILE [--launches]"""
import collections
import sys

NAMES = {1: "rmsnorm", 2: "gemv", 3: "gemv-persistent", 4: "attention", 5: "attn+o_proj", 6: "fp16-gemv",
         7: "gate/up-persistent", 8: "gate/up"}


def main():
    recs = collections.defaultdict(list)
    for line in open(sys.argv[1]):
        tag, block, grid, smid, t0, tw, te = map(int, line.split())
        recs[tag].append((t0, tw, te, grid, smid))
    launches = []
    for tag, rs in recs.items():
        rs.sort()
        i = 0
        while i < len(rs):
            grid = rs[i][3]
            chunk = rs[i:i + grid]
            i += grid
            launches.append(dict(tag=tag, grid=grid, start=min(r[0] for r in chunk), wait=min(r[1] for r in chunk),
                                 lastw=max(r[1] for r in chunk), end=max(r[2] for r in chunk),
                                 sms=len(set(r[4] for r in chunk)), n=len(chunk)))
    launches.sort(key=lambda l: l["start"])
    prev_end = None
    kinds = collections.defaultdict(list)
    for l in launches:
        l["gap"] = l["wait"] - prev_end if prev_end is not None else 0
        prev_end = l["end"]
        kinds[(l["tag"], l["grid"])].append(l)
    if "--launches" in sys.argv:
        print("%-20s %6s %5s %9s %9s %9s %9s %7s %7s" % ("kernel", "grid", "sms", "start", "wait", "lastw", "end", "span", "gap"))
        for l in launches:
            print("%-20s %6d %5d %9.2f %9.2f %9.2f %9.2f %7.2f %7.2f" % (
                NAMES.get(l["tag"], l["tag"]), l["grid"], l["sms"], l["start"] / 1e3, l["wait"] / 1e3, l["lastw"] / 1e3,
                l["end"] / 1e3, (l["end"] - l["wait"]) / 1e3, l["gap"] / 1e3))
    total = launches[-1]["end"] - launches[0]["start"]
    print("step: %d launches, %.1f us from the first block's start to the last block's end" % (len(launches), total / 1e3))
    print("%-20s %6s %6s %10s %10s %10s %10s" % ("kernel", "grid", "count", "span us", "gap us", "early us", "sum us"))
    for (tag, grid), ls in sorted(kinds.items(), key=lambda kv: -sum(l["end"] - l["wait"] + l["gap"] for l in kv[1])):
        span = sum(l["end"] - l["wait"] for l in ls) / len(ls) / 1e3
        gap = sum(l["gap"] for l in ls) / len(ls) / 1e3
        early = sum(l["wait"] - l["start"] for l in ls) / len(ls) / 1e3
        print("%-20s %6d %6d %10.2f %10.2f %10.2f %10.1f" % (NAMES.get(tag, tag), grid, len(ls), span, gap, early,
                                                               (span + gap) * len(ls)))


if __name__ == "__main__":
    main()
