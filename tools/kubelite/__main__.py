"""``python -m tools.kubelite``: run the test/demo control plane until SIGTERM or SIGINT.

Prints exactly one line on stdout once requests are accepted:
``kubelite ready https://127.0.0.1:PORT kubeconfig=DIR/kubeconfig``; logs go to stderr.
Signal handlers only set an event; the main thread stops everything and exits 0.
``python -m tools.kubelite token create ...`` instead makes a bootstrap token (see :mod:`.cli_token`).
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys

from . import ControlPlane


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["token"]:
        from .cli_token import main as token_main

        return token_main(argv[1:])
    p = argparse.ArgumentParser(prog="python -m tools.kubelite",
                                description="In-memory Kubernetes control plane for vkcmd's tests and demo "
                                            "(not a product).")
    p.add_argument("--dir", required=True, help="directory for certs and the admin kubeconfig")
    p.add_argument("--port", type=int, default=0, help="HTTPS port on 127.0.0.1 (0: any free port)")
    p.add_argument("--lease-grace", type=float, default=40.0,
                   help="seconds without a node lease renewal before the node is marked NotReady")
    p.add_argument("--no-scheduler", action="store_true", help="do not run the scheduler")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    args = p.parse_args(argv)
    logging.basicConfig(stream=sys.stderr, level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    # SIGTERM/SIGINT are blocked before any thread starts (threads inherit the mask) and taken by
    # sigwait in the main thread: no Python handler, so no lock a signal could find already held
    stop_signals = {signal.SIGTERM, signal.SIGINT}
    signal.pthread_sigmask(signal.SIG_BLOCK, stop_signals)
    cp = ControlPlane(args.dir, port=args.port, lease_grace=args.lease_grace, scheduler=not args.no_scheduler)
    cp.start()
    try:
        print(f"kubelite ready {cp.url} kubeconfig={cp.kubeconfig}", flush=True)
        signum = signal.sigwait(stop_signals)
        logging.getLogger(__name__).info("kubelite stopping on %s", signal.Signals(signum).name)
    finally:
        cp.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
