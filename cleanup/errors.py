"""Error types: a configuration problem stops the run, a target problem stops one target."""


class CleanupError(Exception):
    """Base of every error this package raises on purpose."""


class ConfigError(CleanupError):
    """The configuration is invalid; carries every problem found, not just the first."""

    def __init__(
        self, problems: list[str], log_options: tuple[str, str] = ("INFO", "json")
    ) -> None:
        self.problems = list(problems)
        # The log level and format read before the problems were found: the error's own format.
        self.log_options = log_options
        super().__init__("; ".join(self.problems))


class TargetError(CleanupError):
    """A target could not run (store unreachable, missing table, unsafe state)."""


class TargetSkipped(CleanupError):
    """A target chose not to run (another run holds its lock); not a failure."""
