//! A stand-in of an OpenAI-compatible chat-completions API
//! (`POST /v1/chat/completions`, `GET /v1/models`), answering offline with
//! deterministic replies: the same conversation always gets the same answer,
//! streamed or not, with estimated token usage.
//!
//! Latency and failures (429 with `Retry-After`, 500, 503, hangs, broken JSON,
//! cut-off streams, a model that is down, unknown models) are set in
//! [`Config`] and changed at runtime:
//!
//! | request | what it does |
//! |---|---|
//! | `GET /control/llm` → [`Behaviour`] | the current behaviour |
//! | `POST /control/llm` [`BehaviourPatch`] → [`Behaviour`] | change part of it |
//! | `POST /control/llm/reset` → [`Behaviour`] | back to the configured behaviour, stats cleared |
//! | `GET /control/llm/stats` → [`Stats`] | requests by model and outcome, in order |
//!
//! Clients use `{base_url}/v1` as their API base.

mod behaviour;
mod reply;
mod stats;
mod wire;

use std::convert::Infallible;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, Path, State as AxumState};
use axum::http::header::{AUTHORIZATION, CACHE_CONTROL, CONTENT_TYPE};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use vitte_domain::{Clock, SystemClock};

pub use behaviour::{Behaviour, BehaviourPatch, Fault, PatchError};
pub use stats::{Outcome, RecordedRequest, Stats};

use crate::server::{Handle, ServeError};
use reply::{Turn, estimate_tokens, instance_of, pieces, prompt_tokens, truncate_to_tokens};
use stats::Recorder;
use wire::{ChatRequest, OpenAiError, mask_key, usage};

/// Settings of one model stand-in.
#[derive(Debug, Clone)]
pub struct Config {
    /// When set, requests must carry `Authorization: Bearer <key>`; when not,
    /// any key (or none) is accepted.
    pub api_key: Option<String>,
    /// The behaviour at start and after a reset.
    pub behaviour: Behaviour,
    /// What `GET /v1/models` lists when `known_models` accepts any model.
    pub listed_models: Vec<String>,
    /// The source of `created` timestamps.
    pub clock: Arc<dyn Clock>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            api_key: None,
            behaviour: Behaviour::default(),
            listed_models: vec!["vitte-stand-in".into()],
            clock: Arc::new(SystemClock),
        }
    }
}

#[derive(Debug)]
struct Runtime {
    behaviour: Behaviour,
    /// Requests seen by the failure schedule since it was (re)started.
    schedule_position: u64,
    /// Numbers response ids.
    served: u64,
    recorder: Recorder,
}

#[derive(Debug)]
struct Shared {
    config: Config,
    runtime: Mutex<Runtime>,
    closing: CancellationToken,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Runtime> {
        self.runtime.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn record(&self, model: &str, stream: bool, outcome: Outcome, request: Value) {
        self.lock().recorder.record(RecordedRequest {
            model: model.to_owned(),
            stream,
            outcome,
            request,
        });
    }
}

/// An OpenAI-compatible chat-completions stand-in. Cheap to clone; clones
/// share one state.
#[derive(Debug, Clone)]
pub struct LlmStandIn {
    shared: Arc<Shared>,
}

impl LlmStandIn {
    /// Builds a stand-in with the configured behaviour and empty stats.
    pub fn new(config: Config) -> Self {
        let runtime = Runtime {
            behaviour: config.behaviour.clone(),
            schedule_position: 0,
            served: 0,
            recorder: Recorder::default(),
        };
        Self {
            shared: Arc::new(Shared {
                config,
                runtime: Mutex::new(runtime),
                closing: CancellationToken::new(),
            }),
        }
    }

    /// The API and control routes as one router.
    pub fn router(&self) -> Router {
        Router::new()
            .route("/v1/chat/completions", post(chat_completions))
            .route("/v1/models", get(list_models))
            .route("/v1/models/{*model}", get(get_model))
            .route("/control/llm", get(get_behaviour).post(patch_behaviour))
            .route("/control/llm/reset", post(reset_behaviour))
            .route("/control/llm/stats", get(get_stats))
            .layer(DefaultBodyLimit::max(16 * 1024 * 1024))
            .with_state(self.shared.clone())
    }

    /// Serves on `listener` until `shutdown` resolves; hanging and streaming
    /// answers end at once.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServeError> {
        let closing = self.shared.closing.clone();
        let stop = closing.clone();
        let result = axum::serve(crate::server::no_delay(listener), self.router())
            .with_graceful_shutdown(async move {
                tokio::select! {
                    () = shutdown => {}
                    () = stop.cancelled() => {}
                }
                stop.cancel();
            })
            .await;
        closing.cancel();
        Ok(result?)
    }

    /// Serves on `listener` in a background task.
    pub fn spawn(self, listener: TcpListener) -> Result<Handle, ServeError> {
        let addr = listener.local_addr()?;
        Ok(Handle::spawn(addr, move |signal| {
            self.serve(listener, signal)
        }))
    }

    /// The current behaviour.
    pub fn behaviour(&self) -> Behaviour {
        self.shared.lock().behaviour.clone()
    }

    /// Changes part of the behaviour (see [`BehaviourPatch`]).
    pub fn configure(&self, patch: BehaviourPatch) -> Result<Behaviour, PatchError> {
        configure(&self.shared, patch)
    }

    /// Back to the configured behaviour, with the schedule and stats cleared.
    pub fn reset(&self) -> Behaviour {
        reset(&self.shared)
    }

    /// What has been asked so far.
    pub fn stats(&self) -> Stats {
        self.shared.lock().recorder.snapshot()
    }
}

fn configure(shared: &Shared, patch: BehaviourPatch) -> Result<Behaviour, PatchError> {
    let mut runtime = shared.lock();
    if runtime.behaviour.apply(patch)? {
        runtime.schedule_position = 0;
    }
    Ok(runtime.behaviour.clone())
}

fn reset(shared: &Shared) -> Behaviour {
    let mut runtime = shared.lock();
    runtime.behaviour = shared.config.behaviour.clone();
    runtime.schedule_position = 0;
    runtime.recorder = Recorder::default();
    runtime.behaviour.clone()
}

async fn get_behaviour(AxumState(shared): AxumState<Arc<Shared>>) -> Json<Behaviour> {
    Json(shared.lock().behaviour.clone())
}

async fn patch_behaviour(
    AxumState(shared): AxumState<Arc<Shared>>,
    Json(patch): Json<BehaviourPatch>,
) -> Response {
    match configure(&shared, patch) {
        Ok(behaviour) => Json(behaviour).into_response(),
        Err(error) => (
            StatusCode::BAD_REQUEST,
            Json(json!({ "error": error.to_string() })),
        )
            .into_response(),
    }
}

async fn reset_behaviour(AxumState(shared): AxumState<Arc<Shared>>) -> Json<Behaviour> {
    Json(reset(&shared))
}

async fn get_stats(AxumState(shared): AxumState<Arc<Shared>>) -> Json<Stats> {
    Json(shared.lock().recorder.snapshot())
}

fn check_key(config: &Config, headers: &HeaderMap) -> Result<(), OpenAiError> {
    let Some(expected) = &config.api_key else {
        return Ok(());
    };
    let given = headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|k| !k.is_empty())
        .ok_or(OpenAiError::MissingKey)?;
    if given == expected {
        Ok(())
    } else {
        Err(OpenAiError::WrongKey(mask_key(given)))
    }
}

fn model_object(id: &str) -> Value {
    json!({ "id": id, "object": "model", "created": 1_700_000_000, "owned_by": "vitte-stand-in" })
}

async fn list_models(AxumState(shared): AxumState<Arc<Shared>>, headers: HeaderMap) -> Response {
    if let Err(error) = check_key(&shared.config, &headers) {
        return error.into_response();
    }
    let behaviour = shared.lock().behaviour.clone();
    let ids = behaviour
        .known_models
        .unwrap_or_else(|| shared.config.listed_models.clone());
    let data: Vec<Value> = ids.iter().map(|id| model_object(id)).collect();
    Json(json!({ "object": "list", "data": data })).into_response()
}

async fn get_model(
    AxumState(shared): AxumState<Arc<Shared>>,
    headers: HeaderMap,
    Path(model): Path<String>,
) -> Response {
    if let Err(error) = check_key(&shared.config, &headers) {
        return error.into_response();
    }
    if shared.lock().behaviour.knows(&model) {
        Json(model_object(&model)).into_response()
    } else {
        OpenAiError::ModelNotFound(model).into_response()
    }
}

/// Everything needed to write one answer.
struct Completion {
    id: String,
    created: i64,
    model: String,
    content: String,
    finish_reason: &'static str,
    prompt_tokens: u32,
    completion_tokens: u32,
}

impl Completion {
    fn object(&self) -> Value {
        json!({
            "id": self.id,
            "object": "chat.completion",
            "created": self.created,
            "model": self.model,
            "system_fingerprint": "fp_stand_in",
            "choices": [{
                "index": 0,
                "message": { "role": "assistant", "content": self.content, "refusal": null },
                "logprobs": null,
                "finish_reason": self.finish_reason,
            }],
            "usage": usage(self.prompt_tokens, self.completion_tokens),
        })
    }

    fn chunk(&self, delta: Value, finish_reason: Option<&str>, with_usage_field: bool) -> Value {
        let mut chunk = json!({
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "system_fingerprint": "fp_stand_in",
            "choices": [{ "index": 0, "delta": delta, "logprobs": null, "finish_reason": finish_reason }],
        });
        if with_usage_field {
            chunk["usage"] = Value::Null;
        }
        chunk
    }

    fn usage_chunk(&self) -> Value {
        json!({
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "system_fingerprint": "fp_stand_in",
            "choices": [],
            "usage": usage(self.prompt_tokens, self.completion_tokens),
        })
    }
}

fn invalid(message: &str, param: Option<&'static str>, code: Option<&'static str>) -> OpenAiError {
    OpenAiError::InvalidRequest {
        message: message.to_owned(),
        param,
        code,
    }
}

/// The assistant's content: the deterministic reply, or a JSON value of the
/// requested shape when `response_format` asks for JSON.
fn content_for(request: &ChatRequest, turns: &[Turn]) -> String {
    let text = reply::reply(turns);
    let format = request.response_format.as_ref();
    match format.and_then(|f| f["type"].as_str()) {
        Some("json_object") => json!({ "reply": text }).to_string(),
        Some("json_schema") => {
            let schema = format
                .map(|f| &f["json_schema"]["schema"])
                .unwrap_or(&Value::Null);
            instance_of(schema, &text).to_string()
        }
        _ => text,
    }
}

/// `POST /v1/chat/completions`.
#[tracing::instrument(name = "chat_completions", skip_all)]
async fn chat_completions(
    AxumState(shared): AxumState<Arc<Shared>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let raw: Option<Value> = serde_json::from_slice(&body).ok();
    let parsed: Option<ChatRequest> = raw.clone().and_then(|v| serde_json::from_value(v).ok());
    let model = parsed
        .as_ref()
        .and_then(|r| r.model.clone())
        .unwrap_or_default();
    let stream = parsed.as_ref().and_then(|r| r.stream).unwrap_or(false);
    let raw = raw.unwrap_or(Value::Null);
    if let Err(error) = check_key(&shared.config, &headers) {
        shared.record(&model, stream, Outcome::Unauthorized, raw);
        return error.into_response();
    }
    let request = match parsed {
        Some(request) => request,
        None => {
            shared.record(&model, stream, Outcome::InvalidRequest, raw);
            return OpenAiError::InvalidJson.into_response();
        }
    };
    let refusal = if model.is_empty() {
        Some(invalid("you must provide a model parameter", None, None))
    } else {
        match &request.messages {
            None => Some(invalid(
                "Missing required parameter: 'messages'.",
                Some("messages"),
                Some("missing_required_parameter"),
            )),
            Some(messages) if messages.is_empty() => Some(invalid(
                "Invalid 'messages': empty array. Expected an array with minimum length 1, but got an empty array instead.",
                Some("messages"),
                Some("empty_array"),
            )),
            Some(_) => None,
        }
    };
    if let Some(error) = refusal {
        shared.record(&model, stream, Outcome::InvalidRequest, raw);
        return error.into_response();
    }
    let (fault, behaviour, serial) = {
        let mut runtime = shared.lock();
        let position = runtime.schedule_position;
        runtime.schedule_position += 1;
        runtime.served += 1;
        let fault = runtime.behaviour.decide(position);
        (fault, runtime.behaviour.clone(), runtime.served)
    };
    let outcome = match fault {
        Some(fault) => Outcome::from(fault),
        None if !behaviour.knows(&model) => Outcome::ModelNotFound,
        None => Outcome::Ok,
    };
    shared.record(&model, stream, outcome, raw);
    if outcome == Outcome::ModelNotFound {
        return OpenAiError::ModelNotFound(model).into_response();
    }

    let turns = request.turns();
    let mut content = content_for(&request, &turns);
    let cut = request
        .max_tokens()
        .is_some_and(|max| truncate_to_tokens(&mut content, max));
    let completion = Completion {
        id: format!("chatcmpl-standin{serial:010}"),
        created: shared.config.clock.now().timestamp(),
        model,
        completion_tokens: estimate_tokens(&content),
        content,
        finish_reason: if cut { "length" } else { "stop" },
        prompt_tokens: prompt_tokens(&turns),
    };
    let request_id = format!("req_standin{serial:010}");
    let include_usage = request
        .stream_options
        .as_ref()
        .is_some_and(|o| o.include_usage);
    let mut response = match fault {
        Some(Fault::RateLimited) => OpenAiError::RateLimited {
            retry_after: behaviour.retry_after_secs,
        }
        .into_response(),
        Some(Fault::ServerError) => OpenAiError::Server.into_response(),
        Some(Fault::Unavailable) => OpenAiError::Unavailable.into_response(),
        Some(Fault::Timeout) => {
            tokio::select! {
                () = tokio::time::sleep(Duration::from_millis(behaviour.hang_ms)) => {}
                () = shared.closing.cancelled() => {}
            }
            OpenAiError::GatewayTimeout.into_response()
        }
        Some(fault @ (Fault::BadJson | Fault::TruncatedStream)) if !stream => {
            broken_body(&completion, fault)
        }
        _ if stream => {
            wait(&shared, behaviour.first_token_ms).await;
            stream_response(shared.clone(), completion, &behaviour, include_usage, fault)
        }
        _ => {
            let steps = u64::try_from(pieces(&completion.content).len()).unwrap_or(0);
            let total = behaviour
                .first_token_ms
                .saturating_add(behaviour.per_token_ms.saturating_mul(steps));
            wait(&shared, total).await;
            Json(completion.object()).into_response()
        }
    };
    if let Ok(value) = request_id.parse() {
        response.headers_mut().insert("x-request-id", value);
    }
    response
}

async fn wait(shared: &Shared, millis: u64) {
    if millis == 0 {
        return;
    }
    tokio::select! {
        () = tokio::time::sleep(Duration::from_millis(millis)) => {}
        () = shared.closing.cancelled() => {}
    }
}

/// A 200 whose JSON body is unusable: not JSON at all, or cut half-way.
fn broken_body(completion: &Completion, fault: Fault) -> Response {
    let body = match fault {
        Fault::TruncatedStream => {
            let full = completion.object().to_string();
            let mut half = full.len() / 2;
            while !full.is_char_boundary(half) {
                half -= 1;
            }
            full[..half].to_owned()
        }
        _ => format!(
            "{{\"id\": \"{}\", \"object\": \"chat.completion\", \"choices\": [{{\"index\": 0, \"message\": {{\"role\": \"assistant\", \"content\": ",
            completion.id
        ),
    };
    ([(CONTENT_TYPE, "application/json")], body).into_response()
}

fn sse(value: &Value) -> Bytes {
    Bytes::from(format!("data: {value}\n\n"))
}

/// The server-sent-event stream of a completion: a role delta, the content
/// in pieces, a final chunk with `finish_reason`, the usage chunk when asked
/// for, then `[DONE]`. `fault` may break it on purpose.
fn stream_response(
    shared: Arc<Shared>,
    completion: Completion,
    behaviour: &Behaviour,
    include_usage: bool,
    fault: Option<Fault>,
) -> Response {
    let (tx, rx) = mpsc::channel::<Bytes>(32);
    let per_token = Duration::from_millis(behaviour.per_token_ms);
    tokio::spawn(async move {
        let send = |bytes: Bytes| {
            let tx = tx.clone();
            async move { tx.send(bytes).await.is_ok() }
        };
        if fault == Some(Fault::BadJson) {
            let broken = format!(
                "data: {{\"id\":\"{}\",\"object\":\"chat.completion.chunk\",\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"\n\n",
                completion.id
            );
            let _ = send(Bytes::from(broken)).await
                && send(Bytes::from_static(b"data: [DONE]\n\n")).await;
            return;
        }
        let role = json!({ "role": "assistant", "content": "", "refusal": null });
        if !send(sse(&completion.chunk(role, None, include_usage))).await {
            return;
        }
        let parts = pieces(&completion.content);
        let shown = if fault == Some(Fault::TruncatedStream) {
            parts.len() / 2
        } else {
            parts.len()
        };
        for piece in &parts[..shown] {
            if !per_token.is_zero() {
                tokio::select! {
                    () = tokio::time::sleep(per_token) => {}
                    () = shared.closing.cancelled() => return,
                }
            }
            let delta = json!({ "content": piece });
            if !send(sse(&completion.chunk(delta, None, include_usage))).await {
                return;
            }
        }
        if fault == Some(Fault::TruncatedStream) {
            return;
        }
        let last = completion.chunk(json!({}), Some(completion.finish_reason), include_usage);
        if !send(sse(&last)).await {
            return;
        }
        if include_usage && !send(sse(&completion.usage_chunk())).await {
            return;
        }
        let _ = send(Bytes::from_static(b"data: [DONE]\n\n")).await;
    });
    let body = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|bytes| (Ok::<_, Infallible>(bytes), rx))
    });
    (
        [
            (CONTENT_TYPE, "text/event-stream; charset=utf-8"),
            (CACHE_CONTROL, "no-cache"),
        ],
        Body::from_stream(body),
    )
        .into_response()
}
