#!/usr/bin/env bash
# Installs the Debian packages that the tests with real endpoints need
# (SIP phones, a headless browser) when they are missing, so that
# `make test` passes on a fresh machine with nothing installed by hand.
# It installs with apt-get as root, or through sudo; without either it
# names the packages and fails, rather than letting the tests fail later
# with a less helpful message.
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

echo "test-deps: installing ${missing[*]}"
if ((EUID == 0)); then
	as_root=()
elif command -v sudo >/dev/null 2>&1; then
	as_root=(sudo)
else
	echo "test-deps: not root and no sudo: install ${missing[*]} (Debian packages) and rerun" >&2
	exit 1
fi
export DEBIAN_FRONTEND=noninteractive
"${as_root[@]}" apt-get update -qq
"${as_root[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
