//! Importing cards from JSON and PNG files, and refusing what is not a card.

mod common;

use common::{
    b64, chunk, itxt_chunk, png_card, png_with, text_chunk, v2_card, v3_card, ztxt_chunk,
};
use vitte_cards::{CardError, CardKeyword, CardSpec, MAX_FILE_BYTES, MAX_TEXT_BYTES, parse_card};
use vitte_domain::model::{LoreEntry, PersonaCard};

fn parse_str(json: &str) -> Result<vitte_cards::ImportedCard, CardError> {
    parse_card(json.as_bytes())
}

#[test]
fn v1_card_reads_flat_fields_and_normalizes_placeholders() {
    let json = r#"{
        "name": " Ann ",
        "description": "<BOT> is a baker.",
        "personality": "kind",
        "scenario": "<user> visits <Char>'s bakery.",
        "first_mes": "Hi <USER>!",
        "mes_example": "<START>\n{{User}}: hi\n{{CHAR}}: hello",
        "talkativeness": "0.5", "fav": false, "create_date": "2023-5-4"
    }"#;
    let imported = parse_str(json).expect("V1 card parses");
    assert_eq!(imported.spec, CardSpec::V1);
    assert_eq!(imported.suggested_slug.as_str(), "ann");
    assert!(imported.picture.is_none());
    let card = imported.card;
    assert_eq!(card.name, "Ann");
    assert_eq!(card.description, "{{char}} is a baker.");
    assert_eq!(card.personality, "kind");
    assert_eq!(card.scenario, "{{user}} visits {{char}}'s bakery.");
    assert_eq!(card.first_message, "Hi {{user}}!");
    assert_eq!(
        card.example_messages,
        "<START>\n{{user}}: hi\n{{char}}: hello"
    );
    assert!(card.lorebook.is_empty() && card.alternate_greetings.is_empty());
}

#[test]
fn v2_card_maps_every_field_from_data() {
    let json = r#"{
        "spec": "chara_card_v2", "spec_version": "2.0",
        "name": "Root name is a V1 mirror and loses", "description": "mirror",
        "data": {
            "name": "Anna Karenina",
            "description": "{{char}} is a noblewoman.",
            "personality": "passionate",
            "scenario": "A train station.",
            "first_mes": "Good evening, {{user}}.",
            "mes_example": "<START>\n{{user}}: Hello\n{{char}}: Hello.",
            "creator_notes": "Classic literature.",
            "system_prompt": "Write in the style of the 1870s.",
            "post_history_instructions": "Stay in character.",
            "alternate_greetings": ["Oh! You startled me.", "   ", "Back again, {{user}}?"],
            "character_book": {
                "name": "Russia", "scan_depth": 4, "token_budget": 500, "recursive_scanning": false,
                "extensions": {"x": 1},
                "entries": [
                    {"keys": ["Vronsky", " count "], "content": "A cavalry officer.",
                     "extensions": {}, "enabled": true, "insertion_order": 5,
                     "case_sensitive": true, "constant": false, "name": "v", "priority": 3,
                     "id": 7, "comment": "c", "selective": true, "secondary_keys": ["x"],
                     "position": "before_char"},
                    {"keys": [], "content": "It is winter.", "extensions": {},
                     "enabled": false, "insertion_order": 1, "constant": true},
                    {"keys": ["empty"], "content": "  ", "extensions": {},
                     "enabled": true, "insertion_order": 2}
                ]
            },
            "tags": ["Drama", " drama", "romance", ""],
            "creator": "Leo",
            "character_version": "1.2",
            "extensions": {"depth_prompt": {"depth": 4, "prompt": "x"}}
        }
    }"#;
    let imported = parse_str(json).expect("V2 card parses");
    assert_eq!(imported.spec, CardSpec::V2);
    assert_eq!(imported.suggested_slug.as_str(), "anna-karenina");
    let expected = PersonaCard {
        name: "Anna Karenina".into(),
        description: "{{char}} is a noblewoman.".into(),
        personality: "passionate".into(),
        scenario: "A train station.".into(),
        first_message: "Good evening, {{user}}.".into(),
        example_messages: "<START>\n{{user}}: Hello\n{{char}}: Hello.".into(),
        system_prompt: "Write in the style of the 1870s.".into(),
        post_history_instructions: "Stay in character.".into(),
        alternate_greetings: vec![
            "Oh! You startled me.".into(),
            "Back again, {{user}}?".into(),
        ],
        lorebook: vec![
            LoreEntry {
                keys: vec!["Vronsky".into(), "count".into()],
                content: "A cavalry officer.".into(),
                enabled: true,
                case_sensitive: true,
                constant: false,
                insertion_order: 5,
            },
            LoreEntry {
                keys: vec![],
                content: "It is winter.".into(),
                enabled: false,
                case_sensitive: false,
                constant: true,
                insertion_order: 1,
            },
        ],
        tags: vec!["Drama".into(), "romance".into()],
        creator: "Leo".into(),
        creator_notes: "Classic literature.".into(),
    };
    assert_eq!(imported.card, expected);
}

#[test]
fn v3_card_reads_data_and_tolerates_v3_extras() {
    let json = r#"{
        "spec": "chara_card_v3", "spec_version": "3.1",
        "data": {
            "name": "Вера Лунная", "description": "d", "personality": "p", "scenario": "s",
            "first_mes": "Привет, {{user}}!", "mes_example": "", "system_prompt": "",
            "post_history_instructions": "", "alternate_greetings": ["Снова ты!"],
            "tags": ["ru"], "creator": "c", "character_version": "3", "extensions": {},
            "creator_notes": "",
            "creator_notes_multilingual": {"ru": "Заметки", "en": "Notes"},
            "nickname": "Verochka", "source": ["https://example.org/card"],
            "group_only_greetings": ["Всем привет!"],
            "creation_date": 1700000000, "modification_date": 0,
            "assets": [{"type": "icon", "uri": "ccdefault:", "name": "main", "ext": "png"},
                       {"type": "background", "uri": "embeded://assets/bg.png", "name": "main", "ext": "png"}],
            "character_book": {"extensions": {}, "entries": [
                {"keys": ["луна"], "content": "@@depth 4\n@@@instruct_depth 4\nЛуна полная.",
                 "extensions": {}, "enabled": true, "insertion_order": 10.6, "use_regex": false},
                {"keys": ["\\bкот\\b"], "content": "Кот спит.", "extensions": {},
                 "enabled": true, "insertion_order": 3, "use_regex": true, "constant": true}
            ]}
        }
    }"#;
    let imported = parse_str(json).expect("V3 card parses");
    assert_eq!(imported.spec, CardSpec::V3);
    assert_eq!(imported.suggested_slug.as_str(), "vera-lunnaya");
    let card = imported.card;
    assert_eq!(card.name, "Вера Лунная");
    assert_eq!(card.first_message, "Привет, {{user}}!");
    assert_eq!(card.alternate_greetings, ["Снова ты!"]);
    assert_eq!(
        card.creator_notes, "Notes",
        "English notes stand in for empty creator_notes"
    );
    assert_eq!(card.lorebook.len(), 2);
    assert_eq!(
        card.lorebook[0].content, "Луна полная.",
        "decorators are stripped"
    );
    assert_eq!(card.lorebook[0].insertion_order, 11);
    assert_eq!(card.lorebook[1].keys, ["\\bкот\\b"]);
    assert!(
        !card.lorebook[1].constant,
        "regex entries are never constant"
    );
}

#[test]
fn lenient_about_nulls_and_wrong_shapes_in_fields() {
    let json = r#"{"spec":"chara_card_v2","data":{
        "name":"Nully","description":null,"personality":42,"scenario":["x"],
        "alternate_greetings":"not a list","tags":null,"character_book":null,
        "creator_notes":{"lang":"en"},"extensions":null}}"#;
    let card = parse_str(json).expect("odd card still parses").card;
    assert_eq!(card.name, "Nully");
    assert_eq!(card.description, "");
    assert_eq!(card.personality, "");
    assert_eq!(card.alternate_greetings, ["not a list"]);
    assert!(card.tags.is_empty() && card.lorebook.is_empty());
}

#[test]
fn json_may_start_with_a_byte_order_mark_and_whitespace() {
    let json = format!("\u{feff}\n  {}", v2_card("Bom"));
    assert_eq!(parse_str(&json).expect("parses").card.name, "Bom");
}

#[test]
fn nul_characters_never_reach_the_card() {
    let json = r#"{"name":"A\u0000na","description":"x\u0000y"}"#;
    let card = parse_str(json).expect("parses").card;
    assert_eq!(
        (card.name.as_str(), card.description.as_str()),
        ("Ana", "xy")
    );
}

#[test]
fn unknown_spec_is_refused_by_name() {
    let err = parse_str(r#"{"spec":"chara_card_v9","data":{"name":"X"}}"#).unwrap_err();
    assert!(
        matches!(&err, CardError::UnknownSpec(s) if s == "chara_card_v9"),
        "{err:?}"
    );
    assert!(err.to_string().contains("chara_card_v9"));
    let err = parse_str(r#"{"spec":7,"name":"X"}"#).unwrap_err();
    assert!(matches!(err, CardError::UnknownSpec(_)), "{err:?}");
}

#[test]
fn a_card_needs_a_name() {
    for json in [
        r#"{"spec":"chara_card_v2","data":{"name":"   ","description":"d"}}"#,
        r#"{"description":"a V1 card without a name"}"#,
        r#"{"spec":"chara_card_v3","data":{"name":null}}"#,
        "{}",
    ] {
        let err = parse_str(json).unwrap_err();
        assert!(matches!(err, CardError::MissingName), "{json}: {err:?}");
    }
}

#[test]
fn broken_json_is_reported_as_json() {
    for json in [
        r#"{"spec":"chara_card_v2","data":{"name":"X""#,
        r#"{"name":"X"} trailing"#,
    ] {
        let err = parse_str(json).unwrap_err();
        assert!(matches!(err, CardError::InvalidJson(_)), "{json}: {err:?}");
    }
}

#[test]
fn anything_else_is_not_a_card() {
    let jpeg = [0xff, 0xd8, 0xff, 0xe0, 0, 0x10, b'J', b'F', b'I', b'F'];
    let inputs: [&[u8]; 6] = [b"", b"   ", b"hello", b"[1,2,3]", &jpeg, b"\x89PN"];
    for input in inputs {
        let err = parse_card(input).unwrap_err();
        assert!(matches!(err, CardError::NotACard), "{input:?}: {err:?}");
    }
}

#[test]
fn files_over_the_limit_are_refused_before_reading() {
    let mut big = vec![b' '; MAX_FILE_BYTES + 1];
    big[0] = b'{';
    let err = parse_card(&big).unwrap_err();
    assert!(
        matches!(err, CardError::TooLarge { size, limit } if size == MAX_FILE_BYTES + 1 && limit == MAX_FILE_BYTES),
        "{err:?}"
    );
}

#[test]
fn png_with_chara_chunk_yields_card_and_picture() {
    let png = png_card("chara", &v2_card("Keeper"));
    let imported = parse_card(&png).expect("PNG card parses");
    assert_eq!(imported.spec, CardSpec::V2);
    assert_eq!(imported.card.name, "Keeper");
    assert_eq!(imported.card.description, "{{char}} keeps a lighthouse.");
    assert_eq!(imported.card.lorebook.len(), 1);
    let picture = imported.picture.expect("PNG becomes the picture");
    assert_eq!(picture.mime, "image/png");
    assert_eq!(picture.bytes, png);
}

#[test]
fn png_chara_chunk_may_hold_a_v1_card() {
    let png = png_card("chara", r#"{"name":"Old School","first_mes":"Hi <USER>"}"#);
    let imported = parse_card(&png).expect("parses");
    assert_eq!(imported.spec, CardSpec::V1);
    assert_eq!(imported.card.first_message, "Hi {{user}}");
}

#[test]
fn png_with_ccv3_chunk_yields_v3_card() {
    let imported = parse_card(&png_card("ccv3", &v3_card("Nova"))).expect("parses");
    assert_eq!(imported.spec, CardSpec::V3);
    assert_eq!(imported.card.name, "Nova");
    assert_eq!(imported.card.first_message, "Hello.");
}

#[test]
fn ccv3_wins_over_chara_in_either_order() {
    let chara = text_chunk("chara", &b64(v2_card("Backfilled V2").as_bytes()));
    let ccv3 = text_chunk("ccv3", &b64(v3_card("Real V3").as_bytes()));
    for chunks in [[chara.clone(), ccv3.clone()], [ccv3, chara]] {
        let imported = parse_card(&png_with(&chunks)).expect("parses");
        assert_eq!(imported.card.name, "Real V3");
        assert_eq!(imported.spec, CardSpec::V3);
    }
}

#[test]
fn first_chunk_wins_when_a_keyword_repeats_and_keywords_ignore_case() {
    let png = png_with(&[
        text_chunk("Software", b"some editor"),
        text_chunk("Chara", &b64(v2_card("First").as_bytes())),
        text_chunk("chara", &b64(v2_card("Second").as_bytes())),
    ]);
    assert_eq!(parse_card(&png).expect("parses").card.name, "First");
}

#[test]
fn compressed_and_international_text_chunks_are_read() {
    let json = v2_card("Zed");
    let cases = [
        ("zTXt", ztxt_chunk("chara", &b64(json.as_bytes()))),
        ("iTXt", itxt_chunk("chara", &b64(json.as_bytes()), false)),
        (
            "compressed iTXt",
            itxt_chunk("chara", &b64(json.as_bytes()), true),
        ),
    ];
    for (what, chunk) in cases {
        let imported = parse_card(&png_with(&[chunk])).unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_eq!(imported.card.name, "Zed", "{what}");
    }
    let ccv3 = itxt_chunk("ccv3", &b64(v3_card("Itxt V3").as_bytes()), true);
    let chara = ztxt_chunk("chara", &b64(v2_card("Ztxt V2").as_bytes()));
    let imported = parse_card(&png_with(&[chara, ccv3])).expect("parses");
    assert_eq!(imported.card.name, "Itxt V3");
}

#[test]
fn base64_with_line_breaks_and_without_padding_is_accepted() {
    let encoded = String::from_utf8(b64(v2_card("Wrapped").as_bytes())).expect("ascii");
    let wrapped: Vec<u8> = encoded
        .trim_end_matches('=')
        .as_bytes()
        .chunks(76)
        .flat_map(|line| [line, b"\r\n"].concat())
        .collect();
    let png = png_with(&[text_chunk("chara", &wrapped)]);
    assert_eq!(parse_card(&png).expect("parses").card.name, "Wrapped");
}

#[test]
fn png_without_card_chunk_is_an_ordinary_picture() {
    let png = png_with(&[
        text_chunk("Software", b"paint"),
        text_chunk("charactor", b"e30="),
    ]);
    let err = parse_card(&png).unwrap_err();
    assert!(matches!(err, CardError::NoCardChunk), "{err:?}");
    assert!(err.to_string().contains("no character card"));
}

#[test]
fn every_truncation_of_a_png_card_is_refused_as_damaged() {
    let png = png_card("chara", &v2_card("Cut"));
    for len in 0..png.len() {
        let err = parse_card(&png[..len]).expect_err("a cut PNG never parses");
        if len < 8 {
            assert!(matches!(err, CardError::NotACard), "len {len}: {err:?}");
        } else {
            assert!(
                matches!(err, CardError::MalformedPng(_)),
                "len {len}: {err:?}"
            );
        }
    }
    assert!(parse_card(&png).is_ok());
}

#[test]
fn a_wrong_crc_is_refused() {
    let mut png = png_card("chara", &v2_card("Crc"));
    // Flip one bit in the card text, leaving its CRC stale.
    let at = png
        .windows(5)
        .position(|w| w == b"chara")
        .expect("keyword present")
        + 10;
    png[at] ^= 0x01;
    let err = parse_card(&png).unwrap_err();
    assert!(
        matches!(&err, CardError::MalformedPng(m) if m.contains("CRC")),
        "{err:?}"
    );
}

#[test]
fn a_png_must_open_with_ihdr() {
    let mut png = common::SIGNATURE.to_vec();
    png.extend(text_chunk("chara", &b64(v2_card("Early").as_bytes())));
    png.extend(chunk(b"IEND", b""));
    let err = parse_card(&png).unwrap_err();
    assert!(
        matches!(&err, CardError::MalformedPng(m) if m.contains("IHDR")),
        "{err:?}"
    );
}

#[test]
fn bad_base64_names_the_chunk() {
    let png = png_with(&[text_chunk("ccv3", b"this is not base64!")]);
    let err = parse_card(&png).unwrap_err();
    assert!(
        matches!(
            err,
            CardError::BadBase64 {
                keyword: CardKeyword::Ccv3,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("ccv3"));
}

#[test]
fn chunk_json_that_is_not_an_object_is_invalid_json() {
    let png = png_with(&[text_chunk("chara", &b64(b"[1,2,3]"))]);
    let err = parse_card(&png).unwrap_err();
    assert!(matches!(err, CardError::InvalidJson(_)), "{err:?}");
}

#[test]
fn a_compression_bomb_stops_at_the_text_limit() {
    let bomb = vec![b'A'; MAX_TEXT_BYTES + 1024];
    for chunk in [ztxt_chunk("chara", &bomb), itxt_chunk("ccv3", &bomb, true)] {
        assert!(chunk.len() < 64 * 1024, "the bomb is small on disk");
        let err = parse_card(&png_with(&[chunk])).unwrap_err();
        assert!(
            matches!(err, CardError::TextTooLarge { limit, .. } if limit == MAX_TEXT_BYTES),
            "{err:?}"
        );
    }
}

#[test]
fn an_oversized_plain_text_chunk_is_refused() {
    let text = vec![b'A'; MAX_TEXT_BYTES + 4];
    let err = parse_card(&png_with(&[text_chunk("chara", &text)])).unwrap_err();
    assert!(
        matches!(
            err,
            CardError::TextTooLarge {
                keyword: CardKeyword::Chara,
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn corrupt_compressed_text_is_damage_not_a_panic() {
    let data = [b"chara\0\0".as_slice(), b"\x78\x9c\xff\xff\xff"].concat();
    let err = parse_card(&png_with(&[chunk(b"zTXt", &data)])).unwrap_err();
    assert!(matches!(err, CardError::MalformedPng(_)), "{err:?}");
    let data = [b"chara\0\x01".as_slice(), b"whatever"].concat();
    let err = parse_card(&png_with(&[chunk(b"zTXt", &data)])).unwrap_err();
    assert!(
        matches!(&err, CardError::MalformedPng(m) if m.contains("compression")),
        "{err:?}"
    );
}

#[test]
fn chunk_walking_is_bounded() {
    let empty = chunk(b"prVt", b"");
    let many: Vec<Vec<u8>> = std::iter::repeat_n(empty, vitte_cards::MAX_CHUNKS).collect();
    let err = parse_card(&png_with(&many)).unwrap_err();
    assert!(
        matches!(&err, CardError::MalformedPng(m) if m.contains("chunks")),
        "{err:?}"
    );
}

#[test]
fn a_chunk_claiming_a_huge_length_is_refused_without_allocating_it() {
    let mut png = png_card("chara", &v2_card("Liar"));
    let at = png
        .windows(4)
        .position(|w| w == b"tEXt")
        .expect("text chunk")
        - 4;
    png[at..at + 4].copy_from_slice(&0xffff_fff0_u32.to_be_bytes());
    let err = parse_card(&png).unwrap_err();
    assert!(matches!(err, CardError::MalformedPng(_)), "{err:?}");
}
