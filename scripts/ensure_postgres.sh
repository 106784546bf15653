#!/usr/bin/env bash
# Best effort: make PostgreSQL server binaries available for the team-database tests.
# Without them those tests skip with a reason; nothing else depends on this.
if ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null 2>&1; then
  exit 0
fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing PostgreSQL for the team-database tests (apt-get)..." >&2
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null) \
    || echo "could not install PostgreSQL; its tests will be skipped" >&2
else
  echo "PostgreSQL server not found; its tests will be skipped (apt-get install postgresql)" >&2
fi
