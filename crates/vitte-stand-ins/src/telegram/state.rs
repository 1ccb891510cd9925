//! Everything a Telegram stand-in remembers, behind one mutex: users and
//! their chats, messages, the update queue, files, payments and counters.
//!
//! Critical sections are short and never await, so one lock serves a few
//! hundred requests per second comfortably.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use axum::body::Bytes;
use serde_json::Value;
use tokio::sync::watch;

use super::config::Config;
use super::control::Counters;
use super::error::{BotApiError, BotResult};
use super::rate_limit::{Gcra, retry_after_secs};
use super::types::{Chat, Document, Message, PhotoSize, User, Voice};

/// Update types delivered when `allowed_updates` is empty or never set.
const EXCLUDED_BY_DEFAULT: &[&str] = &["chat_member", "message_reaction", "message_reaction_count"];

/// A user the stand-in has seen.
#[derive(Debug)]
pub(crate) struct UserRecord {
    pub(crate) user: User,
    pub(crate) blocked: bool,
}

/// A message kept for edits and for the control listing.
#[derive(Debug, Clone)]
pub(crate) struct StoredMessage {
    pub(crate) message: Message,
    pub(crate) from_bot: bool,
    pub(crate) revision: u64,
}

/// The last chat action the bot sent to a chat.
#[derive(Debug, Clone)]
pub(crate) struct ChatAction {
    pub(crate) action: String,
    pub(crate) date: i64,
    pub(crate) revision: u64,
}

/// One chat and its history.
#[derive(Debug)]
pub(crate) struct ChatRecord {
    pub(crate) chat: Chat,
    next_message_id: i64,
    pub(crate) messages: VecDeque<StoredMessage>,
    /// Recently deleted message ids with the revision of their deletion.
    pub(crate) deleted: VecDeque<(u64, i64)>,
    /// Bumped on every change the control listing can show.
    pub(crate) revision: u64,
    changes: Arc<watch::Sender<u64>>,
    pub(crate) last_action: Option<ChatAction>,
    pub(crate) actions_seen: u64,
    limiter: Gcra,
}

impl ChatRecord {
    fn new(chat: Chat, changes: Arc<watch::Sender<u64>>) -> Self {
        Self {
            chat,
            next_message_id: 1,
            messages: VecDeque::new(),
            deleted: VecDeque::new(),
            revision: 0,
            changes,
            last_action: None,
            actions_seen: 0,
            limiter: Gcra::default(),
        }
    }

    fn bump(&mut self) -> u64 {
        self.revision += 1;
        let revision = self.revision;
        self.changes.send_replace(revision);
        revision
    }

    /// Stores a new message built by `build` from its id; returns a copy.
    pub(crate) fn push(
        &mut self,
        from_bot: bool,
        max_kept: usize,
        build: impl FnOnce(i64, &Chat) -> Message,
    ) -> Message {
        let id = self.next_message_id;
        self.next_message_id += 1;
        let message = build(id, &self.chat);
        let revision = self.bump();
        self.messages.push_back(StoredMessage {
            message: message.clone(),
            from_bot,
            revision,
        });
        while self.messages.len() > max_kept.max(1) {
            self.messages.pop_front();
        }
        message
    }

    pub(crate) fn find(&self, message_id: i64) -> Option<&StoredMessage> {
        let index = self
            .messages
            .binary_search_by_key(&message_id, |m| m.message.message_id)
            .ok()?;
        self.messages.get(index)
    }

    /// Replaces a stored message through `change` and records the revision.
    pub(crate) fn update(
        &mut self,
        message_id: i64,
        change: impl FnOnce(&mut Message),
    ) -> Option<Message> {
        let index = self
            .messages
            .binary_search_by_key(&message_id, |m| m.message.message_id)
            .ok()?;
        let revision = self.bump();
        let stored = self.messages.get_mut(index)?;
        change(&mut stored.message);
        stored.revision = revision;
        Some(stored.message.clone())
    }

    pub(crate) fn delete(&mut self, message_id: i64) -> bool {
        let Ok(index) = self
            .messages
            .binary_search_by_key(&message_id, |m| m.message.message_id)
        else {
            return false;
        };
        self.messages.remove(index);
        let revision = self.bump();
        self.deleted.push_back((revision, message_id));
        while self.deleted.len() > 1000 {
            self.deleted.pop_front();
        }
        true
    }

    pub(crate) fn record_action(&mut self, action: String, date: i64) {
        let revision = self.bump();
        self.actions_seen += 1;
        self.last_action = Some(ChatAction {
            action,
            date,
            revision,
        });
    }
}

/// An update waiting to be fetched by getUpdates or pushed to the webhook.
#[derive(Debug)]
pub(crate) struct PendingUpdate {
    pub(crate) id: i64,
    pub(crate) body: Arc<Value>,
    /// Updates of one chat are pushed strictly one after another.
    pub(crate) chat_key: Option<i64>,
    pub(crate) in_flight: bool,
    pub(crate) attempts: u32,
    pub(crate) not_before: Option<tokio::time::Instant>,
}

/// A webhook as set by setWebhook.
#[derive(Debug, Clone)]
pub(crate) struct Webhook {
    pub(crate) url: String,
    pub(crate) secret_token: Option<String>,
    pub(crate) max_connections: usize,
    pub(crate) ip_address: Option<String>,
}

/// A stored file and where it can be downloaded.
#[derive(Debug, Clone)]
pub(crate) struct StoredFile {
    pub(crate) file_id: String,
    pub(crate) file_unique_id: String,
    pub(crate) file_path: String,
    pub(crate) bytes: Bytes,
}

/// What an invoice asks for, kept to build pre-checkout queries and payments.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct InvoiceSpec {
    pub(crate) title: String,
    pub(crate) payload: String,
    pub(crate) currency: String,
    pub(crate) total_amount: i64,
    pub(crate) subscription_period: Option<i64>,
}

/// A callback query and the bot's answer, if any.
#[derive(Debug, Clone, Default)]
pub(crate) struct CallbackRecord {
    pub(crate) answered: bool,
    pub(crate) text: Option<String>,
    pub(crate) show_alert: bool,
    pub(crate) url: Option<String>,
}

/// A pre-checkout query and the bot's answer, if any.
#[derive(Debug, Clone)]
pub(crate) struct PreCheckoutRecord {
    pub(crate) user_id: i64,
    pub(crate) invoice: InvoiceSpec,
    pub(crate) created: chrono::DateTime<chrono::Utc>,
    pub(crate) answer: Option<Result<(), String>>,
    /// Send the successful payment as soon as the bot says ok, as Telegram
    /// does once the user has confirmed.
    pub(crate) auto_pay: bool,
    pub(crate) paid: bool,
}

/// A completed payment that may be refunded.
#[derive(Debug, Clone)]
pub(crate) struct ChargeRecord {
    pub(crate) user_id: i64,
    pub(crate) refunded: bool,
}

/// The whole memory of the stand-in.
#[derive(Debug)]
pub(crate) struct State {
    pub(crate) users: HashMap<i64, UserRecord>,
    pub(crate) chats: HashMap<i64, ChatRecord>,
    pub(crate) pending: VecDeque<PendingUpdate>,
    next_update_id: i64,
    pub(crate) allowed_updates: Vec<String>,
    pub(crate) webhook: Option<Webhook>,
    pub(crate) last_webhook_error: Option<(i64, String)>,
    /// Incremented by each getUpdates call, so an older waiting call learns
    /// it has been superseded.
    pub(crate) poll_generation: u64,
    global_limiter: Gcra,
    pub(crate) files: HashMap<String, StoredFile>,
    pub(crate) file_paths: HashMap<String, String>,
    pub(crate) callbacks: HashMap<String, CallbackRecord>,
    pub(crate) pre_checkouts: HashMap<String, PreCheckoutRecord>,
    pub(crate) invoices_by_message: HashMap<(i64, i64), InvoiceSpec>,
    pub(crate) invoice_links: HashMap<String, InvoiceSpec>,
    pub(crate) charges: HashMap<String, ChargeRecord>,
    pub(crate) media: HashMap<String, MediaRecord>,
    pub(crate) commands: HashMap<String, Value>,
    pub(crate) counters: Counters,
    /// Wake-ups for control listings, kept apart from chats so waiting on a
    /// chat that does not exist yet does not create it.
    chat_signals: HashMap<i64, Arc<watch::Sender<u64>>>,
    next_serial: u64,
    /// Takes new updates instead of the webhook or getUpdates, when set.
    pub(crate) sink: Option<super::observe::Sink>,
    /// Hears everything the bot shows, when set.
    pub(crate) observer: Option<super::observe::Observer>,
}

/// What a `file_id` refers to when it is sent again.
#[derive(Debug, Clone)]
pub(crate) enum MediaRecord {
    Photo(Vec<PhotoSize>),
    Voice(Voice),
    Document(Document),
}

impl State {
    pub(crate) fn new(config: &Config) -> Self {
        Self {
            users: HashMap::new(),
            chats: HashMap::new(),
            pending: VecDeque::new(),
            next_update_id: config.first_update_id,
            allowed_updates: Vec::new(),
            webhook: None,
            last_webhook_error: None,
            poll_generation: 0,
            global_limiter: Gcra::default(),
            files: HashMap::new(),
            file_paths: HashMap::new(),
            callbacks: HashMap::new(),
            pre_checkouts: HashMap::new(),
            invoices_by_message: HashMap::new(),
            invoice_links: HashMap::new(),
            charges: HashMap::new(),
            media: HashMap::new(),
            commands: HashMap::new(),
            counters: Counters::default(),
            chat_signals: HashMap::new(),
            next_serial: 1,
            sink: None,
            observer: None,
        }
    }

    /// A fresh number for identifiers (files, queries, charges).
    pub(crate) fn serial(&mut self) -> u64 {
        let serial = self.next_serial;
        self.next_serial += 1;
        serial
    }

    /// Records a user, keeping the newest profile fields.
    pub(crate) fn remember_user(&mut self, user: User) {
        self.users
            .entry(user.id)
            .and_modify(|record| record.user = user.clone())
            .or_insert(UserRecord {
                user,
                blocked: false,
            });
    }

    /// The wake-up signal of a chat's control listing.
    pub(crate) fn chat_signal(&mut self, chat_id: i64) -> Arc<watch::Sender<u64>> {
        self.chat_signals
            .entry(chat_id)
            .or_insert_with(|| Arc::new(watch::Sender::new(0)))
            .clone()
    }

    /// The chat with `chat`'s id, created if new.
    pub(crate) fn chat_entry(&mut self, chat: Chat) -> &mut ChatRecord {
        let signal = self.chat_signal(chat.id);
        self.chats
            .entry(chat.id)
            .and_modify(|record| record.chat = chat.clone())
            .or_insert_with(|| ChatRecord::new(chat, signal))
    }

    /// The chat a method addresses by `chat_id`, checking it exists and that
    /// the bot may write there.
    pub(crate) fn writable_chat(
        &mut self,
        config: &Config,
        chat_id: i64,
    ) -> BotResult<&mut ChatRecord> {
        if !self.chats.contains_key(&chat_id) {
            if !config.accept_unknown_chats || chat_id <= 0 {
                return Err(BotApiError::chat_not_found());
            }
            let user = User {
                id: chat_id,
                is_bot: false,
                first_name: format!("User {chat_id}"),
                last_name: None,
                username: None,
                language_code: None,
            };
            let chat = Chat::private(&user);
            self.remember_user(user);
            self.chat_entry(chat);
        }
        if self.users.get(&chat_id).is_some_and(|u| u.blocked) {
            self.counters.forbidden_issued += 1;
            return Err(BotApiError::blocked());
        }
        self.chats
            .get_mut(&chat_id)
            .ok_or_else(BotApiError::chat_not_found)
    }

    /// Applies the flood limits to one message sent to `chat_id` now.
    pub(crate) fn admit_send(&mut self, config: &Config, chat_id: i64) -> BotResult<()> {
        let now = config.clock.now();
        let limits = config.rate_limits;
        let chat_rate = if chat_id < 0 {
            limits.per_group
        } else {
            limits.per_chat
        };
        let chat_limiter = self
            .chats
            .get(&chat_id)
            .map(|c| c.limiter)
            .unwrap_or_default();
        let chat_next = chat_rate.map(|rate| chat_limiter.check(rate, now));
        let global_next = limits
            .global
            .map(|rate| self.global_limiter.check(rate, now));
        let wait = [chat_next, global_next]
            .into_iter()
            .flatten()
            .filter_map(Result::err)
            .max();
        if let Some(wait) = wait {
            self.counters.too_many_requests_issued += 1;
            return Err(BotApiError::TooManyRequests {
                retry_after: retry_after_secs(wait),
            });
        }
        if let (Some(Ok(next)), Some(chat)) = (chat_next, self.chats.get_mut(&chat_id)) {
            chat.limiter = next;
        }
        if let Some(Ok(next)) = global_next {
            self.global_limiter = next;
        }
        Ok(())
    }

    fn is_allowed(&self, kind: &str) -> bool {
        if self.allowed_updates.is_empty() {
            !EXCLUDED_BY_DEFAULT.contains(&kind)
        } else {
            self.allowed_updates.iter().any(|allowed| allowed == kind)
        }
    }

    /// Queues an update. A given `update_id` is kept (the raw control form);
    /// otherwise the next one is assigned. Returns the id and whether the
    /// update passed `allowed_updates`.
    pub(crate) fn enqueue(&mut self, mut update: Value) -> (i64, bool) {
        let given = update.get("update_id").and_then(Value::as_i64);
        let id = given.unwrap_or(self.next_update_id);
        self.next_update_id = self.next_update_id.max(id + 1);
        update["update_id"] = Value::from(id);
        let kind = update
            .as_object()
            .and_then(|o| o.keys().find(|k| *k != "update_id").cloned())
            .unwrap_or_default();
        self.counters.updates_created += 1;
        if !self.is_allowed(&kind) {
            self.counters.updates_filtered += 1;
            return (id, false);
        }
        self.remember_participants(&update, &kind);
        if let Some(sink) = &self.sink {
            (sink.0)(update);
            self.counters.updates_delivered += 1;
            return (id, true);
        }
        let chat_key = chat_key(&update, &kind);
        self.pending.push_back(PendingUpdate {
            id,
            body: Arc::new(update),
            chat_key,
            in_flight: false,
            attempts: 0,
            not_before: None,
        });
        (id, true)
    }

    /// Learns users and chats from a raw update so the bot can answer them.
    fn remember_participants(&mut self, update: &Value, kind: &str) {
        let body = &update[kind];
        let message = match kind {
            "callback_query" => &body["message"],
            _ => body,
        };
        for from in [&body["from"], &message["from"]] {
            if let Some(user) = parse_user(from) {
                self.remember_user(user);
            }
        }
        if let Some(chat) = parse_chat(&message["chat"])
            && !self.chats.contains_key(&chat.id)
        {
            self.chat_entry(chat);
        }
    }

    /// Drops updates below `offset` (confirmed) or, for a negative offset,
    /// all but the last `-offset`.
    pub(crate) fn confirm(&mut self, offset: i64) {
        let before = self.pending.len();
        if offset > 0 {
            self.pending.retain(|u| u.id >= offset);
        } else if offset < 0 {
            let keep = usize::try_from(offset.unsigned_abs()).unwrap_or(usize::MAX);
            while self.pending.len() > keep {
                self.pending.pop_front();
            }
        }
        let confirmed = before - self.pending.len();
        self.counters.updates_confirmed += confirmed as u64;
        self.counters.updates_delivered += confirmed as u64;
    }
}

/// The chat whose updates must stay in order relative to each other.
fn chat_key(update: &Value, kind: &str) -> Option<i64> {
    let body = &update[kind];
    body["chat"]["id"]
        .as_i64()
        .or_else(|| body["message"]["chat"]["id"].as_i64())
        .or_else(|| body["from"]["id"].as_i64())
}

fn parse_user(value: &Value) -> Option<User> {
    Some(User {
        id: value["id"].as_i64()?,
        is_bot: value["is_bot"].as_bool().unwrap_or(false),
        first_name: value["first_name"].as_str().unwrap_or_default().to_owned(),
        last_name: value["last_name"].as_str().map(str::to_owned),
        username: value["username"].as_str().map(str::to_owned),
        language_code: value["language_code"].as_str().map(str::to_owned),
    })
    .filter(|u| !u.is_bot)
}

fn parse_chat(value: &Value) -> Option<Chat> {
    Some(Chat {
        id: value["id"].as_i64()?,
        kind: value["type"].as_str().unwrap_or("private").to_owned(),
        title: value["title"].as_str().map(str::to_owned),
        first_name: value["first_name"].as_str().map(str::to_owned),
        last_name: value["last_name"].as_str().map(str::to_owned),
        username: value["username"].as_str().map(str::to_owned),
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn offsets_confirm_and_negative_offsets_keep_the_tail() {
        let mut state = State::new(&Config::default());
        for n in 0..5 {
            state.enqueue(
                json!({"message": {"message_id": n, "chat": {"id": 7, "type": "private"}}}),
            );
        }
        let ids: Vec<i64> = state.pending.iter().map(|u| u.id).collect();
        assert_eq!(ids, vec![1, 2, 3, 4, 5]);
        state.confirm(3);
        assert_eq!(state.pending.front().map(|u| u.id), Some(3));
        state.confirm(-1);
        let ids: Vec<i64> = state.pending.iter().map(|u| u.id).collect();
        assert_eq!(ids, vec![5]);
        assert_eq!(state.counters.updates_confirmed, 4);
        assert!(state.chats.contains_key(&7));
    }

    #[test]
    fn allowed_updates_filter_and_default_exclusions() {
        let mut state = State::new(&Config::default());
        assert!(!state.enqueue(json!({"chat_member": {}})).1);
        assert!(state.enqueue(json!({"my_chat_member": {}})).1);
        state.allowed_updates = vec!["callback_query".into()];
        assert!(!state.enqueue(json!({"message": {}})).1);
        assert!(state.enqueue(json!({"callback_query": {}})).1);
        assert_eq!(state.counters.updates_filtered, 2);
    }

    #[test]
    fn given_update_ids_are_kept_and_advance_the_counter() {
        let mut state = State::new(&Config::default());
        assert_eq!(
            state.enqueue(json!({"update_id": 100, "message": {}})).0,
            100
        );
        assert_eq!(state.enqueue(json!({"message": {}})).0, 101);
    }
}
