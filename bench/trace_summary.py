#!/usr/bin/env python3
"""Summarizes a decode-step block timeline (GPTQ_CUDA_TRACE=FILE, src/model/cuda/llama_cuda.c).

Each line of FILE: tag block grid smid t0 twait tend [ta tb] (ns).  The records of one tag are
cut into launches of `grid` blocks in order of start.  For each launch, in order:
  start   first block started          wait  first block's dependency wait returned
  lastw   last wait returned           end   last block finished
  gap     wait - previous launch's end (what the dependency costs)
Then per kind of launch (by tag and grid): mean span (end - wait) and mean gap, and for
kernels that set marks inside (the fused attention: a = its cache rows landed, b = the
head's output merged) when those came.
Usage: trace_summary.py FILE [--launches]"""
import collections
import sys

NAMES = {1: "rmsnorm", 2: "gemv", 3: "gemv-persistent", 4: "attention", 5: "attn+o_proj", 6: "fp16-gemv",
         7: "gate/up-persistent", 8: "gate/up", 9: "gemv-dual", 11: "attn-prefetch"}


def main():
    recs = collections.defaultdict(list)
    for line in open(sys.argv[1]):
        f = list(map(int, line.split()))
        tag, block, grid, smid, t0, tw, te = f[:7]
        ta, tb = (f[7], f[8]) if len(f) >= 9 else (-1, -1)
        recs[tag].append((t0, tw, te, grid, smid, ta, tb))
    launches = []
    for tag, rs in recs.items():
        rs.sort()
        i = 0
        while i < len(rs):
            grid = rs[i][3]
            chunk = rs[i:i + grid]
            i += grid
            w0 = min(r[1] for r in chunk)
            marks = [(r[5] - w0, r[6] - w0, r[2] - w0) for r in chunk if r[5] >= 0 and r[6] >= 0]
            launches.append(dict(tag=tag, grid=grid, start=min(r[0] for r in chunk), wait=w0,
                                 lastw=max(r[1] for r in chunk), end=max(r[2] for r in chunk),
                                 sms=len(set(r[4] for r in chunk)), n=len(chunk), marks=marks))
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
    for (tag, grid), ls in kinds.items():
        m = [x for l in ls for x in l["marks"]]
        if m:
            print("%s marks (us after the launch's first wait returned, mean / max over blocks): "
                  "mark a %.2f / %.2f, mark b %.2f / %.2f, end %.2f / %.2f" % (
                      NAMES.get(tag, tag), sum(x[0] for x in m) / len(m) / 1e3, max(x[0] for x in m) / 1e3,
                      sum(x[1] for x in m) / len(m) / 1e3, max(x[1] for x in m) / 1e3,
                      sum(x[2] for x in m) / len(m) / 1e3, max(x[2] for x in m) / 1e3))


if __name__ == "__main__":
    main()
