"""Sends one unary gRPC call whose request body is raw bytes, not a message,
over mutual TLS with grpcio: what a broken or hostile client sends.

Usage: raw_call.py ADDRESS CA CERT KEY METHOD_PATH HEX_BYTES
Prints JSON: {"code": "<gRPC status name>", "details": ...}.
"""
import json
import sys


def main():
    address, ca, cert, key, path, body = sys.argv[1:7]
    import grpc

    credentials = grpc.ssl_channel_credentials(
        root_certificates=open(ca, "rb").read(),
        private_key=open(key, "rb").read(),
        certificate_chain=open(cert, "rb").read(),
    )
    with grpc.secure_channel(address, credentials) as channel:
        # No serializers: the request goes out as the bytes given.
        call = channel.unary_unary(path)
        try:
            call(bytes.fromhex(body), timeout=30)
            result = {"code": "OK", "details": ""}
        except grpc.RpcError as e:
            result = {"code": e.code().name, "details": e.details()}
    print(json.dumps(result))


if __name__ == "__main__":
    main()
