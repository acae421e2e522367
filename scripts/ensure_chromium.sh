#!/usr/bin/env bash
# Makes Debian's `chromium` available for the browser test of `difflab report` (tests/report/), which
# Playwright drives through `executable_path`: Playwright's own browser download needs the internet.
# Installs it with apt-get when /usr/bin/chromium is missing and we are root; otherwise says why and
# exits 0, so `make test` goes on and that test skips with the same reason.
set -uo pipefail
CHROMIUM=${CHROMIUM:-/usr/bin/chromium}
if [ -x "$CHROMIUM" ]; then
  exit 0
fi
if [ "$(id -u)" != 0 ]; then
  echo "ensure_chromium: $CHROMIUM missing and not root: the browser test will skip (apt-get install chromium)"
  exit 0
fi
if ! command -v apt-get >/dev/null; then
  echo "ensure_chromium: $CHROMIUM missing and no apt-get here: the browser test will skip"
  exit 0
fi
echo "ensure_chromium: installing Debian's chromium for the report browser test"
if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium; } \
    >/tmp/ensure_chromium.log 2>&1; then
  echo "ensure_chromium: apt-get failed (see /tmp/ensure_chromium.log): the browser test will skip"
fi
exit 0
