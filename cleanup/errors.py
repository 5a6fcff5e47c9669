"""Error types: a configuration problem stops the run, a target problem stops one target."""


class CleanupError(Exception):
    """Base of every error this package raises on purpose."""


class ConfigError(CleanupError):
    """The configuration is invalid; carries every problem found, not just the first."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        super().__init__("; ".join(self.problems))


class TargetError(CleanupError):
    """A target could not run (store unreachable, missing table, unsafe state)."""


class TargetSkipped(CleanupError):
    """A target chose not to run (another run holds its lock); not a failure."""
