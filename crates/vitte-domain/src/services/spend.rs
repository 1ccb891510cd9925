//! Spend caps: what the model calls of a day cost, and whether one more
//! reply may be generated.
//!
//! Two limits keep one abuser (or a bug) from burning the budget: a daily
//! token allowance per user, larger with a subscription, and a global daily
//! cap on what replies cost in money. The global cap stops the free tier
//! only: people who pay keep being answered. Money is integer micro-dollars
//! throughout, and prices are integer micro-dollars per million tokens, so
//! no rounding creeps in.

use std::collections::HashMap;

use chrono::{DateTime, Utc};

use crate::model::ModelUsage;

/// Micro-dollars in a dollar.
pub const MICROS_PER_USD: u64 = 1_000_000;

/// Tokens that prices are quoted for (providers quote per million tokens).
const TOKENS_PER_PRICE: u128 = 1_000_000;

/// What a model costs, in micro-dollars per million tokens (so `$0.27 / 1M`
/// is `270_000`). Prompt and completion tokens are priced separately, as
/// every provider does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ModelPrice {
    /// Per million prompt tokens.
    pub prompt: u64,
    /// Per million completion tokens.
    pub completion: u64,
}

/// Whether a reply may be generated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpendDecision {
    /// Go ahead.
    Allow,
    /// The person used their tokens for today; they come back at 00:00 UTC.
    UserBudgetSpent,
    /// Today's replies cost as much as the global cap allows; the free tier
    /// waits until 00:00 UTC.
    GlobalCapReached,
}

/// Prices replies and decides whether the next one fits the budgets.
#[derive(Debug, Clone, Default)]
pub struct SpendService {
    prices: HashMap<String, ModelPrice>,
    default_price: ModelPrice,
}

impl SpendService {
    /// Known `prices` by model name; any other model is priced at
    /// `default_price` (better an estimate than free: an unpriced model
    /// would never count towards the cap).
    pub fn new(
        prices: impl IntoIterator<Item = (String, ModelPrice)>,
        default_price: ModelPrice,
    ) -> Self {
        Self {
            prices: prices.into_iter().collect(),
            default_price,
        }
    }

    /// The price of `model`.
    pub fn price(&self, model: &str) -> ModelPrice {
        self.prices
            .get(model)
            .copied()
            .unwrap_or(self.default_price)
    }

    /// What `usage` cost, in micro-dollars, rounded up (a cap errs on the
    /// safe side). Negative token counts, which no provider reports, count
    /// as zero; a total beyond `u64` saturates.
    pub fn cost(&self, usage: &[ModelUsage]) -> u64 {
        // Each product fits in u128 (u64 * u64); sums saturate.
        let scaled = usage.iter().fold(0u128, |total, u| {
            let price = self.price(&u.model);
            let prompt = u128::from(non_negative(u.prompt_tokens)) * u128::from(price.prompt);
            let completion =
                u128::from(non_negative(u.completion_tokens)) * u128::from(price.completion);
            total.saturating_add(prompt).saturating_add(completion)
        });
        u64::try_from(scaled.div_ceil(TOKENS_PER_PRICE)).unwrap_or(u64::MAX)
    }

    /// All tokens in `usage`, prompt and completion, whatever the model:
    /// what a person's daily allowance counts.
    pub fn tokens(usage: &[ModelUsage]) -> u64 {
        usage.iter().fold(0u64, |total, u| {
            total
                .saturating_add(non_negative(u.prompt_tokens))
                .saturating_add(non_negative(u.completion_tokens))
        })
    }

    /// Whether one more reply may be generated for a person who spent
    /// `user_tokens_today` of their `plan_daily_tokens`, while everyone's
    /// replies cost `global_cost_today` of the `global_daily_cap` (both in
    /// micro-dollars). Usage is known only after a reply, so the reply that
    /// crosses a limit is still given; the next one is refused.
    pub fn decide(
        user_tokens_today: u64,
        plan_daily_tokens: u64,
        global_cost_today: u64,
        global_daily_cap: u64,
        subscribed: bool,
    ) -> SpendDecision {
        if user_tokens_today >= plan_daily_tokens {
            SpendDecision::UserBudgetSpent
        } else if !subscribed && global_cost_today >= global_daily_cap {
            SpendDecision::GlobalCapReached
        } else {
            SpendDecision::Allow
        }
    }
}

/// The start (00:00 UTC) of the day `now` is in: where daily budgets reset.
pub fn start_of_day(now: DateTime<Utc>) -> DateTime<Utc> {
    now.date_naive().and_time(chrono::NaiveTime::MIN).and_utc()
}

/// Micro-dollars as dollars for people to read: `12500000` is `12.5`,
/// `50000000` is `50`, `1` is `0.000001`.
pub fn format_usd(micros: u64) -> String {
    let whole = micros / MICROS_PER_USD;
    let fraction = micros % MICROS_PER_USD;
    if fraction == 0 {
        return whole.to_string();
    }
    let digits = format!("{fraction:06}");
    format!("{whole}.{}", digits.trim_end_matches('0'))
}

fn non_negative(tokens: i64) -> u64 {
    u64::try_from(tokens).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usage(model: &str, prompt: i64, completion: i64) -> ModelUsage {
        ModelUsage {
            model: model.to_owned(),
            prompt_tokens: prompt,
            completion_tokens: completion,
        }
    }

    fn service() -> SpendService {
        SpendService::new(
            [(
                "deepseek/deepseek-chat".to_owned(),
                ModelPrice {
                    prompt: 270_000,
                    completion: 1_100_000,
                },
            )],
            ModelPrice {
                prompt: 300_000,
                completion: 1_200_000,
            },
        )
    }

    #[test]
    fn known_models_use_their_price_and_others_the_default() {
        let s = service();
        assert_eq!(s.price("deepseek/deepseek-chat").completion, 1_100_000);
        assert_eq!(s.price("someone/else").prompt, 300_000);
        // A million tokens each way: $0.27 + $1.10.
        assert_eq!(
            s.cost(&[usage("deepseek/deepseek-chat", 1_000_000, 1_000_000)]),
            1_370_000
        );
        // Unknown model at the default: 2M * $0.30 + 0.5M * $1.20.
        assert_eq!(
            s.cost(&[usage("someone/else", 2_000_000, 500_000)]),
            1_200_000
        );
    }

    #[test]
    fn costs_add_up_across_models_and_round_up() {
        let s = service();
        let both = [
            usage("deepseek/deepseek-chat", 1_000_000, 0),
            usage("someone/else", 0, 1_000_000),
        ];
        assert_eq!(s.cost(&both), 270_000 + 1_200_000);
        // One prompt token at $0.27/1M is 0.27 micro-dollars: rounded up to 1.
        assert_eq!(s.cost(&[usage("deepseek/deepseek-chat", 1, 0)]), 1);
        assert_eq!(s.cost(&[]), 0);
        // Negative counts never reduce a cost.
        assert_eq!(
            s.cost(&[
                usage("someone/else", -5_000_000, 0),
                usage("someone/else", 1_000_000, 0)
            ]),
            300_000
        );
    }

    #[test]
    fn huge_figures_saturate_instead_of_overflowing() {
        let s = SpendService::new(
            [],
            ModelPrice {
                prompt: u64::MAX,
                completion: u64::MAX,
            },
        );
        let much = [
            usage("a", i64::MAX, i64::MAX),
            usage("b", i64::MAX, i64::MAX),
        ];
        assert_eq!(s.cost(&much), u64::MAX);
        assert_eq!(SpendService::tokens(&much), u64::MAX);
    }

    #[test]
    fn tokens_count_prompt_and_completion_of_every_model() {
        let used = [usage("a", 100, 20), usage("b", 5, 1)];
        assert_eq!(SpendService::tokens(&used), 126);
        assert_eq!(SpendService::tokens(&[]), 0);
    }

    #[test]
    fn the_user_budget_stops_everyone_who_spent_it() {
        use SpendDecision::*;
        assert_eq!(SpendService::decide(0, 1, 0, 100, false), Allow);
        assert_eq!(SpendService::decide(999, 1000, 0, 100, false), Allow);
        assert_eq!(
            SpendService::decide(1000, 1000, 0, 100, false),
            UserBudgetSpent
        );
        assert_eq!(
            SpendService::decide(5000, 1000, 0, 100, true),
            UserBudgetSpent
        );
    }

    #[test]
    fn the_global_cap_stops_the_free_tier_only() {
        use SpendDecision::*;
        assert_eq!(SpendService::decide(0, 1000, 99, 100, false), Allow);
        assert_eq!(
            SpendService::decide(0, 1000, 100, 100, false),
            GlobalCapReached
        );
        assert_eq!(SpendService::decide(0, 1000, 500, 100, true), Allow);
        // A person over their own budget hears about that, not the cap.
        assert_eq!(
            SpendService::decide(1000, 1000, 500, 100, false),
            UserBudgetSpent
        );
    }

    #[test]
    fn days_start_at_midnight_utc() {
        let t = DateTime::from_timestamp(1_800_000_123, 456_000).expect("time");
        let start = start_of_day(t);
        assert_eq!(start.timestamp() % 86_400, 0);
        assert!(start <= t && t - start < chrono::TimeDelta::days(1));
        assert_eq!(start_of_day(start), start);
    }

    #[test]
    fn dollars_print_without_trailing_zeros() {
        assert_eq!(format_usd(50_000_000), "50");
        assert_eq!(format_usd(12_500_000), "12.5");
        assert_eq!(format_usd(300_000), "0.3");
        assert_eq!(format_usd(1), "0.000001");
        assert_eq!(format_usd(0), "0");
    }
}
