"""Conformance checks of the mssql-testkit TDS server with other SQL Server client stacks.

Usage: clients_check.py STACK HOST PORT USER PASSWORD DATABASE
STACK: pyodbc (FreeTDS ODBC), sqlalchemy-pyodbc, pymssql, sqlalchemy-pymssql.
Prints one line per check ("NAME: ok" or "NAME: FAIL ..."); run.sh compares the output
with clients_expected.txt (the same for every stack).
"""
import datetime as dt
import re
import sys
import uuid
from decimal import Decimal

stack, host, port, user, password, database = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5], sys.argv[6]
prefix = re.sub(r"\W", "_", stack)

TYPES = """(id INT PRIMARY KEY, ti TINYINT, si SMALLINT, i INT, bi BIGINT, r REAL, f FLOAT, b BIT,
 d DECIMAL(38,10), d2 DECIMAL(18,2), m MONEY, sm SMALLMONEY, nv NVARCHAR(100), v VARCHAR(20),
 vb VARBINARY(50), g UNIQUEIDENTIFIER, dt DATE, tm TIME(7), dt2 DATETIME2(7),
 dto DATETIMEOFFSET(7), dtm DATETIME, sdt SMALLDATETIME, x XML)"""
COLS = ["ti", "si", "i", "bi", "r", "f", "b", "d", "d2", "m", "sm", "nv", "v", "vb", "g", "dt", "tm", "dt2", "dto", "dtm", "sdt", "x"]
TZ = dt.timezone(dt.timedelta(hours=-8))
ROWS = {
    1: dict(ti=0, si=-32768, i=-2147483648, bi=-9223372036854775808, r=-1.5, f=-1.7976931348623157e308, b=False,
            d=Decimal("-9999999999999999999999999999.9999999999"), d2=Decimal("-9999999999999999.99"),
            m=Decimal("-922337203685477.5808"), sm=Decimal("-214748.3648"), nv="", v="", vb=b"",
            g=uuid.UUID("00000000-0000-0000-0000-000000000000"), dt=dt.date(1, 1, 1), tm=dt.time(0, 0, 0),
            dt2=dt.datetime(1, 1, 1), dto=dt.datetime(2024, 2, 29, 13, 45, 56, 123456, tzinfo=TZ),
            dtm=dt.datetime(1753, 1, 1), sdt=dt.datetime(1900, 1, 1), x="<a/>"),
    2: dict(ti=255, si=32767, i=2147483647, bi=9223372036854775807, r=1.5, f=1.7976931348623157e308, b=True,
            d=Decimal("9999999999999999999999999999.9999999999"), d2=Decimal("9999999999999999.99"),
            m=Decimal("922337203685477.5807"), sm=Decimal("214748.3647"), nv="é€日本" * 25, v="café crème",
            vb=bytes(range(50)), g=uuid.UUID("6F9619FF-8B86-D011-B42D-00C04FC964FF"), dt=dt.date(9999, 12, 31),
            tm=dt.time(23, 59, 59, 999999), dt2=dt.datetime(9999, 12, 31, 23, 59, 59, 999999),
            dto=dt.datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=dt.timezone.utc),
            dtm=dt.datetime(9999, 12, 31, 23, 59, 59, 997000), sdt=dt.datetime(2079, 6, 6, 23, 59), x="<o><n>ü</n></o>"),
}


if stack.endswith("pyodbc"):
    # FreeTDS ODBC (1.3) shifts dates before the Gregorian reform by a day on the wire
    # both ways and sends 0001-01-01 as day -1 (a real server refuses it with 8023 as
    # the testkit does); pyodbc binds TIME without fractions and DATETIME2 with the
    # precision sp_datatype_info gives DATETIME (milliseconds). Those are the driver's.
    ROWS[1].update(dt=dt.date(1753, 1, 1), dt2=dt.datetime(1753, 1, 1))
    ROWS[2].update(tm=dt.time(23, 59, 59), dt2=dt.datetime(9999, 12, 31, 23, 59, 59, 997000))


def as_param(col, v):
    # DB-API drivers send time-zone-aware datetimes without their offset; send the
    # DATETIMEOFFSET as its SQL Server string form, which the server converts.
    if col == "dto":
        return v.strftime("%Y-%m-%d %H:%M:%S.%f") + " " + v.strftime("%z")[:3] + ":" + v.strftime("%z")[3:]
    return v


def same(col, want, got):
    if col == "dto":
        if isinstance(got, str):
            got = dt.datetime.fromisoformat(re.sub(r"(\.\d{6})\d*", r"\1", got.strip()))
        return got is not None and abs((got - want).total_seconds()) < 1e-5 and got.utcoffset() == want.utcoffset()
    if col in ("dtm", "sdt", "dt2") and isinstance(got, dt.datetime):
        return abs((got - want).total_seconds()) < 0.0021
    if col == "tm" and isinstance(got, dt.time):
        return abs(got.hour * 3600e6 + got.minute * 60e6 + got.second * 1e6 + got.microsecond
                   - (want.hour * 3600e6 + want.minute * 60e6 + want.second * 1e6 + want.microsecond)) <= 1
    if col == "g" and isinstance(got, str):
        got = uuid.UUID(got)
    if col in ("m", "sm", "d", "d2") and not isinstance(got, Decimal):
        got = Decimal(str(got))
    if col == "b":
        return bool(got) == want
    return got == want


def dto_from_odbc(b):
    """SQL_SS_TIMESTAMPOFFSET_STRUCT → aware datetime (pyodbc has no converter of its own)."""
    import struct
    y, mo, d, h, mi, s, ns, tzh, tzm = struct.unpack("<6hI2h", b)
    tz = dt.timezone(dt.timedelta(hours=tzh, minutes=tzm))
    return dt.datetime(y, mo, d, h, mi, s, ns // 1000, tzinfo=tz)


class Dbapi:
    """pyodbc or pymssql."""

    def __init__(self, kind):
        self.kind = kind
        if kind == "pyodbc":
            import pyodbc
            pyodbc.native_uuid = True
            self.mod = pyodbc
        else:
            import pymssql
            self.mod = pymssql

    def connect(self, db=database, autocommit=True, timeout=30):
        if self.kind == "pyodbc":
            cs = (f"DRIVER={{FreeTDS}};SERVER={host};PORT={port};UID={user};PWD={password};"
                  f"DATABASE={db};TDS_Version=7.4;ClientCharset=UTF-8")
            c = self.mod.connect(cs, autocommit=autocommit, timeout=5)
            c.timeout = timeout
            # DATETIMEOFFSET (ODBC type -155) as text; SQLAlchemy installs its own.
            c.add_output_converter(-155, dto_from_odbc)
            return c
        c = self.mod.connect(server=host, port=port, user=user, password=password, database=db,
                             autocommit=autocommit, login_timeout=5, timeout=timeout, tds_version="7.4")
        return c

    def sql(self, q):
        return q if self.kind == "pyodbc" else q.replace("?", "%s")

    def run(self, conn, q, params=(), fetch=True):
        cur = conn.cursor()
        cur.execute(self.sql(q), tuple(params))
        return [tuple(r) for r in cur.fetchall()] if fetch and cur.description else None


class Alchemy:
    """SQLAlchemy 2 over pyodbc or pymssql (text() statements, the pool)."""

    def __init__(self, kind):
        import sqlalchemy as sa
        self.sa = sa
        self.kind = kind
        self.engines = {}

    def engine(self, db=database, timeout=30):
        key = (db, timeout)
        if key not in self.engines:
            sa = self.sa
            if self.kind == "pyodbc":
                url = sa.engine.URL.create(
                    "mssql+pyodbc", username=user, password=password, host=host, port=port, database=db,
                    query={"driver": "FreeTDS", "TDS_Version": "7.4", "ClientCharset": "UTF-8"})
                eng = sa.create_engine(url, pool_size=2, max_overflow=0)

                @sa.event.listens_for(eng, "connect")
                def set_timeout(dbapi_conn, _rec):
                    dbapi_conn.timeout = timeout
            else:
                url = sa.engine.URL.create("mssql+pymssql", username=user, password=password, host=host,
                                           port=port, database=db)
                eng = sa.create_engine(url, pool_size=2, max_overflow=0,
                                       connect_args={"timeout": timeout, "login_timeout": 5, "tds_version": "7.4"})
            self.engines[key] = eng
        return self.engines[key]

    def connect(self, db=database, autocommit=True, timeout=30):
        eng = self.engine(db, timeout)
        return eng.connect() if not autocommit else eng.connect().execution_options(isolation_level="AUTOCOMMIT")

    def run(self, conn, q, params=(), fetch=True):
        n = iter(range(1, 100))
        text = re.sub(r"\?", lambda _m: f":p{next(n)}", q)
        res = conn.execute(self.sa.text(text), {f"p{i + 1}": v for i, v in enumerate(params)})
        return [tuple(r) for r in res.all()] if fetch and res.returns_rows else None


if stack.startswith("sqlalchemy-"):
    drv = Alchemy(stack.split("-", 1)[1])
else:
    drv = Dbapi(stack)


def error_number(e):
    text = str(e)
    if hasattr(e, "orig"):
        text += " " + str(e.orig)
    args = getattr(getattr(e, "orig", e), "args", ())
    if args and isinstance(args[0], int):
        return args[0]
    m = re.search(r"\((\d{3,5})\)", text)
    return int(m.group(1)) if m else None


def check(name, fn):
    try:
        fn()
        print(f"{name}: ok")
    except Exception as e:  # noqa: BLE001 - every failure is reported as a line
        msg = " ".join(str(e).split())[:400]
        print(f"{name}: FAIL {type(e).__name__}: {msg}")


conn = None


def login():
    global conn
    conn = drv.connect()
    assert drv.run(conn, "SELECT 1 AS one") == [(1,)]
    for t in ("types", "tx", "pk", "long", "many"):
        drv.run(conn, f"IF OBJECT_ID('{prefix}_{t}') IS NOT NULL DROP TABLE {prefix}_{t}", fetch=False)


def login_master():
    c = drv.connect(db="master")
    rows = drv.run(c, "SELECT 1 AS one")
    assert rows == [(1,)], rows
    c.close()


def select_nulls():
    rows = drv.run(conn, "SELECT 1 AS a, NULL AS b, CAST(NULL AS NVARCHAR(10)) AS c, CAST(NULL AS DATETIME2) AS d")
    assert rows == [(1, None, None, None)], rows


def every_type():
    drv.run(conn, f"CREATE TABLE {prefix}_types {TYPES}", fetch=False)
    marks = ", ".join("?" for _ in range(len(COLS) + 1))
    for rid, vals in ROWS.items():
        drv.run(conn, f"INSERT INTO {prefix}_types (id, {', '.join(COLS)}) VALUES ({marks})",
                [rid] + [as_param(c, vals[c]) for c in COLS], fetch=False)
    drv.run(conn, f"INSERT INTO {prefix}_types (id) VALUES (?)", [3], fetch=False)
    bad = []
    for rid, vals in ROWS.items():
        got = drv.run(conn, f"SELECT {', '.join(COLS)} FROM {prefix}_types WHERE id = ?", [rid])[0]
        for c, g in zip(COLS, got):
            if not same(c, vals[c], g):
                bad.append(f"row {rid} {c}: sent {vals[c]!r}, got {g!r}")
    nulls = drv.run(conn, f"SELECT {', '.join(COLS)} FROM {prefix}_types WHERE id = 3")[0]
    if any(v is not None for v in nulls):
        bad.append(f"NULL row: {nulls!r}")
    # Parameters of each type also select rows.
    n = drv.run(conn, f"SELECT COUNT(*) FROM {prefix}_types WHERE g = ? AND d = ? AND dt = ?",
                [ROWS[2]["g"], ROWS[2]["d"], ROWS[2]["dt"]])
    if n != [(1,)]:
        bad.append(f"typed WHERE matched {n!r}")
    assert not bad, "; ".join(bad)


def transactions():
    drv.run(conn, f"CREATE TABLE {prefix}_tx (id INT PRIMARY KEY)", fetch=False)
    c = drv.connect(autocommit=False)
    drv.run(c, f"INSERT INTO {prefix}_tx (id) VALUES (?)", [1], fetch=False)
    c.rollback()
    drv.run(c, f"INSERT INTO {prefix}_tx (id) VALUES (?)", [2], fetch=False)
    c.commit()
    c.close()
    rows = drv.run(conn, f"SELECT id FROM {prefix}_tx ORDER BY id")
    assert rows == [(2,)], rows


def error_208():
    try:
        drv.run(conn, "SELECT * FROM no_such_table")
    except Exception as e:  # noqa: BLE001
        assert error_number(e) == 208, e
        assert "Invalid object name 'no_such_table'" in str(e), e
        return
    raise AssertionError("no error")


def error_2627():
    drv.run(conn, f"CREATE TABLE {prefix}_pk (id INT PRIMARY KEY)", fetch=False)
    drv.run(conn, f"INSERT INTO {prefix}_pk (id) VALUES (?)", [1], fetch=False)
    try:
        drv.run(conn, f"INSERT INTO {prefix}_pk (id) VALUES (?)", [1], fetch=False)
    except Exception as e:  # noqa: BLE001
        assert error_number(e) == 2627, e
        return
    raise AssertionError("no error")


def try_catch_rethrow():
    # The CATCH block application code writes: roll back, then rethrow. Every result set
    # is read (drivers raise an error that follows one only when they reach it).
    c = drv.connect()
    cur = c.connection.cursor() if isinstance(drv, Alchemy) else c.cursor()
    try:
        cur.execute(f"BEGIN TRY BEGIN TRAN; INSERT INTO {prefix}_pk (id) VALUES (2); "
                    f"INSERT INTO {prefix}_pk (id) VALUES (1); COMMIT; END TRY "
                    f"BEGIN CATCH IF @@TRANCOUNT > 0 ROLLBACK; THROW; END CATCH")
        while cur.nextset():
            pass
        raise AssertionError("no error")
    except AssertionError:
        raise
    except Exception as e:  # noqa: BLE001 - the driver's error for 2627
        assert error_number(e) == 2627, e
    finally:
        c.close()
    rows = drv.run(conn, f"SELECT COUNT(*) FROM {prefix}_pk WHERE id = 2")
    assert rows == [(0,)], rows


def long_string():
    drv.run(conn, f"CREATE TABLE {prefix}_long (id INT, body NVARCHAR(MAX))", fetch=False)
    s = "ü" * 10000
    drv.run(conn, f"INSERT INTO {prefix}_long (id, body) VALUES (?, ?)", [1, s], fetch=False)
    rows = drv.run(conn, f"SELECT body, LEN(body) FROM {prefix}_long WHERE id = ?", [1])
    assert rows[0][0] == s and rows[0][1] == 10000, (len(rows[0][0]), rows[0][1])


def many_rows():
    drv.run(conn, f"CREATE TABLE {prefix}_many (id INT PRIMARY KEY, v NVARCHAR(50))", fetch=False)
    values = ", ".join(f"({i}, N'row {i}')" for i in range(2000))
    drv.run(conn, f"INSERT INTO {prefix}_many (id, v) VALUES {values}", fetch=False)
    rows = drv.run(conn, f"SELECT id, v FROM {prefix}_many ORDER BY id")
    assert len(rows) == 2000 and rows[1999] == (1999, "row 1999"), (len(rows), rows[-1])


def timeout_then_reuse():
    c = drv.connect(timeout=1)
    try:
        drv.run(c, "WAITFOR DELAY '00:00:05'; SELECT 1", fetch=True)
        raise AssertionError("no timeout")
    except AssertionError:
        raise
    except Exception:  # noqa: BLE001 - the driver's timeout error
        pass
    if isinstance(drv, Alchemy):
        c.close()  # back to the pool (invalidated if the driver says so)
        c = drv.connect(timeout=1)
    elif stack == "pymssql":
        # pymssql answers DB-Library's timeout with INT_CANCEL, which closes its
        # connection whatever the server does: the next query needs a new one.
        try:
            drv.run(c, "SELECT 2 AS two")
            raise AssertionError("pymssql kept its connection after a timeout")
        except drv.mod.InterfaceError:
            c = drv.connect(timeout=1)
    rows = drv.run(c, "SELECT 2 AS two")
    assert rows == [(2,)], rows
    c.close()


for name, fn in [
    ("login", login),
    ("login to master", login_master),
    ("select with NULLs", select_nulls),
    ("every type as parameters and results", every_type),
    ("rollback and commit", transactions),
    ("error 208", error_208),
    ("error 2627", error_2627),
    ("TRY/CATCH: roll back and rethrow", try_catch_rethrow),
    ("10,000-character string", long_string),
    ("2,000-row result", many_rows),
    ("client timeout, then the same connection or pool" if stack != "pymssql"
     else "client timeout, then a new connection (pymssql closes its own)", timeout_then_reuse),
]:
    check(name, fn)
