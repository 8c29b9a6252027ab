#!/usr/bin/env python3
"""A QMP client written for QEMU's protocol, driving ramflow (qmp.sh).

usage: qmp_client.py SCENARIO ARGS...
  migrate SRC DST METHOD CHANNELS PKI|- LOG
      QEMU's migration-test sequence between two ramflow processes (test
      VMs): capabilities and parameters on both sides, migrate-incoming
      on the destination (port 0, read back from query-migrate),
      migrate on the source, query-migrate polled until completed, the
      MIGRATION events read on both sides; the destination's guest must
      run with its memory pattern intact.  PKI: a tls_certs.sh folder
      (object-add tls-creds-x509 on both sides), "-" for none.  Writes
      the whole exchange to LOG.
  errors SOCK      error replies compared field by field with QEMU 10's
  robust SRC DST   malformed, oversized, truncated, out-of-order input and
                   20 clients at once while a throttled migration runs;
                   then max-bandwidth lifted live and the migration
                   completes
  cancel SRC DST   migrate_cancel in the middle of a live migration: the
                   source guest runs on, query-migrate says cancelled
  files SRC DST    two `ramflow serve` processes holding memory files
SRC/DST: unix socket paths, or tcp:HOST:PORT.  Every wait has a deadline; nothing sleeps
and hopes.  Exits non-zero with "FAIL: ..." on the first mismatch.
"""
import json
import socket
import sys
import time

DEADLINE_S = 60


def fail(msg):
    print("FAIL: " + msg, file=sys.stderr)
    sys.exit(1)


class QMP:
    """One QMP connection: replies in order, events kept aside."""

    def __init__(self, path, name, log=None, negotiate=True):
        self.name, self.log, self.events, self.buf = name, log, [], b""
        end = time.monotonic() + DEADLINE_S
        while True:
            try:
                if path.startswith("tcp:"):
                    host, port = path[4:].rsplit(":", 1)
                    self.sock = socket.create_connection((host, int(port)))
                    break
                self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                self.sock.connect(path)
                break
            except OSError:
                self.sock.close()
                if time.monotonic() > end:
                    fail(f"{name}: cannot connect to {path}")
                time.sleep(0.05)
        self.sock.settimeout(DEADLINE_S)
        self.greeting = self.recv()
        if "QMP" not in self.greeting:
            fail(f"{name}: no greeting: {self.greeting}")
        if negotiate:
            self.check("qmp_capabilities")

    def note(self, arrow, text):
        if self.log:
            self.log.write(f"{self.name} {arrow} {text}\n")
            self.log.flush()

    def send_raw(self, data):
        self.sock.sendall(data)

    def recv(self):
        """The next message (reply or event), within the deadline."""
        while b"\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError(f"{self.name}: connection closed")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        text = line.decode().rstrip("\r")
        self.note("<-", text)
        return json.loads(text)

    def reply(self):
        """The next reply; events met on the way are kept."""
        while True:
            msg = self.recv()
            if "event" not in msg:
                return msg
            self.events.append(msg)

    def execute(self, name, args=None, **extra):
        req = {"execute": name}
        if args is not None:
            req["arguments"] = args
        req.update(extra)
        text = json.dumps(req)
        self.note("->", text)
        self.send_raw(text.encode() + b"\n")
        return self.reply()

    def check(self, name, args=None):
        reply = self.execute(name, args)
        if "return" not in reply:
            fail(f"{self.name}: {name} {args}: {reply}")
        return reply["return"]

    def wait_event(self, name, data=None, timeout=DEADLINE_S):
        """Waits for event NAME (with DATA, if given); earlier events stay
        in self.events."""
        end = time.monotonic() + timeout
        while True:
            for e in self.events:
                if e["event"] == name and (data is None or
                                           e.get("data") == data):
                    return e
            if time.monotonic() > end:
                fail(f"{self.name}: no {name} {data or ''} event; got "
                     f"{[(e['event'], e.get('data')) for e in self.events]}")
            self.sock.settimeout(max(0.01, end - time.monotonic()))
            try:
                msg = self.recv()
            except socket.timeout:
                continue
            finally:
                self.sock.settimeout(DEADLINE_S)
            if "event" in msg:
                self.events.append(msg)

    def statuses(self):
        return [e["data"]["status"] for e in self.events
                if e["event"] == "MIGRATION"]


def poll(what, fn, timeout=DEADLINE_S):
    """Calls fn until it returns a true value, at most timeout seconds;
    each call is a QMP round trip, so this waits on the server, not a
    clock."""
    end = time.monotonic() + timeout
    while True:
        v = fn()
        if v:
            return v
        if time.monotonic() > end:
            fail(f"timed out waiting for {what}")
        time.sleep(0.02)


def dest_port(dst):
    def addr():
        info = dst.check("query-migrate")
        sa = info.get("socket-address")
        return sa[0] if sa else None
    sa = poll("the destination's socket-address", addr)
    if sa["type"] != "inet" or sa["host"] != "127.0.0.1":
        fail(f"socket-address: {sa}")
    return sa["port"]


def setup_both(src, dst, method, channels, pki):
    """The capabilities and parameters QEMU's tests set on both sides."""
    for side in (src, dst):
        caps = {c["capability"]: c["state"]
                for c in side.check("query-migrate-capabilities")}
        if "multifd" not in caps or "events" not in caps:
            fail(f"capabilities: {caps}")
        side.check("migrate-set-capabilities", {"capabilities": [
            {"capability": "events", "state": True},
            {"capability": "multifd", "state": True}]})
        params = {"multifd-channels": channels,
                  "multifd-compression": method}
        if method == "zstd":
            params["multifd-zstd-level"] = 2
        if method == "qatzip":
            params["multifd-qatzip-level"] = 2
        side.check("migrate-set-parameters", params)
        got = side.check("query-migrate-parameters")
        for k, v in params.items():
            if got.get(k) != v:
                fail(f"{side.name}: {k} is {got.get(k)}, set {v}")
        if pki:
            role = "server" if side is dst else "client"
            side.check("object-add", {
                "qom-type": "tls-creds-x509", "id": "tlscreds0",
                "endpoint": role, "dir": f"{pki}/{role}",
                "verify-peer": True})
            side.check("migrate-set-parameters", {"tls-creds": "tlscreds0"})
    if pki:
        src.check("migrate-set-parameters", {"tls-hostname": "localhost"})


def scenario_migrate(src_path, dst_path, method, channels, pki, log_path):
    pki = None if pki == "-" else pki
    with open(log_path, "w") as log:
        src = QMP(src_path, "src", log)
        dst = QMP(dst_path, "dst", log)
        ver = src.check("query-version")
        if ver["qemu"]["major"] < 9 or "ramflow" not in ver["package"]:
            fail(f"query-version: {ver}")
        cmds = {c["name"] for c in src.check("query-commands")}
        for c in ("migrate", "migrate-incoming", "query-migrate",
                  "migrate_cancel", "migrate-set-parameters", "stop", "cont",
                  "quit"):
            if c not in cmds:
                fail(f"query-commands lacks {c}")
        if dst.check("query-status")["status"] != "inmigrate":
            fail("destination not inmigrate")
        if not src.check("query-status")["running"]:
            fail("source not running")
        setup_both(src, dst, method, int(channels), pki)
        dst.check("migrate-incoming", {"uri": "tcp:127.0.0.1:0"})
        port = dest_port(dst)
        # QEMU 9's channels form on the source.
        src.check("migrate", {"channels": [{
            "channel-type": "main",
            "addr": {"transport": "socket", "type": "inet",
                     "host": "127.0.0.1", "port": port}}]})
        # downtime-limit changes live, as QEMU's tests do mid-migration.
        src.check("migrate-set-parameters", {"downtime-limit": 500})

        def completed():
            st = src.check("query-migrate")
            if st.get("status") == "failed":
                fail(f"source failed: {st.get('error-desc')}")
            return st if st.get("status") == "completed" else None
        info = poll("completed on the source", completed)
        # QEMU's MigrationStats: every member with its JSON type.
        for k in ("transferred", "remaining", "total", "duplicate", "normal",
                  "normal-bytes", "pages-per-second", "dirty-sync-count",
                  "dirty-pages-rate", "precopy-bytes"):
            if not isinstance(info["ram"].get(k), int):
                fail(f"query-migrate ram.{k} not an integer: {info}")
        if not isinstance(info["ram"].get("mbps"), (int, float)):
            fail(f"query-migrate ram.mbps not a number: {info}")
        for k in ("total-time", "downtime", "setup-time"):
            if not isinstance(info.get(k), int):
                fail(f"query-migrate {k} not an integer: {info}")
        src.wait_event("MIGRATION", {"status": "completed"})
        src.wait_event("STOP")
        src.wait_event("MIGRATION_PASS", {"pass": 1})
        if src.statuses()[:2] != ["setup", "active"] or \
                src.statuses()[-1] != "completed":
            fail(f"source MIGRATION events: {src.statuses()}")
        dst.wait_event("MIGRATION", {"status": "completed"})
        dst.wait_event("RESUME")
        if dst.statuses()[-1] != "completed":
            fail(f"destination MIGRATION events: {dst.statuses()}")
        if info["x-ramflow"]["method"] != method:
            fail(f"method: {info['x-ramflow']}")
        sec = info["x-ramflow"]["security"]
        if bool(pki) != sec.startswith("TLS"):
            fail(f"security: {sec}")
        st = dst.check("query-status")
        if st != {"running": True, "status": "running"}:
            fail(f"destination status {st}")
        if src.check("query-status")["status"] != "postmigrate":
            fail("source not postmigrate")
        g = dst.check("x-ramflow-query-guest", {"check": True})
        if not g.get("pattern-ok"):
            fail(f"destination guest: {g}")
        for side in (src, dst):
            side.check("quit")
            side.wait_event("SHUTDOWN")
        print(f"ok: {method} {channels}ch {'TLS' if pki else 'plain'}: "
              f"{info['total-time']} ms, downtime {info['downtime']} ms, "
              f"{sec}; destination: {g['summary']}")


# QEMU 10's replies for the same input (qapi/qmp-dispatch.c,
# qapi/qobject-input-visitor.c, migration/options.c, monitor/qmp-cmds.c),
# field by field.  Checked against QEMU 10.0.2 (Debian bookworm-backports,
# qemu-system-x86_64 -machine none -qmp ...): every reply below is QEMU's
# byte for byte, except the one marked "ramflow:" (QEMU accepts
# postcopy-ram; ramflow has no postcopy and refuses to pretend).
def GE(desc):
    return {"error": {"class": "GenericError", "desc": desc}}


def CNF(desc):
    return {"error": {"class": "CommandNotFound", "desc": desc}}


ERROR_CASES = [
    (b'{"execute": "query-status"}',
     CNF("Expecting capabilities negotiation with 'qmp_capabilities'")),
    (b'{"execute": "qmp_capabilities", "id": "neg"}',
     {"return": {}, "id": "neg"}),
    (b'{"execute": "qmp_capabilities"}',
     CNF("Capabilities negotiation is already complete, command ignored")),
    (b'{"execute": "foo", "id": 7}',
     {"error": {"class": "CommandNotFound",
                "desc": "The command foo has not been found"}, "id": 7}),
    (b'[1, 2]', GE("QMP input must be a JSON object")),
    (b'{"arguments": {}}', GE("QMP input lacks member 'execute'")),
    (b'{"execute": 1}', GE("QMP input member 'execute' must be a string")),
    (b'{"execute": "stop", "arguments": []}',
     GE("QMP input member 'arguments' must be an object")),
    (b'{"execute": "stop", "bogus": 1}',
     GE("QMP input member 'bogus' is unexpected")),
    (b'{"execute": "query-status", "arguments": {"x": 1}}',
     GE("Parameter 'x' is unexpected")),
    (b'{"execute": "migrate-set-parameters", "arguments": '
     b'{"multifd-channels": 0}}',
     GE("Parameter 'multifd_channels' expects a value between 1 and 255")),
    (b'{"execute": "migrate-set-parameters", "arguments": '
     b'{"multifd-channels": 256}}',
     GE("Parameter 'multifd-channels' expects uint8_t")),
    (b'{"execute": "migrate-set-parameters", "arguments": '
     b'{"multifd-zlib-level": 10}}',
     GE("Parameter 'multifd_zlib_level' expects a value between 0 and 9")),
    (b'{"execute": "migrate-set-parameters", "arguments": '
     b'{"multifd-zstd-level": 21}}',
     GE("Parameter 'multifd_zstd_level' expects a value between 0 and 20")),
    (b'{"execute": "migrate-set-parameters", "arguments": '
     b'{"downtime-limit": 2000001}}',
     GE("Parameter 'downtime_limit' expects an integer in the range of 0 "
        "to (2000 * 1000) ms")),
    (b'{"execute": "migrate-set-parameters", "arguments": '
     b'{"multifd-channels": "4"}}',
     GE("Parameter 'multifd-channels' expects uint64")),
    (b'{"execute": "migrate-set-parameters", "arguments": '
     b'{"downtime-limit": true}}',
     GE("Parameter 'downtime-limit' expects uint64")),
    (b'{"execute": "migrate-set-parameters", "arguments": '
     b'{"multifd-channels": -1}}',
     GE("Parameter 'multifd-channels' expects uint8_t")),
    (b'{"execute": "migrate-set-parameters", "arguments": '
     b'{"multifd-compression": 5}}',
     GE("Invalid parameter type for 'multifd-compression', expected: "
        "string")),
    (b'{"execute": "migrate-set-parameters", "arguments": '
     b'{"tls-creds": 5}}',
     GE("Invalid parameter type for 'tls-creds', expected: StrOrNull")),
    (b'{"execute": "migrate-set-parameters", "arguments": '
     b'{"multifd-compression": "lz4"}}',
     GE("Parameter 'multifd-compression' does not accept value 'lz4'")),
    (b'{"execute": "migrate-set-parameters", "arguments": {"foo": 1}}',
     GE("Parameter 'foo' is unexpected")),
    (b'{"execute": "migrate-set-capabilities", "arguments": '
     b'{"capabilities": [{"capability": "foo", "state": true}]}}',
     GE("Parameter 'capability' does not accept value 'foo'")),
    (b'{"execute": "migrate-set-capabilities", "arguments": '
     b'{"capabilities": [{"capability": "multifd", "state": "yes"}]}}',
     GE("Invalid parameter type for 'capabilities[0].state', expected: "
        "boolean")),
    (b'{"execute": "migrate-set-capabilities", "arguments": '
     b'{"capabilities": [{"capability": "multifd"}]}}',
     GE("Parameter 'capabilities[0].state' is missing")),
    (b'{"execute": "migrate-set-capabilities", "arguments": '
     b'{"capabilities": {}}}',
     GE("Invalid parameter type for 'capabilities', expected: array")),
    (b'{"execute": "migrate-set-capabilities", "arguments": {}}',
     GE("Parameter 'capabilities' is missing")),
    (b'{"execute": "migrate-set-capabilities", "arguments": '
     b'{"capabilities": [{"capability": "postcopy-ram", "state": true}]}}',
     GE("Capability 'postcopy-ram' is not supported by ramflow")),  # ramflow:
    (b'{"execute": "migrate-incoming", "arguments": '
     b'{"uri": "tcp:127.0.0.1:0"}}',
     GE("'-incoming' was not specified on the command line")),
    (b'{"execute": "migrate", "arguments": {}}',
     GE("need either 'uri' or 'channels' argument")),
    (b'{"execute": "migrate_cancel"}', {"return": {}}),
    (b'{"execute": "human-monitor-command", "arguments": '
     b'{"command-line": "info status"}}',
     {"return": "VM status: running\r\n"}),
    (b'{"execute": "query-migrate"}', {"return": {}}),
    (b'{"execute": "migrate-set-parameters", "arguments": '
     b'{"multifd-channels": 8, "multifd-zlib-level": 99}}',
     GE("Parameter 'multifd_zlib_level' expects a value between 0 and 9")),
]


def scenario_errors(path):
    c = QMP(path, "errors", negotiate=False)
    for req, want in ERROR_CASES:
        c.send_raw(req + b"\n")
        got = c.reply()
        if got != want:
            fail(f"{req.decode()}:\n  got  {got}\n  want {want}")
    # The failed multi-parameter set applied nothing.
    if c.check("query-migrate-parameters")["multifd-channels"] != 2:
        fail("a refused migrate-set-parameters changed multifd-channels")
    # A request split into single bytes, with brackets and escaped quotes
    # inside its strings: framing follows JSON, not lines or braces.
    for b in b'{"execute": "query-status", "id": "a}\\"{]"}\n':
        c.send_raw(bytes([b]))
    got = c.reply()
    if got.get("id") != 'a}"{]' or got.get("return", {}).get("status") != \
            "running":
        fail(f"byte-split request: {got}")
    # stop / cont: STOP and RESUME, the status follows.
    c.check("stop")
    c.wait_event("STOP")
    if c.check("query-status") != {"running": False, "status": "paused"}:
        fail("stop: not paused")
    c.check("cont")
    c.wait_event("RESUME")
    if c.check("query-status") != {"running": True, "status": "running"}:
        fail("cont: not running")
    print(f"ok: {len(ERROR_CASES)} error replies match QEMU's; a byte-split "
          "request; stop/cont with STOP/RESUME")


def bad_clients(path):
    """Every kind of bad input; each gets an error or a closed socket."""
    c = QMP(path, "bad1")
    for raw in (b'{"execute": }', b'{"execute" "stop"}', b'nonsense',
                b'}', b'"string"', b'42'):
        c.send_raw(raw + b" \n")
        r = c.reply()
        if r.get("error", {}).get("class") != "GenericError":
            fail(f"{raw}: {r}")
    if c.check("query-status") is None:
        fail("no reply after bad input")
    # Oversized: 2 MiB inside an unfinished string: an error, then EOF.
    big = QMP(path, "big")
    try:
        big.send_raw(b'{"execute": "' + b"x" * (2 << 20))
    except OSError:
        pass
    try:
        r = big.reply()
        if "error" not in r:
            fail(f"oversized: {r}")
        big.reply()
        fail("oversized: connection stayed open")
    except (EOFError, ConnectionResetError):
        pass
    # Truncated: half a command, then the client vanishes.
    t = QMP(path, "trunc")
    t.send_raw(b'{"execute": "migrate-set-para')
    t.sock.close()
    # Out of order: commands before negotiation, on 20 clients at once.
    clients = [QMP(path, f"c{i}", negotiate=False) for i in range(20)]
    for cl in clients:
        cl.send_raw(b'{"execute": "query-migrate"}{"execute": '
                    b'"qmp_capabilities"}{"execute": "query-status"}')
    for cl in clients:
        r1, r2, r3 = cl.reply(), cl.reply(), cl.reply()
        if r1.get("error", {}).get("class") != "CommandNotFound" or \
                r2 != {"return": {}} or "return" not in r3:
            fail(f"{cl.name}: {r1} {r2} {r3}")
    for cl in clients:
        cl.sock.close()
    print("ok: malformed, oversized, truncated, out-of-order input and 20 "
          "clients answered")


def start_pair(src_path, dst_path, bandwidth):
    """Connects to both sides and starts a migration at bandwidth bytes/s
    (0: unlimited) to the destination's port 0."""
    src = QMP(src_path, "src")
    dst = QMP(dst_path, "dst")
    dst.check("migrate-incoming", {"uri": "tcp:127.0.0.1:0"})
    port = dest_port(dst)
    src.check("migrate-set-parameters", {"max-bandwidth": bandwidth})
    src.check("migrate", {"uri": f"tcp:127.0.0.1:{port}"})
    return src, dst


def scenario_robust(src_path, dst_path):
    # 2 MiB/s over a 32 MiB guest: the migration lasts while we abuse it.
    src, dst = start_pair(src_path, dst_path, 2 << 20)
    src.wait_event("MIGRATION", {"status": "active"})
    bad_clients(src_path)
    bad_clients(dst_path)
    st = src.check("query-migrate")["status"]
    if st != "active":
        fail(f"the migration did not survive the bad clients: {st}")
    src.check("migrate-set-parameters", {"max-bandwidth": 0})
    src.wait_event("MIGRATION", {"status": "completed"})
    dst.wait_event("RESUME")
    g = dst.check("x-ramflow-query-guest", {"check": True})
    if not g.get("pattern-ok"):
        fail(f"destination guest: {g}")
    print("ok: the migration ran on through it and completed after "
          "max-bandwidth was lifted live")
    src.check("quit")
    dst.check("quit")


def scenario_cancel(src_path, dst_path):
    src, dst = start_pair(src_path, dst_path, 4 << 20)
    src.wait_event("MIGRATION_PASS", {"pass": 1})
    src.check("migrate_cancel")
    src.wait_event("MIGRATION", {"status": "cancelled"})
    if "cancelling" not in src.statuses():
        fail(f"no cancelling: {src.statuses()}")
    info = src.check("query-migrate")
    if info["status"] != "cancelled":
        fail(f"query-migrate after cancel: {info}")
    st = src.check("query-status")
    if st != {"running": True, "status": "running"}:
        fail(f"source after cancel: {st}")
    before = src.check("x-ramflow-query-guest")["passes"]
    poll("the source guest to run on",
         lambda: src.check("x-ramflow-query-guest")["passes"] > before)
    g = src.check("x-ramflow-query-guest", {"check": True})
    if not g.get("pattern-ok"):
        fail(f"source guest after cancel: {g}")
    dst.wait_event("MIGRATION", {"status": "failed"})
    print(f"ok: cancelled mid-migration; source runs on: {g['summary']}")
    src.check("quit")
    dst.check("quit")


def scenario_files(src_path, dst_path):
    """Two `ramflow serve` processes holding memory files."""
    src, dst = start_pair(src_path, dst_path, 0)
    for side in (src, dst):
        side.wait_event("MIGRATION", {"status": "completed"})
        info = side.check("query-migrate")
        if info["status"] != "completed":
            fail(f"{side.name}: {info}")
    again = src.execute("migrate-incoming", {"uri": "tcp:127.0.0.1:0"})
    if again != GE("'-incoming' was not specified on the command line"):
        fail(f"serve source took migrate-incoming: {again}")
    print(f"ok: serve to serve: {info['total-time']} ms")
    src.check("quit")
    dst.check("quit")


def main():
    if len(sys.argv) < 2:
        fail(__doc__)
    name, args = sys.argv[1], sys.argv[2:]
    fn = {"migrate": scenario_migrate, "errors": scenario_errors,
          "robust": scenario_robust, "cancel": scenario_cancel,
          "files": scenario_files}.get(name)
    if not fn:
        fail(__doc__)
    try:
        fn(*args)
    except (EOFError, OSError, ValueError) as e:
        fail(f"{name}: {e}")


if __name__ == "__main__":
    main()
