//! Method parameters, read the way the Bot API reads them: from the query
//! string, a JSON body, an `application/x-www-form-urlencoded` body or a
//! `multipart/form-data` body (the only way to upload a file), all merged.
//!
//! Form and query values are strings while JSON values are typed, so the
//! accessors accept both (`"123"` and `123` are the same `chat_id`), and
//! JSON-valued parameters such as `reply_markup` may arrive as an object or as
//! a serialized string.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{FromRequest, Multipart, Request};
use axum::http::header::CONTENT_TYPE;
use serde_json::{Map, Value};

use super::error::{BotApiError, BotResult};

/// Largest request body accepted: the Bot API's 50 MB upload limit.
pub(crate) const MAX_BODY_BYTES: usize = 50 * 1024 * 1024;

/// A file part of a multipart request.
#[derive(Debug, Clone)]
pub(crate) struct Upload {
    pub(crate) bytes: Bytes,
    pub(crate) filename: Option<String>,
}

/// How a method was given a file.
#[derive(Debug, Clone)]
pub(crate) enum InputFile {
    /// Uploaded in this request.
    Upload(Upload),
    /// An HTTP URL for Telegram to download.
    Url(String),
    /// A `file_id` of a file Telegram already has.
    FileId(String),
}

/// All parameters of one call.
#[derive(Debug, Default)]
pub(crate) struct Params {
    values: Map<String, Value>,
    files: HashMap<String, Upload>,
}

impl Params {
    /// Reads query string and body of `request`.
    pub(crate) async fn from_request(request: Request) -> BotResult<Self> {
        let mut params = Self::default();
        if let Some(query) = request.uri().query() {
            params.merge_urlencoded(query.as_bytes());
        }
        let content_type = request
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.to_ascii_lowercase())
            .unwrap_or_default();
        if content_type.starts_with("multipart/form-data") {
            params.merge_multipart(request).await?;
        } else {
            let body = axum::body::to_bytes(request.into_body(), MAX_BODY_BYTES)
                .await
                .map_err(|_| BotApiError::bad_request("request body is too big"))?;
            if content_type.starts_with("application/json") {
                params.merge_json(&body)?;
            } else if content_type.starts_with("application/x-www-form-urlencoded") {
                params.merge_urlencoded(&body);
            }
        }
        Ok(params)
    }

    /// Parameters given directly, for calls that do not come over HTTP.
    #[cfg(test)]
    pub(crate) fn from_json(values: Value) -> Self {
        match values {
            Value::Object(values) => Self {
                values,
                files: HashMap::new(),
            },
            _ => Self::default(),
        }
    }

    fn merge_urlencoded(&mut self, raw: &[u8]) {
        for (key, value) in url::form_urlencoded::parse(raw) {
            self.values
                .insert(key.into_owned(), Value::String(value.into_owned()));
        }
    }

    fn merge_json(&mut self, body: &[u8]) -> BotResult<()> {
        if body.iter().all(u8::is_ascii_whitespace) {
            return Ok(());
        }
        match serde_json::from_slice::<Value>(body) {
            Ok(Value::Object(object)) => {
                self.values.extend(object);
                Ok(())
            }
            Ok(_) => Err(BotApiError::bad_request(
                "can't parse JSON object: the request body must be a JSON object",
            )),
            Err(_) => Err(BotApiError::bad_request("can't parse JSON object")),
        }
    }

    async fn merge_multipart(&mut self, request: Request) -> BotResult<()> {
        let bad = |_| BotApiError::bad_request("can't parse multipart/form-data request");
        let mut multipart = Multipart::from_request(request, &())
            .await
            .map_err(|_| BotApiError::bad_request("can't parse multipart/form-data request"))?;
        while let Some(field) = multipart.next_field().await.map_err(bad)? {
            let Some(name) = field.name().map(str::to_owned) else {
                continue;
            };
            match field.file_name().map(str::to_owned) {
                Some(filename) => {
                    let bytes = field.bytes().await.map_err(bad)?;
                    self.files.insert(
                        name,
                        Upload {
                            bytes,
                            filename: Some(filename),
                        },
                    );
                }
                None => {
                    let text = field.text().await.map_err(bad)?;
                    self.values.insert(name, Value::String(text));
                }
            }
        }
        Ok(())
    }

    /// The raw value, if given and not JSON `null`.
    pub(crate) fn value(&self, name: &str) -> Option<&Value> {
        self.values.get(name).filter(|v| !v.is_null())
    }

    /// A string parameter; numbers and booleans are accepted as their text.
    pub(crate) fn str(&self, name: &str) -> Option<String> {
        match self.value(name)? {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            Value::Bool(b) => Some(b.to_string()),
            _ => None,
        }
    }

    /// An integer parameter given as a number or a numeric string.
    pub(crate) fn i64(&self, name: &str) -> BotResult<Option<i64>> {
        let Some(value) = self.value(name) else {
            return Ok(None);
        };
        let parsed = match value {
            Value::Number(n) => n.as_i64(),
            Value::String(s) if s.trim().is_empty() => return Ok(None),
            Value::String(s) => s.trim().parse().ok(),
            _ => None,
        };
        parsed
            .map(Some)
            .ok_or_else(|| BotApiError::bad_request(format!("invalid {name} specified")))
    }

    /// A boolean given as `true`/`false`, `"true"`/`"false"` or `1`/`0`.
    pub(crate) fn bool(&self, name: &str) -> bool {
        match self.value(name) {
            Some(Value::Bool(b)) => *b,
            Some(Value::Number(n)) => n.as_i64().is_some_and(|n| n != 0),
            Some(Value::String(s)) => matches!(s.trim(), "true" | "True" | "1"),
            _ => false,
        }
    }

    /// A JSON-valued parameter, given as JSON or as a JSON-serialized string.
    /// `what` names it in Telegram's error text.
    pub(crate) fn json(&self, name: &str, what: &str) -> BotResult<Option<Value>> {
        match self.value(name) {
            None => Ok(None),
            Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
            Some(Value::String(s)) => serde_json::from_str(s)
                .map(Some)
                .map_err(|_| BotApiError::bad_request(format!("can't parse {what} JSON object"))),
            Some(other) => Ok(Some(other.clone())),
        }
    }

    /// A file parameter: an uploaded part (directly or by `attach://name`), an
    /// HTTP URL or a `file_id`.
    pub(crate) fn file(&self, name: &str) -> Option<InputFile> {
        if let Some(upload) = self.files.get(name) {
            return Some(InputFile::Upload(upload.clone()));
        }
        let value = self.str(name)?;
        if let Some(part) = value.strip_prefix("attach://") {
            return self.files.get(part).cloned().map(InputFile::Upload);
        }
        if value.starts_with("http://") || value.starts_with("https://") {
            Some(InputFile::Url(value))
        } else if value.is_empty() {
            None
        } else {
            Some(InputFile::FileId(value))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn accepts_strings_and_numbers_alike() {
        let params = Params::from_json(json!({
            "chat_id": "42", "limit": 5, "flag": "true", "other": 1,
            "markup": "{\"inline_keyboard\":[]}", "bad": "x"
        }));
        assert_eq!(params.i64("chat_id"), Ok(Some(42)));
        assert_eq!(params.i64("limit"), Ok(Some(5)));
        assert_eq!(params.i64("missing"), Ok(None));
        assert!(params.i64("bad").is_err());
        assert!(params.bool("flag") && params.bool("other") && !params.bool("missing"));
        assert_eq!(
            params.json("markup", "x"),
            Ok(Some(json!({"inline_keyboard": []})))
        );
        assert!(params.json("bad", "x").is_err());
        assert_eq!(params.str("limit").as_deref(), Some("5"));
    }

    #[test]
    fn classifies_file_parameters() {
        let params = Params::from_json(json!({
            "a": "https://example.org/p.png", "b": "AgACfile", "c": "attach://nothing"
        }));
        assert!(matches!(params.file("a"), Some(InputFile::Url(_))));
        assert!(matches!(params.file("b"), Some(InputFile::FileId(_))));
        assert!(params.file("c").is_none());
        assert!(params.file("d").is_none());
    }
}
