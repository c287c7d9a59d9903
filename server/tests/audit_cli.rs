//! `epsm-ops audit` on real project directories: the bundled EPSM-like stack, and copies of it broken
//! on purpose. Exit codes are what a CI pipeline relies on; no output may carry a secret value.

use std::path::Path;

use end2end::{repo_root, run_console, stack_secrets};

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_epsm-ops"))
}

/// A copy of the stack's compose and env files in a temporary project directory, `edit` applied to
/// the env file's text.
fn project(edit: impl Fn(&str) -> String) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let stack = repo_root().join("stack");
    std::fs::copy(
        stack.join("docker-compose.production.yml"),
        dir.path().join("docker-compose.production.yml"),
    )
    .unwrap();
    let env = std::fs::read_to_string(stack.join(".env.production")).unwrap();
    let path = dir.path().join(".env.production");
    std::fs::write(&path, edit(&env)).unwrap();
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    dir
}

fn audit(dir: &Path, format: &str) -> (Option<i32>, String, String) {
    let out = run_console(
        bin(),
        &[
            "audit",
            "--project-dir",
            dir.to_str().unwrap(),
            "--format",
            format,
        ],
        &[],
    );
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    for secret in &stack_secrets() {
        assert!(
            !stdout.contains(secret) && !stderr.contains(secret),
            "a secret leaked:\n{stdout}\n{stderr}"
        );
    }
    (out.status.code(), stdout, stderr)
}

fn rules(json: &str) -> Vec<(String, String)> {
    let findings: serde_json::Value = serde_json::from_str(json).unwrap();
    findings
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["rule"].as_str().unwrap().to_string(),
                f["key"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[test]
fn the_bundled_stack_passes_with_notes_only() {
    let dir = project(|env| env.to_string());
    let (code, stdout, _) = audit(dir.path(), "table");
    assert_eq!(code, Some(0), "{stdout}");
    // Its URLs are built from ${REDIS_PASSWORD}; the one note is SECRET_KEY, which compose never uses.
    assert!(stdout.contains("unused-variable"), "{stdout}");
    assert!(
        stdout.ends_with("0 errors, 0 warnings, 1 note\n"),
        "{stdout}"
    );
}

#[test]
fn a_broken_env_file_fails_the_audit_with_its_findings() {
    let dir = project(|env| {
        env.replace("DEBUG=False", "DEBUG=True").replace(
            "POSTGRES_PASSWORD=${DB_PASSWORD}",
            "POSTGRES_PASSWORD=your-database-password",
        ) + "DEBUG=True\n"
    });
    let (code, stdout, _) = audit(dir.path(), "json");
    assert_eq!(code, Some(1), "{stdout}");
    let found = rules(&stdout);
    for (rule, key) in [
        ("debug-on", "DEBUG"),
        ("placeholder-secret", "POSTGRES_PASSWORD"),
        ("mismatch", "POSTGRES_PASSWORD"),
        ("duplicate-key", "DEBUG"),
    ] {
        assert!(
            found.contains(&(rule.into(), key.into())),
            "{rule} {key} not in {found:?}"
        );
    }
}

#[test]
fn a_malformed_env_file_is_an_error_with_its_line() {
    let dir = project(|env| env.replacen("DB_NAME=epsm_db", "DB_NAME=\"epsm_db", 1));
    let line = std::fs::read_to_string(dir.path().join(".env.production"))
        .unwrap()
        .lines()
        .position(|l| l.starts_with("DB_NAME="))
        .unwrap()
        + 1;
    let (code, stdout, _) = audit(dir.path(), "json");
    assert_eq!(code, Some(1));
    let findings: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(findings[0]["rule"], "env-file-syntax");
    assert_eq!(
        findings[0]["line"], line,
        "DB_NAME is on line {line} of the stack's env file: {stdout}"
    );
}

#[test]
fn a_missing_project_is_a_clear_error() {
    let (code, _, stderr) = audit(Path::new("/nonexistent/epsm"), "table");
    assert_eq!(code, Some(2));
    assert_eq!(
        stderr,
        "epsm-ops audit: cannot read /nonexistent/epsm/docker-compose.production.yml: no such file\n"
    );
}
