#!/usr/bin/env python3
"""Raw FastCGI client for scripts/capture/fastcgi.sh (python3 stdlib only).

Usage: fastcgi_client.py SOCKET OUT_PREFIX request SCRIPT_FILENAME QUERY_STRING BODY
       fastcgi_client.py SOCKET OUT_PREFIX get_values

Writes OUT_PREFIX.request.bin (the bytes sent) and OUT_PREFIX.response.bin (every byte
php-fpm answered, up to EOF). The request is built by hand here, independently of ferry's
encoder, so the captured bytes check ferry's decoder against a second implementation.
"""
import socket
import struct
import sys

VERSION = 1
BEGIN_REQUEST, PARAMS, STDIN, GET_VALUES = 1, 4, 5, 9
RESPONDER = 1


def record(rtype, request_id, content=b""):
    padding = (-len(content)) % 8
    header = struct.pack(">BBHHBB", VERSION, rtype, request_id, len(content), padding, 0)
    return header + content + b"\0" * padding


def nv_len(n):
    return bytes([n]) if n < 128 else struct.pack(">I", n | 0x80000000)


def pairs(items):
    return b"".join(nv_len(len(k)) + nv_len(len(v)) + k + v for k, v in items)


def request(script, query, body):
    params = [
        (b"GATEWAY_INTERFACE", b"FastCGI/1.0"),
        (b"SERVER_SOFTWARE", b"ferry/capture"),
        (b"REQUEST_METHOD", b"POST"),
        (b"SCRIPT_FILENAME", script.encode()),
        (b"SCRIPT_NAME", b"/worker.php"),
        (b"REQUEST_URI", b"/worker.php?" + query.encode()),
        (b"QUERY_STRING", query.encode()),
        (b"SERVER_PROTOCOL", b"HTTP/1.1"),
        (b"REMOTE_ADDR", b"127.0.0.1"),
        (b"SERVER_NAME", b"localhost"),
        (b"SERVER_PORT", b"80"),
        (b"CONTENT_TYPE", b"application/x-www-form-urlencoded"),
        (b"CONTENT_LENGTH", str(len(body)).encode()),
        (b"FERRY_SOURCE", b"capture"),
        (b"FERRY_KIND", b"amqp"),
        (b"FERRY_ATTEMPT", b"1"),
        (b"FERRY_QUEUE", b"commands"),
        (b"FERRY_MESSAGE_ID", b"capture-0001"),
        # One value longer than 127 bytes, so the capture has a 4-byte length.
        (b"FERRY_HEADER_X_TRACE", b"t" * 200),
    ]
    out = record(BEGIN_REQUEST, 1, struct.pack(">HB5x", RESPONDER, 0))
    out += record(PARAMS, 1, pairs(params)) + record(PARAMS, 1)
    if body:
        out += record(STDIN, 1, body)
    out += record(STDIN, 1)
    return out


def main():
    sock_path, prefix, kind = sys.argv[1:4]
    if kind == "request":
        script, query, body = sys.argv[4:7]
        data = request(script, query, body.encode())
    else:
        names = [(b"FCGI_MAX_CONNS", b""), (b"FCGI_MAX_REQS", b""), (b"FCGI_MPXS_CONNS", b"")]
        data = record(GET_VALUES, 0, pairs(names))
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(10)
    sock.connect(sock_path)
    sock.sendall(data)
    answer = b""
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            break
        answer += chunk
        # php-fpm answers GET_VALUES with one record and then waits: stop after it.
        if kind == "get_values" and len(answer) >= 8:
            _, _, _, length, padding, _ = struct.unpack(">BBHHBB", answer[:8])
            if len(answer) >= 8 + length + padding:
                break
    sock.close()
    with open(prefix + ".request.bin", "wb") as f:
        f.write(data)
    with open(prefix + ".response.bin", "wb") as f:
        f.write(answer)
    print(f"{prefix}: sent {len(data)} bytes, received {len(answer)}")


if __name__ == "__main__":
    main()
