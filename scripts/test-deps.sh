#!/usr/bin/env bash
# Installs what the tests need beyond Go, when it is missing: iproute2
# (ip, tc) for the testbed's netns mode. Run by `make test`. Without root or
# apt the netns tests skip and say why.
set -euo pipefail

need=()
command -v ip >/dev/null 2>&1 || need+=(iproute2)
command -v tc >/dev/null 2>&1 || need+=(iproute2)
if [ ${#need[@]} -eq 0 ]; then
	exit 0
fi
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
	echo "test-deps: ${need[*]} missing and cannot be installed here (not root, or no apt-get); the netns tests will skip" >&2
	exit 0
fi
echo "test-deps: installing iproute2" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null
apt-get install -y -qq --no-install-recommends iproute2 >/dev/null
