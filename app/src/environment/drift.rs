//! Drift: what runs is not what the files say now. A running container's environment that differs
//! from what compose resolves today (a redeploy is needed), and an env file changed since the last
//! successful deploy. Findings name keys and services, never values.

use std::collections::BTreeMap;

use super::{Finding, Severity};

/// Findings for one service: each variable compose now gives a value whose running container has a
/// different one, or none.
pub fn container_drift(
    service: &str,
    compose_file: &str,
    declared: &BTreeMap<String, Option<String>>,
    running: &BTreeMap<&str, &str>,
) -> Vec<Finding> {
    declared
        .iter()
        .filter_map(|(key, want)| {
            let want = want.as_deref()?;
            let problem = match running.get(key.as_str()) {
                Some(have) if *have == want => return None,
                Some(_) => "differs between the running container and what the files give now",
                None => "is not set in the running container, but the files give it now",
            };
            Some(Finding {
                severity: Severity::Warning,
                rule: "drift".into(),
                key: key.clone(),
                file: compose_file.to_string(),
                line: None,
                message: format!("`{key}` of service {service} {problem}"),
                fix: "deploy to apply the files (or revert the change to the files)".into(),
            })
        })
        .collect()
}

/// The env file's hash now against the one the last successful deploy recorded.
pub fn changed_since_deploy(
    env_file: &str,
    now_sha256: Option<&str>,
    last_success: Option<(i64, Option<&str>)>,
) -> Option<Finding> {
    let (id, deployed) = last_success?;
    let (now, deployed) = (now_sha256?, deployed?);
    (now != deployed).then(|| Finding {
        severity: Severity::Warning,
        rule: "changed-since-deploy".into(),
        key: String::new(),
        file: env_file.to_string(),
        line: None,
        message: format!("the env file changed since the last successful deploy (#{id})"),
        fix: "deploy to apply it, or restore the file as deployed".into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drift_names_keys_that_differ_or_are_missing_and_never_values() {
        let declared: BTreeMap<String, Option<String>> = [
            ("DB_PASSWORD", Some("new-secret-value")),
            ("DEBUG", Some("False")),
            ("ADDED", Some("1")),
            ("UNSET", None),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.map(String::from)))
        .collect();
        let running: BTreeMap<&str, &str> =
            [("DB_PASSWORD", "old-secret-value"), ("DEBUG", "False")]
                .into_iter()
                .collect();
        let findings = container_drift(
            "backend",
            "docker-compose.production.yml",
            &declared,
            &running,
        );
        let keys: Vec<&str> = findings.iter().map(|f| f.key.as_str()).collect();
        assert_eq!(keys, ["ADDED", "DB_PASSWORD"]);
        assert_eq!(
            findings[1].message,
            "`DB_PASSWORD` of service backend differs between the running container and what the files give now"
        );
        let text = format!("{findings:?}");
        assert!(!text.contains("secret-value"), "{text}");
    }

    #[test]
    fn a_changed_env_file_is_a_finding_only_against_a_successful_deploy() {
        assert!(changed_since_deploy(".env.production", Some("a"), Some((3, Some("a")))).is_none());
        let f = changed_since_deploy(".env.production", Some("b"), Some((3, Some("a")))).unwrap();
        assert_eq!(f.rule, "changed-since-deploy");
        assert!(f.message.ends_with("(#3)"));
        assert!(changed_since_deploy(".env.production", Some("b"), None).is_none());
    }
}
