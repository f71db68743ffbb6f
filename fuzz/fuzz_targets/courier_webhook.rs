//! An EasyPost delivery: any body and signature header, verified (the NFKD-keyed signature
//! of the body must verify, a wrong one must not), then parsed as a tracker event.
#![no_main]

use erpsync_core::channels::signature::{sign_easypost, verify_easypost};
use libfuzzer_sys::fuzz_target;
use secrecy::SecretString;
use erpsync_core::channels::easypost::parse_easypost;

fuzz_target!(|body: &[u8]| {
    let secret = SecretString::from("sécret".to_owned());
    let signature = sign_easypost(body, &secret);
    assert!(verify_easypost(body, Some(&signature), std::slice::from_ref(&secret)).is_ok());
    let header = String::from_utf8_lossy(&body[..body.len().min(80)]).into_owned();
    if header != signature {
        assert!(verify_easypost(body, Some(&header), &[secret]).is_err());
    }
    if let Ok(Some(update)) = parse_easypost(body) {
        let _ = update.status.shop_event();
        let _ = erpsync_core::flows::tracking::tracking_group_id(&update.tracking_code);
    }
});
