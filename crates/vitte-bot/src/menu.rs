//! The command menu Telegram clients show next to the text box, published at
//! start-up in every language we have texts for.

use std::sync::Arc;

use crate::i18n::{Lang, Texts};
use crate::telegram::Telegram;

/// The commands of the menu, with the key of their description.
const COMMANDS: [(&str, &str); 5] = [
    ("persona", "cmd.persona"),
    ("reset", "cmd.reset"),
    ("retry", "cmd.retry"),
    ("language", "cmd.language"),
    ("help", "cmd.help"),
];

/// The menu in `lang`.
pub fn commands(texts: &Texts, lang: Lang) -> Vec<(&'static str, String)> {
    COMMANDS
        .iter()
        .map(|(name, key)| (*name, texts.get(lang, key, &[])))
        .collect()
}

/// Publishes the menu: English for everyone, then each language for its
/// speakers. A failure only costs the menu, so it is logged, not retried.
pub async fn publish(telegram: Arc<Telegram>, texts: Texts) {
    let mut targets = vec![(Lang::En, None)];
    targets.extend(Lang::ALL.iter().map(|&l| (l, Some(l.code()))));
    for (lang, code) in targets {
        if let Err(e) = telegram.set_commands(commands(&texts, lang), code).await {
            tracing::warn!(error = %e, language = code, "command menu not published");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_menu_entry_has_a_description_in_every_language() {
        let texts = Texts::load().expect("locales");
        for lang in Lang::ALL {
            for (name, description) in commands(&texts, lang) {
                assert!(
                    !description.starts_with("cmd."),
                    "{name} has no {lang:?} text"
                );
                assert!(description.len() <= 256);
            }
        }
    }
}
