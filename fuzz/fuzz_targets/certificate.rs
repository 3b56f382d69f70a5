//! A peer's DER certificate, as the handshake and the authorization layer
//! read it: its SPIFFE ID, its (issuer, serial) and its notAfter.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tokenvault_tls::{CertRef, SpiffeId, not_after_unix};

fuzz_target!(|der: &[u8]| {
    let id = SpiffeId::from_certificate_der(der);
    let cert = CertRef::of_certificate(der);
    let not_after = not_after_unix(der);
    // One X.509 parser behind all three: a certificate it reads at all is
    // read by each.
    assert_eq!(cert.is_ok(), not_after.is_ok());
    if let Ok(id) = id {
        assert!(cert.is_ok());
        assert_eq!(id.to_string().parse::<SpiffeId>().ok(), Some(id));
    }
});
