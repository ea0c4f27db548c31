//! Making text written by another program (a token command's stderr, an error text from
//! a credential provider) fit for the proxy's log: values of secret-looking keys, bearer
//! credentials, JWT-like strings and long base64/hex runs become `[redacted]`, control
//! characters become spaces, and the result is bounded. Such text never reaches an agent;
//! this only decides what the log may keep of it.
//!
//! What is recognised:
//! - `key=value`, `key = value`, `key: value`, `key:<TAB>value`, `--key=value`;
//! - quoted values, `key="a value with spaces"`, `key='…'`, and JSON `"key": "value"`;
//! - any key whose name contains `token`, `secret`, `password`, `passwd`, `key`,
//!   `credential`, `auth`, `session` or `cookie` (any case): its value is redacted;
//! - `Bearer …` and `Basic …` anywhere;
//! - JWT-like strings (`eyJ…`) and long runs of base64 or hex characters anywhere.
//!
//! It errs on the side of redacting too much: an unquoted value of a secret key runs to
//! the next tab, `,`, `;`, `&`, closing bracket, next `key=`/`key:`, or the line's end.

/// What replaces a secret.
pub const REDACTED: &str = "[redacted]";

/// Lines of the text kept at most.
const MAX_LINES: usize = 5;
/// Bytes of one line looked at before scrubbing (a longer line is cut first).
const MAX_LINE_INPUT: usize = 2048;
/// Bytes of the scrubbed result at most.
const MAX_OUTPUT: usize = 512;

const SECRET_KEY_PARTS: [&str; 9] = [
    "token",
    "secret",
    "password",
    "passwd",
    "key",
    "credential",
    "auth",
    "session",
    "cookie",
];

/// The first non-empty lines of `text`, each scrubbed, joined with ` | `, at most
/// `MAX_OUTPUT` bytes; None when there is nothing to show.
pub fn for_log(text: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(text);
    let lines: Vec<String> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .take(MAX_LINES)
        .map(|l| scrub_line(cut(l, MAX_LINE_INPUT)))
        .collect();
    if lines.is_empty() {
        return None;
    }
    let joined = lines.join(" | ");
    if joined.len() <= MAX_OUTPUT {
        Some(joined)
    } else {
        Some(format!("{}…", cut(&joined, MAX_OUTPUT)))
    }
}

/// One line with every secret replaced by `[redacted]` and control characters by spaces.
pub fn scrub_line(line: &str) -> String {
    let pairs = redact_pairs(line);
    let bearer = redact_schemes(&pairs);
    let runs = redact_runs(&bearer);
    runs.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// Like [`scrub_line`] without the `key=value` rules: for a service's own error message,
/// where words like `secretsmanager:GetSecretValue` name an action, not a secret. Bearer
/// credentials, JWT-like strings and long base64/hex runs still go. (AWS API sources
/// only, which need the `aws` feature.)
#[cfg_attr(not(feature = "aws"), allow(dead_code))]
pub fn scrub_values(line: &str) -> String {
    redact_runs(&redact_schemes(line))
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// `text` cut to at most `max` bytes, at a character boundary.
fn cut(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

fn is_key_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.'
}

fn is_secret_key(key: &str) -> bool {
    let lower = key.to_ascii_lowercase();
    SECRET_KEY_PARTS.iter().any(|part| lower.contains(part))
}

/// Horizontal white space after a separator.
fn is_blank(c: char) -> bool {
    c == ' ' || c == '\t'
}

/// Replaces the values of secret-looking keys.
fn redact_pairs(line: &str) -> String {
    let chars: Vec<char> = line.chars().collect();
    let mut out = String::with_capacity(line.len());
    let mut i = 0;
    while i < chars.len() {
        // A key: a run of key characters, maybe inside quotes (JSON); not the last part
        // of a path (`/etc/app/token: no such file`).
        let after_path = i > 0 && matches!(chars[i - 1], '/' | '\\');
        if !is_key_char(chars[i]) || (i > 0 && is_key_char(chars[i - 1])) || after_path {
            out.push(chars[i]);
            i += 1;
            continue;
        }
        let start = i;
        while i < chars.len() && is_key_char(chars[i]) {
            i += 1;
        }
        let key: String = chars[start..i].iter().collect();
        out.push_str(&key);
        if !is_secret_key(&key) {
            continue;
        }
        // The separator: an optional closing quote, blanks, `=` or `:`, blanks.
        let mut j = i;
        if j < chars.len() && (chars[j] == '"' || chars[j] == '\'') {
            j += 1;
        }
        while j < chars.len() && is_blank(chars[j]) {
            j += 1;
        }
        if j >= chars.len() || (chars[j] != '=' && chars[j] != ':') {
            continue;
        }
        j += 1;
        while j < chars.len() && is_blank(chars[j]) {
            j += 1;
        }
        // `key::` or `key==`: not a pair.
        if j < chars.len() && (chars[j] == '=' || chars[j] == ':') {
            continue;
        }
        out.extend(&chars[i..j]);
        i = j;
        if i >= chars.len() {
            break;
        }
        let quote = chars[i];
        if quote == '{' || quote == '[' {
            // A nested object or list: its own keys are looked at in turn.
            continue;
        }
        if quote == '"' || quote == '\'' {
            // Up to the closing quote (backslash escapes skipped), or the line's end.
            let mut k = i + 1;
            while k < chars.len() && chars[k] != quote {
                k += if chars[k] == '\\' { 2 } else { 1 };
            }
            out.push(quote);
            out.push_str(REDACTED);
            if k < chars.len() {
                out.push(quote);
                i = k + 1;
            } else {
                i = chars.len();
            }
        } else {
            let end = unquoted_value_end(&chars, i);
            if end > i {
                out.push_str(REDACTED);
            }
            i = end;
        }
    }
    out
}

/// Where an unquoted value starting at `from` ends: at a tab, `,`, `;`, `&`, a closing
/// bracket, a quote, a space before another `key=`, `key:` or `-flag`, or the line's end.
fn unquoted_value_end(chars: &[char], from: usize) -> usize {
    let mut k = from;
    while k < chars.len() {
        match chars[k] {
            '\t' | ',' | ';' | '&' | '}' | ']' | ')' | '"' | '\'' => return k,
            ' ' if chars.get(k + 1) == Some(&'-') || starts_pair(chars, k + 1) => return k,
            _ => k += 1,
        }
    }
    k
}

/// Whether a `key=` or `key:` (followed by a value) starts at `at`.
fn starts_pair(chars: &[char], at: usize) -> bool {
    let mut k = at;
    while k < chars.len() && chars[k] == ' ' {
        k += 1;
    }
    let key_start = k;
    while k < chars.len() && is_key_char(chars[k]) {
        k += 1;
    }
    k > key_start && k < chars.len() && (chars[k] == '=' || chars[k] == ':')
}

/// `Bearer <credential>` and `Basic <credential>`, any case, anywhere.
fn redact_schemes(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut rest = line;
    loop {
        let lower = rest.to_ascii_lowercase();
        let found = ["bearer", "basic"]
            .iter()
            .filter_map(|scheme| {
                let mut from = 0;
                while let Some(at) = lower[from..].find(scheme).map(|p| p + from) {
                    let before_ok = lower[..at]
                        .chars()
                        .next_back()
                        .is_none_or(|c| !c.is_ascii_alphanumeric());
                    let after = &rest[at + scheme.len()..];
                    let gap = after.len() - after.trim_start_matches(is_blank).len();
                    let credential = after[gap..]
                        .split(|c: char| c.is_whitespace() || c == '"' || c == '\'' || c == ',')
                        .next()
                        .unwrap_or("");
                    let plausible = *scheme == "bearer" || looks_encoded(credential);
                    if before_ok && gap > 0 && plausible && credential != REDACTED {
                        return Some((at, at + scheme.len() + gap, credential.len()));
                    }
                    from = at + scheme.len();
                }
                None
            })
            .min();
        let Some((_, value_at, len)) = found else {
            out.push_str(rest);
            return out;
        };
        out.push_str(&rest[..value_at]);
        out.push_str(REDACTED);
        rest = &rest[value_at + len..];
    }
}

/// Whether a `Basic` credential looks like base64 rather than the next English word.
fn looks_encoded(credential: &str) -> bool {
    let classes = |b: &[u8]| {
        usize::from(b.iter().any(u8::is_ascii_digit))
            + usize::from(b.iter().any(u8::is_ascii_uppercase))
            + usize::from(b.iter().any(u8::is_ascii_lowercase))
    };
    credential.len() >= 8
        && credential.chars().all(is_run_char)
        && (credential.ends_with('=') || classes(credential.as_bytes()) >= 2)
}

/// Characters of base64, base64url, hex and JWTs.
fn is_run_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '+' | '/' | '=' | '_' | '-' | '.' | '~')
}

/// Whether a run of token characters looks like a credential: JWT-like, a long hex
/// string, or a long string mixing letters and digits as encoded random bytes do (or,
/// without digits, upper and lower case at a rate CamelCase words and paths do not).
fn looks_like_secret(run: &str) -> bool {
    if run.len() >= 10 && run.starts_with("eyJ") {
        return true;
    }
    if run.len() >= 32 && run.bytes().all(|b| b.is_ascii_hexdigit()) {
        return true;
    }
    if run.len() < 20 {
        return false;
    }
    let digit = run.bytes().any(|b| b.is_ascii_digit());
    let upper = run.bytes().filter(u8::is_ascii_uppercase).count();
    let lower = run.bytes().filter(u8::is_ascii_lowercase).count();
    let path_like = run.contains(['/', '.']);
    (digit && upper + lower > 0) || (lower > 0 && upper * 4 >= run.len() && !path_like)
}

/// JWT-like strings and long base64/hex runs, anywhere.
fn redact_runs(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut run = String::new();
    let flush = |run: &mut String, out: &mut String| {
        out.push_str(if looks_like_secret(run) {
            REDACTED
        } else {
            run
        });
        run.clear();
    };
    for c in line.chars() {
        if is_run_char(c) {
            run.push(c);
        } else {
            flush(&mut run, &mut out);
            out.push(c);
        }
    }
    flush(&mut run, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const JWT: &str = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhZ2VudCJ9.c2lnbmF0dXJlLXNlY3JldA";

    fn assert_scrubbed(input: &str, secrets: &[&str], expected: &str) {
        let out = scrub_line(input);
        for s in secrets {
            assert!(
                !out.contains(s),
                "{s:?} survived in {out:?} (from {input:?})"
            );
        }
        assert_eq!(out, expected, "from {input:?}");
    }

    #[test]
    fn the_reported_reproducer_is_scrubbed() {
        let input = format!("token=\"{JWT}\"\tclient_secret:\tS3cr3t-Value_42!");
        assert_scrubbed(
            &input,
            &[JWT, "S3cr3t", "Value_42"],
            "token=\"[redacted]\" client_secret: [redacted]",
        );
    }

    #[test]
    fn key_value_forms() {
        let cases: &[(&str, &[&str], &str)] = &[
            ("password=hunter2", &["hunter2"], "password=[redacted]"),
            (
                "db_password = hunter2 user=bob",
                &["hunter2"],
                "db_password = [redacted] user=bob",
            ),
            ("token: abc123", &["abc123"], "token: [redacted]"),
            (
                "client_secret:\tabc123\tnext",
                &["abc123"],
                "client_secret: [redacted] next",
            ),
            (
                "--api-key=abc123 --verbose",
                &["abc123"],
                "--api-key=[redacted] --verbose",
            ),
            (
                "PASSWD=pw1; other=1",
                &["pw1"],
                "PASSWD=[redacted]; other=1",
            ),
            (
                "session-id: s1, cookie=c1&x=1",
                &["s1", "c1"],
                "session-id: [redacted], cookie=[redacted]&x=1",
            ),
            (
                "AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI",
                &["wJalrXUtnFEMI"],
                "AWS_SECRET_ACCESS_KEY=[redacted]",
            ),
            (
                "x-auth-header: opaque",
                &["opaque"],
                "x-auth-header: [redacted]",
            ),
            (
                "my_credential='pw pw'",
                &["pw pw"],
                "my_credential='[redacted]'",
            ),
            (
                "password: my secret pass phrase",
                &["my secret", "pass phrase"],
                "password: [redacted]",
            ),
            (
                "key=\"with \\\" quote\" after",
                &["with", "quote"],
                "key=\"[redacted]\" after",
            ),
            (
                "token=\"unterminated secret",
                &["unterminated", "secret"],
                "token=\"[redacted]",
            ),
            (
                "Authorization: Bearer abc123",
                &["abc123"],
                "Authorization: [redacted]",
            ),
            ("API_KEY : xyz", &["xyz"], "API_KEY : [redacted]"),
            (
                "\"password\"\t:\t\"p w\"",
                &["p w"],
                "\"password\" : \"[redacted]\"",
            ),
            (
                "failed(token=abc) again",
                &["abc"],
                "failed(token=[redacted]) again",
            ),
            (
                "https://idp/cb?code=1&session_state=s1",
                &["s1"],
                "https://idp/cb?code=1&session_state=[redacted]",
            ),
        ];
        for (input, secrets, expected) in cases {
            assert_scrubbed(input, secrets, expected);
        }
    }

    #[test]
    fn json_forms() {
        assert_scrubbed(
            r#"{"error":"denied","access_token":"abc def","refresh_token": "r1", "Session":{"id":1}}"#,
            &["abc def", "r1"],
            r#"{"error":"denied","access_token":"[redacted]","refresh_token": "[redacted]", "Session":{"id":1}}"#,
        );
        assert_scrubbed(
            r#"{"clientSecret":12345,"user":"bob"}"#,
            &["12345"],
            r#"{"clientSecret":[redacted],"user":"bob"}"#,
        );
    }

    #[test]
    fn bearer_jwt_and_long_runs_anywhere() {
        assert_scrubbed(
            "sent Bearer abc.def-123 to the server",
            &["abc.def-123"],
            "sent Bearer [redacted] to the server",
        );
        assert_scrubbed(
            "basic   dXNlcjpwdw== refused",
            &["dXNlcjpwdw=="],
            "basic   [redacted] refused",
        );
        assert_scrubbed(
            &format!("login expired for {JWT} (see docs)"),
            &[JWT, "eyJ"],
            "login expired for [redacted] (see docs)",
        );
        assert_scrubbed(
            "hex 0123456789abcdef0123456789abcdef and b64 Zm9vYmFyYmF6cXV4MTIzNDU2Nzg5MA==",
            &["0123456789abcdef", "Zm9vYmFy"],
            "hex [redacted] and b64 [redacted]",
        );
        assert_scrubbed(
            "no digits xQmFzZVNpeHRFmUckVuYWkZWQ either",
            &["xQmFzZVNpeHRF"],
            "no digits [redacted] either",
        );
        assert_scrubbed(
            "https://vault.internal/v1/secret/data/aBcD1234eFgH5678iJkL?x",
            &["aBcD1234eFgH5678iJkL"],
            "https:[redacted]?x",
        );
    }

    #[test]
    fn ordinary_text_stays_readable() {
        for line in [
            "error: could not reach the identity provider (connection refused)",
            "vault: permission denied on /usr/local/bin/get-token",
            "exit code 3: internationalization failure",
            "open /home/user/.config/Vault/token: no such file or directory",
            "a basic configuration error, Bearer-less",
            "AccessDeniedException: ResourceNotFoundException InvalidSignatureException",
            "Token expired at 2026-01-01T00:00:00Z",
        ] {
            assert_eq!(scrub_line(line), line);
        }
    }

    #[test]
    fn the_log_gets_a_few_bounded_lines_without_controls() {
        assert_eq!(for_log(b"  \n\n"), None);
        assert_eq!(
            for_log(b"first\n\n second \x1b[31mred\nthird\nfourth\nfifth\nsixth").unwrap(),
            "first | second  [31mred | third | fourth | fifth"
        );
        let long = "word ".repeat(1000);
        let out = for_log(long.as_bytes()).unwrap();
        assert!(out.len() <= MAX_OUTPUT + '…'.len_utf8(), "{}", out.len());
        assert!(out.ends_with('…'));
        let long_value = format!("password={}", "p".repeat(3000));
        assert_eq!(
            for_log(long_value.as_bytes()).unwrap(),
            "password=[redacted]"
        );
    }
}
