#!/usr/bin/env python3
"""Writes seed inputs for the amqp fuzz target into fuzz/corpus/amqp/ (named by sha1):
valid frames of every kind, short content streams, the captured connection.start, and
hostile variants. Frames stay within the fuzz target's frame_max of 512."""
import hashlib
import os
import struct

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
OUT = os.path.join(ROOT, "fuzz", "corpus", "amqp")


def ss(b):
    return struct.pack(">B", len(b)) + b


def ls(b):
    return struct.pack(">I", len(b)) + b


def frame(kind, ch, payload, end=b"\xce"):
    return struct.pack(">BHI", kind, ch, len(payload)) + payload + end


def m(cls, mid, args=b"", ch=1):
    return frame(1, ch, struct.pack(">HH", cls, mid) + args)


def header(size, props=b"\x00\x00", ch=1, cls=60):
    return frame(2, ch, struct.pack(">HHQ", cls, 0, size) + props, )


TABLE = ls(ss(b"a") + b"t\x01" + ss(b"b") + b"s\xff\xfe" + ss(b"c") + b"I\x00\x00\x00\x05"
           + ss(b"d") + b"l" + b"\x00" * 7 + b"\x09" + ss(b"e") + b"S" + ls(b"str")
           + ss(b"f") + b"F" + ls(ss(b"g") + b"V") + ss(b"h") + b"A" + ls(b"u\x00\x01" + b"x" + ls(b"\x01"))
           + ss(b"i") + b"D\x02\x00\x00\x01\x00" + ss(b"j") + b"T" + b"\x00" * 8
           + ss(b"k") + b"f\x3f\x80\x00\x00" + ss(b"l") + b"d" + b"\x00" * 8 + ss(b"m") + b"L" + b"\xff" * 8
           + ss(b"n") + b"b\x80" + ss(b"o") + b"B\x80" + ss(b"p") + b"i\xff\xff\xff\xff")
PROPS = (struct.pack(">H", 0xFFFC) + ss(b"application/json") + ss(b"gzip") + ls(ss(b"x-ferry-attempt") + b"I\x00\x00\x00\x02")
         + b"\x02\x05" + ss(b"corr") + ss(b"reply") + ss(b"60000") + ss(b"mid") + b"\x00" * 8 + ss(b"type")
         + ss(b"guest") + ss(b"app") + ss(b""))
DELIVER = ss(b"ctag") + struct.pack(">Q", 7) + b"\x01" + ss(b"ex") + ss(b"rk")

seeds = {
    "heartbeat": frame(8, 0, b""),
    "tune": m(10, 30, struct.pack(">HIH", 2047, 131072, 60), ch=0),
    "tune_ok": m(10, 31, struct.pack(">HIH", 2047, 4096, 30), ch=0),
    "open": m(10, 40, ss(b"/") + ss(b"") + b"\x00", ch=0),
    "open_ok": m(10, 41, ss(b""), ch=0),
    "close": m(10, 50, struct.pack(">H", 320) + ss(b"CONNECTION_FORCED") + struct.pack(">HH", 0, 0), ch=0),
    "close_ok": m(10, 51, ch=0),
    "blocked": m(10, 60, ss(b"low on memory"), ch=0),
    "unblocked": m(10, 61, ch=0),
    "start_ok": m(10, 11, TABLE + ss(b"PLAIN") + ls(b"\x00guest\x00guest") + ss(b"en_US"), ch=0),
    "secure": m(10, 20, ls(b"challenge"), ch=0),
    "secure_ok": m(10, 21, ls(b"resp"), ch=0),
    "channel_open": m(20, 10, ss(b"")),
    "channel_open_ok": m(20, 11, ls(b"")),
    "channel_flow": m(20, 20, b"\x01") + m(20, 21, b"\x00"),
    "channel_close": m(20, 40, struct.pack(">H", 406) + ss(b"PRECONDITION_FAILED - unknown delivery tag 1") + struct.pack(">HH", 60, 80)) + m(20, 41),
    "exchange_declare": m(40, 10, b"\x00\x00" + ss(b"ex") + ss(b"topic") + b"\x1f" + TABLE) + m(40, 11),
    "queue_declare": m(50, 10, b"\x00\x00" + ss(b"q") + b"\x02" + ls(ss(b"x-message-ttl") + b"l" + struct.pack(">q", 1000) + ss(b"x-dead-letter-exchange") + b"S" + ls(b""))),
    "queue_declare_ok": m(50, 11, ss(b"q") + struct.pack(">II", 5, 1)),
    "queue_bind": m(50, 20, b"\x00\x00" + ss(b"q") + ss(b"ex") + ss(b"rk") + b"\x00" + ls(b"")) + m(50, 21),
    "qos": m(60, 10, struct.pack(">IH", 0, 4) + b"\x00") + m(60, 11),
    "consume": m(60, 20, b"\x00\x00" + ss(b"q") + ss(b"ferry") + b"\x0f" + ls(b"")) + m(60, 21, ss(b"ferry")),
    "cancel": m(60, 30, ss(b"ferry") + b"\x01") + m(60, 31, ss(b"ferry")),
    "acks": m(60, 80, struct.pack(">Q", 1) + b"\x01") + m(60, 90, struct.pack(">Q", 2) + b"\x00") + m(60, 120, struct.pack(">Q", 3) + b"\x03"),
    "confirm": m(85, 10, b"\x00") + m(85, 11),
    "get": m(60, 70, b"\x00\x00" + ss(b"q") + b"\x01") + m(60, 72, ss(b"")) + m(60, 111),
    "deliver_one_body": m(60, 60, DELIVER) + header(5, PROPS) + frame(3, 1, b"hello"),
    "deliver_empty_body": m(60, 60, DELIVER) + header(0) + m(60, 80, struct.pack(">Q", 7) + b"\x00"),
    "deliver_multi_body": m(60, 60, DELIVER) + header(600) + frame(3, 1, b"a" * 300) + frame(3, 1, b"b" * 300),
    "return_then_get_ok": m(60, 50, struct.pack(">H", 312) + ss(b"NO_ROUTE") + ss(b"") + ss(b"q")) + header(3) + frame(3, 1, b"abc")
    + m(60, 71, struct.pack(">Q", 1) + b"\x00" + ss(b"") + ss(b"q") + struct.pack(">I", 0)) + header(1) + frame(3, 1, b"z"),
    "publish": m(60, 40, b"\x00\x00" + ss(b"") + ss(b"q") + b"\x01") + header(2, PROPS) + frame(3, 1, b"hi"),
    "interleaved_channels": m(60, 60, DELIVER, ch=1) + m(60, 60, DELIVER, ch=2) + header(1, ch=2) + header(1, ch=1) + frame(3, 1, b"1") + frame(3, 2, b"2"),
    # hostile
    "bad_end": frame(1, 0, struct.pack(">HH", 10, 51), end=b"\xcd"),
    "too_large": struct.pack(">BHI", 3, 1, 0xFFFFFFFF),
    "over_frame_max": frame(3, 1, b"x" * 600),
    "unknown_type": b"\x04\x00\x00\x00\x00\x00\x00\xce",
    "heartbeat_channel_5": frame(8, 5, b""),
    "method_short": frame(1, 0, b"\x00\x0a\x00"),
    "unknown_method": m(60, 61),
    "shortstr_overrun": m(60, 21, b"\xc8abc"),
    "longstr_huge": m(10, 21, b"\xff\xff\xff\xffx"),
    "table_overrun": m(50, 10, b"\x00\x00\x01q\x00\x00\x00\x00\x64ab"),
    "table_unknown_type": m(50, 10, b"\x00\x00\x01q\x00" + ls(ss(b"k") + b"Z\x00")),
    "nesting_bomb": b"".join([]) ,
    "body_size_huge": m(60, 60, DELIVER) + header(1 << 63),
    "body_overrun": m(60, 60, DELIVER) + header(2) + frame(3, 1, b"abc"),
    "continuation": m(60, 60, DELIVER) + header(0, b"\x80\x01\x00"),
    "trailing": m(60, 80, struct.pack(">Q", 1) + b"\x00\xaa"),
    "method_mid_content": m(60, 60, DELIVER) + header(4) + frame(3, 1, b"ab") + m(60, 80, struct.pack(">Q", 1) + b"\x00"),
    "body_without_header": frame(3, 1, b"orphan"),
    "protocol_header": b"AMQP\x00\x00\x09\x01",
    "server_wants_1_0": b"AMQP\x03\x01\x00\x00",
}
# A table nesting bomb (as the whole input, which check() also parses as a table).
inner = b""
for _ in range(40):
    inner = ss(b"k") + b"F" + ls(inner)
seeds["nesting_bomb"] = inner
arr = b""
for _ in range(40):
    arr = b"A" + ls(arr)
seeds["array_bomb"] = m(50, 10, b"\x00\x00\x01q\x00" + ls(ss(b"k") + arr))
seeds["raw_table"] = TABLE[4:]
seeds["raw_properties"] = PROPS

start = os.path.join(ROOT, "tests", "data", "amqp", "connection_start.bin")
if os.path.exists(start):
    seeds["captured_start"] = open(start, "rb").read()

os.makedirs(OUT, exist_ok=True)
for name, data in seeds.items():
    assert len(data) < 4096, name
    digest = hashlib.sha1(data).hexdigest()
    with open(os.path.join(OUT, digest), "wb") as f:
        f.write(data)
print("%d seeds in %s" % (len(seeds), OUT))
