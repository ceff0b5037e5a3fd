//! Where the requests for one bucket go: scheme, host and path prefix, from the configuration
//! and the bucket's region.
//!
//! AWS gets `https://<bucket>.s3.<region>.amazonaws.com` (virtual-hosted); any `--endpoint` gets
//! path-style `<endpoint>/<bucket>` unless `--subdomain` asks for `<bucket>.<endpoint host>`.
//! A bucket name that cannot be a DNS label under TLS (a dot breaks the wildcard certificate)
//! falls back to path-style, as the AWS SDKs do.

use http::uri::{Scheme, Uri};

use crate::config::{AddressingStyle, TransportConfig};
use crate::key_encoding::encode_path;

/// The region assumed until a reply names the bucket's real one.
pub const DEFAULT_REGION: &str = "us-east-1";

/// The resolved address of the bucket, with the region requests are signed for.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct BucketEndpoint {
    https: bool,
    /// `host[:port]` the request goes to, the bucket included for virtual-hosted addressing.
    authority: String,
    /// Path before the key: the endpoint's own base path, then `/<bucket>` for path-style.
    bucket_path: String,
    region: String,
    is_aws: bool,
}

/// Why the configured endpoint cannot be used.
#[derive(Clone, PartialEq, Eq, Debug, thiserror::Error)]
pub enum EndpointError {
    #[error("no bucket given")]
    NoBucket,
    #[error("endpoint `{endpoint}` is not a usable URL ({reason}); give one like http://127.0.0.1:8333")]
    InvalidEndpoint { endpoint: String, reason: String },
}

impl BucketEndpoint {
    /// Resolves the endpoint of `config.bucket` in `region`.
    pub fn resolve(config: &TransportConfig, region: &str) -> Result<Self, EndpointError> {
        if config.bucket.is_empty() {
            return Err(EndpointError::NoBucket);
        }
        let (https, host, port, base_path, is_aws) = match &config.endpoint {
            None => (true, aws_host(region), None, String::new(), true),
            Some(endpoint) => {
                let (https, host, port, base_path) = parse_endpoint(endpoint)?;
                (https, host, port, base_path, false)
            }
        };
        let wanted =
            config.addressing.unwrap_or(if is_aws { AddressingStyle::VirtualHosted } else { AddressingStyle::Path });
        let virtual_hosted = wanted == AddressingStyle::VirtualHosted && can_be_host_label(&config.bucket, https);
        let port_suffix = port.map(|p| format!(":{p}")).unwrap_or_default();
        let (authority, bucket_path) = if virtual_hosted {
            (format!("{}.{host}{port_suffix}", config.bucket), base_path)
        } else {
            (format!("{host}{port_suffix}"), format!("{base_path}/{}", encode_path(&config.bucket)))
        };
        Ok(BucketEndpoint { https, authority, bucket_path, region: region.to_owned(), is_aws })
    }

    /// The region requests are signed for.
    pub fn region(&self) -> &str {
        &self.region
    }

    pub fn is_https(&self) -> bool {
        self.https
    }

    /// Whether this is AWS S3 rather than a configured `--endpoint`.
    pub fn is_aws(&self) -> bool {
        self.is_aws
    }

    /// The bucket's URL, for messages: `http://127.0.0.1:8333/bucket`.
    pub fn bucket_url(&self) -> String {
        format!("{}{}", self.origin(), self.bucket_path)
    }

    fn origin(&self) -> String {
        let scheme = if self.https { "https" } else { "http" };
        format!("{scheme}://{}", self.authority)
    }

    /// The URL of `key` (already percent-encoded) with an encoded query string; the key `None`
    /// addresses the bucket itself.
    pub(crate) fn url(&self, encoded_key: Option<&str>, query: &str) -> String {
        let mut url = self.origin();
        url.push_str(&self.bucket_path);
        match encoded_key {
            Some(key) => {
                url.push('/');
                url.push_str(key);
            }
            None if self.bucket_path.is_empty() => url.push('/'),
            None => {}
        }
        if !query.is_empty() {
            url.push('?');
            url.push_str(query);
        }
        url
    }
}

fn aws_host(region: &str) -> String {
    let domain = if region.starts_with("cn-") { "amazonaws.com.cn" } else { "amazonaws.com" };
    format!("s3.{region}.{domain}")
}

/// Splits an endpoint URL into (https, host, port, base path without trailing `/`).
fn parse_endpoint(endpoint: &str) -> Result<(bool, String, Option<u16>, String), EndpointError> {
    let invalid =
        |reason: &str| EndpointError::InvalidEndpoint { endpoint: endpoint.to_owned(), reason: reason.to_owned() };
    let uri: Uri = endpoint.parse().map_err(|_| invalid("cannot parse it"))?;
    let https = match uri.scheme() {
        Some(scheme) if *scheme == Scheme::HTTPS => true,
        Some(scheme) if *scheme == Scheme::HTTP => false,
        _ => return Err(invalid("it must start with http:// or https://")),
    };
    let host = uri.host().ok_or_else(|| invalid("it has no host"))?;
    if uri.query().is_some() {
        return Err(invalid("it must not have a query"));
    }
    let base_path = uri.path().trim_end_matches('/').to_owned();
    Ok((https, host.to_owned(), uri.port_u16(), base_path))
}

/// Whether `bucket` can be the first label of a host name (and, over TLS, match a wildcard
/// certificate, which rules out dots).
fn can_be_host_label(bucket: &str, https: bool) -> bool {
    let allowed = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.';
    (3..=63).contains(&bucket.len())
        && bucket.chars().all(allowed)
        && !bucket.starts_with(['-', '.'])
        && !bucket.ends_with(['-', '.'])
        && !bucket.contains("..")
        && (!https || !bucket.contains('.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(endpoint: Option<&str>, addressing: Option<AddressingStyle>, bucket: &str) -> TransportConfig {
        TransportConfig { bucket: bucket.into(), endpoint: endpoint.map(Into::into), addressing, ..Default::default() }
    }

    #[test]
    fn aws_uses_virtual_hosted_regional_endpoints() {
        let endpoint = BucketEndpoint::resolve(&config(None, None, "my-bucket"), "eu-west-1").unwrap();
        assert_eq!(endpoint.url(Some("k"), ""), "https://my-bucket.s3.eu-west-1.amazonaws.com/k");
        assert_eq!(endpoint.url(None, "list-type=2"), "https://my-bucket.s3.eu-west-1.amazonaws.com/?list-type=2");
        let china = BucketEndpoint::resolve(&config(None, None, "b-1"), "cn-north-1").unwrap();
        assert_eq!(china.bucket_url(), "https://b-1.s3.cn-north-1.amazonaws.com.cn");
    }

    #[test]
    fn dotted_bucket_names_fall_back_to_path_style_over_tls() {
        let endpoint = BucketEndpoint::resolve(&config(None, None, "my.bucket"), "us-east-1").unwrap();
        assert_eq!(endpoint.url(Some("k"), ""), "https://s3.us-east-1.amazonaws.com/my.bucket/k");
    }

    #[test]
    fn custom_endpoints_use_path_style_unless_subdomain_is_asked() {
        let path = BucketEndpoint::resolve(&config(Some("http://127.0.0.1:8333/"), None, "b"), "us-east-1").unwrap();
        assert_eq!(path.url(Some("a/b"), "x=1"), "http://127.0.0.1:8333/b/a/b?x=1");
        assert_eq!(path.url(None, ""), "http://127.0.0.1:8333/b");
        let based = BucketEndpoint::resolve(&config(Some("https://example.test/s3"), None, "bkt"), "r").unwrap();
        assert_eq!(based.url(Some("k"), ""), "https://example.test/s3/bkt/k");
        let subdomain = BucketEndpoint::resolve(
            &config(Some("http://localhost:9000"), Some(AddressingStyle::VirtualHosted), "bkt"),
            "us-east-1",
        )
        .unwrap();
        assert_eq!(subdomain.url(Some("k"), ""), "http://bkt.localhost:9000/k");
    }

    #[test]
    fn bad_endpoints_and_missing_buckets_are_refused() {
        assert_eq!(BucketEndpoint::resolve(&config(None, None, ""), "us-east-1"), Err(EndpointError::NoBucket));
        for bad in ["127.0.0.1:8333", "ftp://host", "http://host/?q=1"] {
            assert!(
                matches!(
                    BucketEndpoint::resolve(&config(Some(bad), None, "b"), "us-east-1"),
                    Err(EndpointError::InvalidEndpoint { .. })
                ),
                "{bad}"
            );
        }
    }
}
