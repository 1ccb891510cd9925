//! What the Redis engines of Vitte (the shared rate limiter in vitte-limits
//! and the shared cache in vitte-cache) have in common.

pub mod breaker;
pub mod testing;
