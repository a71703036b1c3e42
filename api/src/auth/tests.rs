//! The remembered tokens of [`JwtVerifier`].

use super::*;

const SECRET: &str = "unit-test-secret-0123456789-0123456789";

fn verifier() -> JwtVerifier {
    JwtVerifier::new(&AuthSettings {
        key: JwtKey::Hs256(Secret::new(SECRET.to_owned())),
        issuer: None,
        audience: None,
        leeway_secs: 0,
        max_ttl_secs: 3600,
    })
    .unwrap()
}

fn token(sub: &str, ttl_secs: u64) -> String {
    mint_hs256(SECRET, sub, false, ttl_secs, None, None).unwrap()
}

fn now() -> u64 {
    chrono::Utc::now().timestamp() as u64
}

fn remembered(v: &JwtVerifier) -> usize {
    v.verified.lock().unwrap().len()
}

#[test]
fn a_remembered_token_still_expires() {
    let v = verifier();
    let t = token("alice", 60);
    let now = now();
    assert_eq!(v.verify_at(&t, now).unwrap().user_id.as_str(), "alice");
    assert_eq!(remembered(&v), 1);
    assert_eq!(v.verify_at(&t, now + 30).unwrap().user_id.as_str(), "alice");
    let late = v.verify_at(&t, now + 61).unwrap_err();
    assert!(late.starts_with("expired"), "{late}");
}

#[test]
fn a_remembered_token_is_refused_before_its_issue_time() {
    // The clock stepped back: iat is now in the future again.
    let v = verifier();
    let t = token("alice", 60);
    let now = now();
    v.verify_at(&t, now).unwrap();
    let early = v.verify_at(&t, now - 10).unwrap_err();
    assert!(early.starts_with("issued in the future"), "{early}");
}

#[test]
fn only_tokens_that_pass_are_remembered() {
    let v = verifier();
    let good = token("alice", 60);
    v.verify_at(&good, now()).unwrap();
    // The same claims with another signature, and a token of another key.
    let (signed, signature) = good.rsplit_once('.').unwrap();
    let flipped = if signature.starts_with('A') { "B" } else { "A" };
    let forged = format!("{signed}.{flipped}{}", &signature[1..]);
    let other = mint_hs256(
        "another-secret-0123456789-0123456789",
        "bob",
        true,
        60,
        None,
        None,
    )
    .unwrap();
    for bad in [&forged, &other, &"x".repeat(MAX_TOKEN_BYTES + 1)] {
        assert!(v.verify_at(bad, now()).is_err(), "{bad}");
    }
    assert_eq!(remembered(&v), 1);
}

#[test]
fn long_tokens_are_not_remembered() {
    let v = verifier();
    let long = mint_hs256(
        SECRET,
        &"u".repeat(REMEMBERED_TOKEN_BYTES),
        false,
        60,
        None,
        None,
    )
    .unwrap();
    assert_eq!(
        v.verify_at(&long, now()).unwrap().user_id.as_str().len(),
        1024
    );
    assert_eq!(remembered(&v), 0);
}

#[test]
fn the_memory_is_bounded() {
    let v = verifier();
    for n in 0..=VERIFIED_TOKENS {
        v.verify_at(&token(&format!("user-{n}"), 60), now())
            .unwrap();
    }
    let held = remembered(&v);
    assert!((1..=VERIFIED_TOKENS).contains(&held), "{held}");
}
