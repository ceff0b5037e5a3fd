//! Who signs the requests: credentials from the standard AWS chain (or given), cached and
//! refreshed before they expire, or nobody (anonymous access to public buckets).
//!
//! aws-config's providers do not cache by themselves (the SDK's identity cache sits in the
//! service clients we do not use), so [`CredentialCache`] keeps the current credentials and
//! fetches new ones once they are within [`REFRESH_BEFORE_EXPIRY`] of expiring. Only one refresh
//! runs at a time; the other requests wait for it. If a refresh fails while the old credentials
//! are still valid, those are used and the failure is logged.

use std::sync::RwLock;
use std::time::{Duration, SystemTime};

use aws_config::BehaviorVersion;
use aws_credential_types::Credentials;
use aws_credential_types::provider::error::CredentialsError;
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};

use crate::config::CredentialSource;

/// Credentials are refreshed this long before their expiry, so that a request signed with them
/// does not arrive after they expired.
pub const REFRESH_BEFORE_EXPIRY: Duration = Duration::from_secs(5 * 60);

/// Keeps the current credentials of one provider and refreshes them before they expire.
#[derive(Debug)]
pub struct CredentialCache {
    provider: SharedCredentialsProvider,
    current: RwLock<Option<Credentials>>,
    refreshing: tokio::sync::Mutex<()>,
}

/// Whether `credentials` should be replaced at `now`.
fn needs_refresh(credentials: &Credentials, now: SystemTime) -> bool {
    credentials.expiry().is_some_and(|expiry| now + REFRESH_BEFORE_EXPIRY >= expiry)
}

fn has_expired(credentials: &Credentials, now: SystemTime) -> bool {
    credentials.expiry().is_some_and(|expiry| now >= expiry)
}

impl CredentialCache {
    pub fn new(provider: SharedCredentialsProvider) -> Self {
        CredentialCache { provider, current: RwLock::new(None), refreshing: tokio::sync::Mutex::new(()) }
    }

    fn cached(&self) -> Option<Credentials> {
        self.current.read().expect("credential cache poisoned").clone()
    }

    /// Credentials valid at `now` for at least [`REFRESH_BEFORE_EXPIRY`] if the provider can
    /// give them, else still-valid old ones.
    pub async fn credentials(&self, now: SystemTime) -> Result<Credentials, CredentialsError> {
        if let Some(current) = self.cached().filter(|c| !needs_refresh(c, now)) {
            return Ok(current);
        }
        let _only_refresher = self.refreshing.lock().await;
        let previous = self.cached();
        if let Some(current) = previous.clone().filter(|c| !needs_refresh(c, now)) {
            return Ok(current);
        }
        match self.provider.provide_credentials().await {
            Ok(fresh) => {
                tracing::debug!(expiry = ?fresh.expiry(), "loaded AWS credentials");
                *self.current.write().expect("credential cache poisoned") = Some(fresh.clone());
                Ok(fresh)
            }
            Err(error) => match previous.filter(|c| !has_expired(c, now)) {
                Some(old) => {
                    tracing::warn!(%error, "cannot refresh AWS credentials; using the current ones until they expire");
                    Ok(old)
                }
                None => Err(error),
            },
        }
    }
}

/// Who signs: the result of resolving a [`CredentialSource`].
#[derive(Debug)]
pub enum Signer {
    /// Requests go unsigned.
    Anonymous,
    Signed(CredentialCache),
}

/// Why no signer could be set up.
#[derive(Debug, thiserror::Error)]
#[error(
    "cannot load AWS credentials: {0}; check the environment, ~/.aws/credentials and --profile, or use --no-sign-request for a public bucket"
)]
pub struct CredentialLoadError(String);

impl Signer {
    /// Resolves `source`. The chain is asked once now: if it finds no credentials at all, the
    /// signer is anonymous (goofys' behaviour for public buckets); any other failure is an error.
    pub async fn resolve(source: &CredentialSource, region: Option<&str>) -> Result<Signer, CredentialLoadError> {
        let provider = match source {
            CredentialSource::Anonymous => return Ok(Signer::Anonymous),
            CredentialSource::Static(credentials) => SharedCredentialsProvider::new(credentials.clone()),
            CredentialSource::Provider(provider) => provider.clone(),
            CredentialSource::DefaultChain { profile } => default_chain(profile.as_deref(), region).await,
        };
        Self::from_provider(provider).await
    }

    /// Asks `provider` once and decides between signed and anonymous.
    pub async fn from_provider(provider: SharedCredentialsProvider) -> Result<Signer, CredentialLoadError> {
        let cache = CredentialCache::new(provider);
        match cache.credentials(SystemTime::now()).await {
            Ok(_) => Ok(Signer::Signed(cache)),
            Err(CredentialsError::CredentialsNotLoaded(_)) => {
                tracing::info!("no AWS credentials found; sending unsigned requests (public buckets only)");
                Ok(Signer::Anonymous)
            }
            Err(error) => Err(CredentialLoadError(error_chain(&error))),
        }
    }

    pub fn is_anonymous(&self) -> bool {
        matches!(self, Signer::Anonymous)
    }
}

/// An error and its causes on one line.
pub(crate) fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

async fn default_chain(profile: Option<&str>, region: Option<&str>) -> SharedCredentialsProvider {
    let mut loader = aws_config::defaults(BehaviorVersion::latest());
    if let Some(profile) = profile {
        loader = loader.profile_name(profile);
    }
    if let Some(region) = region {
        loader = loader.region(aws_config::Region::new(region.to_owned()));
    }
    let config = loader.load().await;
    config.credentials_provider().unwrap_or_else(|| SharedCredentialsProvider::new(NoCredentials))
}

/// A provider that never has credentials: the chain's stand-in when aws-config built none.
#[derive(Debug)]
struct NoCredentials;

impl ProvideCredentials for NoCredentials {
    fn provide_credentials<'a>(&'a self) -> aws_credential_types::provider::future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        aws_credential_types::provider::future::ProvideCredentials::ready(Err(CredentialsError::not_loaded(
            "no credential provider configured",
        )))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

    use aws_credential_types::provider::future;
    use aws_runtime::env_config::file::{EnvConfigFileKind, EnvConfigFiles};

    use super::*;

    /// Hands out numbered credentials that expire `lifetime` after `issued_at`; fails when told.
    #[derive(Clone, Debug)]
    struct CountingProvider {
        issued: Arc<AtomicU32>,
        issued_at: SystemTime,
        lifetime: Duration,
        fail: Arc<AtomicBool>,
    }

    impl CountingProvider {
        fn new(lifetime: Duration) -> Self {
            CountingProvider { issued: Arc::default(), issued_at: t(0), lifetime, fail: Arc::default() }
        }
    }

    impl ProvideCredentials for CountingProvider {
        fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
        where
            Self: 'a,
        {
            if self.fail.load(Ordering::SeqCst) {
                return future::ProvideCredentials::ready(Err(CredentialsError::provider_error("refresh failed")));
            }
            let n = self.issued.fetch_add(1, Ordering::SeqCst) + 1;
            future::ProvideCredentials::ready(Ok(Credentials::new(
                format!("AKID{n}"),
                "secret",
                None,
                Some(self.issued_at + self.lifetime),
                "counting",
            )))
        }
    }

    fn t(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000 + secs)
    }

    #[tokio::test]
    async fn credentials_are_reused_until_five_minutes_before_expiry_then_refreshed() {
        let provider = CountingProvider::new(Duration::from_secs(3600));
        let cache = CredentialCache::new(SharedCredentialsProvider::new(provider.clone()));
        assert_eq!(cache.credentials(t(0)).await.unwrap().access_key_id(), "AKID1");
        assert_eq!(cache.credentials(t(3600 - 301)).await.unwrap().access_key_id(), "AKID1");
        // Inside the margin: refreshed. (The provider's clock does not move, so the new
        // credentials carry the same expiry and are refreshed again on the next call.)
        assert_eq!(cache.credentials(t(3600 - 299)).await.unwrap().access_key_id(), "AKID2");
        assert_eq!(provider.issued.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_failed_refresh_keeps_valid_credentials_but_not_expired_ones() {
        let provider = CountingProvider::new(Duration::from_secs(3600));
        let cache = CredentialCache::new(SharedCredentialsProvider::new(provider.clone()));
        cache.credentials(t(0)).await.unwrap();
        provider.fail.store(true, Ordering::SeqCst);
        assert_eq!(cache.credentials(t(3500)).await.unwrap().access_key_id(), "AKID1");
        assert!(cache.credentials(t(3600)).await.is_err());
    }

    #[tokio::test]
    async fn no_credentials_at_all_means_anonymous_but_a_broken_provider_is_an_error() {
        let nothing = Signer::from_provider(SharedCredentialsProvider::new(NoCredentials)).await.unwrap();
        assert!(nothing.is_anonymous());
        let broken = CountingProvider::new(Duration::from_secs(1));
        broken.fail.store(true, Ordering::SeqCst);
        let error = Signer::from_provider(SharedCredentialsProvider::new(broken)).await.unwrap_err();
        assert!(error.to_string().contains("refresh failed"), "{error}");
        let fixed =
            Signer::resolve(&CredentialSource::Static(Credentials::new("AKID", "SECRET", None, None, "test")), None)
                .await
                .unwrap();
        assert!(!fixed.is_anonymous());
        assert!(Signer::resolve(&CredentialSource::Anonymous, None).await.unwrap().is_anonymous());
    }

    #[tokio::test]
    async fn a_named_profile_from_the_shared_credentials_file_is_used() {
        let dir = tempfile::tempdir().unwrap();
        let credentials_file = dir.path().join("credentials");
        std::fs::write(
            &credentials_file,
            "[default]\naws_access_key_id = AKIDDEFAULT\naws_secret_access_key = s1\n\n\
             [other]\naws_access_key_id = AKIDOTHER\naws_secret_access_key = s2\n",
        )
        .unwrap();
        let files = EnvConfigFiles::builder().with_file(EnvConfigFileKind::Credentials, &credentials_file).build();
        let config = aws_config::defaults(BehaviorVersion::latest())
            .profile_files(files)
            .profile_name("other")
            .region(aws_config::Region::new("us-east-1"))
            .load()
            .await;
        let signer = Signer::from_provider(config.credentials_provider().unwrap()).await.unwrap();
        let Signer::Signed(cache) = signer else {
            panic!("profile credentials were not found");
        };
        assert_eq!(cache.credentials(SystemTime::now()).await.unwrap().access_key_id(), "AKIDOTHER");
    }
}
