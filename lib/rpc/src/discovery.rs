//! What every tokenvault server exposes for ordinary gRPC tools: the health
//! service and server reflection (v1 and v1alpha), advertising only the
//! services that server serves. Any authenticated peer may call these.

/// The gRPC services every server exposes for discovery.
pub const DISCOVERY_SERVICES: [&str; 3] = [
    "grpc.health.v1.Health",
    "grpc.reflection.v1.ServerReflection",
    "grpc.reflection.v1alpha.ServerReflection",
];

/// A reflection builder advertising `services` and the discovery services;
/// call `build_v1()` or `build_v1alpha()` on it (newer tools ask v1, many
/// clients still v1alpha, so servers serve both).
pub fn reflection(services: &[&str]) -> tonic_reflection::server::Builder<'static> {
    let builder = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(tokenvault_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET);
    let builder = services
        .iter()
        .fold(builder, |b, name| b.with_service_name(*name));
    DISCOVERY_SERVICES
        .into_iter()
        .fold(builder, |b, name| b.with_service_name(name))
}

/// Binds `addr` and serves only `grpc.health.v1.Health` there, without TLS,
/// in a background task (abort its handle to stop it).
///
/// This is for orchestrators' probes (the kubelet's gRPC probe cannot present
/// a client certificate). It carries no tokens and no identities, and answers
/// with the same statuses as the health service on the mTLS port, since both
/// are fed by one reporter.
pub async fn spawn_plaintext_health(
    addr: std::net::SocketAddr,
    health: tonic_health::pb::health_server::HealthServer<
        impl tonic_health::pb::health_server::Health,
    >,
) -> std::io::Result<tokio::task::JoinHandle<()>> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
    tracing::info!(health_listen = %addr, "plaintext gRPC health listener serving");
    Ok(tokio::spawn(async move {
        // Unauthenticated: bound every call and connection.
        let served = tonic::transport::Server::builder()
            .timeout(std::time::Duration::from_secs(5))
            .concurrency_limit_per_connection(4)
            .max_concurrent_streams(4)
            .http2_keepalive_interval(Some(std::time::Duration::from_secs(30)))
            .http2_keepalive_timeout(Some(std::time::Duration::from_secs(10)))
            .add_service(health)
            .serve_with_incoming(incoming)
            .await;
        if let Err(e) = served {
            tracing::error!(error = %e, "plaintext health listener stopped");
        }
    }))
}
