"""`storegw run` for tests while `storegw run` validates [[devices]] options twice (a known bug:
a printer's duration options fail the second pass). Same lifecycle: build, start, SIGTERM → stop."""

from __future__ import annotations

import signal
import sys
import threading


def main(config_path: str) -> None:
    """Run the gateway in the foreground until SIGTERM/SIGINT."""
    import logging

    from gateway import config
    from gateway.app import build

    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    gw = build(config.load(config_path))
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    try:
        gw.start()
        stop.wait()
    finally:
        gw.stop()


if __name__ == "__main__":
    main(sys.argv[1])
