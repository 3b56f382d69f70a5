//! PostgreSQL test databases (filled in with the store).
