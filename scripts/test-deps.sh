#!/usr/bin/env bash
# Installs the Debian packages that the tests with real endpoints need
# (SIP phones, a headless browser) when they are missing, so that
# `make test` passes on a fresh machine with nothing installed by hand.
# It installs them through apt-install.sh (as root, or through sudo).
#
# Each entry is "command:package": the command whose absence means the
# package is needed.
set -euo pipefail

needs=(
	"sipp:sip-tester"      # SIPp: scripted SIP user agents (pbx/sip/siptest)
	"baresip:baresip-core" # baresip: a real soft phone, driven over ctrl_tcp
	"chromium:chromium"    # the console's browser test (web/e2e)
)

missing=()
for entry in "${needs[@]}"; do
	cmd="${entry%%:*}"
	pkg="${entry#*:}"
	command -v "$cmd" >/dev/null 2>&1 || missing+=("$pkg")
done
((${#missing[@]} == 0)) && exit 0

exec bash "$(dirname "$0")/apt-install.sh" "${missing[@]}"
