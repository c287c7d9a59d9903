//! Secrets: which values are secret (by name, or by shape: a password inside a URL, a long random
//! string), how they are shown (masked, with their length and a keyed fingerprint), and the one
//! scrubber every text passes before it leaves the server (logs, command output, error texts).
//! A raw secret lives only in `Secret`, which cannot be serialized and does not print itself.

use std::fmt;
use std::sync::LazyLock;

use aho_corasick::AhoCorasick;
use hmac::{Hmac, Mac};
use regex::Regex;
use sha2::Sha256;

pub use super::{MaskedValue, SecretKind};

/// What a masked secret looks like wherever it is shown.
pub const MASK: &str = "••••";

/// Name parts that make a variable secret (matched case-insensitively anywhere in the name).
pub const DEFAULT_SECRET_NAME_PARTS: &[&str] = &[
    "PASSWORD",
    "PASSWD",
    "SECRET",
    "KEY",
    "TOKEN",
    "CREDENTIAL",
    "PRIVATE",
    "AUTH",
    "SALT",
];

/// Name endings that make a variable secret (a part too short or common to match anywhere:
/// `BYPASS_CACHE` is not a password, `SMTP_PASS` is).
pub const SECRET_NAME_ENDINGS: &[&str] = &["_PASS", "_PWD", "DSN", "_CREDENTIALS"];

/// The default name parts and the installation's own (`secrets.extra_name_parts`).
pub fn secret_name_parts(extra: &[String]) -> Vec<String> {
    DEFAULT_SECRET_NAME_PARTS
        .iter()
        .map(|p| p.to_string())
        .chain(extra.iter().cloned())
        .collect()
}

/// `scheme://user:password@host` - the password is the second group. People write passwords with a
/// raw `@` or `/` in them, so the password runs to the last `@` of the word (masking a little more
/// than the password in an odd URL, never less).
static URL_PASSWORD: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r#"(?i)\b([a-z][a-z0-9+.-]*://[^\s/:@"']*:)([^\s"']+)(@)"#).expect("constant regex")
});

/// A secret value. Use `expose` only where the raw value must reach its destination (a child
/// process's environment); it has no `Serialize` and its `Debug`/`Display` print the mask.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret({MASK})")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(MASK)
    }
}

/// Decides what is secret and masks it. The fingerprint key is per installation, so fingerprints
/// cannot be compared across installations or precomputed.
pub struct Masker {
    name_parts: Vec<String>,
    fingerprint_key: Vec<u8>,
    /// The env file's values and their scrubber, by the file's stamp (`disk::Masker::env_file`).
    #[cfg(feature = "ssr")]
    pub(super) env_kept: std::sync::Mutex<Option<super::disk::EnvKept>>,
}

impl Masker {
    pub fn new(
        name_parts: impl IntoIterator<Item = impl AsRef<str>>,
        fingerprint_key: &[u8],
    ) -> Masker {
        let mut name_parts: Vec<String> = name_parts
            .into_iter()
            .map(|p| p.as_ref().trim().to_ascii_uppercase())
            .filter(|p| !p.is_empty())
            .collect();
        name_parts.sort();
        name_parts.dedup();
        Masker {
            name_parts,
            fingerprint_key: fingerprint_key.to_vec(),
            #[cfg(feature = "ssr")]
            env_kept: std::sync::Mutex::new(None),
        }
    }

    /// Whether (and why) `value` of variable `name` is secret.
    pub fn classify(&self, name: &str, value: &str) -> Option<SecretKind> {
        let upper = name.to_ascii_uppercase();
        let by_name = self.name_parts.iter().any(|p| upper.contains(p.as_str()))
            || SECRET_NAME_ENDINGS.iter().any(|e| upper.ends_with(e));
        if by_name && !value.is_empty() {
            Some(SecretKind::Name)
        } else if URL_PASSWORD.is_match(value) {
            Some(SecretKind::UrlPassword)
        } else if looks_random(value) {
            Some(SecretKind::HighEntropy)
        } else {
            None
        }
    }

    pub fn mask(&self, name: &str, value: &str) -> MaskedValue {
        match self.classify(name, value) {
            None => MaskedValue {
                shown: value.to_string(),
                secret: false,
                length: value.chars().count(),
                fingerprint: None,
            },
            Some(SecretKind::UrlPassword) => {
                let password = URL_PASSWORD
                    .captures(value)
                    .and_then(|c| c.get(2))
                    .map_or("", |m| m.as_str());
                MaskedValue {
                    shown: URL_PASSWORD
                        .replace_all(value, format!("${{1}}{MASK}${{3}}"))
                        .into_owned(),
                    secret: true,
                    length: password.chars().count(),
                    fingerprint: Some(self.fingerprint(password)),
                }
            }
            Some(_) => MaskedValue {
                shown: MASK.to_string(),
                secret: true,
                length: value.chars().count(),
                fingerprint: Some(self.fingerprint(value)),
            },
        }
    }

    /// Eight hex digits of HMAC-SHA256(installation key, value).
    pub fn fingerprint(&self, value: &str) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.fingerprint_key)
            .expect("HMAC takes any key length");
        mac.update(value.as_bytes());
        hex::encode(&mac.finalize().into_bytes()[..4])
    }

    /// The secret values among `(name, value)` pairs, for a `Scrubber`: whole secret values, and the
    /// password part of every URL (raw and percent-decoded).
    pub fn secret_values<'a>(
        &self,
        vars: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Vec<Secret> {
        let mut out = Vec::new();
        for (name, value) in vars {
            match self.classify(name, value) {
                Some(SecretKind::UrlPassword) | None => {}
                Some(_) => out.push(Secret::new(value)),
            }
            for caps in URL_PASSWORD.captures_iter(value) {
                let password = &caps[2];
                out.push(Secret::new(password));
                let decoded = percent_decode(password);
                if decoded != password {
                    out.push(Secret::new(decoded));
                }
            }
        }
        out
    }
}

impl Masker {
    /// The scrubber for the secrets among `(name, value)` pairs.
    pub fn scrubber<'a>(&self, vars: impl IntoIterator<Item = (&'a str, &'a str)>) -> Scrubber {
        Scrubber::new(&self.secret_values(vars))
    }
}

/// Removes secrets from any text: every known secret value, and any password inside a URL.
pub struct Scrubber {
    known: Option<AhoCorasick>,
}

/// Values shorter than this are not scrubbed by value ("1", "on", a port): they would mangle every
/// line while protecting nothing. They are still masked wherever they are shown by name.
pub const MIN_SCRUB_LENGTH: usize = 4;

/// Every form a secret takes in text that leaves the server: as it is; each line of a multi-line
/// value (output is scrubbed line by line); percent-encoded (both ways of writing a space);
/// JSON-escaped; and base64 and base64url at each of the three alignments it can have inside a
/// longer encoded text (`Basic base64(user:password)`), the characters the neighbours change left out.
fn encoded_forms(secret: &str) -> Vec<String> {
    use base64::Engine;
    use base64::engine::general_purpose::{STANDARD, URL_SAFE};
    let mut forms = vec![secret.to_string()];
    forms.extend(
        secret
            .lines()
            .map(str::trim)
            .filter(|l| l.len() >= MIN_SCRUB_LENGTH && *l != secret)
            .map(String::from),
    );
    let form: String = url::form_urlencoded::byte_serialize(secret.as_bytes()).collect();
    forms.push(form.replace('+', "%20"));
    forms.push(form);
    if let Ok(json) = serde_json::to_string(secret) {
        forms.push(json.trim_matches('"').to_string());
    }
    let bytes = secret.as_bytes();
    for engine in [&STANDARD, &URL_SAFE] {
        for offset in 0..3usize {
            let mut padded = vec![0u8; offset];
            padded.extend_from_slice(bytes);
            let encoded = engine.encode(&padded);
            let start = if offset > 0 { 4 } else { 0 };
            let end = (padded.len() / 3) * 4;
            if end >= start + 8 {
                forms.push(encoded[start..end].to_string());
            }
        }
    }
    forms.retain(|f| f.len() >= MIN_SCRUB_LENGTH);
    forms
}

impl Scrubber {
    pub fn new(secrets: &[Secret]) -> Scrubber {
        let forms: Vec<String> = secrets
            .iter()
            .map(Secret::expose)
            .filter(|s| s.len() >= MIN_SCRUB_LENGTH)
            .flat_map(encoded_forms)
            .collect();
        let mut patterns: Vec<&str> = forms.iter().map(String::as_str).collect();
        // Longest first, so a secret containing another is masked whole.
        patterns.sort_by_key(|p| std::cmp::Reverse(p.len()));
        patterns.dedup();
        let known = (!patterns.is_empty()).then(|| {
            AhoCorasick::builder()
                .match_kind(aho_corasick::MatchKind::LeftmostLongest)
                .build(&patterns)
                .expect("literal patterns build")
        });
        Scrubber { known }
    }

    pub fn scrub(&self, text: &str) -> String {
        let by_value = match &self.known {
            Some(ac) => ac.replace_all(text, &vec![MASK; ac.patterns_len()]),
            None => text.to_string(),
        };
        URL_PASSWORD
            .replace_all(&by_value, format!("${{1}}{MASK}${{3}}"))
            .into_owned()
    }
}

/// A generated key or token rather than a word, list, host, path or id: one run of token characters
/// (base64, base64url, hex, dashes) whose longest `-`/`_`-separated segment is long, mixes character
/// classes and is varied (`django-demo-Xq7rT2mV9kLp4sWz8yNc3bHf` yes; `2026-11-24T21-39-00-release` no).
fn looks_random(value: &str) -> bool {
    const MIN_SEGMENT: usize = 16;
    const MIN_BITS_PER_CHAR: f64 = 3.5;
    let token_chars = value
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"-_+=".contains(&b));
    let Some(segment) = value.split(['-', '_']).max_by_key(|s| s.len()) else {
        return false;
    };
    let classes = [
        segment.bytes().any(|b| b.is_ascii_lowercase()),
        segment.bytes().any(|b| b.is_ascii_uppercase()),
        segment.bytes().any(|b| b.is_ascii_digit()),
    ];
    token_chars
        && segment.len() >= MIN_SEGMENT
        && classes.iter().filter(|c| **c).count() >= 2
        && shannon_bits_per_char(segment) >= MIN_BITS_PER_CHAR
}

fn shannon_bits_per_char(value: &str) -> f64 {
    let mut counts = std::collections::HashMap::new();
    for c in value.chars() {
        *counts.entry(c).or_insert(0usize) += 1;
    }
    let n = value.chars().count() as f64;
    counts
        .values()
        .map(|&k| {
            let p = k as f64 / n;
            -p * p.log2()
        })
        .sum()
}

/// Percent-decodes a URL part (a password written `p%40ss` is the secret `p@ss` too).
pub(crate) fn percent_decode(s: &str) -> String {
    url::form_urlencoded::parse(format!("x={s}").as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_else(|| s.to_string())
}

#[cfg(test)]
mod tests;
