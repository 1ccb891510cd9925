//! Inline keyboards and the callback data their buttons carry. Callback data
//! is parsed back with [`Callback::parse`], so a forged or stale button press
//! is just an unknown callback.

use teloxide_core::types::{InlineKeyboardButton, InlineKeyboardMarkup};
use vitte_domain::ids::PersonaSlug;
use vitte_domain::model::Persona;

use crate::i18n::{Lang, Texts};

/// What a button press asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Callback {
    /// The terms were accepted; then open this persona if a deep link named one.
    AcceptTerms(Option<PersonaSlug>),
    /// Talk to this persona.
    Persona(PersonaSlug),
    /// Switch the UI language.
    Language(Lang),
}

impl Callback {
    /// The button's data (Telegram allows 1-64 bytes; slugs are at most 64,
    /// so long ones are cut off the deep-link variant rather than overflow).
    pub fn data(&self) -> String {
        match self {
            Callback::AcceptTerms(None) => "terms".to_owned(),
            Callback::AcceptTerms(Some(slug)) => {
                let mut s = format!("terms:{slug}");
                s.truncate(64);
                s
            }
            Callback::Persona(slug) => {
                let mut s = format!("p:{slug}");
                s.truncate(64);
                s
            }
            Callback::Language(lang) => format!("lang:{}", lang.code()),
        }
    }

    /// Parses button data; `None` for anything we did not issue.
    pub fn parse(data: &str) -> Option<Callback> {
        if data == "terms" {
            return Some(Callback::AcceptTerms(None));
        }
        if let Some(slug) = data.strip_prefix("terms:") {
            return PersonaSlug::parse(slug)
                .ok()
                .map(|s| Callback::AcceptTerms(Some(s)));
        }
        if let Some(slug) = data.strip_prefix("p:") {
            return PersonaSlug::parse(slug).ok().map(Callback::Persona);
        }
        if let Some(code) = data.strip_prefix("lang:") {
            return Lang::ALL
                .into_iter()
                .find(|l| l.code() == code)
                .map(Callback::Language);
        }
        None
    }
}

fn button(text: impl Into<String>, callback: &Callback) -> InlineKeyboardButton {
    InlineKeyboardButton::callback(text, callback.data())
}

/// The terms gate's single button.
pub fn accept_terms(texts: &Texts, lang: Lang, then: Option<PersonaSlug>) -> InlineKeyboardMarkup {
    InlineKeyboardMarkup::new([[button(
        texts.get(lang, "terms.accept", &[]),
        &Callback::AcceptTerms(then),
    )]])
}

/// One button per persona, two per row.
pub fn personas(list: &[Persona]) -> InlineKeyboardMarkup {
    let buttons: Vec<InlineKeyboardButton> = list
        .iter()
        .map(|p| button(p.card.name.clone(), &Callback::Persona(p.slug.clone())))
        .collect();
    InlineKeyboardMarkup::new(buttons.chunks(2).map(<[_]>::to_vec))
}

/// The language picker.
pub fn languages(texts: &Texts) -> InlineKeyboardMarkup {
    InlineKeyboardMarkup::new([Lang::ALL
        .iter()
        .map(|&l| button(texts.get(l, "language.name", &[]), &Callback::Language(l)))
        .collect::<Vec<_>>()])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn callback_data_round_trips_and_refuses_foreign_data() {
        let slug = PersonaSlug::parse("mira").expect("slug");
        for cb in [
            Callback::AcceptTerms(None),
            Callback::AcceptTerms(Some(slug.clone())),
            Callback::Persona(slug),
            Callback::Language(Lang::Ru),
        ] {
            let data = cb.data();
            assert!(data.len() <= 64);
            assert_eq!(Callback::parse(&data), Some(cb));
        }
        for junk in [
            "",
            "p:",
            "p:Bad Slug",
            "lang:xx",
            "terms:",
            "drop table",
            "p:a/b",
        ] {
            assert_eq!(Callback::parse(junk), None, "{junk:?}");
        }
    }
}
