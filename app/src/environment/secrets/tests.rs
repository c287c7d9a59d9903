//! What counts as secret, how it is masked, and the scrubber's every encoded form.
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
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../stack/.env.production");
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
