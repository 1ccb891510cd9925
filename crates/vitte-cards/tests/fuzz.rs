//! A seeded, deterministic stand-in for fuzzing: thousands of damaged and
//! random inputs, none of which may panic. Structured mutations re-wrap the
//! damaged payload with a valid CRC so that the damage reaches the zlib,
//! base64 and JSON layers instead of stopping at the chunk check.

mod common;

use common::{Rng, b64, chunk, png_card, png_with, text_chunk, v2_card, v3_card, ztxt_chunk};
use vitte_cards::{CardError, parse_card};

const ROUNDS: usize = 3000;

/// Applies one to eight random edits: bit flips, byte overwrites, inserts,
/// deletions, duplicated runs and truncation.
fn mutate(rng: &mut Rng, input: &[u8]) -> Vec<u8> {
    let mut out = input.to_vec();
    for _ in 0..=rng.below(8) {
        if out.is_empty() {
            out.push(rng.byte());
            continue;
        }
        let at = rng.below(out.len());
        match rng.below(6) {
            0 => out[at] ^= 1 << rng.below(8),
            1 => out[at] = rng.byte(),
            2 => out.insert(at, rng.byte()),
            3 => {
                out.remove(at);
            }
            4 => {
                let end = (at + rng.below(16)).min(out.len());
                let run = out[at..end].to_vec();
                out.splice(at..at, run);
            }
            _ => out.truncate(at),
        }
    }
    out
}

fn seeds() -> Vec<Vec<u8>> {
    vec![
        v2_card("Seed").into_bytes(),
        v3_card("Seed").into_bytes(),
        br#"{"name":"V1","first_mes":"<BOT> waves at <USER>"}"#.to_vec(),
        png_card("chara", &v2_card("Seed")),
        png_card("ccv3", &v3_card("Seed")),
        png_with(&[ztxt_chunk("chara", &b64(v2_card("Seed").as_bytes()))]),
    ]
}

/// Runs the parser and checks the one property every outcome must have:
/// an error renders to a message.
fn check(input: &[u8]) -> bool {
    match parse_card(input) {
        Ok(imported) => {
            assert!(!imported.card.name.is_empty());
            true
        }
        Err(err) => {
            assert!(!err.to_string().is_empty());
            false
        }
    }
}

#[test]
fn seeds_parse_before_mutation() {
    for seed in seeds() {
        assert!(check(&seed), "every seed is a valid card");
    }
}

#[test]
fn mutated_files_never_panic() {
    let mut rng = Rng::new(0x5eed_0001);
    let seeds = seeds();
    for _ in 0..ROUNDS {
        let seed = &seeds[rng.below(seeds.len())];
        check(&mutate(&mut rng, seed));
    }
}

#[test]
fn mutated_payloads_behind_valid_crcs_never_panic() {
    let mut rng = Rng::new(0x5eed_0002);
    let json = v2_card("Payload").into_bytes();
    let encoded = b64(&json);
    let compressed = [b"chara\0\0".as_slice(), &common::zlib(&encoded)].concat();
    let (mut ok, mut refused) = (0, 0);
    for round in 0..ROUNDS {
        let chunk = match round % 3 {
            // Damaged JSON, correctly encoded: reaches the JSON reader.
            0 => text_chunk("chara", &b64(&mutate(&mut rng, &json))),
            // Damaged base64.
            1 => text_chunk("chara", &mutate(&mut rng, &encoded)),
            // Damaged zTXt header or zlib stream.
            _ => chunk(b"zTXt", &mutate(&mut rng, &compressed)),
        };
        if check(&png_with(&[chunk])) {
            ok += 1;
        } else {
            refused += 1;
        }
    }
    // Both outcomes occur, so the loop exercised the decoders rather than
    // stopping at one early check.
    assert!(ok > 0 && refused > 0, "ok {ok}, refused {refused}");
}

#[test]
fn random_bytes_never_panic() {
    let mut rng = Rng::new(0x5eed_0003);
    for round in 0..ROUNDS {
        let len = rng.below(512);
        let mut input: Vec<u8> = (0..len).map(|_| rng.byte()).collect();
        // Half the time, pretend to be a PNG or a JSON object to get past
        // the first check.
        let prefix: &[u8] = match round % 4 {
            0 => &common::SIGNATURE,
            1 => b"{",
            _ => b"",
        };
        input.splice(0..0, prefix.iter().copied());
        if let Err(err) = parse_card(&input) {
            assert!(!matches!(err, CardError::TooLarge { .. }));
        }
    }
}
