#!/usr/bin/env python3
"""Capture real AMQP 0-9-1 frames from the local RabbitMQ (127.0.0.1:5672, guest/guest)
into tests/data/amqp/, for tests/sans_io/amqp_captured.rs.

A minimal raw-socket client (stdlib only): handshake with frame_max 4096 so the server
splits a ~10 KB body over several body frames, declare a uniquely named auto-delete
queue, publish one message with many properties to it, consume it, record the raw bytes
of basic.deliver + content header + body frames, then delete the queue and close.

Writes:
  connection_start.bin   the server's connection.start frame (real server properties)
  deliver_multiframe.bin basic.deliver, the content header and every body frame
  published_body.bin     the body we published (what the frames must reassemble to)
"""
import os
import socket
import struct
import sys
import time

HOST, PORT = "127.0.0.1", 5672
FRAME_MAX = 4096
OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests", "data", "amqp")
QUEUE = b"ferry-capture-%d-%d" % (os.getpid(), int(time.time()))


def shortstr(b):
    return struct.pack(">B", len(b)) + b


def longstr(b):
    return struct.pack(">I", len(b)) + b


def table(entries):
    raw = b""
    for key, tag, value in entries:
        raw += shortstr(key) + tag
        if tag == b"S":
            raw += longstr(value)
        elif tag == b"t":
            raw += struct.pack(">B", 1 if value else 0)
        elif tag == b"I":
            raw += struct.pack(">i", value)
        elif tag == b"l":
            raw += struct.pack(">q", value)
        elif tag == b"F":
            raw += longstr(value)
        else:
            raise ValueError(tag)
    return longstr(raw)


def frame(kind, channel, payload):
    return struct.pack(">BHI", kind, channel, len(payload)) + payload + b"\xce"


def method(channel, class_id, method_id, args=b""):
    return frame(1, channel, struct.pack(">HH", class_id, method_id) + args)


class Conn:
    def __init__(self):
        self.sock = socket.create_connection((HOST, PORT), timeout=10)
        self.buf = b""

    def send(self, data):
        self.sock.sendall(data)

    def read_frame(self):
        """Returns (type, channel, payload, raw bytes of the frame)."""
        while True:
            if len(self.buf) >= 7:
                kind, channel, size = struct.unpack(">BHI", self.buf[:7])
                if len(self.buf) >= size + 8:
                    raw = self.buf[: size + 8]
                    self.buf = self.buf[size + 8 :]
                    assert raw[-1] == 0xCE, "bad frame end"
                    return kind, channel, raw[7:-1], raw
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError("server closed the connection")
            self.buf += chunk

    def expect_method(self, class_id, method_id, skip=()):
        while True:
            kind, channel, payload, raw = self.read_frame()
            if kind == 8:
                continue
            got = struct.unpack(">HH", payload[:4])
            if got in skip:
                continue
            if got != (class_id, method_id):
                raise RuntimeError("expected %s, got %s: %r" % ((class_id, method_id), got, payload))
            return payload, raw


def main():
    os.makedirs(OUT, exist_ok=True)
    c = Conn()
    c.send(b"AMQP\x00\x00\x09\x01")
    _, start_raw = c.expect_method(10, 10)
    caps = table([(b"consumer_cancel_notify", b"t", True), (b"publisher_confirms", b"t", True)])[4:]
    client_props = table([(b"product", b"S", b"ferry-capture"), (b"capabilities", b"F", caps)])
    c.send(method(0, 10, 11, client_props + shortstr(b"PLAIN") + longstr(b"\x00guest\x00guest") + shortstr(b"en_US")))
    tune, _ = c.expect_method(10, 30)
    channel_max, _server_frame_max, heartbeat = struct.unpack(">HIH", tune[4:12])
    c.send(method(0, 10, 31, struct.pack(">HIH", channel_max, FRAME_MAX, 0)))
    c.send(method(0, 10, 40, shortstr(b"/") + shortstr(b"") + b"\x00"))
    c.expect_method(10, 41)
    c.send(method(1, 20, 10, shortstr(b"")))
    c.expect_method(20, 11)
    # queue.declare: ticket, queue, bits (auto-delete), arguments
    c.send(method(1, 50, 10, struct.pack(">H", 0) + shortstr(QUEUE) + b"\x08" + table([])))
    c.expect_method(50, 11)
    try:
        body = bytes((i * 7 + 3) % 251 for i in range(10 * 1024))
        headers = table([(b"x-ferry-attempt", b"I", 2), (b"trace", b"S", b"abc-123"), (b"big", b"l", 1 << 40)])
        flags = (1 << 15) | (1 << 13) | (1 << 12) | (1 << 11) | (1 << 10) | (1 << 9) | (1 << 7) | (1 << 6) | (1 << 5) | (1 << 3)
        props = struct.pack(">H", flags)
        props += shortstr(b"application/json") + headers + b"\x02" + b"\x05"
        props += shortstr(b"corr-42") + shortstr(b"reply.queue") + shortstr(b"msg-0001")
        props += struct.pack(">Q", 1700000000) + shortstr(b"job.created") + shortstr(b"capture-app")
        header = struct.pack(">HHQ", 60, 0, len(body)) + props
        publish = method(1, 60, 40, struct.pack(">H", 0) + shortstr(b"") + shortstr(QUEUE) + b"\x00")
        frames = publish + frame(2, 1, header)
        for i in range(0, len(body), FRAME_MAX - 8):
            frames += frame(3, 1, body[i : i + FRAME_MAX - 8])
        c.send(frames)
        # basic.consume with no-ack so the queue empties.
        c.send(method(1, 60, 20, struct.pack(">H", 0) + shortstr(QUEUE) + shortstr(b"ferry-capture") + b"\x02" + table([])))
        c.expect_method(60, 21)
        _, deliver_raw = c.expect_method(60, 60)
        captured = deliver_raw
        received = 0
        kind, _, payload, raw = c.read_frame()
        assert kind == 2, kind
        captured += raw
        while received < len(body):
            kind, _, payload, raw = c.read_frame()
            assert kind == 3, kind
            received += len(payload)
            captured += raw
        assert received == len(body)
    finally:
        # queue.delete (50, 40): ticket, queue, bits
        c.send(method(1, 50, 40, struct.pack(">H", 0) + shortstr(QUEUE) + b"\x00"))
        # Deleting the queue cancels our consumer: the server says so with basic.cancel.
        c.expect_method(50, 41, skip={(60, 30)})
        c.send(method(0, 10, 50, struct.pack(">H", 200) + shortstr(b"bye") + struct.pack(">HH", 0, 0)))
        c.expect_method(10, 51, skip={(60, 30)})
        c.sock.close()
    for name, data in [("connection_start.bin", start_raw), ("deliver_multiframe.bin", captured), ("published_body.bin", body)]:
        with open(os.path.join(OUT, name), "wb") as f:
            f.write(data)
        print("wrote %s (%d bytes)" % (name, len(data)), file=sys.stderr)


if __name__ == "__main__":
    main()
