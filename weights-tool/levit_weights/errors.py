"""The one exception type the CLI turns into `levit-weights: error: ...` (no traceback)."""


class LevitWeightsError(Exception):
    """A user-facing problem: bad checkpoint, unsupported config, I/O failure.

    Anything else escaping to the CLI is a bug in this tool and keeps its traceback.
    """


def warn(msg: str) -> None:
    """Print a warning the same way the CLI prints errors, on stderr."""
    import sys

    print(f"levit-weights: warning: {msg}", file=sys.stderr)
