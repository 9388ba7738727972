"""Traffic generator run inside a namespace by the demo: UDP at a steady, different rate per link.

Kept as a tiny standalone script (run with `python3 -m sitivmon.app.demotraffic`) so it can be started
with `ip netns exec` without importing the daemon.
"""

from __future__ import annotations

import argparse
import socket
import time


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--to", action="append", default=[], help="ADDR:BYTES_PER_SECOND")
    parser.add_argument("--duration", type=float, default=24 * 3600.0)
    args = parser.parse_args()
    plan = []
    for item in args.to:
        addr, rate = item.rsplit(":", 1)
        plan.append((addr, int(rate)))
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    payload = b"s" * 1200
    end = time.monotonic() + args.duration
    tick = 0.1
    while time.monotonic() < end:
        started = time.monotonic()
        for addr, rate in plan:
            for _ in range(max(1, int(rate * tick) // len(payload))):
                try:
                    sock.sendto(payload, (addr, 9))
                except OSError:
                    break  # link set down: try again next tick
        time.sleep(max(0.0, tick - (time.monotonic() - started)))


if __name__ == "__main__":
    main()
