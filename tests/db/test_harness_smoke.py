import psycopg


async def test_fresh_database_has_schema(conn: psycopg.AsyncConnection) -> None:
    cur = await conn.execute("SELECT count(*) FROM orders")
    assert (await cur.fetchone()) == (0,)
