"""Summarise a py-spy ``--format raw --threads`` recording: where the samples went.

    python -m tools.bench.pyspy_top FILE [--thread PREFIX] [--top 25] [--under FUNC]

Prints samples per thread (by name), then the functions with the largest
inclusive share (counted once per stack) and self share (leaf frames), as
``file:function``, for the threads whose name starts with PREFIX, and only
for stacks passing through FUNC when given.
"""

from __future__ import annotations

import argparse
import re
from collections import Counter

FRAME = re.compile(r"^(?P<func>.*) \((?P<file>[^:()]+)(?::\d+)?\)$")


def parse(path: str):
    for line in open(path, encoding="utf-8", errors="replace"):
        line = line.rstrip("\n")
        if not line:
            continue
        stack, _, count = line.rpartition(" ")
        frames = stack.split(";")
        thread = frames[0]
        name = thread.split(": ", 1)[1] if ": " in thread else thread
        yield name, [_short(f) for f in frames[1:]], int(count)


def _short(frame: str) -> str:
    match = FRAME.match(frame)
    if not match:
        return frame
    return f"{match['file']}:{match['func']}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("file")
    parser.add_argument("--thread", default="")
    parser.add_argument("--under", default="")
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args(argv)
    threads: Counter = Counter()
    inclusive: Counter = Counter()
    leaf: Counter = Counter()
    total = 0
    for name, frames, count in parse(args.file):
        threads[re.sub(r"\d+$", "N", name)] += count
        if not name.startswith(args.thread):
            continue
        if args.under and not any(args.under in f for f in frames):
            continue
        total += count
        for frame in set(frames):
            inclusive[frame] += count
        if frames:
            leaf[frames[-1]] += count
    every = sum(threads.values())
    print(f"{every} samples; by thread:")
    for name, count in threads.most_common(12):
        print(f"  {count:7d} {count / every:6.1%}  {name}")
    print(f"\n{total} samples selected (thread {args.thread or '*'}{', under ' + args.under if args.under else ''})")
    print("inclusive:")
    for frame, count in inclusive.most_common(args.top):
        print(f"  {count / max(total, 1):6.1%}  {frame}")
    print("self:")
    for frame, count in leaf.most_common(args.top):
        print(f"  {count / max(total, 1):6.1%}  {frame}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
