//! Webhook signature checks on the raw body, before any parsing, in constant time. More than
//! one secret can be valid at once: during a rotation the old and the new are both in use.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("the signature header is missing")]
    Missing,
    #[error("the signature header is not a base64 HMAC-SHA256")]
    Malformed,
    #[error("the signature does not match any configured secret")]
    Mismatch,
    #[error("no secret is configured for this sender")]
    NoSecret,
}

/// Checks `X-Shopify-Hmac-Sha256` (and WooCommerce's `X-WC-Webhook-Signature`, same scheme):
/// base64(HMAC-SHA256(secret, raw body)).
pub fn verify_base64_hmac_sha256(
    body: &[u8],
    header: Option<&str>,
    secrets: &[SecretString],
) -> Result<(), SignatureError> {
    let header = header
        .map(str::trim)
        .filter(|h| !h.is_empty())
        .ok_or(SignatureError::Missing)?;
    let expected = STANDARD
        .decode(header)
        .map_err(|_| SignatureError::Malformed)?;
    if expected.len() != 32 {
        return Err(SignatureError::Malformed);
    }
    if secrets.is_empty() {
        return Err(SignatureError::NoSecret);
    }
    // Every secret is tried, so the time taken does not tell which one matched.
    let mut matched = false;
    for secret in secrets {
        let mut mac = HmacSha256::new_from_slice(secret.expose_secret().as_bytes())
            .map_err(|_| SignatureError::NoSecret)?;
        mac.update(body);
        matched |= mac.verify_slice(&expected).is_ok();
    }
    if matched {
        Ok(())
    } else {
        Err(SignatureError::Mismatch)
    }
}

/// EasyPost's `X-Hmac-Signature`: `hmac-sha256-hex=` + hex(HMAC-SHA256(NFKD(secret), raw
/// body)). EasyPost normalises the secret (NFKD) before keying; so must we.
pub fn verify_easypost(
    body: &[u8],
    header: Option<&str>,
    secrets: &[SecretString],
) -> Result<(), SignatureError> {
    let header = header
        .map(str::trim)
        .filter(|h| !h.is_empty())
        .ok_or(SignatureError::Missing)?;
    let hex_digest = header
        .strip_prefix("hmac-sha256-hex=")
        .ok_or(SignatureError::Malformed)?;
    let expected = hex::decode(hex_digest).map_err(|_| SignatureError::Malformed)?;
    if expected.len() != 32 {
        return Err(SignatureError::Malformed);
    }
    if secrets.is_empty() {
        return Err(SignatureError::NoSecret);
    }
    let mut matched = false;
    for secret in secrets {
        let mut mac = HmacSha256::new_from_slice(nfkd(secret).as_bytes())
            .map_err(|_| SignatureError::NoSecret)?;
        mac.update(body);
        matched |= mac.verify_slice(&expected).is_ok();
    }
    if matched {
        Ok(())
    } else {
        Err(SignatureError::Mismatch)
    }
}

fn nfkd(secret: &SecretString) -> String {
    use unicode_normalization::UnicodeNormalization;
    secret.expose_secret().nfkd().collect()
}

/// Signs a body the way EasyPost does: for the courier simulator and tests.
pub fn sign_easypost(body: &[u8], secret: &SecretString) -> String {
    let Ok(mut mac) = HmacSha256::new_from_slice(nfkd(secret).as_bytes()) else {
        return String::new();
    };
    mac.update(body);
    format!(
        "hmac-sha256-hex={}",
        hex::encode(mac.finalize().into_bytes())
    )
}

/// Signs a body the way Shopify does: for the sandbox, the demo and tests.
pub fn sign_base64_hmac_sha256(body: &[u8], secret: &SecretString) -> String {
    let mut mac = match HmacSha256::new_from_slice(secret.expose_secret().as_bytes()) {
        Ok(mac) => mac,
        // HMAC takes keys of any length; this arm cannot be reached.
        Err(_) => return String::new(),
    };
    mac.update(body);
    STANDARD.encode(mac.finalize().into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    const VECTORS: &str = include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/fixtures/signing-vectors.json"
    ));

    fn published_shopify_vector() -> (String, String, String) {
        let vectors: serde_json::Value = serde_json::from_str(VECTORS).unwrap_or_default();
        let field = |name: &str| {
            vectors["shopify"][name]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        };
        (field("secret"), field("body"), field("expected"))
    }

    fn secret(text: &str) -> SecretString {
        SecretString::from(text.to_owned())
    }

    #[test]
    fn shopify_published_vector_verifies() {
        let (key, body, expected) = published_shopify_vector();
        assert!(!expected.is_empty());
        assert_eq!(
            verify_base64_hmac_sha256(body.as_bytes(), Some(&expected), &[secret(&key)]),
            Ok(())
        );
        assert_eq!(
            sign_base64_hmac_sha256(body.as_bytes(), &secret(&key)),
            expected
        );
    }

    #[test]
    fn woocommerce_documented_order_verifies_with_the_computed_vector() {
        let vectors: serde_json::Value = serde_json::from_str(VECTORS).unwrap_or_default();
        let example = &vectors["woocommerce"]["computed_examples"][1];
        let body = include_bytes!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../tests/fixtures/woocommerce-order-created.json"
        ));
        let expected = example["expected"].as_str().unwrap_or_default();
        let key = secret(example["secret"].as_str().unwrap_or_default());
        assert_eq!(
            verify_base64_hmac_sha256(body, Some(expected), &[key]),
            Ok(())
        );
    }

    #[test]
    fn easypost_published_vector_verifies_with_the_nfkd_secret_only() {
        let vectors: serde_json::Value = serde_json::from_str(VECTORS).unwrap_or_default();
        let key = vectors["easypost"]["secret"].as_str().unwrap_or_default();
        let expected = vectors["easypost"]["expected"].as_str().unwrap_or_default();
        let body = include_bytes!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../tests/fixtures/easypost-tracker-updated.signed-body.raw"
        ));
        assert_eq!(
            verify_easypost(body, Some(expected), &[secret(key)]),
            Ok(())
        );
        assert_eq!(sign_easypost(body, &secret(key)), expected);
        // The same secret composed (NFC) is the same text to people, not to EasyPost: it
        // verifies only because we normalise it.
        let composed: String = {
            use unicode_normalization::UnicodeNormalization;
            key.nfc().collect()
        };
        assert_eq!(
            verify_easypost(body, Some(expected), &[secret(&composed)]),
            Ok(())
        );
        assert_eq!(
            verify_easypost(body, Some(expected), &[secret("secret")]),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify_easypost(body, Some("38f3f53c"), &[secret(key)]),
            Err(SignatureError::Malformed)
        );
    }

    #[test]
    fn either_secret_verifies_during_a_rotation() {
        let (key, body, expected) = published_shopify_vector();
        let secrets = [secret("the-new-secret"), secret(&key)];
        assert_eq!(
            verify_base64_hmac_sha256(body.as_bytes(), Some(&expected), &secrets),
            Ok(())
        );
    }

    #[test]
    fn tampering_or_a_wrong_secret_is_refused() {
        let (key, body, expected) = published_shopify_vector();
        let tampered = body.replace("bar", "baz");
        assert_eq!(
            verify_base64_hmac_sha256(tampered.as_bytes(), Some(&expected), &[secret(&key)]),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify_base64_hmac_sha256(body.as_bytes(), Some(&expected), &[secret("other")]),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify_base64_hmac_sha256(body.as_bytes(), None, &[secret(&key)]),
            Err(SignatureError::Missing)
        );
        assert_eq!(
            verify_base64_hmac_sha256(body.as_bytes(), Some("not base64!"), &[secret(&key)]),
            Err(SignatureError::Malformed)
        );
        assert_eq!(
            verify_base64_hmac_sha256(body.as_bytes(), Some(&expected), &[]),
            Err(SignatureError::NoSecret)
        );
    }
}
