//! Removing a set of header names from a request or an answer on its way through.

use http::header::CONNECTION;
use http::{HeaderMap, HeaderName};

/// Which of `names` (at most 64) `headers` has: bit `i` for `names[i]`.
///
/// One pass over the names the headers have (a request has a handful). A name's length
/// is checked against the lengths in `names` first, so most names of a request are told
/// apart in a few instructions; only a name of a length in `names` is compared with them.
/// Looking each of `names` up instead hashes every name and probes the map, whether the
/// header is there or not: for the ~20 names dropped on the way through, that was ~1% of
/// the proxy's instructions per request, and comparing every name with every one of
/// `names` ~2%.
pub fn present(headers: &HeaderMap, names: &[HeaderName]) -> u64 {
    assert!(names.len() <= 64, "at most 64 names at once");
    let lengths = names
        .iter()
        .fold(0u64, |mask, name| mask | length_bit(name));
    let mut found = 0u64;
    for key in headers.keys() {
        if lengths & length_bit(key) == 0 {
            continue;
        }
        if let Some(i) = names.iter().position(|name| name == key) {
            found |= 1 << i;
        }
    }
    found
}

/// Removes the headers of `names` whose bit is set in `found` (as [`present`] tells).
pub fn remove_found(headers: &mut HeaderMap, names: &[HeaderName], found: u64) {
    let mut left = found;
    while left != 0 {
        headers.remove(&names[left.trailing_zeros() as usize]);
        left &= left - 1;
    }
}

/// Removes the headers every `Connection` header names (RFC 9110 7.6.1: a second one
/// naming a header must not let that header through); `Connection` itself stays.
pub fn remove_connection_named(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(CONNECTION)
        .iter()
        .flat_map(|value| value.to_str().unwrap_or("").split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .filter(|name| *name != CONNECTION)
        .collect();
    for name in named {
        headers.remove(name);
    }
}

/// One bit per name length (names of 63 bytes and longer share the last).
fn length_bit(name: &HeaderName) -> u64 {
    1 << name.as_str().len().min(63)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::header::{CONTENT_LENGTH, HOST, TE};
    use http::HeaderValue;

    #[test]
    fn only_and_all_the_named_headers_go_whatever_their_number_or_case() {
        let mut headers = HeaderMap::new();
        for (name, value) in [
            ("Host", "a"),
            ("mcp-session-id", "s"),
            ("keep-alive", "1"),
            ("KEEP-ALIVE", "2"),
            ("te", "trailers"),
            ("accept", "*/*"),
        ] {
            let name = HeaderName::from_bytes(name.as_bytes()).unwrap();
            headers.append(name, HeaderValue::from_static(value));
        }
        let names = [
            CONNECTION,
            HeaderName::from_static("keep-alive"),
            HOST,
            CONTENT_LENGTH,
            TE,
        ];
        let found = present(&headers, &names);
        assert_eq!(found, 0b10110, "keep-alive, host and te were there");
        remove_found(&mut headers, &names, found);
        let mut left: Vec<&str> = headers.keys().map(|k| k.as_str()).collect();
        left.sort_unstable();
        assert_eq!(left, ["accept", "mcp-session-id"]);
        assert_eq!(present(&headers, &names), 0);
        assert_eq!(headers.len(), 2);
    }

    #[test]
    fn names_of_the_same_length_or_of_64_bytes_and_more_are_still_told_apart() {
        let long =
            |c: char, n: usize| HeaderName::from_bytes(c.to_string().repeat(n).as_bytes()).unwrap();
        let mut headers = HeaderMap::new();
        // `expect` and `pragma` are as long as `upgrade` and `trailer`'s neighbours; the
        // long names share the last length bit with each other.
        for name in [
            HeaderName::from_static("expect"),
            HeaderName::from_static("pragma"),
            long('a', 64),
            long('b', 100),
        ] {
            headers.append(name, HeaderValue::from_static("v"));
        }
        let names = [
            HeaderName::from_static("accept"),
            HeaderName::from_static("pragma"),
            long('b', 100),
            long('c', 80),
        ];
        assert_eq!(present(&headers, &names), 0b0110);
        remove_found(&mut headers, &names, 0b0110);
        let mut left: Vec<String> = headers
            .keys()
            .map(|k| k.as_str()[..1].to_string())
            .collect();
        left.sort_unstable();
        assert_eq!(left, ["a", "e"]);
    }
}
