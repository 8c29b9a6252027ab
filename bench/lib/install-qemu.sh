#!/usr/bin/env bash
# Installs qemu-system-x86 for `ramflow bench --compare qemu` (run by
# `make bench-deps`, never by make check or make demo).  Issue 12 asks for
# QEMU 10: on Debian bookworm that is in bookworm-backports, so the suite
# is added (its own file in /etc/apt/sources.list.d) when it can be
# reached, and QEMU installed from it; otherwise bookworm's QEMU 7.2 is
# installed and this says so.  Prints the version it ends with.
set -euo pipefail

LIST=/etc/apt/sources.list.d/bookworm-backports.list
SUITE="deb http://deb.debian.org/debian bookworm-backports main"
export DEBIAN_FRONTEND=noninteractive

say() { echo "install-qemu: $*"; }

if command -v qemu-system-x86_64 >/dev/null; then
    say "already installed: $(qemu-system-x86_64 --version | head -n1)"
    exit 0
fi
# shellcheck disable=SC1091
codename=$(. /etc/os-release && echo "${VERSION_CODENAME:-}")
from=""
if [ "$codename" = bookworm ]; then
    added=no
    if [ ! -f "$LIST" ]; then
        echo "$SUITE" > "$LIST"
        added=yes
    fi
    apt-get update >/dev/null 2>&1 || true
    if apt-cache policy qemu-system-x86 | grep -q 'bookworm-backports'; then
        from=bookworm-backports
    else
        say "bookworm-backports cannot be reached: installing bookworm's QEMU (7.2), not QEMU 10"
        # A suite that cannot be reached would warn on every apt-get update.
        if [ "$added" = yes ]; then
            rm -f "$LIST"
            apt-get update >/dev/null 2>&1 || true
        fi
    fi
else
    ls /var/lib/apt/lists/*_Packages* >/dev/null 2>&1 || apt-get update
fi
if [ -n "$from" ]; then
    apt-get install -y -t "$from" qemu-system-x86
else
    apt-get install -y qemu-system-x86
fi
say "installed: $(qemu-system-x86_64 --version | head -n1)"
