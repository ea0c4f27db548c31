//! The two sources that attach nothing: `none` and `passthrough`.

use super::{BoxFuture, Credential, CredentialError};

/// The gateway needs no credential from us; the caller's Authorization is removed.
pub struct NoCredential;

impl Credential for NoCredential {
    fn apply<'a>(
        &'a self,
        _parts: &'a mut http::request::Parts,
        _body: &'a [u8],
    ) -> BoxFuture<'a, Result<(), CredentialError>> {
        Box::pin(async { Ok(()) })
    }

    fn apply_now(&self, _parts: &mut http::request::Parts) -> Option<Result<(), CredentialError>> {
        Some(Ok(()))
    }

    fn describe(&self) -> String {
        "none".into()
    }
}

/// The caller's own Authorization goes to the gateway (per-user tokens).
pub struct Passthrough;

impl Credential for Passthrough {
    fn apply<'a>(
        &'a self,
        _parts: &'a mut http::request::Parts,
        _body: &'a [u8],
    ) -> BoxFuture<'a, Result<(), CredentialError>> {
        Box::pin(async { Ok(()) })
    }

    fn apply_now(&self, _parts: &mut http::request::Parts) -> Option<Result<(), CredentialError>> {
        Some(Ok(()))
    }

    fn forwards_caller_authorization(&self) -> bool {
        true
    }

    fn describe(&self) -> String {
        "passthrough (the caller's Authorization)".into()
    }
}
