//! Chooses the storage engine from `DATABASE_URL`, once, at start-up, and
//! guards the schema version.

use std::sync::Arc;

use vitte_domain::ports::{LimitError, PoolSettings, RateLimiter, Store, StoreError};
use vitte_store_postgres::PgStore;
use vitte_store_sqlite::SqliteStore;

use crate::config::DatabaseUrl;

/// Opens the store the URL names.
pub async fn open_store(
    url: &DatabaseUrl,
    pool: &PoolSettings,
) -> Result<Arc<dyn Store>, StoreError> {
    Ok(match url {
        DatabaseUrl::Sqlite(s) => Arc::new(SqliteStore::open(s, pool).await?),
        DatabaseUrl::Postgres(s) => Arc::new(PgStore::connect(s, pool).await?),
    })
}

/// The rate limiter: shared through Redis when `REDIS_URL` is set, so every
/// process counts against the same quotas (and, while Redis cannot answer,
/// against its own in-process ones); in-process otherwise.
pub async fn open_limiter(
    redis: Option<&crate::config::RedisUrl>,
) -> Result<Arc<dyn RateLimiter>, LimitError> {
    Ok(match redis {
        Some(url) => Arc::new(vitte_limits::FailoverLimiter::new(Box::new(
            vitte_limits::RedisLimiter::connect(url.expose()).await?,
        ))),
        None => Arc::new(vitte_limits::MemoryLimiter::new()),
    })
}

/// Puts the cache in front of the store for the hot reads of the chat path.
/// With Redis, every process shares it (and its invalidations); without
/// Redis only the embedded SQLite store, which one process owns, gets an
/// in-process cache — several processes on PostgreSQL with private caches
/// would serve each other's stale rows.
pub async fn with_cache(
    store: Arc<dyn Store>,
    url: &DatabaseUrl,
    redis: Option<&crate::config::RedisUrl>,
) -> Result<Arc<dyn Store>, vitte_cache::RedisCacheError> {
    let cache: Arc<dyn vitte_domain::ports::Cache> = match (redis, url) {
        (Some(redis), _) => Arc::new(vitte_cache::RedisCache::open(
            redis.expose(),
            vitte_cache::RedisSettings::default(),
        )?),
        (None, DatabaseUrl::Sqlite(_)) => Arc::new(vitte_cache::MemoryCache::default()),
        (None, DatabaseUrl::Postgres(_)) => return Ok(store),
    };
    Ok(Arc::new(vitte_cache::CachedStore::new(
        store,
        cache,
        vitte_cache::CachePolicy::default(),
    )))
}

/// What a role does about a schema that is not current.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SchemaPolicy {
    /// Apply pending migrations (`vitte all`, or a role started with `--migrate`).
    Migrate,
    /// Refuse to start: schema changes are an operator's deliberate step.
    RequireCurrent,
}

/// Why a role refused to start.
#[derive(Debug, thiserror::Error)]
pub enum SchemaGateError {
    /// The store could not be asked or migrated.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Migrations are pending and the role may not apply them.
    #[error(
        "the database schema is at version {current} but this build needs version {needed}: \
         run `vitte migrate up` first (or start the role with --migrate)"
    )]
    Behind {
        /// Newest applied version.
        current: i64,
        /// Newest version this build carries.
        needed: i64,
    },
    /// The database was migrated by a newer build.
    #[error(
        "the database has migrations this build does not know (versions {0:?}): \
         it was migrated by a newer build; run that build, or its `migrate down`"
    )]
    Ahead(Vec<i64>),
}

/// Makes sure the schema is what this build expects, migrating when allowed.
pub async fn ensure_schema(store: &dyn Store, policy: SchemaPolicy) -> Result<(), SchemaGateError> {
    let status = store.status().await?;
    if !status.unknown.is_empty() {
        return Err(SchemaGateError::Ahead(status.unknown));
    }
    if status.pending.is_empty() {
        return Ok(());
    }
    match policy {
        SchemaPolicy::Migrate => {
            let applied = store.up().await?;
            for m in &applied {
                tracing::info!(version = m.version, description = %m.description, "migration applied");
            }
            Ok(())
        }
        SchemaPolicy::RequireCurrent => Err(SchemaGateError::Behind {
            current: status.version(),
            needed: status.pending.last().map_or(0, |m| m.version),
        }),
    }
}
