//! Payments in Telegram Stars (and other currencies): `sendInvoice`,
//! `createInvoiceLink`, `answerPreCheckoutQuery`, `refundStarPayment`.
//!
//! The buyer's side (confirming an invoice, the payment arriving) is played
//! through the control API; once the bot approves a pre-checkout query the
//! stand-in sends the `successful_payment` message, as Telegram does after the
//! user has paid.

use chrono::TimeDelta;
use serde_json::{Value, json};

use super::{Reply, chat_id, reply_markup};
use crate::stable_hash::mix;
use crate::telegram::Shared;
use crate::telegram::error::{BotApiError, BotResult};
use crate::telegram::methods::messages::send_from_bot;
use crate::telegram::params::Params;
use crate::telegram::state::{ChargeRecord, InvoiceSpec, State};
use crate::telegram::types::{Chat, Invoice, Message, SuccessfulPayment};

const QUERY_TOO_OLD: &str = "query is too old and response timeout expired or query ID is invalid";

/// The only subscription period Telegram accepts: 30 days.
const SUBSCRIPTION_PERIOD: i64 = 2_592_000;

/// How long Telegram waits for the bot's pre-checkout answer.
const PRE_CHECKOUT_WINDOW: TimeDelta = TimeDelta::seconds(10);

/// An invoice as described by the parameters both invoice methods share.
struct InvoiceParams {
    spec: InvoiceSpec,
    description: String,
    start_parameter: String,
}

fn required(params: &Params, name: &str, max_chars: usize, error: &str) -> BotResult<String> {
    let value = params.str(name).unwrap_or_default();
    let chars = value.chars().count();
    if chars == 0 || chars > max_chars {
        return Err(BotApiError::bad_request(error));
    }
    Ok(value)
}

fn invoice_params(params: &Params) -> BotResult<InvoiceParams> {
    let title = required(params, "title", 32, "INVOICE_TITLE_INVALID")?;
    let description = required(params, "description", 255, "INVOICE_DESCRIPTION_INVALID")?;
    let payload = params.str("payload").unwrap_or_default();
    if payload.is_empty() || payload.len() > 128 {
        return Err(BotApiError::bad_request("INVOICE_PAYLOAD_INVALID"));
    }
    let currency = params.str("currency").unwrap_or_default();
    if currency.len() != 3 || !currency.bytes().all(|b| b.is_ascii_uppercase()) {
        return Err(BotApiError::bad_request("CURRENCY_INVALID"));
    }
    let provider_token = params.str("provider_token").unwrap_or_default();
    let stars = currency == "XTR";
    if stars != provider_token.is_empty() {
        return Err(BotApiError::bad_request("PAYMENT_PROVIDER_INVALID"));
    }
    let prices = match params.json("prices", "prices")? {
        Some(Value::Array(prices)) => prices,
        _ => return Err(BotApiError::bad_request("can't parse prices JSON object")),
    };
    let mut total: i64 = 0;
    for price in &prices {
        let label_ok = price["label"].as_str().is_some_and(|l| !l.is_empty());
        let amount = price["amount"].as_i64();
        match (label_ok, amount) {
            (true, Some(amount)) => total = total.saturating_add(amount),
            _ => return Err(BotApiError::bad_request("can't parse prices JSON object")),
        }
    }
    if stars && prices.len() != 1 {
        return Err(BotApiError::bad_request("STARS_INVOICE_INVALID"));
    }
    if prices.is_empty() || total <= 0 {
        return Err(BotApiError::bad_request("CURRENCY_TOTAL_AMOUNT_INVALID"));
    }
    let subscription_period = params.i64("subscription_period")?;
    if let Some(period) = subscription_period
        && (!stars || period != SUBSCRIPTION_PERIOD)
    {
        return Err(BotApiError::bad_request("SUBSCRIPTION_PERIOD_INVALID"));
    }
    Ok(InvoiceParams {
        spec: InvoiceSpec {
            title,
            payload,
            currency,
            total_amount: total,
            subscription_period,
        },
        description,
        start_parameter: params.str("start_parameter").unwrap_or_default(),
    })
}

/// `sendInvoice`.
pub(crate) fn send_invoice(shared: &Shared, params: &Params) -> BotResult<Reply> {
    let chat_id = chat_id(params)?;
    let invoice = invoice_params(params)?;
    if invoice.spec.subscription_period.is_some() {
        // Subscriptions are sold through invoice links only.
        return Err(BotApiError::bad_request("SUBSCRIPTION_PERIOD_INVALID"));
    }
    let markup = reply_markup(params)?;
    let mut state = shared.lock();
    let spec = invoice.spec.clone();
    let message = send_from_bot(shared, &mut state, chat_id, |m| {
        m.invoice = Some(Invoice {
            title: invoice.spec.title,
            description: invoice.description,
            start_parameter: invoice.start_parameter,
            currency: invoice.spec.currency,
            total_amount: invoice.spec.total_amount,
        });
        m.reply_markup = markup;
    })?;
    state
        .invoices_by_message
        .insert((chat_id, message.message_id), spec);
    Ok((&message).into())
}

/// `createInvoiceLink`.
pub(crate) fn create_invoice_link(shared: &Shared, params: &Params) -> BotResult<Reply> {
    let invoice = invoice_params(params)?;
    let mut state = shared.lock();
    let serial = state.serial();
    let link = format!(
        "https://t.me/$stand-in-{:012x}",
        mix(shared.bot_id().unsigned_abs(), serial) >> 16
    );
    state.invoice_links.insert(link.clone(), invoice.spec);
    Ok(Value::String(link).into())
}

/// `answerPreCheckoutQuery`: within 10 seconds, once.
pub(crate) fn answer_pre_checkout_query(shared: &Shared, params: &Params) -> BotResult<Reply> {
    let id = params.str("pre_checkout_query_id").unwrap_or_default();
    let ok = params.bool("ok");
    let error_message = params.str("error_message").filter(|m| !m.is_empty());
    if !ok && error_message.is_none() {
        return Err(BotApiError::bad_request("ERROR_MESSAGE_EMPTY"));
    }
    let now = shared.config.clock.now();
    let mut state = shared.lock();
    let record = state
        .pre_checkouts
        .get_mut(&id)
        .filter(|r| r.answer.is_none() && now - r.created <= PRE_CHECKOUT_WINDOW)
        .ok_or_else(|| BotApiError::bad_request(QUERY_TOO_OLD))?;
    record.answer = Some(if ok {
        Ok(())
    } else {
        Err(error_message.unwrap_or_default())
    });
    let pay_now = ok && record.auto_pay;
    if pay_now {
        let paid = record_payment(shared, &mut state, &id);
        drop(state);
        if paid.is_some() {
            shared.notify_updates();
        }
    }
    Ok(true.into())
}

/// The payment of an approved pre-checkout query: a `successful_payment`
/// message from the user, queued as an update. Returns the update id, the
/// message id and the charge id, or `None` if the query cannot be paid.
pub(crate) fn record_payment(
    shared: &Shared,
    state: &mut State,
    query_id: &str,
) -> Option<(i64, i64, String)> {
    let record = state.pre_checkouts.get_mut(query_id)?;
    if record.paid || record.answer != Some(Ok(())) {
        return None;
    }
    record.paid = true;
    let (user_id, spec) = (record.user_id, record.invoice.clone());
    let user = state.users.get(&user_id)?.user.clone();
    let serial = state.serial();
    let charge_id = format!("stxCHG{:016x}", mix(shared.bot_id().unsigned_abs(), serial));
    let now = shared.now_unix();
    let payment = SuccessfulPayment {
        currency: spec.currency.clone(),
        total_amount: spec.total_amount,
        invoice_payload: spec.payload.clone(),
        subscription_expiration_date: spec.subscription_period.map(|p| now + p),
        is_recurring: spec.subscription_period.map(|_| true),
        is_first_recurring: spec.subscription_period.map(|_| true),
        telegram_payment_charge_id: charge_id.clone(),
        provider_payment_charge_id: format!("{user_id}_{serial}"),
    };
    let max_kept = shared.config.max_messages_per_chat;
    let message = state
        .chat_entry(Chat::private(&user))
        .push(false, max_kept, |id, chat| {
            let mut message = Message::new(id, Some(user.clone()), chat.clone(), now);
            message.successful_payment = Some(payment);
            message
        });
    state.charges.insert(
        charge_id.clone(),
        ChargeRecord {
            user_id,
            refunded: false,
        },
    );
    let (update_id, _) = state.enqueue(json!({ "message": message.to_json() }));
    Some((update_id, message.message_id, charge_id))
}

/// `refundStarPayment`.
pub(crate) fn refund_star_payment(shared: &Shared, params: &Params) -> BotResult<Reply> {
    let user_id = params.i64("user_id")?.unwrap_or(0);
    let charge_id = params.str("telegram_payment_charge_id").unwrap_or_default();
    let mut state = shared.lock();
    let charge = state
        .charges
        .get_mut(&charge_id)
        .filter(|c| c.user_id == user_id)
        .ok_or_else(|| BotApiError::bad_request("CHARGE_NOT_FOUND"))?;
    if charge.refunded {
        return Err(BotApiError::bad_request("CHARGE_ALREADY_REFUNDED"));
    }
    charge.refunded = true;
    Ok(true.into())
}
