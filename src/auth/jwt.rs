//! Reads the `exp` claim of a JWT, to know when a token expires when the issuer did not
//! say (`expires_in` absent). The signature is not checked: the gateway does that; we
//! only schedule the refresh.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;

/// The token's claims, or `None` when it is not a JWT with a JSON object payload.
pub fn claims(token: &str) -> Option<serde_json::Value> {
    let mut parts = token.split('.');
    let (_header, payload, _signature) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    let claims: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    claims.is_object().then_some(claims)
}

/// The token's `exp` as a time, or `None` when it is not a JWT with a numeric `exp`.
pub fn expiry(token: &str) -> Option<SystemTime> {
    let claims = claims(token)?;
    let exp = claims.get("exp")?.as_f64()?;
    if !(exp.is_finite() && exp > 0.0) {
        return None;
    }
    Some(UNIX_EPOCH + Duration::from_secs_f64(exp))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jwt(claims: &str) -> String {
        let enc = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
        format!("{}.{}.sig", enc(r#"{"alg":"RS256"}"#), enc(claims))
    }

    #[test]
    fn exp_is_read_from_the_payload() {
        assert_eq!(
            expiry(&jwt(r#"{"sub":"x","exp":1700000000}"#)),
            Some(UNIX_EPOCH + Duration::from_secs(1_700_000_000))
        );
        assert_eq!(expiry(&jwt(r#"{"sub":"x"}"#)), None);
        assert_eq!(expiry("opaque-token"), None);
        assert_eq!(expiry("a.b.c.d"), None);
    }
}
