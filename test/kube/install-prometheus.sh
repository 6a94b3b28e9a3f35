#!/usr/bin/env bash
# Installs Debian's prometheus for the metric-gate tests (the tests start their own instance on
# 127.0.0.1). The package's own service is not started: a policy-rc.d refuses it while apt runs.
set -euo pipefail
if command -v prometheus >/dev/null; then
	exit 0
fi
if [ "$(id -u)" != 0 ]; then
	echo "prometheus is missing: run 'sudo apt-get install prometheus' (the metric-gate tests need it)" >&2
	exit 1
fi
created=
if [ ! -e /usr/sbin/policy-rc.d ]; then
	printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
	chmod +x /usr/sbin/policy-rc.d
	created=1
fi
trap '[ -z "$created" ] || rm -f /usr/sbin/policy-rc.d' EXIT
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null
prometheus --version 2>&1 | head -1
