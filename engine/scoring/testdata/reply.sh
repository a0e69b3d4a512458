#!/bin/sh
# A canned command scorer for protocol error tests: it reads the request,
# writes $1 to stdout and exits with $2 (default 0). Starting sh is cheap,
# so each malformed response gets its own process without slowing the tests.
cat >/dev/null
printf '%s' "$1"
exit "${2:-0}"
