//! The terms-and-age gate: nothing but `/start` and the accept button works
//! until the current terms version is accepted.

use vitte_domain::model::User;

use crate::context::TERMS_VERSION;

/// What the gate asks of a user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gate {
    /// The current terms are accepted and age confirmed.
    Open,
    /// Never accepted.
    FirstTime,
    /// Accepted an older version.
    Updated,
}

/// Reads the user's acceptance.
pub fn check(user: &User) -> Gate {
    match user.terms_version {
        Some(v) if v >= TERMS_VERSION && user.age_confirmed => Gate::Open,
        Some(_) => Gate::Updated,
        None => Gate::FirstTime,
    }
}
