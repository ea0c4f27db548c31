//! The `Content-Length` a request goes to the gateway with: the length of what is sent,
//! which is the agent's own body, or less when a batch was filtered.

use http::header::CONTENT_LENGTH;
use http::{HeaderMap, HeaderValue, Method};

/// Declares `len` bytes of payload. The agent's own header is kept when it already says
/// so (the usual case: no allocation, no new entry in the map), replaced when it does not
/// (a filtered batch is shorter), and removed from a request without a body whose method
/// defines none (GET, DELETE: neither hyper nor h2 sends one then).
pub fn declare(headers: &mut HeaderMap, method: &Method, len: usize) {
    if len == 0 && !has_defined_payload(method) {
        headers.remove(CONTENT_LENGTH);
        return;
    }
    let mut digits = itoa::Buffer::new();
    let text = digits.format(len);
    let mut values = headers.get_all(CONTENT_LENGTH).iter();
    let same = values
        .next()
        .is_some_and(|v| v.as_bytes() == text.as_bytes());
    if same && values.next().is_none() {
        return;
    }
    headers.insert(CONTENT_LENGTH, HeaderValue::from(len));
}

/// Whether a request of this method carries a body by definition (a `Content-Length: 0`
/// is sent for an empty one, as hyper does).
fn has_defined_payload(method: &Method) -> bool {
    !matches!(
        *method,
        Method::GET
            | Method::HEAD
            | Method::DELETE
            | Method::CONNECT
            | Method::OPTIONS
            | Method::TRACE
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lengths(headers: &HeaderMap) -> Vec<&str> {
        headers
            .get_all(CONTENT_LENGTH)
            .iter()
            .map(|v| v.to_str().unwrap())
            .collect()
    }

    #[test]
    fn the_agents_header_is_kept_when_it_tells_the_truth() {
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_LENGTH, HeaderValue::from_static("117"));
        let before = headers[CONTENT_LENGTH].as_bytes().as_ptr();
        declare(&mut headers, &Method::POST, 117);
        assert_eq!(lengths(&headers), ["117"]);
        assert_eq!(
            headers[CONTENT_LENGTH].as_bytes().as_ptr(),
            before,
            "not replaced"
        );
    }

    #[test]
    fn a_wrong_padded_or_repeated_length_is_replaced_by_the_real_one() {
        for given in [&["200"][..], &["0117"], &["117", "117"], &["117", "5"], &[]] {
            let mut headers = HeaderMap::new();
            for v in given {
                headers.append(CONTENT_LENGTH, HeaderValue::from_static(v));
            }
            declare(&mut headers, &Method::POST, 117);
            assert_eq!(lengths(&headers), ["117"], "given {given:?}");
        }
    }

    #[test]
    fn an_empty_post_says_zero_and_an_empty_get_or_delete_says_nothing() {
        let mut post = HeaderMap::new();
        declare(&mut post, &Method::POST, 0);
        assert_eq!(lengths(&post), ["0"]);
        for method in [Method::GET, Method::DELETE] {
            let mut headers = HeaderMap::new();
            headers.insert(CONTENT_LENGTH, HeaderValue::from_static("0"));
            declare(&mut headers, &method, 0);
            assert!(lengths(&headers).is_empty(), "{method}");
        }
        let mut get_with_body = HeaderMap::new();
        declare(&mut get_with_body, &Method::GET, 3);
        assert_eq!(lengths(&get_with_body), ["3"]);
    }
}
