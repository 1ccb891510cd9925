//! Entitlements: the active subscription and the unlocks of a user are
//! cached with the instant they were read at, and answered for a later
//! instant only while that answer still holds (a period that ended or an
//! unlock that lapsed is never served). Grants, direct or through a settled
//! payment, invalidate them. Credit balances are not cached: they change on
//! every spend, so spends invalidate nothing.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use vitte_domain::ids::{PaymentId, UserId};
use vitte_domain::model::{
    CreditKind, Grant, NewPayment, Payment, PaymentProvider, PaymentState, Subscription, Unlock,
};
use vitte_domain::ports::{EntitlementRepo, PaymentRepo, SettleOutcome, StoreError};

use super::{CachedStore, may_have_written, wrote};
use crate::codec::{SubscriptionEntry, UnlocksEntry};

type Result<T> = std::result::Result<T, StoreError>;

impl CachedStore {
    /// The keys a grant to `user` changes.
    fn grant_keys(&self, user: UserId, grant: &Grant) -> Vec<String> {
        match grant {
            Grant::Subscription { .. } => vec![self.keys.subscription(user)],
            Grant::Unlock { .. } => vec![self.keys.unlocks(user)],
            Grant::Credits { .. } => Vec::new(),
        }
    }
}

#[async_trait]
impl EntitlementRepo for CachedStore {
    async fn active_subscription(
        &self,
        user: UserId,
        now: DateTime<Utc>,
    ) -> Result<Option<Subscription>> {
        let ceiling = self.policy.subscription_ttl;
        let (entry, _) = self
            .read_through(
                &self.keys.subscription(user),
                |e: &SubscriptionEntry| Some(e.ttl(ceiling)),
                |e| e.answer(now).is_some(),
                move || async move {
                    let subscription = self.inner.active_subscription(user, now).await?;
                    Ok(SubscriptionEntry::new(now, subscription.as_ref()))
                },
            )
            .await?;
        // A loaded entry was read at `now`, so it always answers; the
        // fallback only keeps the store's word should it ever disagree.
        Ok(entry.answer(now).unwrap_or_else(|| entry.stored()))
    }

    async fn unlocks(&self, user: UserId, now: DateTime<Utc>) -> Result<Vec<Unlock>> {
        let ttl = self.policy.unlocks_ttl;
        let (entry, _) = self
            .read_through(
                &self.keys.unlocks(user),
                |_| Some(ttl),
                |e: &UnlocksEntry| e.answer(now).is_some(),
                move || async move {
                    let unlocks = self.inner.unlocks(user, now).await?;
                    Ok(UnlocksEntry::new(now, &unlocks))
                },
            )
            .await?;
        Ok(entry.answer(now).unwrap_or_else(|| entry.stored()))
    }

    async fn credit_balance(&self, user: UserId, kind: CreditKind) -> Result<i64> {
        self.inner.credit_balance(user, kind).await
    }

    async fn spend_credits(
        &self,
        user: UserId,
        kind: CreditKind,
        amount: i64,
        now: DateTime<Utc>,
    ) -> Result<i64> {
        self.inner.spend_credits(user, kind, amount, now).await
    }

    async fn apply_grant(&self, user: UserId, grant: &Grant, now: DateTime<Utc>) -> Result<()> {
        let result = self.inner.apply_grant(user, grant, now).await;
        if wrote(&result) {
            self.invalidate(self.grant_keys(user, grant)).await;
        }
        result
    }
}

#[async_trait]
impl PaymentRepo for CachedStore {
    async fn record_payment(
        &self,
        payment: &NewPayment,
        now: DateTime<Utc>,
    ) -> Result<(Payment, bool)> {
        self.inner.record_payment(payment, now).await
    }

    async fn payment(&self, id: PaymentId) -> Result<Option<Payment>> {
        self.inner.payment(id).await
    }

    async fn payment_by_provider_id(
        &self,
        provider: PaymentProvider,
        provider_payment_id: &str,
    ) -> Result<Option<Payment>> {
        self.inner
            .payment_by_provider_id(provider, provider_payment_id)
            .await
    }

    async fn settle_payment(
        &self,
        provider: PaymentProvider,
        provider_payment_id: &str,
        grant: &Grant,
        now: DateTime<Utc>,
    ) -> Result<SettleOutcome> {
        let result = self
            .inner
            .settle_payment(provider, provider_payment_id, grant, now)
            .await;
        let payer = match &result {
            // Already settled too: the process that settled it may have died
            // before invalidating, and a redelivered notification is the
            // chance to make up for it.
            Ok(SettleOutcome::Settled(p) | SettleOutcome::AlreadySettled(p)) => Some(p.user_id),
            Err(e) if may_have_written(e) => self
                .inner
                .payment_by_provider_id(provider, provider_payment_id)
                .await
                .ok()
                .flatten()
                .map(|p| p.user_id),
            Err(_) => None,
        };
        if let Some(user) = payer {
            self.invalidate(self.grant_keys(user, grant)).await;
        }
        result
    }

    async fn transition_payment(
        &self,
        id: PaymentId,
        from: PaymentState,
        to: PaymentState,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        self.inner.transition_payment(id, from, to, now).await
    }
}
