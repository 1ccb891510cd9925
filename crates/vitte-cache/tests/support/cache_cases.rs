//! The cache conformance cases: every engine of the `Cache` port must pass
//! them unchanged. Each case gets its own key namespace.

use std::sync::Arc;
use std::time::{Duration, Instant};

use vitte_domain::ports::Cache;

/// The engine under test and the namespace of this case's keys.
pub struct Subject {
    /// The engine.
    pub cache: Arc<dyn Cache>,
    /// Prefix of every key the case uses.
    pub namespace: String,
}

impl Subject {
    fn key(&self, name: &str) -> String {
        format!("{}:{name}", self.namespace)
    }

    async fn get(&self, key: &str) -> Option<Vec<u8>> {
        self.cache.get(key).await.expect("get")
    }

    async fn set(&self, key: &str, value: &[u8], ttl: Duration) {
        self.cache.set(key, value, ttl).await.expect("set");
    }

    /// Polls until `key` is gone; `false` if it is still there after `within`.
    async fn gone_within(&self, key: &str, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if self.get(key).await.is_none() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        false
    }
}

const MINUTE: Duration = Duration::from_secs(60);
/// A TTL short enough to watch expire.
const SHORT: Duration = Duration::from_millis(150);
/// How long an expired entry may take to disappear before the case fails.
const PATIENCE: Duration = Duration::from_secs(5);

/// Values are stored, read back, replaced and deleted.
pub async fn set_get_delete(s: Subject) {
    let k = s.key("a");
    assert_eq!(s.get(&k).await, None);
    s.set(&k, b"one", MINUTE).await;
    assert_eq!(s.get(&k).await.as_deref(), Some(&b"one"[..]));
    s.set(&k, b"two", MINUTE).await;
    assert_eq!(s.get(&k).await.as_deref(), Some(&b"two"[..]));
    s.cache
        .delete(std::slice::from_ref(&k))
        .await
        .expect("delete");
    assert_eq!(s.get(&k).await, None);
    // Deleting what is absent is fine.
    s.cache.delete(&[k]).await.expect("delete absent");
}

/// One delete removes several keys; an empty delete does nothing.
pub async fn delete_removes_every_key_given(s: Subject) {
    let (a, b, c) = (s.key("a"), s.key("b"), s.key("c"));
    for k in [&a, &b, &c] {
        s.set(k, b"v", MINUTE).await;
    }
    s.cache.delete(&[]).await.expect("empty delete");
    assert!(s.get(&a).await.is_some());
    s.cache
        .delete(&[a.clone(), b.clone()])
        .await
        .expect("delete");
    assert_eq!(s.get(&a).await, None);
    assert_eq!(s.get(&b).await, None);
    assert_eq!(s.get(&c).await.as_deref(), Some(&b"v"[..]));
}

/// An entry disappears after its TTL; others stay.
pub async fn entries_expire_after_their_ttl(s: Subject) {
    let (short, long) = (s.key("short"), s.key("long"));
    let stored = Instant::now();
    s.set(&short, b"brief", SHORT).await;
    s.set(&long, b"lasting", MINUTE).await;
    let early = s.get(&short).await;
    if stored.elapsed() < SHORT / 2 {
        assert_eq!(early.as_deref(), Some(&b"brief"[..]), "gone too early");
    }
    assert!(s.gone_within(&short, PATIENCE).await, "never expired");
    assert!(
        stored.elapsed() >= SHORT,
        "expired before its TTL: {:?}",
        stored.elapsed()
    );
    assert_eq!(s.get(&long).await.as_deref(), Some(&b"lasting"[..]));
}

/// Storing again replaces the TTL along with the value.
pub async fn overwriting_replaces_the_ttl(s: Subject) {
    let (k, witness) = (s.key("k"), s.key("witness"));
    s.set(&k, b"old", SHORT).await;
    s.set(&k, b"new", MINUTE).await;
    s.set(&witness, b"w", SHORT).await;
    assert!(s.gone_within(&witness, PATIENCE).await, "never expired");
    assert_eq!(s.get(&k).await.as_deref(), Some(&b"new"[..]));

    // And the other way round: a long entry overwritten with a short TTL goes.
    s.set(&k, b"short now", SHORT).await;
    assert!(s.gone_within(&k, PATIENCE).await, "kept the old TTL");
}

/// A zero TTL stores nothing and removes what was there.
pub async fn a_zero_ttl_stores_nothing(s: Subject) {
    let k = s.key("k");
    s.set(&k, b"v", MINUTE).await;
    s.set(&k, b"w", Duration::ZERO).await;
    assert_eq!(s.get(&k).await, None);
}

/// Any bytes round-trip, including none and invalid UTF-8.
pub async fn values_are_binary_safe(s: Subject) {
    let every_byte: Vec<u8> = (0..=255).collect();
    let k = s.key("bytes");
    s.set(&k, &every_byte, MINUTE).await;
    assert_eq!(s.get(&k).await, Some(every_byte));

    let empty = s.key("empty");
    s.set(&empty, b"", MINUTE).await;
    assert_eq!(s.get(&empty).await, Some(Vec::new()), "empty is not absent");

    let crlf = s.key("crlf");
    s.set(&crlf, b"\r\n$3\r\nGET\r\n\0\xff", MINUTE).await;
    assert_eq!(
        s.get(&crlf).await.as_deref(),
        Some(&b"\r\n$3\r\nGET\r\n\0\xff"[..])
    );
}

/// Values of megabytes round-trip intact.
pub async fn large_values_round_trip(s: Subject) {
    let big: Vec<u8> = (0..4 * 1024 * 1024u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let k = s.key("big");
    s.set(&k, &big, MINUTE).await;
    let back = s.get(&k).await.expect("stored");
    assert_eq!(back.len(), big.len());
    assert!(back == big, "bytes differ");
}

/// Keys are compared exactly, whatever their characters.
pub async fn keys_are_unicode_and_exact(s: Subject) {
    let cyrillic = s.key("ключ:🙂:日本語");
    // "é" precomposed and decomposed look alike but are different keys.
    let (composed, decomposed) = (s.key("caf\u{e9}"), s.key("cafe\u{301}"));
    s.set(&cyrillic, "значение".as_bytes(), MINUTE).await;
    s.set(&composed, b"1", MINUTE).await;
    s.set(&decomposed, b"2", MINUTE).await;
    assert_eq!(
        s.get(&cyrillic).await.as_deref(),
        Some("значение".as_bytes())
    );
    assert_eq!(s.get(&composed).await.as_deref(), Some(&b"1"[..]));
    assert_eq!(s.get(&decomposed).await.as_deref(), Some(&b"2"[..]));
    // A key is not a prefix match.
    assert_eq!(s.get(&s.key("ключ")).await, None);
    assert_eq!(s.get(&s.key("ключ:🙂:日本語:x")).await, None);
}
