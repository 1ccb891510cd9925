//! The example personas in the repository's `personas/` folder import
//! cleanly, and each PNG carries the same card as its JSON file.

use std::path::PathBuf;

use vitte_cards::{CardSpec, parse_card};

fn personas_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../personas")
}

fn read(name: &str) -> Vec<u8> {
    let path = personas_dir().join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn every_shipped_persona_imports_from_json_and_png() {
    for (file, slug, name) in [
        ("mira", "mira", "Mira"),
        ("elias", "elias", "Elias"),
        ("vera", "vera", "Вера"),
    ] {
        let json_bytes = read(&format!("{file}.json"));
        let png_bytes = read(&format!("{file}.png"));
        let from_json = parse_card(&json_bytes).unwrap_or_else(|e| panic!("{file}.json: {e}"));
        let from_png = parse_card(&png_bytes).unwrap_or_else(|e| panic!("{file}.png: {e}"));

        assert_eq!(from_json.spec, CardSpec::V2, "{file}");
        assert_eq!(from_json.suggested_slug.as_str(), slug);
        assert_eq!(
            from_json.card, from_png.card,
            "{file}.png embeds {file}.json"
        );
        assert!(from_json.picture.is_none());
        let picture = from_png.picture.expect("PNG is the picture");
        assert_eq!(picture.bytes, png_bytes);
        assert!(png_bytes.len() < 40 * 1024, "{file}.png stays small");

        let card = from_json.card;
        assert_eq!(card.name, name);
        for (field, text) in [
            ("description", &card.description),
            ("personality", &card.personality),
            ("scenario", &card.scenario),
            ("first_mes", &card.first_message),
            ("post_history_instructions", &card.post_history_instructions),
        ] {
            assert!(!text.is_empty(), "{file}: {field} is written");
        }
        assert!(
            card.system_prompt.is_empty(),
            "{file}: keeps the product's system prompt"
        );
        assert!(card.alternate_greetings.len() >= 2, "{file}");
        assert!(
            card.example_messages.starts_with("<START>\n{{user}}: "),
            "{file}"
        );
        assert!(
            card.example_messages.matches("<START>").count() >= 2,
            "{file}"
        );
        assert!((3..=5).contains(&card.lorebook.len()), "{file}");
        assert!(
            card.lorebook
                .iter()
                .all(|e| e.enabled && !e.keys.is_empty()),
            "{file}"
        );
        assert!(!card.tags.is_empty() && card.creator == "Vitte", "{file}");
    }
}
