#!/usr/bin/env bash
# Installs qemu-system-x86 for `ramflow bench --compare qemu` (run by
# `make bench-deps`, never by make check or make demo).  Issue 12 asks for
# QEMU 10: on Debian bookworm that is in bookworm-backports, so the suite
# is added (its own file in /etc/apt/sources.list.d) when it can be
# reached, and QEMU installed from it (also over an older QEMU installed
# before); otherwise bookworm's QEMU 7.2 is installed and this says so.
# Prints the version it ends with.
set -euo pipefail

LIST=/etc/apt/sources.list.d/bookworm-backports.list
SUITE="deb http://deb.debian.org/debian bookworm-backports main"
export DEBIAN_FRONTEND=noninteractive

say() { echo "install-qemu: $*"; }

# QEMU 10 or later is what the issue compares with: keep it.  An older
# QEMU (bookworm's 7.2, installed when backports could not be reached) is
# upgraded from backports when they can be reached now.
installed=""
if command -v qemu-system-x86_64 >/dev/null; then
    installed=$(qemu-system-x86_64 --version | head -n1)
    major=$(echo "$installed" | sed -n 's/^QEMU emulator version \([0-9]*\).*/\1/p')
    if [ "${major:-0}" -ge 10 ]; then
        say "already installed: $installed"
        exit 0
    fi
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
    # Twice: a mirror that failed once (seen here) often answers next.
    apt-get update >/dev/null 2>&1 || apt-get update >/dev/null 2>&1 || true
    if apt-cache policy qemu-system-x86 | grep -q 'bookworm-backports'; then
        from=bookworm-backports
    else
        # A suite that cannot be reached would warn on every apt-get update.
        if [ "$added" = yes ]; then
            rm -f "$LIST"
            apt-get update >/dev/null 2>&1 || true
        fi
        if [ -n "$installed" ]; then
            say "bookworm-backports cannot be reached: keeping $installed, not QEMU 10"
            exit 0
        fi
        say "bookworm-backports cannot be reached: installing bookworm's QEMU (7.2), not QEMU 10"
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
