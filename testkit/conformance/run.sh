#!/usr/bin/env bash
# Conformance check: the tds-server binary against two TDS clients nobody here wrote,
# FreeTDS `tsql` (TDS 7.4) and python-tds (pytds). Installs them when missing,
# starts the server on a free port, compares every client's output exactly with
# what is expected, and always stops the server on exit.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
USER_NAME="conformance"
PASSWORD='C0nf#Pass'
DATABASE="confdb"

as_root() {
    if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}

if ! command -v tsql >/dev/null 2>&1; then
    echo "installing freetds-bin (tsql)"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq freetds-bin >/dev/null
fi
if ! python3 -c 'import pytds' >/dev/null 2>&1; then
    echo "installing python-tds"
    python3 -m pip install --quiet python-tds
fi

(cd "$ROOT" && ${CARGO:-cargo} build --quiet -p mssql-testkit --bin tds-server)
BIN="$TARGET_DIR/debug/tds-server"

WORK="$(mktemp -d)"
SERVER_PID=""
cleanup() {
    if [ -n "$SERVER_PID" ]; then
        kill "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT

"$BIN" --listen 127.0.0.1:0 --user "$USER_NAME" --password "$PASSWORD" --database "$DATABASE" \
    >"$WORK/server.out" 2>"$WORK/server.err" &
SERVER_PID=$!
for _ in $(seq 1 200); do
    if [ -s "$WORK/server.out" ] || ! kill -0 "$SERVER_PID" 2>/dev/null; then break; fi
    sleep 0.05
done
FIRST="$(head -n 1 "$WORK/server.out" || true)"
case "$FIRST" in
    "listening on "*) ;;
    *) echo "FAIL: tds-server did not start: ${FIRST:-<no output>} $(cat "$WORK/server.err")"; exit 1 ;;
esac
PORT="${FIRST##*:}"
echo "tds-server listening on port $PORT"

FAILED=0
# check NAME EXPECTED_FILE ACTUAL_FILE
check() {
    if diff -u "$2" "$3" >"$WORK/diff"; then
        echo "ok   - $1"
    else
        echo "FAIL - $1"
        sed 's/^/       /' "$WORK/diff"
        FAILED=1
    fi
}

# tsql SQL_FILE PASSWORD → stdout in $WORK/tsql.out, stderr in $WORK/tsql.err, rc in $WORK/tsql.rc
run_tsql() {
    set +e
    TDSVER=7.4 timeout 60 tsql -H 127.0.0.1 -p "$PORT" -U "$USER_NAME" -P "$2" -D "$DATABASE" -o q \
        <"$1" >"$WORK/tsql.out" 2>"$WORK/tsql.err"
    echo "$?" >"$WORK/tsql.rc"
    set -e
}

# --- tsql: login, rows and NULLs ---------------------------------------------------
cat >"$WORK/q1.sql" <<'SQL'
CREATE TABLE fruit (id INT IDENTITY(1,1) PRIMARY KEY, name NVARCHAR(40) NOT NULL, qty INT NULL, price FLOAT NULL)
INSERT INTO fruit (name, qty, price) VALUES (N'apple', 3, 1.5), (N'pear', NULL, NULL), (N'kiwi', 12, 0.25)
go
SELECT id, name, qty, price FROM fruit ORDER BY id
go
SELECT DB_NAME() AS db, DATABASEPROPERTYEX(DB_NAME(), 'Updateability') AS upd
go
SQL
printf 'id\tname\tqty\tprice\n1\tapple\t3\t1.5\n2\tpear\tNULL\tNULL\n3\tkiwi\t12\t0.25\ndb\tupd\nconfdb\tREAD_WRITE\n' >"$WORK/q1.expected"
run_tsql "$WORK/q1.sql" "$PASSWORD"
check "tsql: login and SELECT with rows and NULLs" "$WORK/q1.expected" "$WORK/tsql.out"
printf '0\n' >"$WORK/rc0.expected"
check "tsql: exit status 0" "$WORK/rc0.expected" "$WORK/tsql.rc"

# --- tsql: an error number -----------------------------------------------------------
printf 'SELECT * FROM no_such_table\ngo\n' >"$WORK/q2.sql"
printf 'Msg 208 (severity 16, state 1) from mssql-testkit Line 1:\n\t"Invalid object name '"'"'no_such_table'"'"'."\n' >"$WORK/q2.expected"
run_tsql "$WORK/q2.sql" "$PASSWORD"
check "tsql: error 208 for a missing table" "$WORK/q2.expected" "$WORK/tsql.err"

# --- tsql: wrong password -------------------------------------------------------------
printf 'SELECT 1\ngo\n' >"$WORK/q3.sql"
run_tsql "$WORK/q3.sql" "wrong-password"
grep '^Msg ' "$WORK/tsql.err" >"$WORK/q3.actual" || true
printf 'Msg 18456 (severity 14, state 8) from mssql-testkit Line 1:\n' >"$WORK/q3.expected"
check "tsql: wrong password is error 18456" "$WORK/q3.expected" "$WORK/q3.actual"
printf '1\n' >"$WORK/rc1.expected"
check "tsql: wrong password exits 1" "$WORK/rc1.expected" "$WORK/tsql.rc"

# --- python-tds -----------------------------------------------------------------------
set +e
timeout 120 python3 "$HERE/pytds_check.py" 127.0.0.1 "$PORT" "$USER_NAME" "$PASSWORD" "$DATABASE" \
    >"$WORK/py.out" 2>"$WORK/py.err"
echo "$?" >"$WORK/py.rc"
set -e
check "pytds: checks" "$HERE/pytds_expected.txt" "$WORK/py.out"
check "pytds: exit status 0" "$WORK/rc0.expected" "$WORK/py.rc"
if [ "$(cat "$WORK/py.rc")" != 0 ]; then sed 's/^/       /' "$WORK/py.err"; fi

if [ "$FAILED" != 0 ]; then
    echo "conformance: FAILED"
    exit 1
fi
echo "conformance: all checks passed"
