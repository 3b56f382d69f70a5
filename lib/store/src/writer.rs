//! The write side (set-service): appends sealed token versions, tombstones and status records.
//!
//! Holds sealed tokens only in flight (as arguments); never a plaintext token, and never reads a
//! stored sealed token back (on PostgreSQL its role cannot). Every change of an account's state
//! is one transaction with its account event ([`crate::events`]), so nothing is ever
//! half-written and no change goes without its event.

use sha2::{Digest, Sha256};

use crate::db::{
    self, Db, Role, Sql, check_key, check_kid, check_metadata, check_sealed_token, on_db,
};
use crate::events::{Change, INSERT_EXPIRY, INSERT_METADATA, append_event, begin_on_key};
use crate::types::{
    DisconnectOutcome, MAX_SHARED_SCOPES_LEN, MAX_STATUS_REASON_LEN, MAX_TOKEN_TYPE_LEN,
    ResealOutcome, RevocationOutcome, SharedAccessToken, StoreOutcome, TokenFacts, TokenStatus,
};
use crate::{Result, StoreError};

const INSERT_TOKEN: Sql = Sql::both(
    "INSERT INTO token_events (account, provider, kind, sealed_token, kid, token_hash) \
     VALUES ($1, $2, 'token', $3, $4, $5) \
     ON CONFLICT DO NOTHING \
     RETURNING id",
);

/// Appends a token only while the newest row of the key is version `$6`
/// (optimistic concurrency for rotated tokens); `$6` = 0: only while the key
/// has no row at all (an import).
const INSERT_TOKEN_IF_NEWEST: Sql = Sql::both(
    "INSERT INTO token_events (account, provider, kind, sealed_token, kid, token_hash) \
     SELECT $1, $2, 'token', $3, $4, $5 \
     WHERE COALESCE((SELECT id FROM token_events WHERE account = $1 AND provider = $2 \
            ORDER BY id DESC LIMIT 1), 0) = $6 \
     ON CONFLICT DO NOTHING \
     RETURNING id",
);

/// The expected version that means "nothing stored yet" (ids start at 1).
pub const NOTHING_STORED: i64 = 0;

/// PostgreSQL's store of a token: one round trip (migration 0010); returns the new id or NULL.
const STORE_TOKEN_POSTGRES: &str =
    "SELECT public.tokenvault_store_token($1, $2, $3, $4, $5, $6, $7, $8)";

const FIND_TOKEN: Sql = Sql::both(
    "SELECT id FROM token_events WHERE account = $1 AND provider = $2 AND token_hash = $3",
);

/// Appends a tombstone unless nothing is stored or the newest row already is one.
const INSERT_TOMBSTONE: Sql = Sql::both(
    "INSERT INTO token_events (account, provider, kind) \
     SELECT $1, $2, 'tombstone' \
     WHERE (SELECT kind FROM token_events WHERE account = $1 AND provider = $2 \
            ORDER BY id DESC LIMIT 1) = 'token' \
     RETURNING id",
);

const NEWEST_KIND: Sql = Sql::both(
    "SELECT id, kind FROM token_events WHERE account = $1 AND provider = $2 \
     ORDER BY id DESC LIMIT 1",
);

/// Appends a status row only while the newest row is a token.
const INSERT_STATUS: Sql = Sql::both(
    "INSERT INTO token_status (account, provider, status, reason) \
     SELECT $1, $2, $3, $4 \
     WHERE (SELECT kind FROM token_events WHERE account = $1 AND provider = $2 \
            ORDER BY id DESC LIMIT 1) = 'token'",
);

/// Records a revocation only for a token row that a tombstone follows; a second record of the
/// same token inserts nothing.
const INSERT_REVOCATION: Sql = Sql::both(
    "INSERT INTO token_revocations (account, provider, token_id, outcome) \
     SELECT $1, $2, $3, $4 \
     WHERE EXISTS (SELECT 1 FROM token_events t WHERE t.id = $3 AND t.account = $1 \
                   AND t.provider = $2 AND t.kind = 'token') \
       AND EXISTS (SELECT 1 FROM token_events n WHERE n.account = $1 AND n.provider = $2 \
                   AND n.id > $3 AND n.kind = 'tombstone') \
     ON CONFLICT DO NOTHING",
);

const FIND_REVOCATION: Sql = Sql::both(
    "SELECT id FROM token_revocations WHERE account = $1 AND provider = $2 AND token_id = $3",
);

/// Whether row `$1` is a token of (`$2`, `$3`); reads only columns the writer may read.
const IS_TOKEN_OF: Sql = Sql::both(
    "SELECT COUNT(*) FROM token_events \
     WHERE id = $1 AND account = $2 AND provider = $3 AND kind = 'token'",
);

/// Asks for a re-seal; the owner's trigger decides and records the outcome.
const INSERT_RESEAL: Sql = Sql::both(
    "INSERT INTO token_reseals (account, provider, token_id, from_kid, to_kid, sealed_token) \
     VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
);

/// Shares an access token; the owner's trigger inserts nothing unless `$3` is the key's newest
/// token.
const INSERT_SHARE: Sql = Sql::both(
    "INSERT INTO shared_access_tokens \
     (account, provider, token_id, sealed_token, kid, expires_at_unix, lifetime_secs, \
      token_type, scopes) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING id",
);

const RESEAL_OUTCOME: Sql = Sql::both("SELECT outcome FROM token_reseals WHERE id = $1");

/// PostgreSQL: can this session read sealed tokens? (It should not, as the writer.)
const PG_CAN_READ_SECRETS: &str =
    "SELECT has_column_privilege('token_events', 'sealed_token', 'SELECT')";

/// Append-only writer handle. Cheap to clone (shares the pool).
#[derive(Debug, Clone)]
pub struct TokenWriter {
    pub(crate) db: Db,
}

impl TokenWriter {
    /// Connects to `url`. PostgreSQL: connect as `tokenvault_writer` (the schema must have been
    /// migrated by the owner with [`crate::migrate`]). SQLite (`sqlite://path`): creates the file
    /// if missing and runs the SQLite migrations. A down database gives
    /// [`StoreError::Unavailable`] within a few seconds. A PostgreSQL role that
    /// can read `sealed_token` is refused with [`StoreError::Invalid`].
    pub async fn connect(url: &str) -> Result<Self> {
        let db = db::connect(url, Role::Writer).await?;
        match &db {
            Db::Sqlite(pool) => crate::admin::SQLITE_MIGRATOR.run(pool).await?,
            Db::Postgres(pool) => {
                let can_read: bool = sqlx::query_scalar(PG_CAN_READ_SECRETS)
                    .fetch_one(pool)
                    .await?;
                if can_read {
                    // The writer must never be able to read a ciphertext back.
                    pool.close().await;
                    return Err(StoreError::Invalid(
                        "the writer's database role can read sealed tokens; \
                         connect as tokenvault_writer"
                            .to_owned(),
                    ));
                }
            }
        }
        Ok(TokenWriter { db })
    }

    /// Appends `sealed_token` (sealed with key `kid`) as the newest version for
    /// (account, provider), superseding (and pruning) every earlier version and reviving a
    /// disconnected account. Storing exactly the same sealed token again inserts nothing and
    /// returns `already_stored = true` with the existing row's version.
    pub async fn store(
        &self,
        account: &str,
        provider: &str,
        sealed_token: &str,
        kid: &str,
    ) -> Result<StoreOutcome> {
        self.store_conditionally(
            account,
            provider,
            sealed_token,
            kid,
            None,
            TokenFacts::default(),
        )
        .await
    }

    /// Like [`Self::store`], but only while the newest row of (account,
    /// provider) is `expected_version`: a rotated refresh token must not
    /// revive an account disconnected meanwhile, nor replace a newer token
    /// from a reconnect. Otherwise [`StoreError::Conflict`]. A retry of a
    /// token already stored still returns `already_stored`.
    pub async fn store_if_newest(
        &self,
        account: &str,
        provider: &str,
        sealed_token: &str,
        kid: &str,
        expected_version: i64,
    ) -> Result<StoreOutcome> {
        self.store_conditionally(
            account,
            provider,
            sealed_token,
            kid,
            Some(expected_version),
            TokenFacts::default(),
        )
        .await
    }

    /// Like [`Self::store_with`], but only if nothing was ever stored for
    /// (account, provider): an import never replaces a token tokenvault
    /// already holds (nor revives a disconnected account), and importing the
    /// same line twice stores it once. Otherwise [`StoreError::Conflict`].
    pub async fn store_if_absent_with(
        &self,
        account: &str,
        provider: &str,
        sealed_token: &str,
        kid: &str,
        facts: TokenFacts<'_>,
    ) -> Result<StoreOutcome> {
        self.store_conditionally(
            account,
            provider,
            sealed_token,
            kid,
            Some(NOTHING_STORED),
            facts,
        )
        .await
    }

    /// Like [`Self::store`], with what the token carries besides itself (see [`TokenFacts`]),
    /// stored in the same transaction.
    pub async fn store_with(
        &self,
        account: &str,
        provider: &str,
        sealed_token: &str,
        kid: &str,
        facts: TokenFacts<'_>,
    ) -> Result<StoreOutcome> {
        self.store_conditionally(account, provider, sealed_token, kid, None, facts)
            .await
    }

    /// Like [`Self::store_if_newest`], recording the refresh token's expiry (a rotation keeps the
    /// account's metadata, so it carries none).
    pub async fn store_if_newest_with(
        &self,
        account: &str,
        provider: &str,
        sealed_token: &str,
        kid: &str,
        expected_version: i64,
        refresh_token_expires_at: Option<i64>,
    ) -> Result<StoreOutcome> {
        let facts = TokenFacts {
            metadata: None,
            refresh_token_expires_at,
        };
        self.store_conditionally(
            account,
            provider,
            sealed_token,
            kid,
            Some(expected_version),
            facts,
        )
        .await
    }

    async fn store_conditionally(
        &self,
        account: &str,
        provider: &str,
        sealed_token: &str,
        kid: &str,
        expected_version: Option<i64>,
        facts: TokenFacts<'_>,
    ) -> Result<StoreOutcome> {
        check_key(account, provider)?;
        if let Some(metadata) = facts.metadata {
            check_metadata(metadata)?;
        }
        if facts.refresh_token_expires_at.is_some_and(|at| at <= 0) {
            return Err(StoreError::Invalid(
                "a refresh token's expiry must be after 1970".to_owned(),
            ));
        }
        check_kid(kid)?;
        check_sealed_token(sealed_token)?;
        let hash = Sha256::digest(sealed_token.as_bytes()).to_vec();
        let insert = match expected_version {
            None => INSERT_TOKEN,
            Some(_) => INSERT_TOKEN_IF_NEWEST,
        };
        let change = Change::Token {
            rotation: expected_version.is_some(),
        };

        // One transaction: the token, its expiry, its metadata and its event commit together or
        // not at all, holding the key's lock from its start (on SQLite the insert takes the write
        // lock), so the status read after the insert is the one this token follows. PostgreSQL
        // runs the same steps in one database function (migration 0010), one round trip.
        let inserted: Option<i64> = match &self.db {
            Db::Postgres(pool) => {
                sqlx::query_scalar(STORE_TOKEN_POSTGRES)
                    .bind(account)
                    .bind(provider)
                    .bind(sealed_token)
                    .bind(kid)
                    .bind(&hash)
                    .bind(expected_version)
                    .bind(facts.refresh_token_expires_at)
                    .bind(facts.metadata)
                    .fetch_one(pool)
                    .await?
            }
            Db::Sqlite(pool) => {
                let q = insert.sqlite;
                let pick = |sql: Sql| -> &'static str { sql.sqlite };
                let mut tx = begin_on_key!(pool, pick, account, provider);
                let mut query = sqlx::query_scalar(q)
                    .bind(account)
                    .bind(provider)
                    .bind(sealed_token)
                    .bind(kid)
                    .bind(&hash);
                if let Some(expected) = expected_version {
                    query = query.bind(expected);
                }
                let inserted: Option<i64> = query.fetch_optional(&mut *tx).await?;
                if let Some(version) = inserted {
                    if let Some(expires_at) = facts.refresh_token_expires_at {
                        sqlx::query(pick(INSERT_EXPIRY))
                            .bind(account)
                            .bind(provider)
                            .bind(version)
                            .bind(expires_at)
                            .execute(&mut *tx)
                            .await?;
                    }
                    if let Some(metadata) = facts.metadata {
                        sqlx::query(pick(INSERT_METADATA))
                            .bind(account)
                            .bind(provider)
                            .bind(metadata)
                            .execute(&mut *tx)
                            .await?;
                    }
                    append_event!(tx, pick, account, provider, change);
                }
                tx.commit().await?;
                inserted
            }
        };
        let outcome = match inserted {
            Some(version) => StoreOutcome {
                version,
                already_stored: false,
            },
            None => {
                let existing: Option<i64> = on_db!(&self.db, FIND_TOKEN, |pool, q| {
                    sqlx::query_scalar(q)
                        .bind(account)
                        .bind(provider)
                        .bind(&hash)
                        .fetch_optional(pool)
                        .await?
                });
                let version = existing.ok_or_else(|| match expected_version {
                    Some(NOTHING_STORED) => StoreError::Conflict(
                        "a token is already stored for this account (or it was disconnected)"
                            .to_owned(),
                    ),
                    Some(expected) => StoreError::Conflict(format!(
                        "the newest stored version is no longer {expected} \
                         (the account was disconnected or reconnected meanwhile)"
                    )),
                    None => {
                        StoreError::Conflict("the token was neither inserted nor found".to_owned())
                    }
                })?;
                StoreOutcome {
                    version,
                    already_stored: true,
                }
            }
        };
        tracing::debug!(
            account,
            provider,
            kid,
            version = outcome.version,
            already_stored = outcome.already_stored,
            "stored sealed token"
        );
        Ok(outcome)
    }

    /// Appends a tombstone: no later read returns a token until a new one is stored. Disconnecting
    /// an already disconnected account inserts nothing (`already_disconnected = true`).
    /// [`StoreError::NotFound`] if nothing was ever stored for (account, provider).
    pub async fn disconnect(&self, account: &str, provider: &str) -> Result<DisconnectOutcome> {
        check_key(account, provider)?;
        let inserted: Option<i64> = on_db!(&self.db, INSERT_TOMBSTONE, |pool, q, pick| {
            let mut tx = begin_on_key!(pool, pick, account, provider);
            let inserted: Option<i64> = sqlx::query_scalar(q)
                .bind(account)
                .bind(provider)
                .fetch_optional(&mut *tx)
                .await?;
            if inserted.is_some() {
                append_event!(tx, pick, account, provider, Change::Tombstone);
            }
            tx.commit().await?;
            inserted
        });
        if let Some(version) = inserted {
            tracing::debug!(account, provider, version, "disconnected");
            return Ok(DisconnectOutcome {
                version,
                already_disconnected: false,
            });
        }
        match self.newest_kind(account, provider).await? {
            None => Err(StoreError::NotFound),
            Some((version, kind)) if kind == "tombstone" => Ok(DisconnectOutcome {
                version,
                already_disconnected: true,
            }),
            // A token was stored between the two statements; the caller may retry.
            Some(_) => Err(StoreError::Conflict(
                "a new token was stored concurrently; retry the disconnect".to_owned(),
            )),
        }
    }

    /// Appends a status record (e.g. [`TokenStatus::ReauthorizationRequired`] after the provider
    /// answered `invalid_grant`). [`StoreError::NotFound`] if nothing was ever stored;
    /// [`StoreError::Conflict`] if the account is disconnected (store a new token to reconnect);
    /// [`StoreError::Invalid`] for [`TokenStatus::Disconnected`] (use [`Self::disconnect`], which
    /// also hides the token) or an over-long reason.
    pub async fn record_status(
        &self,
        account: &str,
        provider: &str,
        status: TokenStatus,
        reason: &str,
    ) -> Result<()> {
        check_key(account, provider)?;
        if status == TokenStatus::Disconnected {
            return Err(StoreError::Invalid(
                "record a disconnect with disconnect(), which also tombstones the token".to_owned(),
            ));
        }
        if reason.len() > MAX_STATUS_REASON_LEN {
            return Err(StoreError::Invalid(format!(
                "reason is longer than {MAX_STATUS_REASON_LEN} bytes"
            )));
        }
        if reason
            .chars()
            .any(|c| c.is_control() && c != '\n' && c != '\t')
        {
            return Err(StoreError::Invalid(
                "reason contains control characters".to_owned(),
            ));
        }
        let affected = on_db!(&self.db, INSERT_STATUS, |pool, q, pick| {
            // Serialised with the key's token inserts, so the status before is the one this
            // record follows.
            let mut tx = begin_on_key!(pool, pick, account, provider);
            let affected = sqlx::query(q)
                .bind(account)
                .bind(provider)
                .bind(status.as_str())
                .bind(reason)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            if affected == 1 {
                append_event!(tx, pick, account, provider, Change::Status(status));
            }
            tx.commit().await?;
            affected
        });
        if affected == 1 {
            tracing::debug!(account, provider, %status, "recorded status");
            return Ok(());
        }
        match self.newest_kind(account, provider).await? {
            None => Err(StoreError::NotFound),
            Some(_) => Err(StoreError::Conflict(
                "the account is disconnected; store a new token to reconnect it".to_owned(),
            )),
        }
    }

    /// Records that the refresh token stored as `token_version` of a disconnected
    /// (account, provider) was revoked at the provider, or that the provider offers no
    /// revocation; the database then clears that sealed token. Recording the same token again
    /// inserts nothing and returns `false`. [`StoreError::Conflict`] if `token_version` is not a
    /// token of this key that a tombstone follows (the account was never disconnected, or the
    /// version is wrong).
    pub async fn record_revocation(
        &self,
        account: &str,
        provider: &str,
        token_version: i64,
        outcome: RevocationOutcome,
    ) -> Result<bool> {
        check_key(account, provider)?;
        let inserted = on_db!(&self.db, INSERT_REVOCATION, |pool, q, pick| {
            let mut tx = begin_on_key!(pool, pick, account, provider);
            let inserted = sqlx::query(q)
                .bind(account)
                .bind(provider)
                .bind(token_version)
                .bind(outcome.as_str())
                .execute(&mut *tx)
                .await?
                .rows_affected();
            if inserted == 1 {
                append_event!(tx, pick, account, provider, Change::Revocation);
            }
            tx.commit().await?;
            inserted
        });
        if inserted == 1 {
            tracing::debug!(account, provider, token_version, %outcome, "recorded revocation");
            return Ok(true);
        }
        let existing: Option<i64> = on_db!(&self.db, FIND_REVOCATION, |pool, q| {
            sqlx::query_scalar(q)
                .bind(account)
                .bind(provider)
                .bind(token_version)
                .fetch_optional(pool)
                .await?
        });
        match existing {
            Some(_) => Ok(false),
            None => Err(StoreError::Conflict(
                "that token version was not disconnected; nothing to record".to_owned(),
            )),
        }
    }

    /// Replaces the sealed token of `version` of (account, provider), read under key `from_kid`,
    /// with `sealed_token` (the same refresh token sealed under key `to_kid`), in place: the
    /// version, its token hash and the account's status stay as they are, so a re-seal never
    /// revives a disconnected account and a rotation or revocation started from `version` still
    /// applies. Compare-and-swap: only while `version` still holds a sealed token under
    /// `from_kid` and no newer token is stored ([`ResealOutcome::Superseded`] or
    /// [`ResealOutcome::KeyChanged`] otherwise, with nothing changed).
    /// [`StoreError::NotFound`] if `version` is not a token of (account, provider);
    /// [`StoreError::Invalid`] if the two key ids are equal.
    pub async fn reseal(
        &self,
        account: &str,
        provider: &str,
        version: i64,
        from_kid: &str,
        sealed_token: &str,
        to_kid: &str,
    ) -> Result<ResealOutcome> {
        check_key(account, provider)?;
        check_kid(from_kid)?;
        check_kid(to_kid)?;
        check_sealed_token(sealed_token)?;
        if from_kid == to_kid {
            return Err(StoreError::Invalid(
                "a re-seal must change the key: the new key id equals the old one".to_owned(),
            ));
        }
        let found: i64 = on_db!(&self.db, IS_TOKEN_OF, |pool, q| {
            sqlx::query_scalar(q)
                .bind(version)
                .bind(account)
                .bind(provider)
                .fetch_one(pool)
                .await?
        });
        if found == 0 {
            return Err(StoreError::NotFound);
        }
        let id: i64 = on_db!(&self.db, INSERT_RESEAL, |pool, q| {
            sqlx::query_scalar(q)
                .bind(account)
                .bind(provider)
                .bind(version)
                .bind(from_kid)
                .bind(to_kid)
                .bind(sealed_token)
                .fetch_one(pool)
                .await?
        });
        let outcome: Option<String> = on_db!(&self.db, RESEAL_OUTCOME, |pool, q| {
            sqlx::query_scalar(q).bind(id).fetch_one(pool).await?
        });
        let outcome = match outcome.as_deref() {
            Some("resealed") => ResealOutcome::Resealed,
            Some("superseded") => ResealOutcome::Superseded,
            Some("key_changed") => ResealOutcome::KeyChanged,
            other => {
                return Err(StoreError::Database(format!(
                    "re-seal {id} has no known outcome ({other:?})"
                )));
            }
        };
        tracing::debug!(account, provider, version, from_kid, to_kid, %outcome, "re-seal");
        Ok(outcome)
    }

    /// Shares an access token get-service obtained with stored version `share.version` of
    /// (account, provider), sealed with the public key, for the other get-service replicas.
    /// Returns `false`, storing nothing, if that version is no longer the account's newest token
    /// (rotated, reconnected or disconnected meanwhile). Older shares of the account are deleted.
    pub async fn share_access_token(
        &self,
        account: &str,
        provider: &str,
        share: &SharedAccessToken,
    ) -> Result<bool> {
        check_key(account, provider)?;
        check_kid(&share.kid)?;
        check_sealed_token(&share.sealed_token)?;
        if share.token_type.is_empty() || share.token_type.len() > MAX_TOKEN_TYPE_LEN {
            return Err(StoreError::Invalid(format!(
                "token_type must be 1 to {MAX_TOKEN_TYPE_LEN} bytes"
            )));
        }
        // Counted as set-service counts them: each scope and a separator after it.
        let scopes = share.scopes.join(" ");
        if scopes.len() + 1 > MAX_SHARED_SCOPES_LEN || share.lifetime_secs < 0 {
            return Err(StoreError::Invalid(format!(
                "scopes longer than {MAX_SHARED_SCOPES_LEN} bytes, or a negative lifetime"
            )));
        }
        let id: Option<i64> = on_db!(&self.db, INSERT_SHARE, |pool, q| {
            sqlx::query_scalar(q)
                .bind(account)
                .bind(provider)
                .bind(share.version)
                .bind(&share.sealed_token)
                .bind(&share.kid)
                .bind(share.expires_at_unix)
                .bind(share.lifetime_secs)
                .bind(&share.token_type)
                .bind(&scopes)
                .fetch_optional(pool)
                .await?
        });
        Ok(id.is_some())
    }

    async fn newest_kind(&self, account: &str, provider: &str) -> Result<Option<(i64, String)>> {
        Ok(on_db!(&self.db, NEWEST_KIND, |pool, q| {
            sqlx::query_as(q)
                .bind(account)
                .bind(provider)
                .fetch_optional(pool)
                .await?
        }))
    }

    /// Closes the pool, waiting for in-flight statements.
    pub async fn close(&self) {
        self.db.close().await;
    }

    /// Whether the database answers a trivial query on a pooled connection
    /// (for health checks); [`StoreError::Unavailable`] within a few seconds
    /// if it does not.
    pub async fn ping(&self) -> Result<()> {
        self.db.ping().await
    }
}
