#!/usr/bin/env bash
# Installs the Debian packages Fiat uses from the system: bubblewrap, which
# `fiat run` contains governed commands with (runtime.containment = "namespace"),
# and, for the interoperability tests, Go and Go's golang.org/x/mod (sumdb/note,
# sumdb/tlog), the reference implementations our log must match byte for byte;
# for the clock-step test (tests/enforce/test_clock.py), libfaketime; for the web pages'
# tests (tests/ui), Chromium, which Playwright drives (its own browser download is not used);
# for the PostgreSQL backend's tests, PostgreSQL 15's server binaries (the tests start their own server).
# Needs root and apt; otherwise it says what to install (those tests are skipped).
set -euo pipefail
need=()
command -v bwrap >/dev/null 2>&1 || need+=(bubblewrap)
if [ "${1:-}" != "--runtime" ]; then  # --runtime: only what `fiat run` needs (for `make run`)
  command -v go >/dev/null 2>&1 || need+=(golang-go)
  [ -d /usr/share/gocode/src/golang.org/x/mod/sumdb/tlog ] || need+=(golang-golang-x-mod-dev)
  compgen -G "/usr/lib/*/faketime/libfaketimeMT.so.1" >/dev/null || need+=(faketime)
  [ -x /usr/bin/chromium ] || need+=(chromium)  # tests/ui: Playwright drives the system browser
  # the PostgreSQL backend's tests start a real server from these binaries (tests/support/postgres.py)
  compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || need+=(postgresql-15)
fi
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing ${need[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq "${need[@]}" >/dev/null
else
  echo "note: install ${need[*]} (Debian/Ubuntu): bubblewrap for \`fiat run\`'s containment, Go for the interoperability tests, faketime for the clock-step test, chromium for the web pages' tests, postgresql-15 for the PostgreSQL backend's tests (skipped without them)" >&2
fi
