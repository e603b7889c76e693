"""The fixtures of bench/pg_cluster.py: a PostgreSQL cluster of the test's own, skipped where
the machine has no server binaries."""
from __future__ import annotations

import pytest

from bench.pg_cluster import PgBouncer, PgCluster, Unavailable


@pytest.fixture
def cluster():
    """A started cluster of the test's own with an empty database `xinyi`; removed after."""
    try:
        cluster = PgCluster()
    except Unavailable as missing:
        pytest.skip(str(missing))
    cluster.start()
    cluster.createdb("xinyi")
    yield cluster
    cluster.remove()


def bouncer(cluster: PgCluster) -> PgBouncer:
    """PgBouncer in front of `cluster`, or the test skipped."""
    try:
        return PgBouncer(cluster)
    except Unavailable as missing:
        pytest.skip(str(missing))
