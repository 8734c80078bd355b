//! The sealed token store over SQLite: what a fleet relies on, one rule per test (the
//! end-to-end fleet test runs it over PostgreSQL).

#![allow(clippy::unwrap_used)] // A test fails loudly on what it did not expect.

use std::time::Duration;

use super::*;

fn store(name: &str) -> (SealedTokens, std::path::PathBuf) {
    let dir =
        std::env::temp_dir().join(format!("marketplace-tokens-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let key = SealingKeys::configured_or_kept(None, &dir).unwrap();
    (
        SealedTokens::new(Store::open(&dir).unwrap(), Arc::new(key)),
        dir,
    )
}

fn installation(stack: &str) -> Installation {
    Installation {
        organization_uid: "org1".into(),
        stack_api_key: Some(stack.into()),
    }
}

fn tokens(n: u32) -> StoredTokens {
    StoredTokens {
        access_token: AccessToken::new(format!("secret-access-{n}")),
        refresh_token: Some(RefreshToken::new(format!("secret-refresh-{n}"))),
        expires_at: UNIX_EPOCH + Duration::from_millis(1_900_000_000_123),
        lifetime: Duration::from_secs(3_600),
        region: "EU".into(),
        authorized_at: UNIX_EPOCH + Duration::from_millis(1_800_000_000_000),
    }
}

/// Every byte SQLite keeps for the database: the file and its write-ahead log.
fn database_bytes(dir: &std::path::Path) -> Vec<u8> {
    ["marketplace-app.sqlite3", "marketplace-app.sqlite3-wal"]
        .iter()
        .filter_map(|name| std::fs::read(dir.join(name)).ok())
        .flatten()
        .collect()
}

#[tokio::test]
async fn tokens_are_kept_sealed_and_open_only_for_their_installation() {
    let (store, dir) = store("sealed");
    store.save(&installation("blt1"), &tokens(1)).await.unwrap();
    assert_eq!(
        store.load(&installation("blt1")).await.unwrap(),
        Some(tokens(1))
    );
    assert_eq!(store.load(&installation("blt2")).await.unwrap(), None);
    let bytes = database_bytes(&dir);
    assert!(
        bytes.windows(12).any(|w| w == b"oauth_tokens"),
        "the table is there"
    );
    assert!(
        !bytes.windows(6).any(|w| w == b"secret"),
        "no token in the database file"
    );

    // Another installation's sealed row copied into this one's opens to nothing (authorize
    // again), not to the other's tokens.
    store.save(&installation("blt2"), &tokens(2)).await.unwrap();
    let Backend::Sqlite(connection) = &store.store.backend else {
        unreachable!("the store is SQLite")
    };
    connection
        .lock()
        .unwrap()
        .execute(
            "UPDATE oauth_tokens SET sealed = (SELECT sealed FROM oauth_tokens WHERE installation = ?1) WHERE installation = ?2",
            [
                SealedTokens::row_key(&installation("blt1")),
                SealedTokens::row_key(&installation("blt2")),
            ],
        )
        .unwrap();
    assert_eq!(store.load(&installation("blt2")).await.unwrap(), None);

    // Another key (OAUTH_TOKEN_KEY changed without the old one kept) opens nothing either.
    let other = SealedTokens::new(store.store.clone(), Arc::new(ring(&[0])));
    assert_eq!(other.load(&installation("blt1")).await.unwrap(), None);
}

/// `OAUTH_TOKEN_KEY` of the keys made of these bytes, the first sealing.
fn ring(bytes: &[u8]) -> SealingKeys {
    use base64::Engine as _;
    let keys: Vec<String> = bytes
        .iter()
        .map(|&byte| base64::engine::general_purpose::STANDARD.encode([byte; 32]))
        .collect();
    SealingKeys::configured_or_kept(Some(&keys.join(",")), std::path::Path::new("/")).unwrap()
}

/// `OAUTH_TOKEN_KEY` rotated to `new,old`: rows sealed with the old key still open, are sealed
/// again with the new one when read, and a refresh's compare-and-set finds them before and
/// after; with the old key dropped, a row not read since answers "authorize again" (`None`),
/// never a store error for ever.
#[tokio::test]
async fn a_rotated_key_opens_old_rows_and_seals_them_again_on_read() {
    let (store, _) = store("rotation");
    let old = SealedTokens::new(store.store.clone(), Arc::new(ring(&[1])));
    let rotated = SealedTokens::new(store.store.clone(), Arc::new(ring(&[2, 1])));
    let new_only = SealedTokens::new(store.store.clone(), Arc::new(ring(&[2])));
    let (read, unread) = (installation("blt1"), installation("blt2"));
    old.save(&read, &tokens(1)).await.unwrap();
    old.save(&unread, &tokens(1)).await.unwrap();
    // A refresh over a row still sealed with the old key.
    let used = RefreshToken::new("secret-refresh-1");
    assert!(
        rotated
            .replace(&unread, &used, Some(&tokens(2)))
            .await
            .unwrap()
    );
    assert_eq!(
        new_only.load(&unread).await.unwrap(),
        Some(tokens(2)),
        "written with the new key"
    );
    old.save(&unread, &tokens(1)).await.unwrap();

    assert_eq!(rotated.load(&read).await.unwrap(), Some(tokens(1)));
    assert_eq!(
        new_only.load(&read).await.unwrap(),
        Some(tokens(1)),
        "sealed again with the new key when read"
    );
    let again = RefreshToken::new("secret-refresh-1");
    assert!(
        new_only
            .replace(&read, &again, Some(&tokens(3)))
            .await
            .unwrap(),
        "its fingerprint is the new key's too"
    );
    assert_eq!(
        new_only.load(&unread).await.unwrap(),
        None,
        "no key opens it: the installation authorizes again"
    );
}

#[tokio::test]
async fn a_refresh_writes_only_over_the_refresh_token_it_used() {
    let (store, _) = store("replace");
    let at = installation("blt1");
    store.save(&at, &tokens(1)).await.unwrap();
    let stale = RefreshToken::new("secret-refresh-0");
    assert!(!store.replace(&at, &stale, Some(&tokens(9))).await.unwrap());
    assert_eq!(store.load(&at).await.unwrap(), Some(tokens(1)));
    let used = RefreshToken::new("secret-refresh-1");
    assert!(store.replace(&at, &used, Some(&tokens(2))).await.unwrap());
    assert_eq!(store.load(&at).await.unwrap(), Some(tokens(2)));
    assert!(
        !store.replace(&at, &used, None).await.unwrap(),
        "a late refresh that found its token dead never forgets the new one"
    );
    let current = RefreshToken::new("secret-refresh-2");
    assert!(store.replace(&at, &current, None).await.unwrap());
    assert_eq!(store.load(&at).await.unwrap(), None);
}

#[tokio::test]
async fn the_refresh_lock_has_one_owner_until_its_lease_passes() {
    let (store, _) = store("lock");
    let (at, lease) = (installation("blt1"), Duration::from_secs(30));
    assert!(store.lock(&at, "a", lease).await.unwrap());
    assert!(!store.lock(&at, "b", lease).await.unwrap());
    assert!(
        store.lock(&at, "a", lease).await.unwrap(),
        "its holder's again"
    );
    assert!(
        store.lock(&installation("blt2"), "b", lease).await.unwrap(),
        "one lock per installation"
    );
    store.unlock(&at, "b").await.unwrap();
    assert!(
        !store.lock(&at, "b", lease).await.unwrap(),
        "only the holder unlocks"
    );
    store.unlock(&at, "a").await.unwrap();
    assert!(store.lock(&at, "b", Duration::ZERO).await.unwrap());
    assert!(
        store.lock(&at, "c", lease).await.unwrap(),
        "a lapsed lease is taken over"
    );
    // The lock and the tokens are kept apart.
    store.save(&at, &tokens(1)).await.unwrap();
    assert!(!store.lock(&at, "a", lease).await.unwrap());
    assert_eq!(store.load(&at).await.unwrap(), Some(tokens(1)));
}
