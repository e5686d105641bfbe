#!/usr/bin/env bash
# Conformance check: the tds-server binary against TDS clients nobody here wrote:
# FreeTDS `tsql` (TDS 7.4), python-tds (pytds), pyodbc over FreeTDS ODBC, pymssql, and
# SQLAlchemy 2 over pyodbc and over pymssql, and tsql again over TLS (`--tls required` and
# `login-only`). Installs them when missing,
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
if ! odbcinst -q -d 2>/dev/null | grep -q '^\[FreeTDS\]'; then
    echo "installing FreeTDS ODBC (tdsodbc, unixodbc)"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq tdsodbc unixodbc unixodbc-dev >/dev/null
fi
for module in pyodbc pymssql sqlalchemy; do
    if ! python3 -c "import $module" >/dev/null 2>&1; then
        echo "installing $module"
        python3 -m pip install --quiet "$module"
    fi
done

(cd "$ROOT" && ${CARGO:-cargo} build --quiet -p mssql-testkit --bin tds-server)
BIN="$TARGET_DIR/debug/tds-server"

WORK="$(mktemp -d)"
SERVER_PID=""
TLS_PIDS=()
cleanup() {
    for pid in "$SERVER_PID" ${TLS_PIDS[@]+"${TLS_PIDS[@]}"}; do
        if [ -n "$pid" ]; then
            kill "$pid" 2>/dev/null || true
            wait "$pid" 2>/dev/null || true
        fi
    done
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

# --- pyodbc (FreeTDS ODBC), pymssql, SQLAlchemy 2 over both ------------------------------
for stack in pyodbc sqlalchemy-pyodbc pymssql sqlalchemy-pymssql; do
    expected="$HERE/clients_expected.txt"
    if [ "$stack" = pymssql ]; then expected="$HERE/clients_expected_pymssql.txt"; fi
    set +e
    timeout 120 python3 "$HERE/clients_check.py" "$stack" 127.0.0.1 "$PORT" "$USER_NAME" "$PASSWORD" "$DATABASE" \
        >"$WORK/$stack.out" 2>"$WORK/$stack.err"
    echo "$?" >"$WORK/$stack.rc"
    set -e
    check "$stack: checks" "$expected" "$WORK/$stack.out"
    check "$stack: exit status 0" "$WORK/rc0.expected" "$WORK/$stack.rc"
    if [ "$(cat "$WORK/$stack.rc")" != 0 ]; then sed 's/^/       /' "$WORK/$stack.err"; fi
done

# --- TLS: FreeTDS tsql against --tls required and login-only ----------------------------
# start_tls MODE → TLS_PORT; the server's generated CA is written to $WORK/ca-MODE.pem.
start_tls() {
    "$BIN" --listen 127.0.0.1:0 --user "$USER_NAME" --password "$PASSWORD" --database "$DATABASE" \
        --tls "$1" --tls-ca "$WORK/ca-$1.pem" >"$WORK/tls-$1.out" 2>"$WORK/tls-$1.err" &
    TLS_PIDS+=($!)
    for _ in $(seq 1 200); do
        if [ -s "$WORK/tls-$1.out" ]; then break; fi
        sleep 0.05
    done
    TLS_PORT="$(head -n 1 "$WORK/tls-$1.out")"
    TLS_PORT="${TLS_PORT##*:}"
}
# tls_tsql PORT ENCRYPTION CA_FILE → $WORK/tls.out (stdout), $WORK/tls.rc
tls_tsql() {
    printf '[global]\n\ttds version = 7.4\n\tencryption = %s\n\tca file = %s\n' "$2" "$3" \
        >"$WORK/freetds.conf"
    set +e
    printf 'SELECT 40 + 2 AS answer\ngo\n' | FREETDSCONF="$WORK/freetds.conf" timeout 60 \
        tsql -H localhost -p "$1" -U "$USER_NAME" -P "$PASSWORD" -D "$DATABASE" -o q \
        >"$WORK/tls.out" 2>"$WORK/tls.err"
    echo "$?" >"$WORK/tls.rc"
    set -e
}
printf 'answer\n42\n' >"$WORK/tls.expected"
start_tls required
REQUIRED_PORT="$TLS_PORT"
start_tls login-only
LOGIN_ONLY_PORT="$TLS_PORT"
tls_tsql "$REQUIRED_PORT" require "$WORK/ca-required.pem"
check "tsql over TLS: --tls required, encryption = require, the server's CA" "$WORK/tls.expected" "$WORK/tls.out"
tls_tsql "$LOGIN_ONLY_PORT" off "$WORK/ca-login-only.pem"
check "tsql over TLS: --tls login-only, encryption = off (login encrypted)" "$WORK/tls.expected" "$WORK/tls.out"
tls_tsql "$REQUIRED_PORT" require "$WORK/ca-login-only.pem"
check "tsql over TLS: another server's CA is refused (exit 1)" "$WORK/rc1.expected" "$WORK/tls.rc"

if [ "$FAILED" != 0 ]; then
    echo "conformance: FAILED"
    exit 1
fi
echo "conformance: all checks passed"
