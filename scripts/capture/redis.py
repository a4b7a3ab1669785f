#!/usr/bin/env python3
"""Captures real Redis 7 pub/sub bytes for tests/sans_io/resp_captured.rs.

Talks only to 127.0.0.1:6379, uses channel names unique to this run (then fixed in the
README so the test can assert them), and unsubscribes before closing. Writes raw reply
bytes, exactly as received, to tests/data/redis/<name>.resp; the commands sent are listed
in tests/data/redis/README.md.

Usage: python3 scripts/capture/redis.py   (from the repository root)
"""
import os
import socket
import time

HOST, PORT = "127.0.0.1", 6379
OUT = os.path.join(os.path.dirname(__file__), "..", "..", "tests", "data", "redis")
TAG = "ferry-capture"  # channels: ferry-capture.<variant>.chan / .p.*


def command(*args):
    out = b"*%d\r\n" % len(args)
    for arg in args:
        arg = arg if isinstance(arg, bytes) else str(arg).encode()
        out += b"$%d\r\n%s\r\n" % (len(arg), arg)
    return out


def read_until_quiet(sock, quiet=0.3):
    """Reads until the server has been silent for `quiet` seconds."""
    data = b""
    sock.settimeout(quiet)
    while True:
        try:
            chunk = sock.recv(65536)
        except socket.timeout:
            return data
        if not chunk:
            return data
        data += chunk


def capture(variant, hello3):
    chan = f"{TAG}.{variant}.chan".encode()
    pattern = f"{TAG}.{variant}.p.*".encode()
    pchan = f"{TAG}.{variant}.p.one".encode()
    sub = socket.create_connection((HOST, PORT))
    pub = socket.create_connection((HOST, PORT))
    files = {}
    try:
        if hello3:
            sub.sendall(command("HELLO", "3"))
            files["hello3"] = read_until_quiet(sub)
        sub.sendall(command("SUBSCRIBE", chan))
        sub.sendall(command("PSUBSCRIBE", pattern))
        files["subscribe"] = read_until_quiet(sub)
        pub.sendall(command("PUBLISH", chan, "hello from ferry"))
        pub.sendall(command("PUBLISH", pchan, b"\x00binary\r\npayload\xff"))
        read_until_quiet(pub)
        files["messages"] = read_until_quiet(sub)
        sub.sendall(command("PING"))
        sub.sendall(command("PING", "still there"))
        files["ping"] = read_until_quiet(sub)
        sub.sendall(command("UNSUBSCRIBE"))
        sub.sendall(command("PUNSUBSCRIBE"))
        sub.sendall(command("UNSUBSCRIBE"))
        files["unsubscribe"] = read_until_quiet(sub)
    finally:
        sub.close()
        pub.close()
    for name, data in files.items():
        path = os.path.join(OUT, f"{variant}-{name}.resp")
        with open(path, "wb") as f:
            f.write(data)
        print(f"{path}: {len(data)} bytes")


if __name__ == "__main__":
    os.makedirs(OUT, exist_ok=True)
    capture("resp2", hello3=False)
    capture("resp3", hello3=True)
