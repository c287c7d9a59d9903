//! Differential test: our env-file parser against the real `docker compose` (v2, `config` needs no
//! engine). For every file of a corpus of ordinary and nasty env files, compose resolves each key
//! through `--env-file` into a service's environment, and our values must be the same - or, where
//! compose rejects the file, ours must reject it too.

use std::path::Path;
use std::process::Command;

use app::environment::envfile::parse;

/// (name, content). Keys must be valid interpolation names to be compared through compose.
fn corpus() -> Vec<(&'static str, String)> {
    let stack = Path::new(env!("CARGO_MANIFEST_DIR")).join("../stack/.env.production");
    vec![
        ("epsm-like stack", std::fs::read_to_string(stack).expect("stack env file")),
        (
            "quotes and escapes",
            "A='single $X \\n'\nB=\"tab\\tq\\\"bs\\\\\"\nC=\"dollar \\$E\"\nD=\"multi\nline\"\nE='it\\'s'\nF=\"keep \\q\"\n"
                .into(),
        ),
        ("comments", "# head\nE=1 # c\nF=a#b\nG=\"q\" # c\nH=tab\t#notcomment\n".into()),
        ("crlf and bom", "\u{feff}A=1\r\nB=two words \r\nC=\"q\"\r\n".into()),
        ("export and yaml style", "export A=1\nB: yaml\nexport   C = spaced \n".into()),
        (
            "interpolation",
            "X=1\nY=${X:-d}\nZ=${UNSET:-${X}}\nW=${X:+alt}\nV=$X$X\nU=$$X\nT=${UNSET-dash}\nS=\"${X}q\"\nR='${X}'\nQ=cost $5\n"
                .into(),
        ),
        ("octal escapes", "O=\"\\0101\\012\"\n".into()),
        ("empty values", "P=\nQ=\"\"\nR=''\nS= \n".into()),
        ("duplicates", "S=1\nS=2\n".into()),
        ("urls with passwords", "PW=p@ss:w/rd\nURL=redis://:${PW}@redis:6379/0\n".into()),
        ("unterminated quote", "A=\"open\nB=2\n".into()),
        ("key with a space", "A B=1\n".into()),
        ("required variable", "A=${MISSING:?needs a value}\n".into()),
        ("bad character in key", "A!=1\n".into()),
        ("bad interpolation", "A=${1X}\n".into()),
    ]
}

fn is_name(key: &str) -> bool {
    let mut chars = key.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Runs `docker compose config` with `env_text` as `--env-file` and a service whose environment maps
/// each key to `${KEY}`. Compose runs with an empty environment, as our parser is given one.
fn compose_resolves(env_text: &str, keys: &[String]) -> Result<serde_json::Value, String> {
    let dir = tempfile::tempdir().unwrap();
    let env_file = dir.path().join(".env.production");
    std::fs::write(&env_file, env_text).unwrap();
    let mut compose = String::from("services:\n  probe:\n    image: scratch\n    environment:\n");
    for key in keys {
        compose.push_str(&format!("      {key}: \"${{{key}}}\"\n"));
    }
    if keys.is_empty() {
        compose.push_str("      NONE: \"\"\n");
    }
    let compose_file = dir.path().join("docker-compose.production.yml");
    std::fs::write(&compose_file, compose).unwrap();
    let out = Command::new("docker")
        .args(["compose", "-p", "difftest", "--env-file"])
        .arg(&env_file)
        .arg("-f")
        .arg(&compose_file)
        .args(["config", "--format", "json"])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", dir.path())
        .output()
        .expect("run docker compose (scripts/setup.sh installs it)");
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    Ok(serde_json::from_slice(&out.stdout).expect("compose config prints JSON"))
}

#[test]
fn our_env_file_values_agree_with_docker_compose() {
    let no_env = |_: &str| None;
    let mut compared = 0;
    for (name, text) in corpus() {
        match parse(&text, &no_env) {
            Err(ours) => {
                let theirs = compose_resolves(&text, &[]);
                assert!(
                    theirs.is_err(),
                    "{name}: we reject ({ours}) but compose accepts"
                );
            }
            Ok(file) => {
                let resolved = file.resolved();
                // `${COMPOSE_PROJECT_NAME}` is the project's name as compose settled it (`-p` here),
                // whatever the file says: compose's own variable, not the file's value.
                let keys: Vec<String> = resolved
                    .keys()
                    .filter(|k| is_name(k) && **k != "COMPOSE_PROJECT_NAME")
                    .map(|k| k.to_string())
                    .collect();
                let config = compose_resolves(&text, &keys)
                    .unwrap_or_else(|e| panic!("{name}: we accept but compose rejects:\n{e}"));
                let environment = &config["services"]["probe"]["environment"];
                for key in &keys {
                    // `config` writes a literal `$` as `$$` so its output stays valid compose.
                    let theirs = environment[key].as_str().map(|v| v.replace("$$", "$"));
                    let ours = resolved[key.as_str()];
                    assert_eq!(theirs.as_deref(), Some(ours), "{name}: value of {key}");
                    compared += 1;
                }
            }
        }
    }
    assert!(compared > 40, "only {compared} values compared");
}
