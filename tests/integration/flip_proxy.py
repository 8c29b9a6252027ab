#!/usr/bin/env python3
"""A TCP proxy that corrupts the stream (netfaults.sh): every connection to
it (on HOST, a port of its own) is relayed to DST_HOST:DST_PORT,
and in the source-to-destination direction one byte in every EVERY bytes
(after the first 64 KiB, so the handshake passes) is flipped.  TCP's own
checksum cannot catch this, as it can most of what netem corrupt does:
only TLS's record MAC (or --verify's digests) can.

usage: flip_proxy.py HOST DST_HOST DST_PORT EVERY
Prints the listening port, then relays until killed."""
import socket
import sys
import threading


def pump(a, b, every):
    seen = 0
    try:
        while True:
            buf = bytearray(a.recv(65536))
            if not buf:
                break
            if every:
                first = max(65536, -(-seen // every) * every)
                for pos in range(first, seen + len(buf), every):
                    buf[pos - seen] ^= 0x20
            seen += len(buf)
            b.sendall(buf)
    except OSError:
        pass
    for s in (a, b):
        try:
            s.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


def main():
    host, dhost, dport, every = sys.argv[1], sys.argv[2], int(sys.argv[3]), \
        int(sys.argv[4])
    lst = socket.socket()
    lst.bind((host, 0))
    lst.listen(64)
    print(lst.getsockname()[1], flush=True)
    while True:
        c, _ = lst.accept()
        d = socket.create_connection((dhost, dport))
        threading.Thread(target=pump, args=(c, d, every), daemon=True).start()
        threading.Thread(target=pump, args=(d, c, 0), daemon=True).start()


if __name__ == "__main__":
    main()
