#!/usr/bin/env bash
# Installs what the tests need beyond Go, when it is missing, and is quiet
# when everything is there. Run by `make test`.
#   - iproute2 (ip, tc) for the testbed's netns mode;
#   - containerd and runc (Debian packages) for the registry mirror's
#     containerd test;
#   - the distribution registry (go install .../cmd/registry) as the real
#     upstream registry of the mirror tests.
# Without root or apt the Debian packages are not installed: the netns and
# containerd tests then skip and say why.
set -euo pipefail

REGISTRY_VERSION=v3.1.2
GO=${GO:-go}

gobin=$($GO env GOBIN)
[ -n "$gobin" ] || gobin="$($GO env GOPATH)/bin"
if ! command -v registry >/dev/null 2>&1 && [ ! -x "$gobin/registry" ]; then
	echo "test-deps: installing the distribution registry $REGISTRY_VERSION into $gobin" >&2
	$GO install "github.com/distribution/distribution/v3/cmd/registry@$REGISTRY_VERSION"
fi

need=()
command -v ip >/dev/null 2>&1 || need+=(iproute2)
command -v tc >/dev/null 2>&1 || need+=(iproute2)
command -v containerd >/dev/null 2>&1 || need+=(containerd)
command -v ctr >/dev/null 2>&1 || need+=(containerd)
command -v runc >/dev/null 2>&1 || need+=(runc)
if [ ${#need[@]} -eq 0 ]; then
	exit 0
fi
mapfile -t need < <(printf '%s\n' "${need[@]}" | sort -u)
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
	echo "test-deps: ${need[*]} missing and cannot be installed here (not root, or no apt-get); the tests that need them will skip" >&2
	exit 0
fi
echo "test-deps: installing ${need[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
