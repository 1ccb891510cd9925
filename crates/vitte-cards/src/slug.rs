//! Slugs for imported personas. The domain's slug alphabet is ASCII, so a
//! Cyrillic name would otherwise collapse to the generic "persona"; names are
//! transliterated first, as most of our personas have Russian names.

use vitte_domain::ids::PersonaSlug;

/// A slug derived from a display name: "Вера Лунная" becomes "vera-lunnaya".
pub fn suggest(name: &str) -> PersonaSlug {
    let mut latin = String::with_capacity(name.len());
    for c in name.chars().flat_map(char::to_lowercase) {
        match transliterate(c) {
            Some(s) => latin.push_str(s),
            None => latin.push(c),
        }
    }
    PersonaSlug::from_name(&latin)
}

/// Russian letters (and the Ukrainian and Belarusian extras) in a plain,
/// readable romanization; lower case only.
fn transliterate(c: char) -> Option<&'static str> {
    Some(match c {
        'а' => "a",
        'б' => "b",
        'в' => "v",
        'г' => "g",
        'ґ' => "g",
        'д' => "d",
        'е' | 'ё' | 'э' | 'є' => "e",
        'ж' => "zh",
        'з' => "z",
        'и' | 'і' => "i",
        'ї' => "yi",
        'й' => "y",
        'к' => "k",
        'л' => "l",
        'м' => "m",
        'н' => "n",
        'о' => "o",
        'п' => "p",
        'р' => "r",
        'с' => "s",
        'т' => "t",
        'у' | 'ў' => "u",
        'ф' => "f",
        'х' => "kh",
        'ц' => "ts",
        'ч' => "ch",
        'ш' => "sh",
        'щ' => "shch",
        'ъ' | 'ь' => "",
        'ы' => "y",
        'ю' => "yu",
        'я' => "ya",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cyrillic_names_are_transliterated() {
        assert_eq!(suggest("Вера Лунная").as_str(), "vera-lunnaya");
        assert_eq!(suggest("Щука Ёжикова").as_str(), "shchuka-ezhikova");
        assert_eq!(suggest("Mira Sol").as_str(), "mira-sol");
        assert_eq!(suggest("✨").as_str(), "persona");
    }
}
