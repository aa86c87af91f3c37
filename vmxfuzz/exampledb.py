"""``vmxfuzz fuzz --db URL``: which Hypothesis example database a campaign shares.

Why Hypothesis' own database classes: the example database is how Hypothesis
replays and builds on what earlier runs found (every failing example, and the
examples its target() phase liked), so pointing several processes or machines at
one database makes their campaigns one corpus, with nothing of ours in between.

* a directory (``--db PATH``, default ``OUT/.hypothesis``):
  ``DirectoryBasedExampleDatabase``, safe for concurrent processes on one machine
  or a shared filesystem;
* ``redis://host:port[/db]``: ``RedisExampleDatabase`` (``pip install
  'vmxfuzz[redis]'``), for machines that share a Redis server.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlparse

from hypothesis.database import DirectoryBasedExampleDatabase, ExampleDatabase


class DatabaseError(ValueError):
    """A ``--db`` value that names no usable database (bad input, exit 2)."""


def check(url: str) -> None:
    """Validate ``url`` without connecting (for the command line)."""
    parsed = urlparse(url)
    if parsed.scheme in ("redis", "rediss"):
        if not parsed.hostname:
            raise DatabaseError(f"--db: {url!r}: a redis URL needs a host")
        try:
            parsed.port  # noqa: B018 - raises on a malformed port
        except ValueError:
            raise DatabaseError(f"--db: {url!r}: the port is not a number") from None
        try:
            import redis  # noqa: F401
        except ImportError:
            raise DatabaseError(
                f"--db: {url!r}: Redis needs the redis client (pip install 'vmxfuzz[redis]')"
            ) from None
    elif "://" in url:
        raise DatabaseError(f"--db: {url!r}: use a directory or redis://host:port")
    elif Path(url).exists() and not Path(url).is_dir():
        raise DatabaseError(f"--db: {url}: exists and is not a directory")


def open_database(url: str) -> ExampleDatabase:
    """The database ``url`` names (see the module docstring)."""
    check(url)
    if urlparse(url).scheme in ("redis", "rediss"):
        import redis
        from hypothesis.extra.redis import RedisExampleDatabase

        return RedisExampleDatabase(redis.Redis.from_url(url), key_prefix=b"vmxfuzz-")
    return DirectoryBasedExampleDatabase(url)
