"""Entry point: ``python -m vkcmd``. Validates settings, sets up logging, runs the node."""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence

from vkcmd import __version__, config, logfmt

EXIT_BAD_SETTING = 2


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--version" in argv:
        print(f"vkcmd {__version__}")
        return 0
    try:
        settings = config.load(argv)
    except config.ConfigError as error:
        print(f"vkcmd: {error}", file=sys.stderr)
        return EXIT_BAD_SETTING
    logfmt.configure(settings.verbosity, settings.log_format)
    log = logging.getLogger("vkcmd")
    for warning in settings.warnings:
        log.warning(warning)
    from vkcmd import app  # imported late: --help and bad settings stay fast

    return app.run(settings)


if __name__ == "__main__":
    sys.exit(main())
