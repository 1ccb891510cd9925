//! The public persona list: who people can talk to, for a web page or an app
//! to show before sending them to the bot (`/start <slug>`).
//!
//! Only listed personas appear; hidden ones stay private even by slug. The
//! list carries a short plain-text tagline, not the card's full description
//! (which is written for the model and can run to pages).

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use vitte_domain::ids::PersonaSlug;
use vitte_domain::model::{Persona, PersonaCard};
use vitte_domain::services::fill_placeholders;

use crate::{ApiError, ApiState};

/// A tagline is cut to this many characters (an ellipsis included).
pub const TAGLINE_MAX_CHARS: usize = 160;

/// How long clients and caches may keep a picture: pictures change only on a
/// re-import, and a few minutes of staleness is harmless.
const PICTURE_CACHE_CONTROL: &str = "public, max-age=300";

/// The answer of `GET /v1/personas`.
#[derive(Debug, Serialize)]
pub struct PersonaList {
    /// Listed personas, by name.
    pub personas: Vec<PersonaSummary>,
}

/// One persona as the public sees it.
#[derive(Debug, Serialize)]
pub struct PersonaSummary {
    /// Stable name, as in `/start <slug>` deep links.
    pub slug: PersonaSlug,
    /// Display name.
    pub name: String,
    /// One short line of plain text about the persona (see [`tagline`]).
    pub tagline: String,
    /// The card's tags.
    pub tags: Vec<String>,
    /// Path of the persona's picture on this server, or `null` without one.
    pub picture: Option<String>,
}

impl From<&Persona> for PersonaSummary {
    fn from(persona: &Persona) -> Self {
        Self {
            slug: persona.slug.clone(),
            name: persona.card.name.clone(),
            tagline: tagline(&persona.card),
            tags: persona.card.tags.clone(),
            picture: persona
                .has_picture
                .then(|| format!("/v1/personas/{}/picture", persona.slug)),
        }
    }
}

/// `GET /v1/personas`: the listed personas.
#[tracing::instrument(skip_all)]
pub async fn list(State(state): State<ApiState>) -> Result<Json<PersonaList>, ApiError> {
    let personas = state.store.list_personas(true).await?;
    Ok(Json(PersonaList {
        personas: personas.iter().map(PersonaSummary::from).collect(),
    }))
}

/// `GET /v1/personas/{slug}/picture`: a listed persona's picture. Not found
/// for unknown or hidden personas and for personas without a picture.
#[tracing::instrument(skip(state))]
pub async fn picture(
    State(state): State<ApiState>,
    Path(slug): Path<String>,
) -> Result<Response, ApiError> {
    let slug = PersonaSlug::parse(&slug).map_err(|_| ApiError::NotFound)?;
    let persona = state
        .store
        .persona_by_slug(&slug)
        .await?
        .filter(|p| p.listed && p.has_picture)
        .ok_or(ApiError::NotFound)?;
    let picture = state
        .store
        .persona_picture(persona.id)
        .await?
        .ok_or(ApiError::NotFound)?;
    // The type comes from an imported card: serve it only if it names an
    // image, and forbid sniffing, so a picture can never render as a page.
    let mime = Some(picture.mime.as_str())
        .filter(|m| m.starts_with("image/"))
        .and_then(|m| HeaderValue::from_str(m).ok())
        .unwrap_or(HeaderValue::from_static("application/octet-stream"));
    Ok((
        [
            (header::CONTENT_TYPE, mime),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
            (
                header::CACHE_CONTROL,
                HeaderValue::from_static(PICTURE_CACHE_CONTROL),
            ),
        ],
        Body::from(picture.bytes),
    )
        .into_response())
}

/// A persona's tagline: the first paragraph of the card's creator notes
/// (which cards meant for people to browse fill with exactly that), else of
/// its description, with `{{char}}`/`{{user}}` filled in, cut to
/// [`TAGLINE_MAX_CHARS`] at a word boundary.
pub fn tagline(card: &PersonaCard) -> String {
    let paragraph = [&card.creator_notes, &card.description]
        .into_iter()
        .map(|text| first_paragraph(text))
        .find(|p| !p.is_empty())
        .unwrap_or_default();
    shorten(
        &fill_placeholders(&paragraph, &card.name, "you"),
        TAGLINE_MAX_CHARS,
    )
}

/// The first run of non-blank lines, joined by spaces.
fn first_paragraph(text: &str) -> String {
    text.lines()
        .map(str::trim)
        .skip_while(|line| line.is_empty())
        .take_while(|line| !line.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// `text` if it has at most `max` characters, else its longest prefix that
/// ends at a word boundary and leaves room for `…` (a hard cut when one word
/// fills it all).
fn shorten(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let keep = max.saturating_sub(1);
    let cut = text
        .char_indices()
        .nth(keep)
        .map_or(text.len(), |(index, _)| index);
    let head = &text[..cut];
    // A cut right before a space already falls between words.
    let at_word_end = text[cut..].starts_with(char::is_whitespace);
    let head = match head.rfind(char::is_whitespace) {
        Some(space) if !at_word_end && space > 0 => &head[..space],
        _ => head,
    };
    format!("{}…", head.trim_end())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn card(notes: &str, description: &str) -> PersonaCard {
        PersonaCard {
            name: "Mira".to_owned(),
            creator_notes: notes.to_owned(),
            description: description.to_owned(),
            ..PersonaCard::default()
        }
    }

    #[test]
    fn the_tagline_prefers_creator_notes_then_the_description() {
        let both = card("\n A cosy companion.\n\nLong author notes.", "Mira is 29.");
        assert_eq!(tagline(&both), "A cosy companion.");
        let description_only = card("  \n", "{{char}} runs a tea shop\nby the sea.\n\nMore.");
        assert_eq!(
            tagline(&description_only),
            "Mira runs a tea shop by the sea."
        );
        assert_eq!(tagline(&card("", "")), "");
    }

    #[test]
    fn long_taglines_are_cut_between_words() {
        assert_eq!(shorten("one two three", 13), "one two three");
        assert_eq!(shorten("one two three", 10), "one two…");
        assert_eq!(shorten("one two three", 9), "one two…");
        assert_eq!(shorten("onetwothree", 6), "onetw…");
        // Characters, not bytes: Cyrillic is two bytes each.
        assert_eq!(shorten("Тёплая и ироничная", 10), "Тёплая и…");
        let long = "word ".repeat(100);
        let cut = tagline(&card(&long, ""));
        assert!(cut.chars().count() <= TAGLINE_MAX_CHARS, "{cut}");
        assert!(cut.ends_with("word…"), "{cut}");
    }
}
