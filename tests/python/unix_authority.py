"""Python gRPC (grpcio >= 1.57) against falco-api over the Unix socket.

grpcio sends the percent-encoded socket path as the HTTP/2 :authority, which the server's HTTP/2
layer rejects; the channel option grpc.default_authority=localhost fixes it. This script checks
both facts against a running server, with no generated stubs: the version call is made with raw
bytes and the reply's first field (the version string) is decoded by hand.

usage: python3 unix_authority.py /path/to/falco-api.sock EXPECTED_VERSION
"""
import sys

import grpc


def version(channel):
    call = channel.unary_unary(
        "/falco.version.service/version",
        request_serializer=lambda _: b"",
        response_deserializer=lambda raw: raw,
    )
    raw = call(None, timeout=10)
    # field 1 (version), wire type 2: tag 0x0a, then a one-byte length for short strings
    assert raw[0] == 0x0A, raw[:8]
    return raw[2 : 2 + raw[1]].decode()


def main():
    socket, expected = sys.argv[1], sys.argv[2]
    target = "unix://" + socket
    with grpc.insecure_channel(target, options=[("grpc.default_authority", "localhost")]) as ch:
        got = version(ch)
        assert got == expected, (got, expected)
        print("with grpc.default_authority=localhost: version", got)
    with grpc.insecure_channel(target) as ch:
        try:
            got = version(ch)
            print("without the option: version", got, "(the server accepted the default authority)")
        except grpc.RpcError as e:
            print("without the option: refused as expected:", e.code())


if __name__ == "__main__":
    main()
