#!/usr/bin/env python3
"""A crafted ramflow source that stops in a chosen state (cancel.sh).

usage: craft_source.py HOST PORT MODE SIZE [BLOCK]
  partial-hello  sends 5 bytes of a HELLO frame, then nothing
  hello          sends a HELLO, prints "reply: TYPE" and exits (tls.sh:
                 a source announcing more memory than it could ever map)
  accepted       HELLO, reads ACCEPT, opens no data channel
  final-wait     HELLO, ACCEPT, one data channel, END on the main channel,
                 never the channel's FINAL sync
Prints "state: MODE" once there, then waits to be killed.  The layout is
one block BLOCK (default "ram") of SIZE bytes, method none, one channel (wire version 2,
src/wire/control.c; little-endian).
"""
import os
import socket
import struct
import sys
import time

MSG_MAGIC, CHAN_MAGIC = 0x4D434652, 0x48434652
HELLO, ACCEPT, END = 1, 2, 5
CAPS_SUPPORTED = 0x3F                      # bits 0-5 (RF_CAPS_IMPLEMENTED)
CAPS_REQUIRED = 0x01 | 0x08 | 0x10 | 0x20  # RF_CAPS_SOURCE_NEEDS


def frame(mtype, payload):
    return struct.pack("<IHHI", MSG_MAGIC, mtype, 0, len(payload)) + payload


def hello(session, size, name):
    body = struct.pack("<HHIQQBBHI", 2, 0, 4096, CAPS_SUPPORTED,
                       CAPS_REQUIRED, 0, 0, 1, 1) + session
    body += bytes([len(name)]) + name + struct.pack("<Q", size)
    return body + struct.pack("<H", 0)     # no extension records


def recv_exact(s, n):
    b = b""
    while len(b) < n:
        chunk = s.recv(n - len(b))
        if not chunk:
            sys.exit("craft_source: connection closed")
        b += chunk
    return b


def main():
    host, port, mode, size = sys.argv[1], int(sys.argv[2]), sys.argv[3], \
        int(sys.argv[4])
    block = (sys.argv[5] if len(sys.argv) > 5 else "ram").encode()
    session = os.urandom(16)
    main_ch = socket.create_connection((host, port))
    msg = frame(HELLO, hello(session, size, block))
    if mode == "partial-hello":
        main_ch.sendall(msg[:5])
    else:
        main_ch.sendall(msg)
        _, mtype, _, length = struct.unpack("<IHHI", recv_exact(main_ch, 12))
        recv_exact(main_ch, length)
        if mode == "hello":
            print("reply: %d" % mtype, flush=True)
            return
        if mtype != ACCEPT:
            sys.exit("craft_source: got message type %d, not ACCEPT" % mtype)
    keep = []
    if mode == "final-wait":
        data = socket.create_connection((host, port))
        data.sendall(struct.pack("<IHH", CHAN_MAGIC, 2, 0) + session)
        keep.append(data)
        main_ch.sendall(frame(END, struct.pack("<IB", 1, 0)))
    print("state: " + mode, flush=True)
    while True:
        time.sleep(60)


if __name__ == "__main__":
    main()
