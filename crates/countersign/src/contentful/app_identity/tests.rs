#![allow(clippy::unwrap_used)] // A test fails loudly on what it did not expect.

use super::*;

#[test]
fn the_slots_stay_bounded_however_many_installations_ask() {
    let key = AppKey::from_pem(include_str!("../../testing/dev-key.pem")).unwrap();
    let identity = AppIdentity::new("app", key);
    let held = identity.slot("held", "master");
    for n in 0..MAX_SLOTS + 500 {
        let _ = identity.slot(&format!("space-{n}"), "master");
        let len = identity.inner.slots.lock().unwrap().len();
        assert!(len <= MAX_SLOTS, "{len} slots after {n}");
    }
    assert!(
        Arc::ptr_eq(&held, &identity.slot("held", "master")),
        "a slot in use is kept"
    );
}
