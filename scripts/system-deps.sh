#!/usr/bin/env bash
# Installs the Debian packages that the interoperability tests use: Go and Go's
# golang.org/x/mod (sumdb/note, sumdb/tlog), the reference implementations our
# log must match byte for byte. Needs root and apt; otherwise it says what to
# install and those tests are skipped with that reason.
set -euo pipefail
need=()
command -v go >/dev/null 2>&1 || need+=(golang-go)
[ -d /usr/share/gocode/src/golang.org/x/mod/sumdb/tlog ] || need+=(golang-golang-x-mod-dev)
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing ${need[*]} for the interoperability tests" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq "${need[@]}" >/dev/null
else
  echo "note: install ${need[*]} (Debian/Ubuntu) to run the Go interoperability tests; they will be skipped" >&2
fi
