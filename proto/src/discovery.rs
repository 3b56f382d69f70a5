//! What every tokenvault server exposes for ordinary gRPC tools: the health
//! service and server reflection (v1 and v1alpha), advertising only the
//! services that server serves. Any authenticated peer may call these.

/// The gRPC services every server exposes for discovery.
pub const DISCOVERY_SERVICES: [&str; 3] = [
    "grpc.health.v1.Health",
    "grpc.reflection.v1.ServerReflection",
    "grpc.reflection.v1alpha.ServerReflection",
];

/// A reflection builder advertising `service` and the discovery services;
/// call `build_v1()` or `build_v1alpha()` on it (newer tools ask v1, many
/// clients still v1alpha, so servers serve both).
pub fn reflection(service: &str) -> tonic_reflection::server::Builder<'static> {
    let builder = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(crate::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .with_service_name(service);
    DISCOVERY_SERVICES
        .into_iter()
        .fold(builder, |b, name| b.with_service_name(name))
}
