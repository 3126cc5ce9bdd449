#!/bin/sh
# Install the system packages some tests drive, from Debian: Chromium and ChromeDriver
# (the key-page tests) and PgBouncer (tests/e2e/test_pooler.py). Idempotent: installs only
# what is missing, in one apt-get run. Needs root; as anyone else, or without apt-get, it
# says what to run and exits 0, so `make test` still runs (those tests then skip with a
# message naming this script). The PgBouncer package's own service is not wanted (the
# tests start PgBouncer themselves): a policy-rc.d forbids starting it while installing.
set -eu

missing=""
{ [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; } || missing="chromium chromium-driver"
{ command -v pgbouncer >/dev/null 2>&1 || [ -x /usr/sbin/pgbouncer ]; } || missing="$missing pgbouncer"

if [ -z "$missing" ]; then
    echo "install-test-packages: chromium and pgbouncer already installed"
    exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "install-test-packages: missing:$missing; run as root: sudo $0" >&2
    echo "install-test-packages: (the tests that need them skip until then)" >&2
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "install-test-packages: no apt-get here; install by hand:$missing (those tests skip)" >&2
    exit 0
fi

export DEBIAN_FRONTEND=noninteractive
policy=/usr/sbin/policy-rc.d
if [ ! -e "$policy" ]; then
    trap 'rm -f "$policy"' EXIT
    printf '#!/bin/sh\nexit 101\n' >"$policy"
    chmod 755 "$policy"
fi
# shellcheck disable=SC2086 # one package name per word
if apt-get update -qq && apt-get install -y -qq $missing >/dev/null; then
    echo "install-test-packages: installed$missing"
else
    # No package mirror reachable: the suite still runs, and those tests say why they skip.
    echo "install-test-packages: apt-get could not install$missing; those tests will skip" >&2
fi
