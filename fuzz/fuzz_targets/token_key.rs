//! One token identity (`token_key`): any input keys without a panic; a JOSE
//! token's key is the key of its canonical spelling (the decoded segments
//! written back in base64url without padding), so every spelling lenient
//! decoders read alike finds one binding; respelling the input the ways they
//! tolerate (junk characters, padding, `+`/`/`, the last character's unused
//! bits) never changes its key; and two tokens whose decoded segments differ
//! never share a key.
#![no_main]
use base64::Engine;
use certbound::token_key::{jose_segments, keys_for_token};
use libfuzzer_sys::fuzz_target;

const B64URL: base64::engine::GeneralPurpose = base64::engine::general_purpose::URL_SAFE_NO_PAD;

fn canonical(segments: &[Vec<u8>]) -> String {
    segments.iter().map(|s| B64URL.encode(s)).collect::<Vec<_>>().join(".")
}

/// Respells a canonical segment, steered by the fuzzer's bytes.
fn respell(seg: &str, steer: &[u8]) -> String {
    let mut out = String::new();
    let mut steer = steer.iter().cycle();
    let n = seg.len();
    for (i, c) in seg.chars().enumerate() {
        let s = *steer.next().unwrap_or(&0);
        if s & 0x10 != 0 {
            out.push(['~', '!', ' ', '*', '\t', '"'][usize::from(s >> 5) % 6]);
        }
        let c = match c {
            '-' if s & 1 != 0 => '+',
            '_' if s & 1 != 0 => '/',
            c => c,
        };
        if i + 1 == n && n % 4 != 0 {
            let unused = [0u8, 0, 4, 2][n % 4];
            let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
            let v = alphabet.iter().position(|a| *a as char == c).unwrap_or(0) as u8;
            let flipped = (v & !((1 << unused) - 1)) | (s & ((1 << unused) - 1));
            out.push(alphabet[usize::from(flipped)] as char);
        } else {
            out.push(c);
        }
    }
    let pad = usize::from(*steer.next().unwrap_or(&0) % 3);
    out.push_str(&"=".repeat(pad));
    out
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let keys = keys_for_token(&text);
    let Ok(Some(segments)) = jose_segments(&text) else { return };
    let keys = keys.expect("a JOSE token whose segments decode has keys");
    // The canonical spelling has the same key, and respellings of it too.
    let canon = canonical(&segments);
    assert_eq!(keys_for_token(&canon).map(|k| k.key), Ok(keys.key.clone()), "{text:?} vs {canon:?}");
    let respelled: Vec<String> = canon.split('.').map(|s| respell(s, data)).collect();
    let respelled = respelled.join(".");
    assert_eq!(keys_for_token(&respelled).map(|k| k.key), Ok(keys.key.clone()), "{canon:?} vs {respelled:?}");
    // Another token (one byte of one segment changed) never shares the key.
    if let Some((i, seg)) = segments.iter().enumerate().rev().find(|(_, s)| !s.is_empty()) {
        let mut other = segments.clone();
        let last = seg.len() - 1;
        other[i][last] ^= 1 | data.first().copied().unwrap_or(0);
        if other[i][last] != segments[i][last] {
            if let Ok(Some(_)) = jose_segments(&canonical(&other)) {
                assert_ne!(keys_for_token(&canonical(&other)).map(|k| k.key), Ok(keys.key), "{canon:?}");
            }
        }
    }
});
