//! What each simulated chat sent and what the bot showed in it, turned into
//! the run's verdicts (lost, answered twice, out of order) and latency
//! histograms.
//!
//! Every user message starts with a marker `m<seq>`; the model stand-in's
//! replies quote the last user message they answer, so a reply tells which
//! messages it covers: all of the chat's messages up to the quoted one. A
//! reply quoting a message at or below one already answered is a message
//! answered twice (or out of order).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use hdrhistogram::Histogram;
use tokio::sync::Notify;
use tokio::time::Instant;
use vitte_stand_ins::telegram::{ActivityKind, BotActivity};

/// The marker of a user's `seq`-th message.
pub fn marker(seq: u64) -> String {
    format!("m{seq}")
}

/// The highest `m<digits>` word in `text`, if any.
pub fn quoted_marker(text: &str) -> Option<u64> {
    let bytes = text.as_bytes();
    let mut best = None;
    for (i, &b) in bytes.iter().enumerate() {
        if b != b'm' || (i > 0 && bytes[i - 1].is_ascii_alphanumeric()) {
            continue;
        }
        let digits: String = bytes[i + 1..]
            .iter()
            .take_while(|c| c.is_ascii_digit())
            .map(|&c| char::from(c))
            .collect();
        let end = i + 1 + digits.len();
        if digits.is_empty() || bytes.get(end).is_some_and(u8::is_ascii_alphanumeric) {
            continue;
        }
        if let Ok(n) = digits.parse::<u64>() {
            best = best.max(Some(n));
        }
    }
    best
}

/// Latency histograms, in microseconds.
#[derive(Debug, Clone)]
pub struct Histograms {
    /// Intended send time to the webhook's 2xx.
    pub ack: Histogram<u64>,
    /// Intended send time to the first "typing" of a chat that was idle.
    pub typing: Histogram<u64>,
    /// A reply's time minus when its generation could start (the later of
    /// its newest message and the previous reply) minus the model's latency.
    pub overhead: Histogram<u64>,
    /// Intended send time of each message to the reply covering it.
    pub end_to_end: Histogram<u64>,
}

fn histogram() -> Histogram<u64> {
    // Up to ten minutes at three significant digits.
    #[allow(clippy::expect_used)]
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("constant bounds are valid")
}

impl Default for Histograms {
    fn default() -> Self {
        Self {
            ack: histogram(),
            typing: histogram(),
            overhead: histogram(),
            end_to_end: histogram(),
        }
    }
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX).max(1)
}

/// One message sent by a simulated user.
#[derive(Debug, Clone, Copy)]
struct Sent {
    intended: Instant,
    measured: bool,
}

#[derive(Debug, Default)]
struct Chat {
    sent: Vec<Sent>,
    answered_upto: u64,
    last_reply_at: Option<Instant>,
    awaiting_typing: Option<Instant>,
    replies: u64,
    twice: u64,
    beyond: u64,
    refusals: u64,
    last_activity: Option<Instant>,
    /// Everything shown, kept only while the chat is being onboarded.
    log: Option<Vec<BotActivity>>,
}

/// Totals over all chats.
#[derive(Debug, Clone, Default)]
pub struct Totals {
    /// Messages sent.
    pub sent: u64,
    /// Messages sent in the measured window.
    pub sent_measured: u64,
    /// Replies seen (bot messages quoting a marker).
    pub replies: u64,
    /// Messages covered by a reply.
    pub answered: u64,
    /// Messages never covered by a reply, in chats never refused.
    pub lost: u64,
    /// Messages never covered, in chats that were told to slow down.
    pub refused_unanswered: u64,
    /// Replies quoting a message already answered.
    pub answered_twice: u64,
    /// Replies quoting a message that was never sent.
    pub phantom: u64,
    /// Rate-limit notices.
    pub refusals: u64,
    /// Chats with at least one message.
    pub chats: u64,
}

/// The shared record of the run.
#[derive(Debug)]
pub struct Tracker {
    inner: Mutex<Inner>,
    changed: Notify,
    model_latency: Duration,
    refusal_text: String,
}

#[derive(Debug, Default)]
struct Inner {
    chats: HashMap<i64, Chat>,
    histograms: Histograms,
    measuring: bool,
    first_measured: Option<Instant>,
    last_measured: Option<Instant>,
}

impl Tracker {
    /// A tracker subtracting `model_latency` from reply times; bot messages
    /// containing `refusal_text` are rate-limit notices.
    pub fn new(model_latency: Duration, refusal_text: &str) -> Self {
        Self {
            inner: Mutex::new(Inner::default()),
            changed: Notify::new(),
            model_latency,
            refusal_text: refusal_text.to_owned(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts or stops counting latencies.
    pub fn set_measuring(&self, on: bool) {
        self.lock().measuring = on;
    }

    /// Keeps a log of everything shown in `chat` (for onboarding).
    pub fn start_log(&self, chat: i64) {
        self.lock().chats.entry(chat).or_default().log = Some(Vec::new());
    }

    /// Stops logging `chat`.
    pub fn stop_log(&self, chat: i64) {
        if let Some(c) = self.lock().chats.get_mut(&chat) {
            c.log = None;
        }
    }

    /// Waits until `chat`'s log satisfies `done`, up to `limit`.
    pub async fn wait_log(
        &self,
        chat: i64,
        limit: Duration,
        mut done: impl FnMut(&[BotActivity]) -> Option<BotActivity>,
    ) -> Option<BotActivity> {
        let deadline = Instant::now() + limit;
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            {
                let inner = self.lock();
                if let Some(found) = inner
                    .chats
                    .get(&chat)
                    .and_then(|c| c.log.as_deref())
                    .and_then(&mut done)
                {
                    return Some(found);
                }
            }
            if tokio::time::timeout_at(deadline, changed).await.is_err() {
                return None;
            }
        }
    }

    /// Notes the `seq`-th message of `chat`, due at `intended`; returns its marker.
    pub fn sent(&self, chat: i64, intended: Instant) -> u64 {
        let mut inner = self.lock();
        let measured = inner.measuring;
        let c = inner.chats.entry(chat).or_default();
        c.sent.push(Sent { intended, measured });
        let seq = u64::try_from(c.sent.len()).unwrap_or(u64::MAX);
        if c.answered_upto + 1 == seq && c.awaiting_typing.is_none() {
            c.awaiting_typing = Some(intended);
        }
        seq
    }

    /// Notes a webhook acknowledgement `after` the intended send time.
    pub fn acked(&self, after: Duration, measured: bool) {
        if measured {
            let _ = self.lock().histograms.ack.record(micros(after));
        }
    }

    /// Whether latencies are being counted now.
    pub fn measuring(&self) -> bool {
        self.lock().measuring
    }

    /// Takes one thing the bot did.
    pub fn observe(&self, event: BotActivity) {
        let mut guard = self.lock();
        let inner = &mut *guard;
        let c = inner.chats.entry(event.chat_id).or_default();
        if let Some(log) = &mut c.log {
            log.push(event.clone());
        }
        if event.kind == ActivityKind::Sent {
            c.last_activity = Some(event.at);
        }
        match event.kind {
            ActivityKind::ChatAction => {
                if let Some(intended) = c.awaiting_typing.take()
                    && c.sent.last().is_some_and(|s| s.measured)
                {
                    let _ = inner
                        .histograms
                        .typing
                        .record(micros(event.at.saturating_duration_since(intended)));
                }
            }
            ActivityKind::Sent => {
                if event.text.contains(&self.refusal_text) {
                    c.refusals += 1;
                } else if let Some(k) = quoted_marker(&event.text) {
                    c.replies += 1;
                    let sent = u64::try_from(c.sent.len()).unwrap_or(u64::MAX);
                    if k > sent {
                        c.beyond += 1;
                    } else if k <= c.answered_upto {
                        c.twice += 1;
                    } else {
                        let newest = c.sent[usize::try_from(k - 1).unwrap_or(0)];
                        let from = usize::try_from(c.answered_upto).unwrap_or(0);
                        let to = usize::try_from(k).unwrap_or(0);
                        for s in &c.sent[from..to] {
                            if s.measured {
                                let _ = inner
                                    .histograms
                                    .end_to_end
                                    .record(micros(event.at.saturating_duration_since(s.intended)));
                            }
                        }
                        if newest.measured {
                            let start = c
                                .last_reply_at
                                .map_or(newest.intended, |r| r.max(newest.intended));
                            let took = event.at.saturating_duration_since(start);
                            let _ = inner
                                .histograms
                                .overhead
                                .record(micros(took.saturating_sub(self.model_latency)));
                            inner.first_measured.get_or_insert(event.at);
                            inner.last_measured = Some(event.at);
                        }
                        c.answered_upto = k;
                        c.last_reply_at = Some(event.at);
                        c.awaiting_typing = c.sent.get(to).map(|next| next.intended.max(event.at));
                    }
                }
            }
            ActivityKind::Edited => {}
        }
        drop(guard);
        self.changed.notify_waiters();
    }

    /// Messages of `chat` not yet covered by a reply.
    pub fn unanswered(&self, chat: i64) -> u64 {
        let inner = self.lock();
        inner.chats.get(&chat).map_or(0, |c| {
            u64::try_from(c.sent.len()).unwrap_or(0) - c.answered_upto
        })
    }

    /// Highest message of `chat` a reply quoted, the rate-limit notices it
    /// got, and when the bot last sent it something.
    pub fn chat_summary(&self, chat: i64) -> (u64, u64, Option<Instant>) {
        let inner = self.lock();
        inner.chats.get(&chat).map_or((0, 0, None), |c| {
            (c.answered_upto, c.refusals, c.last_activity)
        })
    }

    /// The totals, over chats for which `include` holds.
    pub fn totals(&self, include: impl Fn(i64) -> bool) -> Totals {
        let inner = self.lock();
        let mut t = Totals::default();
        for (&id, c) in &inner.chats {
            if !include(id) || c.sent.is_empty() {
                continue;
            }
            let sent = u64::try_from(c.sent.len()).unwrap_or(0);
            t.chats += 1;
            t.sent += sent;
            t.sent_measured +=
                u64::try_from(c.sent.iter().filter(|s| s.measured).count()).unwrap_or(0);
            t.replies += c.replies;
            t.answered += c.answered_upto;
            let missing = sent - c.answered_upto;
            if c.refusals > 0 {
                t.refused_unanswered += missing;
            } else {
                t.lost += missing;
            }
            t.answered_twice += c.twice;
            t.phantom += c.beyond;
            t.refusals += c.refusals;
        }
        t
    }

    /// The histograms so far, and the span between the first and last
    /// measured reply.
    pub fn histograms(&self) -> (Histograms, Duration) {
        let inner = self.lock();
        let span = match (inner.first_measured, inner.last_measured) {
            (Some(a), Some(b)) => b.saturating_duration_since(a),
            _ => Duration::ZERO,
        };
        (inner.histograms.clone(), span)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(chat: i64, text: &str, at: Instant) -> BotActivity {
        BotActivity {
            at,
            chat_id: chat,
            kind: ActivityKind::Sent,
            message_id: 1,
            text: text.to_owned(),
            buttons: Vec::new(),
        }
    }

    #[test]
    fn markers_are_found_as_whole_words() {
        assert_eq!(
            quoted_marker("Oh, \"m12 how are you\" is so like you."),
            Some(12)
        );
        assert_eq!(quoted_marker("«m3 привет»? Расскажи"), Some(3));
        assert_eq!(quoted_marker("mm12 am5 m7x"), None);
        assert_eq!(quoted_marker("no marker here, mmm"), None);
    }

    #[test]
    fn replies_cover_messages_and_duplicates_are_caught() {
        let t = Tracker::new(Duration::from_secs(3), "slow down");
        t.set_measuring(true);
        let t0 = Instant::now();
        for i in 0..3 {
            t.sent(7, t0 + Duration::from_millis(100 * i));
        }
        // One reply for the first two, then the third, then the third again.
        t.observe(reply(7, "\"m2 hi\"", t0 + Duration::from_millis(3_150)));
        t.observe(reply(7, "\"m3 hi\"", t0 + Duration::from_millis(6_200)));
        t.observe(reply(7, "\"m3 hi\"", t0 + Duration::from_millis(6_300)));
        t.observe(reply(
            7,
            "a level-up notice",
            t0 + Duration::from_millis(6_400),
        ));
        let totals = t.totals(|_| true);
        assert_eq!(totals.sent, 3);
        assert_eq!(totals.answered, 3);
        assert_eq!(totals.lost, 0);
        assert_eq!(totals.answered_twice, 1);
        let (h, _) = t.histograms();
        // Overheads: 3.15 - 0.1 - 3 = 50 ms, then 6.2 - 3.15 - 3 = 50 ms.
        assert_eq!(h.overhead.len(), 2);
        assert!(
            (49_000..=51_000).contains(&h.overhead.max()),
            "{}",
            h.overhead.max()
        );
        assert_eq!(h.end_to_end.len(), 3);
        t.sent(7, t0 + Duration::from_secs(7));
        assert_eq!(t.totals(|_| true).lost, 1);
    }

    #[test]
    fn a_chat_told_to_slow_down_counts_as_refused_not_lost() {
        let t = Tracker::new(Duration::ZERO, "slow down");
        let t0 = Instant::now();
        t.sent(1, t0);
        t.sent(1, t0);
        t.observe(reply(1, "\"m1\"", t0));
        t.observe(reply(1, "Please slow down.", t0));
        let totals = t.totals(|_| true);
        assert_eq!(
            (totals.lost, totals.refused_unanswered, totals.refusals),
            (0, 1, 1)
        );
    }
}
