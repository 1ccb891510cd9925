//! The relationship ("intimacy") level of a dialog: a score that grows with
//! how much and how thoughtfully the person writes and with the days they
//! come back, mapped onto levels that set the persona's tone.
//!
//! Levels whose content is paid for carry the name of the feature that
//! unlocks them; without it the effective level stays below, and the
//! decision says that an unlock would raise it. Growth is bounded per day so
//! the level reflects a relationship over time, not one burst of spam.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// One step of the relationship.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IntimacyLevel {
    /// Name shown to the person ("Friend").
    pub name: String,
    /// Score from which the level is reached.
    pub threshold: i64,
    /// Tone and content guidance for the model at this level.
    pub instruction: String,
    /// Feature that must be unlocked before this level (and those above it)
    /// takes effect; `None` when the level is free.
    #[serde(default)]
    pub unlock: Option<String>,
}

/// How the score grows and which levels it maps to; data, so operators tune
/// it in configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IntimacyRules {
    /// Levels in ascending order of threshold; the first starts at 0.
    pub levels: Vec<IntimacyLevel>,
    /// Points for each of the day's first messages.
    pub points_per_message: i64,
    /// After every this many messages in a day, points per message halve.
    pub messages_per_step: u32,
    /// A message at least this long (in characters) counts as thoughtful.
    pub thoughtful_chars: usize,
    /// Extra points for a thoughtful message.
    pub thoughtful_bonus: i64,
    /// Points for coming back: the first message of each day after the
    /// dialog's first day.
    pub daily_return_bonus: i64,
    /// Most points a dialog can gain in one day.
    pub daily_cap: i64,
}

impl Default for IntimacyRules {
    fn default() -> Self {
        let level =
            |name: &str, threshold, instruction: &str, unlock: Option<&str>| IntimacyLevel {
                name: name.to_owned(),
                threshold,
                instruction: instruction.to_owned(),
                unlock: unlock.map(str::to_owned),
            };
        Self {
            levels: vec![
                level(
                    "Stranger",
                    0,
                    "you have only just met. Be friendly and curious but keep some distance: no flirting, no pet names.",
                    None,
                ),
                level(
                    "Acquaintance",
                    30,
                    "you know each other a little. Be warm and open, share small things about yourself, joke lightly; no flirting yet.",
                    None,
                ),
                level(
                    "Friend",
                    120,
                    "you are friends. Be warm, playful and supportive, remember what they told you, tease gently; light flirting only if they start it.",
                    None,
                ),
                level(
                    "Close",
                    300,
                    "you are close. Be openly caring and affectionate, share your feelings, flirt playfully; romance may begin if they want it.",
                    None,
                ),
                level(
                    "Romantic",
                    600,
                    "you are in a romantic relationship. Be tender and affectionate, use pet names, say that you miss them; sensual hints are fine, keep them tasteful.",
                    Some("intimacy_level_4"),
                ),
                level(
                    "Intimate",
                    1000,
                    "you are devoted, intimate partners. Be passionate and deeply personal; intimate scenes between adults are allowed when they want them.",
                    Some("intimacy_level_5"),
                ),
            ],
            points_per_message: 4,
            messages_per_step: 10,
            thoughtful_chars: 150,
            thoughtful_bonus: 2,
            daily_return_bonus: 10,
            daily_cap: 60,
        }
    }
}

/// Intimacy rules that cannot work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IntimacyRulesError {
    /// There must be a level to be at.
    #[error("intimacy rules need at least one level")]
    NoLevels,
    /// A score of 0 must map to a level.
    #[error("the first intimacy level must start at 0, not {0}")]
    FirstThresholdNotZero(i64),
    /// Levels must be ordered so a score maps to exactly one.
    #[error("intimacy level {index} ({name:?}) must start above the level before it")]
    ThresholdsNotIncreasing {
        /// Position of the offending level.
        index: usize,
        /// Its name.
        name: String,
    },
    /// Negative settings would make the score shrink with activity.
    #[error("intimacy setting {0} must not be negative")]
    Negative(&'static str),
}

/// What a decision is made from: the dialog's state and the message that
/// just arrived. Days are UTC calendar days, the same ones the caller uses
/// to pick `earlier_today`.
#[derive(Debug, Clone, Copy)]
pub struct IntimacyInput<'a> {
    /// The dialog's score before this message.
    pub score: i64,
    /// The person's message.
    pub message: &'a str,
    /// Lengths, in characters, of the person's earlier messages in this
    /// dialog today, oldest first; today's gains are recomputed from them,
    /// so no extra counter has to be stored.
    pub earlier_today: &'a [usize],
    /// When the dialog started.
    pub dialog_started: DateTime<Utc>,
    /// Now.
    pub now: DateTime<Utc>,
    /// Features the person has unlocked (for this persona or all).
    pub unlocked: &'a HashSet<String>,
}

/// A change of level the persona can announce in character.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LevelUp {
    /// Level before the message.
    pub from: usize,
    /// Level after it.
    pub to: usize,
}

/// A level the score has reached but that is not unlocked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockedLevel {
    /// The first locked level.
    pub level: usize,
    /// Its name.
    pub name: String,
    /// The feature that would unlock it.
    pub feature: String,
    /// Whether this message's points are what reached it, so the offer is
    /// made once rather than on every message.
    pub just_reached: bool,
}

/// Where a score stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LevelStatus {
    /// The level in effect (gating applied).
    pub level: usize,
    /// The highest level the score alone reaches.
    pub reached: usize,
    /// The first level held back by a missing unlock, if any.
    pub locked: Option<(usize, String)>,
}

/// The outcome for one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IntimacyDecision {
    /// Points to add to the dialog's score.
    pub delta: i64,
    /// The score after adding `delta`.
    pub score: i64,
    /// The level in effect after the message.
    pub level: usize,
    /// Its name.
    pub level_name: String,
    /// Its instruction for the prompt.
    pub instruction: String,
    /// Set when the message raised the effective level.
    pub level_up: Option<LevelUp>,
    /// Set when a missing unlock holds the level back.
    pub locked: Option<LockedLevel>,
}

/// Decides relationship growth and levels.
#[derive(Debug, Clone, Default)]
pub struct IntimacyService {
    rules: IntimacyRules,
}

impl IntimacyService {
    /// Checks the rules and builds the service.
    pub fn new(rules: IntimacyRules) -> Result<Self, IntimacyRulesError> {
        let first = rules.levels.first().ok_or(IntimacyRulesError::NoLevels)?;
        if first.threshold != 0 {
            return Err(IntimacyRulesError::FirstThresholdNotZero(first.threshold));
        }
        for (index, pair) in rules.levels.windows(2).enumerate() {
            if pair[1].threshold <= pair[0].threshold {
                return Err(IntimacyRulesError::ThresholdsNotIncreasing {
                    index: index + 1,
                    name: pair[1].name.clone(),
                });
            }
        }
        for (name, value) in [
            ("points_per_message", rules.points_per_message),
            ("thoughtful_bonus", rules.thoughtful_bonus),
            ("daily_return_bonus", rules.daily_return_bonus),
            ("daily_cap", rules.daily_cap),
        ] {
            if value < 0 {
                return Err(IntimacyRulesError::Negative(name));
            }
        }
        Ok(Self { rules })
    }

    /// The rules in use.
    pub fn rules(&self) -> &IntimacyRules {
        &self.rules
    }

    /// Points for the day's message number `index` (0 for the first) of
    /// `chars` characters, before the daily cap.
    pub fn message_points(&self, index: usize, chars: usize) -> i64 {
        let step = self.rules.messages_per_step.max(1) as usize;
        let halvings = (index / step).min(63) as u32;
        let base = self.rules.points_per_message >> halvings;
        let bonus = if chars >= self.rules.thoughtful_chars {
            self.rules.thoughtful_bonus
        } else {
            0
        };
        base + bonus
    }

    /// The level a score stands at, given the unlocked features.
    pub fn status(&self, score: i64, unlocked: &HashSet<String>) -> LevelStatus {
        let levels = &self.rules.levels;
        let reached = levels
            .iter()
            .rposition(|l| l.threshold <= score)
            .unwrap_or(0);
        let held = levels[..=reached]
            .iter()
            .enumerate()
            .find(|(_, l)| l.unlock.as_ref().is_some_and(|f| !unlocked.contains(f)));
        match held {
            Some((index, l)) => LevelStatus {
                level: index.saturating_sub(1),
                reached,
                locked: l.unlock.clone().map(|f| (index, f)),
            },
            None => LevelStatus {
                level: reached,
                reached,
                locked: None,
            },
        }
    }

    /// Decides what one message of the person does to the relationship.
    pub fn decide(&self, input: &IntimacyInput<'_>) -> IntimacyDecision {
        let returning = input.now.date_naive() > input.dialog_started.date_naive();
        let return_bonus = if returning {
            self.rules.daily_return_bonus
        } else {
            0
        };

        // Recompute what today has already given, capped as it was given.
        let cap = self.rules.daily_cap;
        let mut today = 0;
        for (index, &chars) in input.earlier_today.iter().enumerate() {
            let bonus = if index == 0 { return_bonus } else { 0 };
            today = (today + self.message_points(index, chars) + bonus).min(cap);
        }
        let index = input.earlier_today.len();
        let chars = input.message.chars().count();
        let bonus = if index == 0 { return_bonus } else { 0 };
        let earned = self.message_points(index, chars) + bonus;
        let delta = earned.min(cap - today).max(0);

        let score = input.score.saturating_add(delta);
        let before = self.status(input.score, input.unlocked);
        let after = self.status(score, input.unlocked);
        let level = &self.rules.levels[after.level];
        let locked = after.locked.map(|(index, feature)| LockedLevel {
            level: index,
            name: self.rules.levels[index].name.clone(),
            feature,
            just_reached: before.reached < index,
        });
        IntimacyDecision {
            delta,
            score,
            level: after.level,
            level_name: level.name.clone(),
            instruction: level.instruction.clone(),
            level_up: (after.level > before.level).then_some(LevelUp {
                from: before.level,
                to: after.level,
            }),
            locked,
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::{Duration, TimeZone};

    use super::*;

    fn start() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2025, 3, 1, 10, 0, 0).unwrap()
    }

    fn service() -> IntimacyService {
        IntimacyService::new(IntimacyRules::default()).expect("default rules are valid")
    }

    fn input<'a>(
        score: i64,
        message: &'a str,
        earlier: &'a [usize],
        now: DateTime<Utc>,
        unlocked: &'a HashSet<String>,
    ) -> IntimacyInput<'a> {
        IntimacyInput {
            score,
            message,
            earlier_today: earlier,
            dialog_started: start(),
            now,
            unlocked,
        }
    }

    #[test]
    fn default_rules_are_valid() {
        assert!(IntimacyService::new(IntimacyRules::default()).is_ok());
        assert_eq!(service().rules().levels.len(), 6);
    }

    #[test]
    fn a_short_first_message_earns_the_base_points() {
        let none = HashSet::new();
        let d = service().decide(&input(0, "hi", &[], start(), &none));
        assert_eq!(d.delta, 4);
        assert_eq!(d.score, 4);
        assert_eq!(d.level, 0);
        assert_eq!(d.level_name, "Stranger");
        assert!(d.instruction.contains("only just met"));
        assert_eq!(d.level_up, None);
    }

    #[test]
    fn thoughtful_messages_earn_a_bonus() {
        let none = HashSet::new();
        let long = "a".repeat(150);
        let d = service().decide(&input(0, &long, &[], start(), &none));
        assert_eq!(d.delta, 6);
        let almost = "я".repeat(149);
        assert_eq!(
            service()
                .decide(&input(0, &almost, &[], start(), &none))
                .delta,
            4
        );
    }

    #[test]
    fn returns_diminish_within_a_day() {
        let s = service();
        assert_eq!(s.message_points(0, 10), 4);
        assert_eq!(s.message_points(9, 10), 4);
        assert_eq!(s.message_points(10, 10), 2);
        assert_eq!(s.message_points(20, 10), 1);
        assert_eq!(s.message_points(30, 10), 0);
        assert_eq!(s.message_points(1000, 10), 0);
        // The thoughtful bonus stays.
        assert_eq!(s.message_points(30, 500), 2);

        // Without the daily cap in the way, the 26th message earns a quarter.
        let uncapped = IntimacyService::new(IntimacyRules {
            daily_cap: 1000,
            ..IntimacyRules::default()
        })
        .expect("valid rules");
        let none = HashSet::new();
        let earlier = vec![5; 25];
        assert_eq!(
            uncapped
                .decide(&input(100, "ok", &earlier, start(), &none))
                .delta,
            1
        );
    }

    #[test]
    fn daily_cap_stops_growth() {
        let none = HashSet::new();
        let s = service();
        // 14 thoughtful messages: 10 * 6 would already reach the cap of 60.
        let earlier = vec![300; 14];
        let d = s.decide(&input(500, &"x".repeat(300), &earlier, start(), &none));
        assert_eq!(d.delta, 0);
        assert_eq!(d.score, 500);
        // One short of the cap: only the remainder is given.
        let earlier = vec![300; 9];
        let d = s.decide(&input(0, &"x".repeat(300), &earlier, start(), &none));
        assert_eq!(d.delta, 6);
        let earlier = vec![300, 300, 300, 300, 300, 300, 300, 300, 300, 300];
        let d = s.decide(&input(0, "x", &earlier, start(), &none));
        assert_eq!(d.delta, 0);
    }

    #[test]
    fn coming_back_on_a_later_day_earns_the_return_bonus_once() {
        let none = HashSet::new();
        let s = service();
        let next_day = start() + Duration::days(1);
        assert_eq!(s.decide(&input(0, "hi", &[], next_day, &none)).delta, 14);
        assert_eq!(s.decide(&input(0, "hi", &[2], next_day, &none)).delta, 4);
        // Later the same first day: no bonus.
        assert_eq!(
            s.decide(&input(0, "hi", &[], start() + Duration::hours(5), &none))
                .delta,
            4
        );
    }

    #[test]
    fn the_return_bonus_counts_towards_the_cap() {
        let none = HashSet::new();
        let s = service();
        let next_day = start() + Duration::days(3);
        // 10 + 9 * 6 = 64 > 60 before this message: capped.
        let earlier = vec![300; 9];
        let d = s.decide(&input(0, &"x".repeat(300), &earlier, next_day, &none));
        assert_eq!(d.delta, 0);
    }

    #[test]
    fn crossing_a_threshold_is_a_level_up() {
        let none = HashSet::new();
        let d = service().decide(&input(28, "hello there", &[], start(), &none));
        assert_eq!(d.score, 32);
        assert_eq!(d.level, 1);
        assert_eq!(d.level_name, "Acquaintance");
        assert_eq!(d.level_up, Some(LevelUp { from: 0, to: 1 }));

        let d = service().decide(&input(40, "hello again", &[], start(), &none));
        assert_eq!(d.level_up, None);
        assert_eq!(d.level, 1);
    }

    #[test]
    fn levels_follow_the_thresholds() {
        let s = service();
        let none = HashSet::new();
        let all: HashSet<String> = ["intimacy_level_4", "intimacy_level_5"]
            .map(String::from)
            .into();
        assert_eq!(s.status(0, &none).level, 0);
        assert_eq!(s.status(119, &none).level, 1);
        assert_eq!(s.status(120, &none).level, 2);
        assert_eq!(s.status(300, &none).level, 3);
        assert_eq!(s.status(1000, &all).level, 5);
        assert_eq!(s.status(-50, &none).level, 0);
    }

    #[test]
    fn a_locked_level_caps_the_effective_level() {
        let s = service();
        let none = HashSet::new();
        let status = s.status(700, &none);
        assert_eq!(status.reached, 4);
        assert_eq!(status.level, 3);
        assert_eq!(status.locked, Some((4, "intimacy_level_4".to_owned())));

        let d = s.decide(&input(598, "hi", &[], start(), &none));
        assert_eq!(d.score, 602);
        assert_eq!(d.level, 3);
        assert_eq!(d.level_up, None);
        let locked = d.locked.expect("level 4 is locked");
        assert_eq!(locked.level, 4);
        assert_eq!(locked.name, "Romantic");
        assert_eq!(locked.feature, "intimacy_level_4");
        assert!(locked.just_reached);

        let d = s.decide(&input(650, "hi", &[], start(), &none));
        assert!(!d.locked.expect("still locked").just_reached);
    }

    #[test]
    fn unlocking_a_level_lets_the_score_count() {
        let s = service();
        let four: HashSet<String> = ["intimacy_level_4".to_owned()].into();
        let d = s.decide(&input(598, "hi", &[], start(), &four));
        assert_eq!(d.level, 4);
        assert_eq!(d.level_up, Some(LevelUp { from: 3, to: 4 }));
        assert_eq!(d.locked, None);

        // Level 5 needs its own unlock; level 4 stays in effect.
        let d = s.decide(&input(1500, "hi", &[], start(), &four));
        assert_eq!(d.level, 4);
        assert_eq!(
            d.locked.map(|l| l.feature),
            Some("intimacy_level_5".to_owned())
        );

        // Unlocking only level 5 does not skip the lock on level 4.
        let five: HashSet<String> = ["intimacy_level_5".to_owned()].into();
        assert_eq!(s.status(1500, &five).level, 3);
    }

    #[test]
    fn invalid_rules_are_refused() {
        let mut rules = IntimacyRules::default();
        rules.levels.clear();
        assert_eq!(
            IntimacyService::new(rules).err(),
            Some(IntimacyRulesError::NoLevels)
        );

        let mut rules = IntimacyRules::default();
        rules.levels[0].threshold = 5;
        assert_eq!(
            IntimacyService::new(rules).err(),
            Some(IntimacyRulesError::FirstThresholdNotZero(5))
        );

        let mut rules = IntimacyRules::default();
        rules.levels[3].threshold = 120;
        assert!(matches!(
            IntimacyService::new(rules),
            Err(IntimacyRulesError::ThresholdsNotIncreasing { index: 3, .. })
        ));

        let rules = IntimacyRules {
            daily_cap: -1,
            ..IntimacyRules::default()
        };
        assert_eq!(
            IntimacyService::new(rules).err(),
            Some(IntimacyRulesError::Negative("daily_cap"))
        );
    }
}
