#!/usr/bin/env bash
# apt-install.sh PACKAGE...: installs Debian packages with apt-get, as
# root or through sudo; without either it names the packages and fails,
# rather than letting a test fail later with a less helpful message. The
# one place the project's scripts install system packages.
set -euo pipefail
(($# > 0)) || exit 0

echo "apt-install: installing $*"
if ((EUID == 0)); then
	as_root=()
elif command -v sudo >/dev/null 2>&1; then
	as_root=(sudo)
else
	echo "apt-install: not root and no sudo: install $* (Debian packages) and rerun" >&2
	exit 1
fi
export DEBIAN_FRONTEND=noninteractive
"${as_root[@]}" apt-get update -qq
"${as_root[@]}" apt-get install -y -qq --no-install-recommends "$@" >/dev/null
