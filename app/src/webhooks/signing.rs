//! The Standard Webhooks signature: `v1,` and the base64 of HMAC-SHA256 over
//! `{webhook-id}.{webhook-timestamp}.{body}`, keyed with the base64-decoded part of the secret
//! after `whsec_`. While a rotated-out secret still signs, the header carries both signatures,
//! separated by a space; receivers accept a call when any of them verifies.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// A secret that is not `whsec_<base64>`.
#[derive(Debug, thiserror::Error)]
#[error("a webhook secret must be whsec_ followed by base64")]
pub struct BadSecret;

/// The key a secret stands for.
fn key(secret: &str) -> Result<Vec<u8>, BadSecret> {
    let encoded = secret.strip_prefix("whsec_").ok_or(BadSecret)?;
    STANDARD.decode(encoded).map_err(|_| BadSecret)
}

/// One signature, `v1,<base64>`.
pub fn sign(secret: &str, id: &str, timestamp: i64, body: &[u8]) -> Result<String, BadSecret> {
    let mut mac = Hmac::<Sha256>::new_from_slice(&key(secret)?).map_err(|_| BadSecret)?;
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    Ok(format!(
        "v1,{}",
        STANDARD.encode(mac.finalize().into_bytes())
    ))
}

/// The `webhook-signature` header: one signature per secret, space-separated.
pub fn signature_header(
    secrets: &[&str],
    id: &str,
    timestamp: i64,
    body: &[u8],
) -> Result<String, BadSecret> {
    let signatures = secrets
        .iter()
        .map(|s| sign(s, id, timestamp, body))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(signatures.join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example of the Standard Webhooks reference libraries.
    #[test]
    fn signs_the_specification_example() {
        let s = sign(
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            br#"{"test": 2432232314}"#,
        )
        .unwrap();
        assert_eq!(s, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[test]
    fn two_secrets_give_two_signatures() {
        let a = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let b = "whsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
        let h = signature_header(&[a, b], "msg_1", 1, b"{}").unwrap();
        let parts: Vec<&str> = h.split(' ').collect();
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0], sign(a, "msg_1", 1, b"{}").unwrap());
        assert_eq!(parts[1], sign(b, "msg_1", 1, b"{}").unwrap());
    }

    #[test]
    fn a_secret_without_its_prefix_is_refused() {
        assert!(sign("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "m", 1, b"").is_err());
        assert!(sign("whsec_!!!", "m", 1, b"").is_err());
    }
}
