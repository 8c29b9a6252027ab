#!/usr/bin/env python3
"""A TCP proxy that breaks one connection on a byte count (reconnect.sh):
every connection to it (on 127.0.0.1, a port of its own) is relayed to
127.0.0.1:DST_PORT.  Connection number CUT (0 = the first, a ramflow
source's main channel; 1 and up its data channels) is reset on both sides
(RST) once AFTER bytes have gone from the source to the destination on it,
in the middle of whatever was being relayed.  With --refuse, every
connection accepted after the cut is reset at once (a reconnect can never
succeed).

usage: cut_proxy.py DST_PORT CUT AFTER [--refuse]
Prints "port N", then one line per event with a monotonic timestamp in
ms: "accept K T", "cut K T", "refuse K T", and "bytes K N" when the
source-to-destination direction of connection 0 (or CUT) ends uncut;
relays until killed."""
import socket
import struct
import sys
import threading
import time

LOCK = threading.Lock()
STATE = {"cut": False}
PACE = {"rate": 0, "next": 0.0}


def pace(n):
    """Waits until n more bytes fit the --rate (one clock for every
    connection, so the channels share the link as on a real one)."""
    if not PACE["rate"]:
        return
    with LOCK:
        now = time.monotonic()
        at = max(PACE["next"], now)
        PACE["next"] = at + n / PACE["rate"]
    if at > now:
        time.sleep(at - now)


def now_ms():
    return int(time.monotonic() * 1000)


def say(line):
    with LOCK:
        print(line, flush=True)


def reset(*socks):
    """Closes with RST (SO_LINGER 0); SHUT_RD first wakes the other pump."""
    for s in socks:
        try:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                         struct.pack("ii", 1, 0))
            s.shutdown(socket.SHUT_RD)
        except OSError:
            pass
    for s in socks:
        try:
            s.close()
        except OSError:
            pass


def pump(k, a, b, limit, paced):
    seen = 0
    try:
        while True:
            buf = a.recv(65536)
            if not buf:
                break
            if paced:
                pace(len(buf))
            if limit is not None and seen + len(buf) >= limit:
                b.sendall(buf[:limit - seen])
                with LOCK:
                    STATE["cut"] = True
                say("cut %d %d" % (k, now_ms()))
                reset(a, b)
                return
            seen += len(buf)
            b.sendall(buf)
    except OSError:
        pass
    if limit is not None or k == 0:
        say("bytes %d %d" % (k, seen))
    for s in (a, b):
        try:
            s.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


def main():
    dport, cut, after = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    refuse = "--refuse" in sys.argv[4:]
    if "--rate" in sys.argv[4:]:
        PACE["rate"] = float(sys.argv[sys.argv.index("--rate") + 1])
    lst = socket.socket()
    lst.bind(("127.0.0.1", 0))
    lst.listen(64)
    say("port %d" % lst.getsockname()[1])
    k = 0
    while True:
        c, _ = lst.accept()
        with LOCK:
            was_cut = STATE["cut"]
        if refuse and was_cut:
            say("refuse %d %d" % (k, now_ms()))
            reset(c)
            k += 1
            continue
        say("accept %d %d" % (k, now_ms()))
        d = socket.create_connection(("127.0.0.1", dport))
        limit = after if k == cut else None
        threading.Thread(target=pump, args=(k, c, d, limit, True),
                         daemon=True).start()
        threading.Thread(target=pump, args=(-1, d, c, None, False),
                         daemon=True).start()
        k += 1


if __name__ == "__main__":
    main()
