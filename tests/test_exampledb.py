"""``vmxfuzz fuzz --db``: one Hypothesis example database for several campaigns, a
directory or a real Redis server started here on a free localhost port."""

from __future__ import annotations

import math
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from vmxfuzz.cli import main
from vmxfuzz.exampledb import open_database
from vmxfuzz.fuzzcmd import fuzz

REDIS = shutil.which("redis-server") or "/usr/bin/redis-server"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def redis_url(tmp_path: Path) -> Iterator[str]:
    pytest.importorskip("redis", reason="the redis client is not installed (vmxfuzz[redis])")
    if not Path(REDIS).exists():
        pytest.skip("redis-server is not installed here (apt-get install redis-server)")
    import redis

    port = _free_port()
    proc = subprocess.Popen(
        [REDIS, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}/0"
    try:
        for _ in range(200):  # until it answers (a bounded number of attempts)
            try:
                redis.Redis.from_url(url).ping()
                break
            except redis.ConnectionError:
                time.sleep(0.05)
        else:
            pytest.fail("redis-server did not start")
        yield url
    finally:
        proc.terminate()
        proc.wait()


def _campaign(out: Path, db: str, seed: int) -> None:
    fuzz(
        engine="hypothesis",
        variant="reference",
        budget=math.inf,
        seed_value=seed,
        out=out,
        workers=1,
        as_json=True,
        db_url=db,
        max_examples=60,  # seeds 1 and 2 find (and save) something within 60 examples
    )


def test_redis_database_is_shared_between_connections_and_campaigns(
    redis_url: str, tmp_path: Path
) -> None:
    import redis

    a, b = open_database(redis_url), open_database(redis_url)
    a.save(b"key", b"value")
    assert list(b.fetch(b"key")) == [b"value"]
    _campaign(tmp_path / "one", redis_url, 1)
    client = redis.Redis.from_url(redis_url)
    stored = [k for k in client.keys(b"vmxfuzz-*") if b"key" not in k]
    assert stored, "the campaign saved no example in the shared database"
    assert not (tmp_path / "one" / ".hypothesis").exists()  # nothing local instead


def test_a_directory_database_is_shared(tmp_path: Path) -> None:
    """Both campaigns keep their examples in the one directory, none in their own."""
    db = tmp_path / "shared-db"
    _campaign(tmp_path / "one", str(db), 1)
    assert any(p.is_file() for p in db.rglob("*"))
    _campaign(tmp_path / "two", str(db), 2)
    for out in ("one", "two"):
        assert not (tmp_path / out / ".hypothesis").exists()


@pytest.mark.parametrize("url", ["ftp://host/x", "redis://:6379", "redis://host:port"])
def test_a_bad_db_url_is_bad_input(
    url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["fuzz", "--time", "1", "--out", str(tmp_path / "o"), "--db", url]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1 and "--db" in err
    assert not (tmp_path / "o").exists()
