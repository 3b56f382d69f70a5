//! set-service behaviour (filled in with the store).
