"""An ordinary gRPC client in another language (Python grpcio) discovers and
calls a tokenvault service over mutual TLS, knowing nothing but the address and
its own certificate:

1. grpc.health.v1.Health/Check answers SERVING;
2. server reflection lists tokenvault.v1.SetService and serves its descriptors;
3. a StoreRefreshTokenRequest built at run time from the reflected descriptors
   is sent, and the gRPC status code is printed.

Usage: grpc_discover.py ADDRESS CA CERT KEY
Prints one JSON object on stdout. Exits non-zero on any failure.
"""
import json
import sys

import grpc
from google.protobuf import descriptor_pool, message_factory
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)


def main():
    address, ca, cert, key = sys.argv[1:5]
    creds = grpc.ssl_channel_credentials(
        root_certificates=open(ca, "rb").read(),
        private_key=open(key, "rb").read(),
        certificate_chain=open(cert, "rb").read(),
    )
    with grpc.secure_channel(address, creds) as channel:
        grpc.channel_ready_future(channel).result(timeout=10)
        health = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=""), timeout=10
        )
        database = ProtoReflectionDescriptorDatabase(channel)
        services = sorted(database.get_services())
        pool = descriptor_pool.DescriptorPool(database)
        service = pool.FindServiceByName("tokenvault.v1.SetService")
        methods = sorted(m.name for m in service.methods)
        method = service.FindMethodByName("StoreRefreshToken")
        request_class = message_factory.GetMessageClass(method.input_type)
        response_class = message_factory.GetMessageClass(method.output_type)
        request = request_class(account="python-client", provider="oidc", sealed_token="x.y.z")
        call = channel.unary_unary(
            "/tokenvault.v1.SetService/StoreRefreshToken",
            request_serializer=lambda m: m.SerializeToString(),
            response_deserializer=response_class.FromString,
        )
        try:
            call(request, timeout=10)
            code, details = "OK", ""
        except grpc.RpcError as e:
            code, details = e.code().name, e.details()
    print(
        json.dumps(
            {
                "health": health_pb2.HealthCheckResponse.ServingStatus.Name(health.status),
                "services": services,
                "methods": methods,
                "store_code": code,
                "store_details": details,
            }
        )
    )


if __name__ == "__main__":
    main()
