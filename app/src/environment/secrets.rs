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
mod tests {
    use super::*;

    fn masker() -> Masker {
        Masker::new(DEFAULT_SECRET_NAME_PARTS, b"test key")
    }

    #[test]
    fn an_installation_adds_name_parts_of_its_own() {
        let plain = Masker::new(secret_name_parts(&[]), b"k");
        assert_eq!(plain.classify("SENTRY_PROJECT", "abc"), None);
        let extended = Masker::new(secret_name_parts(&[" sentry ".into()]), b"k");
        assert!(extended.classify("SENTRY_PROJECT", "abc").is_some());
        assert!(
            extended.classify("DB_PASSWORD", "x").is_some(),
            "the defaults stay"
        );
    }

    #[test]
    fn secrets_are_recognised_by_name_and_by_shape() {
        let m = masker();
        let cases: &[(&str, &str, Option<SecretKind>)] = &[
            (
                "DB_PASSWORD",
                "pgdemo-Hn4Vw8Rk2Tq6Ly9Zs",
                Some(SecretKind::Name),
            ),
            ("DJANGO_SECRET_KEY", "x", Some(SecretKind::Name)),
            ("github_token", "abc", Some(SecretKind::Name)),
            ("DB_PASSWORD", "", None),
            (
                "REDIS_URL",
                "redis://:pw@redis:6379/0",
                Some(SecretKind::UrlPassword),
            ),
            (
                "BROKER",
                "amqp://user:p%40ss@rabbit/",
                Some(SecretKind::UrlPassword),
            ),
            (
                "SENTRY",
                "Xq7rT2mV9kLp4sWz8yNc3bHf",
                Some(SecretKind::HighEntropy),
            ),
            ("DB_NAME", "epsm_db", None),
            (
                "ALLOWED_HOSTS",
                "epsm.chalmers.se,localhost,127.0.0.1,backend",
                None,
            ),
            ("VITE_API_BASE_URL", "https://epsm.chalmers.se/api", None),
            ("STATIC_ROOT", "/app/staticfiles/collected/assets", None),
            ("BUILD_ID", "2026-11-24T21-39-00-release", None),
            (
                "SESSION",
                "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b",
                Some(SecretKind::HighEntropy),
            ),
            ("DEBUG", "False", None),
        ];
        for (name, value, want) in cases {
            assert_eq!(m.classify(name, value), *want, "{name}={value}");
        }
    }

    #[test]
    fn masking_keeps_the_url_readable_and_fingerprints_compare_without_showing() {
        let m = masker();
        let url = m.mask(
            "REDIS_URL",
            "redis://:redisdemo-Bf3Jm7Qw1Xc5Kv@redis:6379/0",
        );
        assert_eq!(url.shown, "redis://:••••@redis:6379/0");
        assert_eq!(url.length, "redisdemo-Bf3Jm7Qw1Xc5Kv".len());
        let pw = m.mask("REDIS_PASSWORD", "redisdemo-Bf3Jm7Qw1Xc5Kv");
        assert_eq!(pw.shown, "••••");
        assert_eq!(
            pw.fingerprint, url.fingerprint,
            "same password, same fingerprint"
        );
        assert_ne!(pw.fingerprint, m.mask("DB_PASSWORD", "other").fingerprint);
        assert_ne!(
            pw.fingerprint,
            Masker::new(DEFAULT_SECRET_NAME_PARTS, b"another installation")
                .mask("P_KEY", "redisdemo-Bf3Jm7Qw1Xc5Kv")
                .fingerprint
        );
        let plain = m.mask("DB_NAME", "epsm_db");
        assert_eq!(
            (plain.shown.as_str(), plain.secret, plain.fingerprint),
            ("epsm_db", false, None)
        );
        let json = serde_json::to_string(&pw).unwrap();
        assert!(!json.contains("Bf3Jm7"), "{json}");
    }

    #[test]
    fn a_secret_never_prints_itself() {
        let s = Secret::new("pgdemo-Hn4Vw8Rk2Tq6Ly9Zs");
        assert_eq!(format!("{s} {s:?}"), "•••• Secret(••••)");
        assert_eq!(s.expose(), "pgdemo-Hn4Vw8Rk2Tq6Ly9Zs");
    }

    #[test]
    fn the_scrubber_removes_every_secret_value_and_url_password() {
        let m = masker();
        let vars = [
            ("DB_PASSWORD", "pgdemo-Hn4Vw8Rk2Tq6Ly9Zs"),
            ("REDIS_URL", "redis://:p%40ss-word@redis:6379/0"),
            (
                "DJANGO_SECRET_KEY",
                "django-demo-Xq7rT2mV9kLp4sWz8yNc3bHf6gJd1aEu",
            ),
            ("AUTH_FLAG", "on"),
            ("DB_NAME", "epsm_db"),
        ];
        let scrubber = Scrubber::new(&m.secret_values(vars));
        let text = "connect epsm_db with pgdemo-Hn4Vw8Rk2Tq6Ly9Zs\n\
                    broker redis://:p%40ss-word@redis:6379/0 (decoded p@ss-word)\n\
                    key=django-demo-Xq7rT2mV9kLp4sWz8yNc3bHf6gJd1aEu flag on\n\
                    unknown amqp://guest:hunter22@rabbit:5672/";
        let scrubbed = scrubber.scrub(text);
        assert_eq!(
            scrubbed,
            "connect epsm_db with ••••\n\
             broker redis://:••••@redis:6379/0 (decoded ••••)\n\
             key=•••• flag on\n\
             unknown amqp://guest:••••@rabbit:5672/"
        );
        assert_eq!(Scrubber::new(&[]).scrub("nothing secret"), "nothing secret");
    }

    #[test]
    fn in_the_stack_env_file_exactly_the_guides_secrets_are_masked() {
        let path =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../stack/.env.production");
        let text = std::fs::read_to_string(path).unwrap();
        let file = crate::environment::envfile::parse(&text, &|_| None).unwrap();
        let m = masker();
        let masked: Vec<&str> = file
            .resolved()
            .into_iter()
            .filter(|(k, v)| m.mask(k, v).secret)
            .map(|(k, _)| k)
            .collect();
        assert_eq!(
            masked,
            [
                "CELERY_BROKER_URL",
                "CELERY_RESULT_BACKEND",
                "DB_PASSWORD",
                "DJANGO_SECRET_KEY",
                "POSTGRES_PASSWORD",
                "REDIS_PASSWORD",
                "REDIS_URL",
                "SECRET_KEY",
            ]
        );
        let scrubber = Scrubber::new(&m.secret_values(file.resolved()));
        let all_values = file
            .resolved()
            .values()
            .copied()
            .collect::<Vec<_>>()
            .join("\n");
        let scrubbed = scrubber.scrub(&all_values);
        for (key, value) in file.resolved() {
            if m.mask(key, value).secret {
                let raw = if key.ends_with("_URL") || key.starts_with("CELERY_") {
                    value
                        .split(':')
                        .nth(2)
                        .and_then(|s| s.split('@').next())
                        .unwrap()
                } else {
                    value
                };
                assert!(!scrubbed.contains(raw), "{key} survived the scrubber");
            }
        }
    }

    #[test]
    fn names_ending_like_a_password_are_secret_and_words_that_merely_contain_pass_are_not() {
        let m = masker();
        for name in [
            "SMTP_PASS",
            "LDAP_PWD",
            "SENTRY_DSN",
            "DATABASE_DSN",
            "GCP_CREDENTIALS",
        ] {
            assert_eq!(m.classify(name, "value"), Some(SecretKind::Name), "{name}");
        }
        for name in ["BYPASS_CACHE", "PASSENGER_COUNT", "COMPASS_URL_PATH"] {
            assert_eq!(m.classify(name, "value"), None, "{name}");
        }
    }

    #[test]
    fn every_form_a_secret_takes_is_scrubbed() {
        use base64::Engine;
        use base64::engine::general_purpose::{STANDARD, URL_SAFE};
        let m = masker();
        let secret = "p@ss/wörd+Ünïcode=\"q\"";
        // A value over two lines (a token pasted with its line break).
        let multi_line = "first-part-Xq7rT2mV9kLp4sWz\nsecond-part-Hn4Vw8Rk2Tq6Ly9Z";
        let vars = [
            ("SMTP_PASS", secret),
            (
                "DATABASE_URL",
                "postgres://epsm:r@w/pa@ss@database:5432/epsm_db",
            ),
            ("API_TOKEN", multi_line),
        ];
        let scrubber = Scrubber::new(&m.secret_values(vars));
        let json = serde_json::to_string(secret).unwrap();
        let form: String = url::form_urlencoded::byte_serialize(secret.as_bytes()).collect();
        let cases: Vec<(&str, String, &str)> = vec![
            ("raw", format!("pw {secret} end"), secret),
            (
                "URL with raw @ and /",
                "db postgres://epsm:r@w/pa@ss@database:5432/epsm_db".into(),
                "r@w/pa@ss",
            ),
            ("percent-encoded (+)", format!("q={form}"), &form),
            (
                "percent-encoded (%20)",
                format!("q={}", form.replace('+', "%20")),
                "p%40ss",
            ),
            ("JSON-escaped", format!("{{\"pw\":{json}}}"), "\\\"q\\\""),
            ("base64 alone", STANDARD.encode(secret), ""),
            (
                "base64 in Basic auth",
                format!(
                    "Authorization: Basic {}",
                    STANDARD.encode(format!("smtp-user:{secret}"))
                ),
                "",
            ),
            (
                "base64url, offset 1",
                URL_SAFE.encode(format!("x{secret}")),
                "",
            ),
            (
                "base64, offset 2",
                STANDARD.encode(format!("xy{secret}tail")),
                "",
            ),
            (
                "a line of a multi-line value",
                "token: first-part-Xq7rT2mV9kLp4sWz".into(),
                "Xq7rT2mV9kLp",
            ),
            (
                "a multi-line value JSON-escaped",
                serde_json::to_string(multi_line).unwrap(),
                "Hn4Vw8Rk2Tq6",
            ),
        ];
        for (what, text, leak) in cases {
            let scrubbed = scrubber.scrub(&text);
            assert!(scrubbed.contains(MASK), "{what}: {scrubbed}");
            if !leak.is_empty() {
                assert!(!scrubbed.contains(leak), "{what}: {scrubbed}");
            }
            assert!(!scrubbed.contains("wörd"), "{what}: {scrubbed}");
        }
        // Encoded forms: the base64 text no longer decodes to anything holding the secret.
        let basic = scrubber.scrub(&STANDARD.encode(format!("smtp-user:{secret}")));
        assert!(!basic.contains(&STANDARD.encode(secret)[..8]), "{basic}");
    }

    #[test]
    fn a_multi_byte_character_split_between_reads_is_still_scrubbed() {
        use crate::deploy::ssr::LineSplitter;
        let m = masker();
        let secret = "lösenord-Hn4Vw8Rk";
        let scrubber = Scrubber::new(&m.secret_values([("DB_PASSWORD", secret)]));
        let output = format!("connecting with {secret}\n");
        let at = output.find('ö').unwrap() + 1; // inside "ö"
        let mut lines = LineSplitter::new(1024);
        let mut got = lines.push(&output.as_bytes()[..at]);
        got.extend(lines.push(&output.as_bytes()[at..]));
        assert_eq!(got.len(), 1);
        assert_eq!(scrubber.scrub(&got[0]), "connecting with ••••");
    }
}
