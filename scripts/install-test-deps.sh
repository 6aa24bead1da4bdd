#!/usr/bin/env bash
# Installs the Debian packages the tests use, when they are missing:
#   kamailio (+ sqlite/mysql/postgres modules): kamctl for the RPC FIFO test, and Kamailio's own
#       SQL scripts, which the schema tests compare ours against byte for byte;
#   kamailio-presence-modules: Kamailio's pua/presence, the peer for compatibility tests;
#   sip-tester (sipp): SIP load and scenario tests; wrk: the RPC benchmark;
#   postgresql-client, mariadb-client: the tests create and drop their own databases;
#   baresip-core: a real SIP phone registering through the registrar (pua_usrloc tests);
#   prosody (+ lua-unbound, which keeps it from printing a banner on every call): the XMPP
#       server of the xmpp/pua_xmpp gateway tests;
#   sqlite3, curl: bench/soak.sh counts table rows and calls RPC with them.
# Package scripts are kept from starting the kamailio daemon (it would take port 5060).
set -euo pipefail

packages=(kamailio kamailio-sqlite-modules kamailio-mysql-modules kamailio-postgres-modules
          kamailio-presence-modules sip-tester wrk postgresql-client mariadb-client python3
          baresip-core prosody lua-unbound sqlite3 curl)
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# cargo-deb: the packaging test makes the .deb with it, from the release build.
command -v cargo-deb >/dev/null || cargo install cargo-deb --locked --version 3.8.0 --quiet
[ ${#missing[@]} -eq 0 ] && exit 0

sudo=""
[ "$(id -u)" -ne 0 ] && sudo=sudo
created_policy=""
if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' | $sudo tee /usr/sbin/policy-rc.d >/dev/null
    $sudo chmod +x /usr/sbin/policy-rc.d
    created_policy=1
fi
cleanup() { [ -n "$created_policy" ] && $sudo rm -f /usr/sbin/policy-rc.d; }
trap cleanup EXIT

echo "installing: ${missing[*]}" >&2
apt() { DEBIAN_FRONTEND=noninteractive $sudo apt-get -o DPkg::Lock::Timeout=600 "$@"; }
apt install -y -qq --no-install-recommends "${missing[@]}" >/dev/null || {
    apt update -qq
    apt install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}
