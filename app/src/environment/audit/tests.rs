//! The audit rules, table by table.
use super::*;
use crate::environment::envfile::parse;

const COMPOSE: &str = "services:\n  db:\n    environment:\n      POSTGRES_PASSWORD: ${POSTGRES_PASSWORD}\n      \
                       POSTGRES_USER: ${POSTGRES_USER:-epsm}\n  backend:\n    environment:\n      \
                       DB_PASSWORD: ${DB_PASSWORD:-epsm_secure_password}\n      NEEDED: ${NEEDED:?set it}\n      \
                       LITERAL: $$NOT_A_VAR\n      # OLD: ${COMMENTED}\n      DEBUG: $DEBUG\n";

fn run(env_text: &str, compose: &str, mode: Option<u32>, retired: &[&str]) -> Vec<Finding> {
    let env = parse(env_text, &|_| None).unwrap();
    let refs = compose_references(compose);
    let retired: Vec<String> = retired.iter().map(|s| s.to_string()).collect();
    audit(&AuditInput {
        env: &env,
        env_file_name: ".env.production",
        compose: &refs,
        compose_file_name: "docker-compose.production.yml",
        env_file_mode: mode,
        retired_files: &retired,
        secret_name_parts: &super::super::secrets::secret_name_parts(&[]),
        env_file_in_git: None,
    })
}

#[test]
fn an_env_file_in_git_is_an_error_and_one_not_ignored_a_warning() {
    let env = parse("DEBUG=False\n", &|_| None).unwrap();
    let with = |tracking| {
        audit(&AuditInput {
            env: &env,
            env_file_name: ".env.production",
            compose: &[],
            compose_file_name: "docker-compose.production.yml",
            env_file_mode: Some(0o600),
            retired_files: &[],
            secret_name_parts: &super::super::secrets::secret_name_parts(&[]),
            env_file_in_git: tracking,
        })
        .into_iter()
        .filter(|f| f.rule.starts_with("env-file-"))
        .map(|f| (f.rule, f.severity))
        .collect::<Vec<_>>()
    };
    assert_eq!(
        with(Some(GitTracking::Tracked)),
        [("env-file-in-git".to_string(), Severity::Error)]
    );
    assert_eq!(
        with(Some(GitTracking::NotIgnored)),
        [("env-file-not-ignored".to_string(), Severity::Warning)]
    );
    assert!(with(Some(GitTracking::Ignored)).is_empty());
    assert!(with(None).is_empty(), "no git checkout, nothing to say");
}

fn rules(findings: &[Finding]) -> Vec<(String, String, Severity)> {
    findings
        .iter()
        .map(|f| (f.rule.clone(), f.key.clone(), f.severity))
        .collect()
}

fn has(findings: &[Finding], rule: &str, key: &str) -> bool {
    findings.iter().any(|f| f.rule == rule && f.key == key)
}

#[test]
fn compose_references_keep_lines_operators_and_skip_escapes_and_comments() {
    let refs = compose_references(COMPOSE);
    let got: Vec<_> = refs
        .iter()
        .map(|r| (r.name.as_str(), r.line, r.operator.as_deref()))
        .collect();
    assert_eq!(
        got,
        [
            ("POSTGRES_PASSWORD", 4, None),
            ("POSTGRES_USER", 5, Some(":-")),
            ("DB_PASSWORD", 8, Some(":-")),
            ("NEEDED", 9, Some(":?")),
            ("DEBUG", 12, None),
        ]
    );
}

#[test]
fn each_rule_fires_on_its_case_and_not_on_a_clean_file() {
    let strong = "Hn4Vw8Rk2Tq6Ly9ZsQp";
    let clean = format!(
        "DEBUG=False\nPOSTGRES_PASSWORD={strong}\nDB_PASSWORD=${{POSTGRES_PASSWORD}}\nPOSTGRES_USER=epsm\nNEEDED=1\n"
    );
    let findings = run(&clean, COMPOSE, Some(0o600), &[]);
    // The only finding of a clean env file here is the compose file's own secret default.
    assert_eq!(
        rules(&findings),
        [(
            "secret-default-in-compose".into(),
            "DB_PASSWORD".into(),
            Severity::Error
        )]
    );

    let cases: &[(&str, &str, &str)] = &[
        (
            "POSTGRES_PASSWORD=your-database-password",
            "placeholder-secret",
            "POSTGRES_PASSWORD",
        ),
        (
            "POSTGRES_PASSWORD=CHANGE ME",
            "placeholder-secret",
            "POSTGRES_PASSWORD",
        ),
        (
            "POSTGRES_PASSWORD=short",
            "weak-secret",
            "POSTGRES_PASSWORD",
        ),
        ("NEEDED=1\nNEEDED=2", "duplicate-key", "NEEDED"),
        (
            "DB_PASSWORD=aaaaaaaaaaaaaaaaaaaa\nPOSTGRES_PASSWORD=bbbbbbbbbbbbbbbbbbbb",
            "mismatch",
            "POSTGRES_PASSWORD",
        ),
        ("DB_NAME=a\nPOSTGRES_DB=b", "mismatch", "POSTGRES_DB"),
        (
            "REDIS_PASSWORD=right-password-123456\nREDIS_URL=redis://:wrong-password-12345@redis:6379/0",
            "mismatch",
            "REDIS_URL",
        ),
        (
            "REDIS_URL=redis://:p@redis:6379/0",
            "secret-in-url",
            "REDIS_URL",
        ),
        (
            "POSTGRES_USER=epsm\nDB_URL=postgres://u:${POSTGRES_PASSWORD}@db/x",
            "unused-variable",
            "DB_URL",
        ),
        ("DEBUG=True", "debug-on", "DEBUG"),
        (
            "VITE_API_BASE_URL=http://epsm.chalmers.se/api",
            "insecure-url",
            "VITE_API_BASE_URL",
        ),
        ("UNUSED_THING=1", "unused-variable", "UNUSED_THING"),
    ];
    for (extra, rule, key) in cases {
        let findings = run(&format!("{clean}{extra}\n"), COMPOSE, Some(0o600), &[]);
        assert!(
            has(&findings, rule, key),
            "{extra:?} should raise {rule} on {key}: {:?}",
            rules(&findings)
        );
    }
    // Negative twins: the same keys with good values raise nothing of that rule.
    let good: &[(&str, &str, &str)] = &[
        (
            "REDIS_PASSWORD=right-password-123456\nREDIS_URL=redis://:right-password-123456@redis:6379/0",
            "mismatch",
            "REDIS_URL",
        ),
        ("DB_NAME=a\nPOSTGRES_DB=a", "mismatch", "POSTGRES_DB"),
        (
            "VITE_WS_URL=wss://epsm.chalmers.se/ws",
            "insecure-url",
            "VITE_WS_URL",
        ),
        (
            "DB_URL=postgres://u:${POSTGRES_PASSWORD}@db/x",
            "secret-in-url",
            "DB_URL",
        ),
        // Compose reads its own settings from the env file (EPSM's sets the project name).
        (
            "COMPOSE_PROJECT_NAME=epsm_prod",
            "unused-variable",
            "COMPOSE_PROJECT_NAME",
        ),
    ];
    for (extra, rule, key) in good {
        let findings = run(&format!("{clean}{extra}\n"), COMPOSE, Some(0o600), &[]);
        assert!(
            !has(&findings, rule, key),
            "{extra:?} must not raise {rule}"
        );
    }
}

#[test]
fn missing_required_variables_and_file_facts_are_found() {
    let findings = run(
        "DEBUG=False\n",
        COMPOSE,
        Some(0o644),
        &[".env", "docker-compose.prod.yml"],
    );
    for key in ["POSTGRES_PASSWORD", "NEEDED"] {
        let f = findings
            .iter()
            .find(|f| f.rule == "missing-variable" && f.key == key)
            .unwrap();
        assert_eq!(f.file, "docker-compose.production.yml");
        assert_eq!(f.severity, Severity::Error);
    }
    assert!(
        !has(&findings, "missing-variable", "POSTGRES_USER"),
        "it has a default"
    );
    assert!(!has(&findings, "missing-variable", "DEBUG"));
    let perm = findings
        .iter()
        .find(|f| f.rule == "env-file-permissions")
        .unwrap();
    assert!(perm.message.contains("644"));
    let retired: Vec<_> = findings
        .iter()
        .filter(|f| f.rule == "retired-file")
        .map(|f| f.file.as_str())
        .collect();
    assert_eq!(retired, [".env", "docker-compose.prod.yml"]);
    assert_eq!(findings[0].severity, Severity::Error, "errors come first");
}

#[test]
fn no_finding_carries_a_secret_value() {
    let secret = "pgdemo-Hn4Vw8Rk2Tq6Ly9Zs";
    let env = format!(
        "DEBUG=True\nDB_PASSWORD={secret}\nPOSTGRES_PASSWORD=other-{secret}\nDB_PASSWORD={secret}x\n\
         REDIS_PASSWORD=r-{secret}\nREDIS_URL=redis://:{secret}@redis:6379/0\n"
    );
    let findings = run(&env, COMPOSE, Some(0o644), &[]);
    assert!(findings.len() > 5);
    let all = format!("{findings:?}");
    assert!(
        !all.contains("Hn4Vw8"),
        "a secret leaked into the findings: {all}"
    );
}
