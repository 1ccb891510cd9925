//! User-facing texts. They live in `locales/*.toml`, one file per language,
//! not in code; this module picks the language and fills in placeholders.

use std::collections::HashMap;

/// A supported UI language.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Lang {
    /// English; also the fallback for unknown languages.
    En,
    /// Russian.
    Ru,
}

impl Lang {
    /// Every language, in the order the language picker shows them.
    pub const ALL: [Lang; 2] = [Lang::Ru, Lang::En];

    /// The stored code.
    pub fn code(self) -> &'static str {
        match self {
            Lang::En => "en",
            Lang::Ru => "ru",
        }
    }

    /// Picks a language from a stored code or Telegram's `language_code`
    /// (`ru`, `ru-RU`, `en-GB`, ...); anything we have no texts for gets
    /// English, and the person can switch with /language.
    pub fn from_code(code: Option<&str>) -> Lang {
        let primary = code
            .unwrap_or_default()
            .split(['-', '_'])
            .next()
            .unwrap_or_default()
            .to_ascii_lowercase();
        match primary.as_str() {
            "ru" => Lang::Ru,
            _ => Lang::En,
        }
    }
}

/// All texts of all languages, loaded once at start-up.
#[derive(Debug, Clone)]
pub struct Texts {
    by_lang: HashMap<Lang, HashMap<String, String>>,
}

/// A locale file is broken: a build-time mistake, caught by tests.
#[derive(Debug, thiserror::Error)]
#[error("locale {lang}: {message}")]
pub struct LocaleError {
    lang: &'static str,
    message: String,
}

impl Texts {
    /// Loads the locale files compiled into the binary.
    pub fn load() -> Result<Self, LocaleError> {
        let mut by_lang = HashMap::new();
        for (lang, source) in [
            (Lang::En, include_str!("../locales/en.toml")),
            (Lang::Ru, include_str!("../locales/ru.toml")),
        ] {
            let table: HashMap<String, String> =
                toml::from_str(source).map_err(|e| LocaleError {
                    lang: lang.code(),
                    message: e.to_string(),
                })?;
            by_lang.insert(lang, table);
        }
        Ok(Self { by_lang })
    }

    /// The text `key` in `lang` (English when missing there), with `{name}`
    /// placeholders replaced from `args`. Values are inserted as given:
    /// callers escape them for HTML.
    pub fn get(&self, lang: Lang, key: &str, args: &[(&str, &str)]) -> String {
        let text = self
            .by_lang
            .get(&lang)
            .and_then(|t| t.get(key))
            .or_else(|| self.by_lang.get(&Lang::En).and_then(|t| t.get(key)));
        let Some(text) = text else {
            tracing::error!(key, "missing text");
            return key.to_owned();
        };
        let mut out = text.trim_end().to_owned();
        for (name, value) in args {
            out = out.replace(&format!("{{{name}}}"), value);
        }
        out
    }

    /// Keys of one language, for the completeness test.
    #[cfg(test)]
    fn keys(&self, lang: Lang) -> Vec<&str> {
        let mut keys: Vec<&str> = self.by_lang[&lang].keys().map(String::as_str).collect();
        keys.sort_unstable();
        keys
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_language_has_every_key() {
        let texts = Texts::load().expect("locales parse");
        let en = texts.keys(Lang::En);
        assert!(en.len() > 20);
        for lang in Lang::ALL {
            assert_eq!(texts.keys(lang), en, "{lang:?} differs from English");
        }
    }

    #[test]
    fn placeholders_are_filled_and_languages_fall_back() {
        let texts = Texts::load().expect("locales parse");
        let ru = texts.get(Lang::Ru, "persona.chosen", &[("name", "Мира")]);
        assert!(ru.contains("<b>Мира</b>"), "{ru}");
        assert!(!ru.contains('{'));
        assert_eq!(texts.get(Lang::En, "no.such.key", &[]), "no.such.key");
    }

    #[test]
    fn languages_come_from_telegram_codes() {
        assert_eq!(Lang::from_code(Some("ru-RU")), Lang::Ru);
        assert_eq!(Lang::from_code(Some("RU")), Lang::Ru);
        assert_eq!(Lang::from_code(Some("en-GB")), Lang::En);
        assert_eq!(Lang::from_code(Some("de")), Lang::En);
        assert_eq!(Lang::from_code(None), Lang::En);
    }
}
