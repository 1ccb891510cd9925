//! The cached shapes: private mirrors of the domain types, serialised as
//! JSON. The domain types stay free of serialisation concerns, and a change
//! of a domain type breaks the exhaustive conversions here at compile time,
//! which is the moment to bump [`SHAPE_VERSION`](crate::SHAPE_VERSION).

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use vitte_domain::ids::{
    DialogId, PaymentId, PersonaId, PersonaSlug, SubscriptionId, TelegramUserId, UserId,
};
use vitte_domain::model::{Dialog, LoreEntry, Persona, PersonaCard, Subscription, Unlock, User};

/// A cached [`User`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct UserDto {
    id: UserId,
    telegram_id: TelegramUserId,
    first_name: String,
    last_name: Option<String>,
    username: Option<String>,
    language: Option<String>,
    terms_version: Option<i32>,
    terms_accepted_at: Option<DateTime<Utc>>,
    age_confirmed: bool,
    current_persona_id: Option<PersonaId>,
    blocked_bot: bool,
    first_seen: DateTime<Utc>,
    last_seen: DateTime<Utc>,
}

impl From<&User> for UserDto {
    fn from(u: &User) -> Self {
        let User {
            id,
            telegram_id,
            first_name,
            last_name,
            username,
            language,
            terms_version,
            terms_accepted_at,
            age_confirmed,
            current_persona_id,
            blocked_bot,
            first_seen,
            last_seen,
        } = u.clone();
        Self {
            id,
            telegram_id,
            first_name,
            last_name,
            username,
            language,
            terms_version,
            terms_accepted_at,
            age_confirmed,
            current_persona_id,
            blocked_bot,
            first_seen,
            last_seen,
        }
    }
}

impl From<UserDto> for User {
    fn from(u: UserDto) -> Self {
        let UserDto {
            id,
            telegram_id,
            first_name,
            last_name,
            username,
            language,
            terms_version,
            terms_accepted_at,
            age_confirmed,
            current_persona_id,
            blocked_bot,
            first_seen,
            last_seen,
        } = u;
        Self {
            id,
            telegram_id,
            first_name,
            last_name,
            username,
            language,
            terms_version,
            terms_accepted_at,
            age_confirmed,
            current_persona_id,
            blocked_bot,
            first_seen,
            last_seen,
        }
    }
}

/// A cached [`PersonaCard`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct CardDto {
    name: String,
    description: String,
    personality: String,
    scenario: String,
    first_message: String,
    example_messages: String,
    system_prompt: String,
    post_history_instructions: String,
    alternate_greetings: Vec<String>,
    lorebook: Vec<LoreEntry>,
    tags: Vec<String>,
    creator: String,
    creator_notes: String,
}

impl From<PersonaCard> for CardDto {
    fn from(c: PersonaCard) -> Self {
        let PersonaCard {
            name,
            description,
            personality,
            scenario,
            first_message,
            example_messages,
            system_prompt,
            post_history_instructions,
            alternate_greetings,
            lorebook,
            tags,
            creator,
            creator_notes,
        } = c;
        Self {
            name,
            description,
            personality,
            scenario,
            first_message,
            example_messages,
            system_prompt,
            post_history_instructions,
            alternate_greetings,
            lorebook,
            tags,
            creator,
            creator_notes,
        }
    }
}

impl From<CardDto> for PersonaCard {
    fn from(c: CardDto) -> Self {
        let CardDto {
            name,
            description,
            personality,
            scenario,
            first_message,
            example_messages,
            system_prompt,
            post_history_instructions,
            alternate_greetings,
            lorebook,
            tags,
            creator,
            creator_notes,
        } = c;
        Self {
            name,
            description,
            personality,
            scenario,
            first_message,
            example_messages,
            system_prompt,
            post_history_instructions,
            alternate_greetings,
            lorebook,
            tags,
            creator,
            creator_notes,
        }
    }
}

/// A cached [`Persona`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct PersonaDto {
    id: PersonaId,
    slug: PersonaSlug,
    card: CardDto,
    listed: bool,
    has_picture: bool,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl From<&Persona> for PersonaDto {
    fn from(p: &Persona) -> Self {
        let Persona {
            id,
            slug,
            card,
            listed,
            has_picture,
            created_at,
            updated_at,
        } = p.clone();
        Self {
            id,
            slug,
            card: card.into(),
            listed,
            has_picture,
            created_at,
            updated_at,
        }
    }
}

impl From<PersonaDto> for Persona {
    fn from(p: PersonaDto) -> Self {
        let PersonaDto {
            id,
            slug,
            card,
            listed,
            has_picture,
            created_at,
            updated_at,
        } = p;
        Self {
            id,
            slug,
            card: card.into(),
            listed,
            has_picture,
            created_at,
            updated_at,
        }
    }
}

/// A cached [`Dialog`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct DialogDto {
    id: DialogId,
    user_id: UserId,
    persona_id: PersonaId,
    active: bool,
    intimacy_score: i64,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl From<&Dialog> for DialogDto {
    fn from(d: &Dialog) -> Self {
        let Dialog {
            id,
            user_id,
            persona_id,
            active,
            intimacy_score,
            created_at,
            updated_at,
        } = d.clone();
        Self {
            id,
            user_id,
            persona_id,
            active,
            intimacy_score,
            created_at,
            updated_at,
        }
    }
}

impl From<DialogDto> for Dialog {
    fn from(d: DialogDto) -> Self {
        let DialogDto {
            id,
            user_id,
            persona_id,
            active,
            intimacy_score,
            created_at,
            updated_at,
        } = d;
        Self {
            id,
            user_id,
            persona_id,
            active,
            intimacy_score,
            created_at,
            updated_at,
        }
    }
}

/// Whose dialog a dialog id is (never changes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct DialogOwner {
    pub(crate) user: UserId,
    pub(crate) persona: PersonaId,
}

/// A cached [`Subscription`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct SubscriptionDto {
    id: SubscriptionId,
    user_id: UserId,
    plan: String,
    starts_at: DateTime<Utc>,
    ends_at: DateTime<Utc>,
    payment_id: Option<PaymentId>,
}

impl From<&Subscription> for SubscriptionDto {
    fn from(s: &Subscription) -> Self {
        let Subscription {
            id,
            user_id,
            plan,
            starts_at,
            ends_at,
            payment_id,
        } = s.clone();
        Self {
            id,
            user_id,
            plan,
            starts_at,
            ends_at,
            payment_id,
        }
    }
}

impl From<SubscriptionDto> for Subscription {
    fn from(s: SubscriptionDto) -> Self {
        let SubscriptionDto {
            id,
            user_id,
            plan,
            starts_at,
            ends_at,
            payment_id,
        } = s;
        Self {
            id,
            user_id,
            plan,
            starts_at,
            ends_at,
            payment_id,
        }
    }
}

/// A cached [`Unlock`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct UnlockDto {
    user_id: UserId,
    feature: String,
    persona_id: Option<PersonaId>,
    granted_at: DateTime<Utc>,
    expires_at: Option<DateTime<Utc>>,
}

impl From<&Unlock> for UnlockDto {
    fn from(u: &Unlock) -> Self {
        let Unlock {
            user_id,
            feature,
            persona_id,
            granted_at,
            expires_at,
        } = u.clone();
        Self {
            user_id,
            feature,
            persona_id,
            granted_at,
            expires_at,
        }
    }
}

impl From<UnlockDto> for Unlock {
    fn from(u: UnlockDto) -> Self {
        let UnlockDto {
            user_id,
            feature,
            persona_id,
            granted_at,
            expires_at,
        } = u;
        Self {
            user_id,
            feature,
            persona_id,
            granted_at,
            expires_at,
        }
    }
}

/// The answer of `active_subscription` at `as_of`.
///
/// It stays the right answer for any later `now` while the period it holds
/// has not ended, or, when there was none, until a grant creates one (and
/// grants invalidate it): periods follow one another, each starting when it
/// is granted or when the paid one ends, so none can begin between `as_of`
/// and `now` without covering `as_of` too. An earlier `now` is asked of the
/// store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct SubscriptionEntry {
    as_of: DateTime<Utc>,
    subscription: Option<SubscriptionDto>,
}

impl SubscriptionEntry {
    pub(crate) fn new(as_of: DateTime<Utc>, subscription: Option<&Subscription>) -> Self {
        Self {
            as_of,
            subscription: subscription.map(SubscriptionDto::from),
        }
    }

    /// The answer for `now`, if this entry knows it.
    pub(crate) fn answer(&self, now: DateTime<Utc>) -> Option<Option<Subscription>> {
        if now < self.as_of {
            return None;
        }
        match &self.subscription {
            Some(s) if now >= s.ends_at => None,
            other => Some(other.clone().map(Subscription::from)),
        }
    }

    /// The subscription as it was read, whatever the time.
    pub(crate) fn stored(&self) -> Option<Subscription> {
        self.subscription.clone().map(Subscription::from)
    }

    /// `ceiling`, shortened so the entry never outlives its period.
    pub(crate) fn ttl(&self, ceiling: Duration) -> Duration {
        match &self.subscription {
            Some(s) => (s.ends_at - self.as_of)
                .to_std()
                .unwrap_or(Duration::ZERO)
                .min(ceiling),
            None => ceiling,
        }
    }
}

/// The answer of `unlocks` at `as_of`. For a later `now` it is the same list
/// minus the unlocks that have lapsed since (new ones come only from grants,
/// which invalidate it); an earlier `now` is asked of the store, since
/// unlocks that lapsed before `as_of` are not in the list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct UnlocksEntry {
    as_of: DateTime<Utc>,
    unlocks: Vec<UnlockDto>,
}

impl UnlocksEntry {
    pub(crate) fn new(as_of: DateTime<Utc>, unlocks: &[Unlock]) -> Self {
        Self {
            as_of,
            unlocks: unlocks.iter().map(UnlockDto::from).collect(),
        }
    }

    /// The unlocks as they were read, whatever the time.
    pub(crate) fn stored(&self) -> Vec<Unlock> {
        self.unlocks.iter().cloned().map(Unlock::from).collect()
    }

    /// The unlocks in force at `now`, in stored order, if this entry knows them.
    pub(crate) fn answer(&self, now: DateTime<Utc>) -> Option<Vec<Unlock>> {
        if now < self.as_of {
            return None;
        }
        Some(
            self.unlocks
                .iter()
                .filter(|u| u.expires_at.is_none_or(|e| e > now))
                .cloned()
                .map(Unlock::from)
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeDelta;

    use super::*;

    fn t(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + secs, 0).expect("valid")
    }

    fn subscription(starts: i64, ends: i64) -> Subscription {
        Subscription {
            id: SubscriptionId(1),
            user_id: UserId(2),
            plan: "premium".to_owned(),
            starts_at: t(starts),
            ends_at: t(ends),
            payment_id: Some(PaymentId(3)),
        }
    }

    #[test]
    fn shapes_round_trip_through_json() {
        let user = User {
            id: UserId(1),
            telegram_id: TelegramUserId::try_from(42).expect("id"),
            first_name: "Аня 🙂".to_owned(),
            last_name: None,
            username: Some("anya".to_owned()),
            language: Some("ru".to_owned()),
            terms_version: Some(2),
            terms_accepted_at: Some(t(1) + TimeDelta::microseconds(7)),
            age_confirmed: true,
            current_persona_id: Some(PersonaId(5)),
            blocked_bot: false,
            first_seen: t(0),
            last_seen: t(9),
        };
        let bytes = serde_json::to_vec(&UserDto::from(&user)).expect("encode");
        let back: UserDto = serde_json::from_slice(&bytes).expect("decode");
        assert_eq!(User::from(back), user);

        let entry = SubscriptionEntry::new(t(5), Some(&subscription(0, 100)));
        let bytes = serde_json::to_vec(&entry).expect("encode");
        assert_eq!(
            serde_json::from_slice::<SubscriptionEntry>(&bytes).expect("decode"),
            entry
        );
    }

    #[test]
    fn an_invalid_stored_id_does_not_decode() {
        let mut value = serde_json::to_value(UserDto::from(&User {
            id: UserId(1),
            telegram_id: TelegramUserId::try_from(42).expect("id"),
            first_name: String::new(),
            last_name: None,
            username: None,
            language: None,
            terms_version: None,
            terms_accepted_at: None,
            age_confirmed: false,
            current_persona_id: None,
            blocked_bot: false,
            first_seen: t(0),
            last_seen: t(0),
        }))
        .expect("encode");
        value["telegram_id"] = serde_json::json!(-5);
        assert!(serde_json::from_value::<UserDto>(value).is_err());
    }

    #[test]
    fn a_subscription_entry_stops_answering_when_its_period_ends() {
        let entry = SubscriptionEntry::new(t(10), Some(&subscription(0, 100)));
        assert_eq!(entry.answer(t(10)), Some(Some(subscription(0, 100))));
        assert_eq!(entry.answer(t(99)), Some(Some(subscription(0, 100))));
        assert_eq!(entry.answer(t(100)), None, "ended: ask the store");
        assert_eq!(
            entry.answer(t(9)),
            None,
            "earlier than known: ask the store"
        );
        assert_eq!(
            entry.ttl(Duration::from_secs(3600)),
            Duration::from_secs(90)
        );
        assert_eq!(entry.ttl(Duration::from_secs(60)), Duration::from_secs(60));

        let none = SubscriptionEntry::new(t(10), None);
        assert_eq!(none.answer(t(1_000_000)), Some(None));
        assert_eq!(none.answer(t(0)), None);
        assert_eq!(none.ttl(Duration::from_secs(60)), Duration::from_secs(60));
    }

    #[test]
    fn an_unlocks_entry_drops_lapsed_unlocks() {
        let unlock = |feature: &str, expires: Option<i64>| Unlock {
            user_id: UserId(1),
            feature: feature.to_owned(),
            persona_id: None,
            granted_at: t(0),
            expires_at: expires.map(t),
        };
        let entry = UnlocksEntry::new(t(10), &[unlock("voice", Some(50)), unlock("lvl", None)]);
        let features = |now| {
            entry
                .answer(now)
                .map(|v| v.into_iter().map(|u| u.feature).collect::<Vec<_>>())
        };
        assert_eq!(
            features(t(49)),
            Some(vec!["voice".to_owned(), "lvl".to_owned()])
        );
        assert_eq!(features(t(50)), Some(vec!["lvl".to_owned()]));
        assert_eq!(features(t(5)), None);
    }
}
