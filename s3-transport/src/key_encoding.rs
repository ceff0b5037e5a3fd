//! Percent-encoding of keys and query values, the classic source of S3 client bugs.
//!
//! S3 keys may hold any UTF-8, including space, `+`, `%`, `?`, `#`, `&`, `=`, CR and LF. In a URL
//! path every byte but the RFC 3986 unreserved set (`A-Z a-z 0-9 - _ . ~`) and the `/` separator
//! is encoded as `%XX`; in a query value `/` is encoded too. This is exactly the encoding SigV4
//! canonicalises to, so the signature the server recomputes from the path it receives matches
//! ours. `+` is always sent as `%2B`: some servers decode a `+` in a path or query as a space.
//!
//! Listing replies are asked for with `encoding-type=url`, because XML 1.0 cannot carry most
//! control characters; [`decode_listed`] undoes S3's form-style encoding of those replies.

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};

/// Every byte except RFC 3986 unreserved characters.
const QUERY_VALUE: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'~');

/// As [`QUERY_VALUE`], but `/` separates path segments and stays literal.
const PATH: &AsciiSet = &QUERY_VALUE.remove(b'/');

/// Encodes a key (or a path prefix) for the path of a request URL.
pub fn encode_path(key: &str) -> String {
    utf8_percent_encode(key, PATH).to_string()
}

/// Encodes a query parameter name or value.
pub fn encode_query_value(value: &str) -> String {
    utf8_percent_encode(value, QUERY_VALUE).to_string()
}

/// Decodes a key or prefix from a listing asked for with `encoding-type=url`.
///
/// S3 encodes those like an HTML form: a space may arrive as `+` and a literal `+` as `%2B`.
/// `None` when the result is not UTF-8, which a real S3 key always is.
pub fn decode_listed(encoded: &str) -> Option<String> {
    let spaced = encoded.replace('+', " ");
    percent_decode_str(&spaced).decode_utf8().ok().map(|decoded| decoded.into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_keep_unreserved_characters_and_slashes_and_encode_the_rest() {
        assert_eq!(encode_path("a/b-c_d.e~f"), "a/b-c_d.e~f");
        assert_eq!(encode_path("sp ace+plus"), "sp%20ace%2Bplus");
        assert_eq!(encode_path("100%?#&="), "100%25%3F%23%26%3D");
        assert_eq!(encode_path("cr\rlf\n"), "cr%0Dlf%0A");
        assert_eq!(encode_path("é中"), "%C3%A9%E4%B8%AD");
        assert_eq!(encode_path("!*'()[]$,;:@"), "%21%2A%27%28%29%5B%5D%24%2C%3B%3A%40");
    }

    #[test]
    fn query_values_encode_slashes_too() {
        assert_eq!(encode_query_value("a/b c"), "a%2Fb%20c");
        assert_eq!(encode_query_value("tok+en=="), "tok%2Ben%3D%3D");
    }

    #[test]
    fn listed_keys_decode_plus_as_space_and_percent_escapes_as_bytes() {
        assert_eq!(decode_listed("sp+ace%2Bplus").as_deref(), Some("sp ace+plus"));
        assert_eq!(decode_listed("cr%0Dlf%0A").as_deref(), Some("cr\rlf\n"));
        assert_eq!(decode_listed("%C3%A9").as_deref(), Some("é"));
        assert_eq!(decode_listed("%FF"), None);
    }

    #[test]
    fn every_byte_survives_a_round_trip_through_path_encoding() {
        let key: String = (1u8..=127).map(char::from).chain("é中𝄞".chars()).collect();
        let encoded = encode_path(&key);
        assert!(encoded.bytes().all(|b| b.is_ascii_graphic()));
        let decoded = percent_decode_str(&encoded).decode_utf8().unwrap();
        assert_eq!(decoded, key);
    }
}
