"""A tokenvault worker in Python: asks get-service for an access token over
mutual TLS with its own worker certificate, using stubs generated from
proto/proto/tokenvault/v1/tokenvault.proto.

Generate the stubs once (grpcio-tools bundles protoc):

    python -m grpc_tools.protoc -I proto/proto --python_out=gen --grpc_python_out=gen \
        proto/proto/tokenvault/v1/tokenvault.proto

Usage: python_worker.py GEN_DIR ADDRESS CA CERT KEY ACCOUNT PROVIDER [MIN_TTL]
Prints JSON: {"code": "OK", "access_token": ..., "expires_at_unix": ...}
or {"code": "<gRPC status>", "details": ...}.
"""
import json
import sys


def main():
    gen, address, ca, cert, key, account, provider = sys.argv[1:8]
    min_ttl = int(sys.argv[8]) if len(sys.argv) > 8 else 0
    sys.path.insert(0, gen)
    import grpc
    from tokenvault.v1 import tokenvault_pb2, tokenvault_pb2_grpc

    credentials = grpc.ssl_channel_credentials(
        root_certificates=open(ca, "rb").read(),
        private_key=open(key, "rb").read(),
        certificate_chain=open(cert, "rb").read(),
    )
    with grpc.secure_channel(address, credentials) as channel:
        stub = tokenvault_pb2_grpc.GetServiceStub(channel)
        try:
            reply = stub.GetAccessToken(
                tokenvault_pb2.GetAccessTokenRequest(
                    account=account, provider=provider, min_ttl_seconds=min_ttl
                ),
                timeout=30,
            )
            result = {
                "code": "OK",
                "access_token": reply.access_token,
                "token_type": reply.token_type,
                "expires_at_unix": reply.expires_at_unix,
            }
        except grpc.RpcError as e:
            result = {"code": e.code().name, "details": e.details()}
    print(json.dumps(result))


if __name__ == "__main__":
    main()
