use super::hmac::HmacEngine;
#[cfg(feature = "aws-lc")]
use super::hmac::cpu_has_sha_instructions;
use super::*;
use crate::crypto::Backend;

fn engines() -> Vec<HmacEngine> {
    vec![
        HmacEngine::RustCrypto,
        #[cfg(feature = "aws-lc")]
        HmacEngine::AwsLc,
    ]
}

// RFC 4231, test cases 2 (a short key) and 6 (a key longer than the block, hashed first).
#[test]
fn hmac_sha256_matches_rfc_4231_with_either_library() {
    for engine in engines() {
        let key = HmacSha256Key::with_engine(b"Jefe", engine);
        let mut mac = key.start();
        mac.update(b"what do ya want ");
        mac.update(b"for nothing?");
        assert_eq!(
            hex::encode(mac.finish()),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843",
            "{engine:?}"
        );
        let key = HmacSha256Key::with_engine(&[0xaa; 131], engine);
        let mut mac = key.start();
        mac.update(b"Test Using Larger Than Block-Size Key - Hash Key First");
        assert_eq!(
            hex::encode(mac.finish()),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54",
            "{engine:?}"
        );
    }
}

#[test]
fn both_libraries_agree_on_every_length_around_the_block() {
    let engines = engines();
    let data: Vec<u8> = (0..=255u8).cycle().take(300).collect();
    for key_len in [0, 1, 32, 63, 64, 65, 200] {
        let keys: Vec<_> = engines
            .iter()
            .map(|engine| HmacSha256Key::with_engine(&data[..key_len], *engine))
            .collect();
        for len in [0, 1, 55, 56, 63, 64, 65, 119, 128, 300] {
            let tags: Vec<_> = keys
                .iter()
                .map(|key| {
                    let mut mac = key.start();
                    let (a, b) = data[..len].split_at(len / 3);
                    mac.update(a);
                    mac.update(b);
                    mac.finish()
                })
                .collect();
            assert!(
                tags.windows(2).all(|w| w[0] == w[1]),
                "key {key_len}, data {len}"
            );
        }
    }
}

#[test]
fn the_one_call_tag_of_two_parts_is_the_streamed_tag() {
    let data: Vec<u8> = (0..=255u8).cycle().take(300).collect();
    for engine in engines() {
        let key = HmacSha256Key::with_engine(&data[..64], engine);
        for len in [0, 1, 64, 173, 300] {
            for split in [0, len / 3, len] {
                let (a, b) = data[..len].split_at(split);
                let mut mac = key.start();
                mac.update(a);
                mac.update(b);
                assert_eq!(
                    key.mac2(a, b),
                    mac.finish(),
                    "{engine:?}, {split} + {}",
                    len - split
                );
            }
        }
    }
}

#[test]
fn the_faster_library_is_rust_crypto_exactly_where_the_cpu_has_sha_instructions() {
    #[cfg(feature = "aws-lc")]
    assert_eq!(
        HmacEngine::fastest() == HmacEngine::RustCrypto,
        cpu_has_sha_instructions()
    );
    #[cfg(not(feature = "aws-lc"))]
    assert_eq!(HmacEngine::fastest(), HmacEngine::RustCrypto);
}

#[test]
fn constant_time_eq_compares_every_byte_and_the_length() {
    let a: Vec<u8> = (0..37).collect();
    assert!(constant_time_eq(&a, &a.clone()));
    assert!(constant_time_eq(b"", b""));
    assert!(!constant_time_eq(&a, &a[..36]));
    for at in [0, 7, 8, 31, 32, 36] {
        let mut b = a.clone();
        b[at] ^= 0x80;
        assert!(!constant_time_eq(&a, &b), "a difference at byte {at}");
    }
}

#[test]
fn backend_is_aws_lc_whenever_its_feature_is_on() {
    let expected = if cfg!(feature = "aws-lc") {
        Backend::AwsLc
    } else {
        Backend::RustCrypto
    };
    assert_eq!(crate::crypto::backend(), expected);
}
