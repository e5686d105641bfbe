//! Microsoft Entra ID (Azure AD) access tokens: a provider asked for a fresh token for every
//! new connection.
//!
//! Azure SQL deployments increasingly log in with a managed identity or a service principal
//! instead of a password. Such a login carries an OAuth access token (TDS FEDAUTH, the
//! "security token" library), and tokens expire after 60–90 minutes — so a token cannot be
//! fixed in the configuration: the pool asks an [`AccessTokenProvider`] for one each time it
//! opens a connection (new connections, reconnects after an outage, redirects; probes
//! too). A provider caches and refreshes as it sees fit; the Azure SDK's credentials do.
//!
//! A region uses it with `authentication = "entra"` (and no `user`/`password`), and the
//! stack gets the provider with [`StackBuilder::access_tokens`](crate::StackBuilder::access_tokens):
//!
//! ```no_run
//! use std::sync::Arc;
//! use mssql_resilience::auth::{AccessToken, AccessTokenProvider, BoxError};
//! use mssql_resilience::{config::Config, Stack};
//!
//! # async fn fetch_token_from_your_identity_library() -> Result<String, BoxError> { Ok(String::new()) }
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let config = Config::from_toml_str(r#"
//!     [[regions]]
//!     name = "westeurope"
//!     host = "myserver.database.windows.net"
//!     database = "app"
//!     authentication = "entra"
//! "#)?;
//! // Any `Fn() -> impl Future<Output = Result<AccessToken, BoxError>>` is a provider.
//! let tokens = || async {
//!     // e.g. azure_identity's ManagedIdentityCredential::get_token(&["https://database.windows.net/.default"])
//!     let token: String = fetch_token_from_your_identity_library().await?;
//!     Ok::<_, BoxError>(AccessToken::new(token))
//! };
//! let stack = Stack::builder(config).access_tokens(Arc::new(tokens)).build()?;
//! # let _ = stack; Ok(()) }
//! ```
//!
//! A provider error (or an empty token) fails that connect with
//! [`crate::ErrorKind::AccessToken`]: nothing was sent to the
//! database, so the request may be retried or moved to another region, and it does not
//! count against the region's circuit breaker (the database is not at fault). The time the
//! provider takes counts against the connect timeout.
//!
//! No ready-made Azure credential ships with the crate: the Azure SDK for Rust
//! (`azure_identity` 1.0, default features) resolves to 252 crates — reqwest, hyper-rustls
//! and rustls on aws-lc-rs (a C/CMake build) among them — against this crate's 140, for
//! what is one call in the closure above. Use it (or any other identity library) in your
//! service and hand its tokens over through the provider.

use std::fmt;
use std::future::Future;
use std::pin::Pin;

use crate::config::Secret;
use crate::error::{Error, ErrorKind, Outcome};

/// Any error a provider returns.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// The future [`AccessTokenProvider::access_token`] returns.
pub type AccessTokenFuture<'a> =
    Pin<Box<dyn Future<Output = Result<AccessToken, BoxError>> + Send + 'a>>;

/// An OAuth access token for Azure SQL (audience `https://database.windows.net/`). `Debug`
/// and `Display` never show it.
#[derive(Clone, PartialEq, Eq)]
pub struct AccessToken(Secret);

impl AccessToken {
    /// Wraps a token (the JWT's text).
    pub fn new(token: impl Into<String>) -> Self {
        AccessToken(Secret::new(token))
    }

    /// The token's text, to put on the wire.
    pub fn expose(&self) -> &str {
        self.0.expose()
    }
}

impl fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("AccessToken").field(&self.0).finish()
    }
}

/// Supplies an access token for each new connection. Implemented for every
/// `Fn() -> impl Future<Output = Result<AccessToken, BoxError>> + Send`.
pub trait AccessTokenProvider: Send + Sync + 'static {
    /// A token valid for at least the next login (a few seconds).
    fn access_token(&self) -> AccessTokenFuture<'_>;
}

impl<F, Fut> AccessTokenProvider for F
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<AccessToken, BoxError>> + Send + 'static,
{
    fn access_token(&self) -> AccessTokenFuture<'_> {
        Box::pin(self())
    }
}

/// Why a provider's answer could not be used (the source, when there is one, is the
/// provider's own error).
#[derive(Debug)]
struct TokenProblem(&'static str);

impl fmt::Display for TokenProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

impl std::error::Error for TokenProblem {}

/// Asks `provider` for a token; a failure or an empty token becomes a not-sent
/// [`ErrorKind::AccessToken`] error.
pub(crate) async fn fetch(provider: &dyn AccessTokenProvider) -> Result<AccessToken, Error> {
    let error = || Error::new(ErrorKind::AccessToken, Outcome::NotSent);
    match provider.access_token().await {
        Ok(token) if token.expose().is_empty() => {
            Err(error().with_source(TokenProblem("the provider returned an empty token")))
        }
        Ok(token) => Ok(token),
        Err(e) => Err(error().with_source(ProviderError(e))),
    }
}

/// A provider's error, kept as the source of the crate's error.
struct ProviderError(BoxError);

impl fmt::Debug for ProviderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl fmt::Display for ProviderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl std::error::Error for ProviderError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0.source()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_closure_is_a_provider_and_errors_are_not_sent() {
        let ok = || async { Ok::<_, BoxError>(AccessToken::new("eyJ0eXAi")) };
        assert_eq!(fetch(&ok).await.unwrap().expose(), "eyJ0eXAi");
        let empty = || async { Ok::<_, BoxError>(AccessToken::new("")) };
        let err = fetch(&empty).await.unwrap_err();
        assert_eq!(err.kind(), &ErrorKind::AccessToken);
        assert_eq!(err.outcome(), Outcome::NotSent);
        let failing =
            || async { Err::<AccessToken, BoxError>("identity endpoint timed out".into()) };
        let err = fetch(&failing).await.unwrap_err();
        assert_eq!(err.outcome(), Outcome::NotSent);
        assert!(
            format!("{err}").contains("identity endpoint timed out"),
            "{err}"
        );
    }

    #[test]
    fn debug_never_shows_the_token() {
        let shown = format!("{:?}", AccessToken::new("secret-jwt"));
        assert!(!shown.contains("secret-jwt"), "{shown}");
    }
}
