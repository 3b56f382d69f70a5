"""Probes one network path for the network-split test, from whichever network
namespace it is run in (`ip netns exec NS python3 netns_probe.py ...`):

1. a plain TCP connection to ADDRESS (3 s limit);
2. grpc.health.v1.Health/Check over mutual TLS with the given certificate
   (5 s deadline).

Usage: netns_probe.py HOST:PORT CA CERT KEY
Prints one JSON object: {"tcp": "connected" | "<error>", "health": "SERVING" | "<gRPC code>"}.
"""
import errno
import json
import socket
import sys

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc


def main():
    address, ca, cert, key = sys.argv[1:5]
    host, port = address.rsplit(":", 1)
    result = {}
    try:
        with socket.create_connection((host, int(port)), timeout=3):
            result["tcp"] = "connected"
    except OSError as e:
        result["tcp"] = errno.errorcode.get(e.errno, "timeout" if isinstance(e, socket.timeout) else str(e))
    creds = grpc.ssl_channel_credentials(
        root_certificates=open(ca, "rb").read(),
        private_key=open(key, "rb").read(),
        certificate_chain=open(cert, "rb").read(),
    )
    with grpc.secure_channel(address, creds) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        try:
            reply = stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=5)
            result["health"] = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
        except grpc.RpcError as e:
            result["health"] = e.code().name
    print(json.dumps(result))


if __name__ == "__main__":
    main()
