//! Files: `sendPhoto`, `sendVoice`, `getFile`, and downloads from
//! `/file/bot{token}/{file_path}`.
//!
//! A file arrives as a multipart upload, an HTTP URL (downloaded, as Telegram
//! does) or the `file_id` of a file sent before. Photos get Telegram's set of
//! sizes; every size downloads as the bytes that were sent, since the
//! stand-in does not re-encode images.

use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Path, State as AxumState};
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::{CAPTION, Reply, chat_id, formatted, reply_markup};
use crate::stable_hash::mix;
use crate::telegram::Shared;
use crate::telegram::error::{BotApiError, BotResult};
use crate::telegram::media::{AudioKind, image_dimensions, ogg_opus_seconds, photo_sizes};
use crate::telegram::methods::messages::send_from_bot;
use crate::telegram::params::{InputFile, Params};
use crate::telegram::state::{MediaRecord, State, StoredFile};
use crate::telegram::types::{Document, PhotoSize, Voice};

/// Files larger than this cannot be fetched with getFile, as on Telegram.
const MAX_DOWNLOAD_BYTES: usize = 20 * 1024 * 1024;

const WRONG_FILE_ID: &str = "wrong file identifier/HTTP URL specified";

/// Bytes given for a file, or `None` when a URL was accepted unfetched.
async fn file_bytes(
    shared: &Shared,
    file: &InputFile,
) -> BotResult<Option<(Bytes, Option<String>)>> {
    match file {
        InputFile::Upload(upload) => Ok(Some((upload.bytes.clone(), upload.filename.clone()))),
        InputFile::Url(url) if shared.config.fetch_file_urls => {
            let failed = || BotApiError::bad_request("failed to get HTTP URL content");
            let response = shared
                .http
                .get(url)
                .timeout(Duration::from_secs(30))
                .send()
                .await
                .map_err(|_| failed())?;
            if !response.status().is_success() {
                return Err(failed());
            }
            let bytes = response.bytes().await.map_err(|_| failed())?;
            let name = url.rsplit('/').next().map(str::to_owned);
            Ok(Some((bytes, name)))
        }
        InputFile::Url(_) | InputFile::FileId(_) => Ok(None),
    }
}

/// Registers `bytes` as a new file under `folder`, returning its ids.
fn store_file(
    state: &mut State,
    bot_id: i64,
    folder: &str,
    extension: &str,
    bytes: Bytes,
) -> StoredFile {
    let serial = state.serial();
    let tag = mix(bot_id.unsigned_abs(), serial);
    let prefix = match folder {
        "photos" => "AgAC",
        "voice" => "AwAC",
        _ => "BQAC",
    };
    let file = StoredFile {
        file_id: format!("{prefix}AgIAAxkBAA{serial:06}{tag:016x}"),
        file_unique_id: format!("AQAD{serial:06}{:08x}", tag >> 32),
        file_path: format!("{folder}/file_{serial}.{extension}"),
        bytes,
    };
    state
        .file_paths
        .insert(file.file_path.clone(), file.file_id.clone());
    state.files.insert(file.file_id.clone(), file.clone());
    file
}

fn check_chat(shared: &Shared, chat_id: i64) -> BotResult<()> {
    shared
        .lock()
        .writable_chat(&shared.config, chat_id)
        .map(|_| ())
}

/// `sendPhoto`.
pub(crate) async fn send_photo(shared: &Shared, params: &Params) -> BotResult<Reply> {
    let chat_id = chat_id(params)?;
    let photo = params
        .file("photo")
        .ok_or_else(|| BotApiError::bad_request("there is no photo in the request"))?;
    let caption = formatted(params, &CAPTION)?;
    let markup = reply_markup(params)?;
    check_chat(shared, chat_id)?;
    let fetched = file_bytes(shared, &photo).await?;
    let mut state = shared.lock();
    let sizes = match (&photo, fetched) {
        (InputFile::FileId(id), _) => match state.media.get(id) {
            Some(MediaRecord::Photo(sizes)) => sizes.clone(),
            Some(_) => return Err(BotApiError::bad_request("type of file mismatch")),
            None => return Err(BotApiError::bad_request(WRONG_FILE_ID)),
        },
        (_, fetched) => {
            let (bytes, _) = fetched.unwrap_or_default();
            let (width, height) = if bytes.is_empty() && !shared.config.fetch_file_urls {
                (1280, 1280)
            } else {
                image_dimensions(&bytes)
                    .ok_or_else(|| BotApiError::bad_request("IMAGE_PROCESS_FAILED"))?
            };
            let sizes: Vec<PhotoSize> = photo_sizes(width, height)
                .into_iter()
                .map(|(w, h)| {
                    let file =
                        store_file(&mut state, shared.bot_id(), "photos", "jpg", bytes.clone());
                    PhotoSize {
                        file_id: file.file_id,
                        file_unique_id: file.file_unique_id,
                        width: w,
                        height: h,
                        file_size: bytes.len() as u64,
                    }
                })
                .collect();
            for size in &sizes {
                state
                    .media
                    .insert(size.file_id.clone(), MediaRecord::Photo(sizes.clone()));
            }
            sizes
        }
    };
    let message = send_from_bot(shared, &mut state, chat_id, |m| {
        m.photo = Some(sizes);
        if let Some((text, entities)) = caption {
            m.caption = Some(text);
            m.caption_entities = entities;
        }
        m.reply_markup = markup;
    })?;
    Ok((&message).into())
}

/// The message content a voice upload becomes.
enum Audio {
    Voice(Voice),
    Document(Document),
}

/// `sendVoice`. OGG/Opus, MP3 and M4A become a voice note; anything else is
/// delivered as a document, which is what Telegram does with it.
pub(crate) async fn send_voice(shared: &Shared, params: &Params) -> BotResult<Reply> {
    let chat_id = chat_id(params)?;
    let voice = params
        .file("voice")
        .ok_or_else(|| BotApiError::bad_request("there is no voice in the request"))?;
    let caption = formatted(params, &CAPTION)?;
    let markup = reply_markup(params)?;
    let duration = params.i64("duration")?.and_then(|d| u64::try_from(d).ok());
    check_chat(shared, chat_id)?;
    let fetched = file_bytes(shared, &voice).await?;
    let mut state = shared.lock();
    let audio = match (&voice, fetched) {
        (InputFile::FileId(id), _) => match state.media.get(id) {
            Some(MediaRecord::Voice(voice)) => Audio::Voice(voice.clone()),
            Some(MediaRecord::Document(document)) => Audio::Document(document.clone()),
            Some(MediaRecord::Photo(_)) => {
                return Err(BotApiError::bad_request("type of file mismatch"));
            }
            None => return Err(BotApiError::bad_request(WRONG_FILE_ID)),
        },
        (_, fetched) => {
            let (bytes, filename) = fetched.unwrap_or_default();
            let kind = AudioKind::sniff(&bytes).or_else(|| {
                // An unfetched URL: trust it to be a voice note.
                (bytes.is_empty() && !shared.config.fetch_file_urls).then_some(AudioKind::Ogg)
            });
            match kind {
                Some(kind) => {
                    let seconds = match kind {
                        AudioKind::Ogg => ogg_opus_seconds(&bytes),
                        _ => None,
                    };
                    let file = store_file(
                        &mut state,
                        shared.bot_id(),
                        "voice",
                        kind.extension(),
                        bytes.clone(),
                    );
                    let voice = Voice {
                        file_id: file.file_id.clone(),
                        file_unique_id: file.file_unique_id,
                        duration: duration.or(seconds).unwrap_or(0),
                        mime_type: kind.mime_type().to_owned(),
                        file_size: bytes.len() as u64,
                    };
                    state
                        .media
                        .insert(file.file_id, MediaRecord::Voice(voice.clone()));
                    Audio::Voice(voice)
                }
                None => {
                    let file = store_file(
                        &mut state,
                        shared.bot_id(),
                        "documents",
                        "bin",
                        bytes.clone(),
                    );
                    let document = Document {
                        file_id: file.file_id.clone(),
                        file_unique_id: file.file_unique_id,
                        file_name: filename,
                        mime_type: "application/octet-stream".into(),
                        file_size: bytes.len() as u64,
                    };
                    state
                        .media
                        .insert(file.file_id, MediaRecord::Document(document.clone()));
                    Audio::Document(document)
                }
            }
        }
    };
    let message = send_from_bot(shared, &mut state, chat_id, |m| {
        match audio {
            Audio::Voice(voice) => m.voice = Some(voice),
            Audio::Document(document) => m.document = Some(document),
        }
        if let Some((text, entities)) = caption {
            m.caption = Some(text);
            m.caption_entities = entities;
        }
        m.reply_markup = markup;
    })?;
    Ok((&message).into())
}

/// `getFile`: where to download a file.
pub(crate) fn get_file(shared: &Shared, params: &Params) -> BotResult<Reply> {
    let file_id = params.str("file_id").unwrap_or_default();
    if file_id.is_empty() {
        return Err(BotApiError::bad_request("file_id is empty"));
    }
    let state = shared.lock();
    let file = state
        .files
        .get(&file_id)
        .ok_or_else(|| BotApiError::bad_request("invalid file_id"))?;
    if file.bytes.len() > MAX_DOWNLOAD_BYTES {
        return Err(BotApiError::bad_request("file is too big"));
    }
    Ok(json!({
        "file_id": file.file_id,
        "file_unique_id": file.file_unique_id,
        "file_size": file.bytes.len(),
        "file_path": file.file_path,
    })
    .into())
}

/// `GET /file/bot{token}/{file_path}`.
pub(crate) async fn download(
    AxumState(shared): AxumState<Arc<Shared>>,
    Path((bot, path)): Path<(String, String)>,
) -> Response {
    if bot.strip_prefix("bot") != Some(shared.config.token.as_str()) {
        return BotApiError::Unauthorized.into_response();
    }
    let state = shared.lock();
    let file = state
        .file_paths
        .get(&path)
        .and_then(|id| state.files.get(id));
    match file {
        Some(file) => {
            let content_type = match path.rsplit('.').next() {
                Some("jpg") => "image/jpeg",
                Some("oga") => "audio/ogg",
                Some("mp3") => "audio/mpeg",
                Some("m4a") => "audio/mp4",
                _ => "application/octet-stream",
            };
            (
                [(CONTENT_TYPE, content_type)],
                Body::from(file.bytes.clone()),
            )
                .into_response()
        }
        None => BotApiError::NotFound.into_response(),
    }
}
