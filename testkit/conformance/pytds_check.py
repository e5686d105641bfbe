"""Conformance checks of the mssql-testkit TDS server with python-tds (pytds).

Usage: pytds_check.py HOST PORT USER PASSWORD DATABASE
Prints one line per check; run.sh compares the output with pytds_expected.txt.
"""
import sys

import pytds

host, port, user, password, database = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]


def connect(pw=password, autocommit=True):
    return pytds.connect(server=host, port=port, user=user, password=pw,
                         database=database, autocommit=autocommit, login_timeout=30, timeout=60)


conn = connect()
cur = conn.cursor()
print("login:", "ok")

cur.execute("CREATE TABLE py_items (id INT PRIMARY KEY, name NVARCHAR(50) NULL, qty INT NULL, price FLOAT NULL, big BIGINT NULL, notes NVARCHAR(MAX) NULL)")
cur.execute("INSERT INTO py_items (id, name, qty, price, big) VALUES (1, N'apple', 3, 1.5, 5000000000), (2, NULL, NULL, NULL, NULL)")
cur.execute("SELECT id, name, qty, price, big FROM py_items ORDER BY id")
print("rows:", cur.fetchall())
print("columns:", [d[0] for d in cur.description])

# Parameterised statements go through sp_executesql RPCs.
long_text = "é" * 10000
cur.execute("INSERT INTO py_items (id, name, qty, price, notes) VALUES (%s, %s, %s, %s, %s)",
            (3, "kiwi", None, 0.25, long_text))
cur.execute("SELECT name, qty, price, LEN(notes) FROM py_items WHERE id = %s AND name = %s", (3, "kiwi"))
print("params:", cur.fetchall())
cur.execute("SELECT notes FROM py_items WHERE id = %(id)s", {"id": 3})
print("long value round trip:", cur.fetchone()[0] == long_text)

try:
    cur.execute("SELECT * FROM no_such_table")
    print("error: none")
except pytds.ProgrammingError as e:
    print("error:", e.msg_no, e.severity if hasattr(e, "severity") else "")
try:
    cur.execute("INSERT INTO py_items (id) VALUES (%s)", (1,))
    print("duplicate: none")
except pytds.IntegrityError as e:
    print("duplicate:", e.msg_no)

# Transactions through TransactionManager requests (autocommit off).
tx = connect(autocommit=False)
tcur = tx.cursor()
tcur.execute("INSERT INTO py_items (id, name) VALUES (10, N'rolled back')")
tx.rollback()
tcur.execute("INSERT INTO py_items (id, name) VALUES (11, N'committed')")
tx.commit()
cur.execute("SELECT id FROM py_items WHERE id >= 10 ORDER BY id")
print("transactions:", cur.fetchall())
tx.close()

# Prepared statements by RPC, as ODBC drivers use them; the handle is an output parameter.
prep = cur.callproc("sp_prepare", (pytds.output(value=None, param_type="int"), "@P1 int", "SELECT @P1 + 1 AS y"))
handle = prep[0]
cur.callproc("sp_execute", (handle, 41))
print("sp_prepare/sp_execute:", cur.fetchall())
cur.callproc("sp_unprepare", (handle,))
try:
    cur.callproc("sp_execute", (handle, 41))
    print("sp_unprepare: still prepared")
except pytds.Error as e:
    print("sp_unprepare: then", e.msg_no)

try:
    connect(pw="wrong-password")
    print("wrong password: logged in")
except pytds.Error as e:
    print("wrong password:", e.msg_no)

conn.close()
