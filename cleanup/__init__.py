"""cleanup: a retention job for volumes, S3 prefixes and PostgreSQL job rows."""

__version__ = "0.1.0"
