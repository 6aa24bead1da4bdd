#!/usr/bin/env bash
# The project's test command: installs what the tests need, builds everything once with the
# release profile (the modules the end-to-end tests load are cdylibs of the workspace), then
# runs every test. Benchmarks and packaging use the same profile, so nothing builds twice.
#
# Database servers: the PostgreSQL and MariaDB tests use PUAHOST_TEST_POSTGRES and
# PUAHOST_TEST_MYSQL. When they are not set, this script sets them to the usual loopback servers
# (PostgreSQL 127.0.0.1:5432 with trust auth, MariaDB 127.0.0.1:3306 as root without password)
# if those answer; otherwise those tests say they are skipped.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-test-deps.sh
if [ -z "${PUAHOST_TEST_POSTGRES+x}" ]; then
  if pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then
    export PUAHOST_TEST_POSTGRES=postgres://postgres@127.0.0.1:5432
  else
    echo "note: no PostgreSQL on 127.0.0.1:5432; its tests will be skipped (set PUAHOST_TEST_POSTGRES)"
  fi
fi
if [ -z "${PUAHOST_TEST_MYSQL+x}" ]; then
  if mariadb-admin -h 127.0.0.1 -P 3306 -u root ping >/dev/null 2>&1; then
    export PUAHOST_TEST_MYSQL=mysql://root@127.0.0.1:3306
  else
    echo "note: no MariaDB on 127.0.0.1:3306; its tests will be skipped (set PUAHOST_TEST_MYSQL)"
  fi
fi
cargo build --workspace --release --locked
cargo test --workspace --release --locked
