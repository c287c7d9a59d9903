//! `epsm-ops doctor` against a real host setup: a copy of the EPSM-like stack cloned from its own git
//! remote, the real Docker engine, compose and git, a pysaml2 IdP's metadata, an SP certificate made
//! with openssl, private data and backups directories. All ok first; then each check broken in turn
//! (and mended): its line fails (or warns) with its fix, and the exit code says so.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use end2end::pysaml2::PySaml2Idp;
use end2end::{StackProject, private_file, self_signed_certificate};

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_epsm-ops"))
}

/// A key and a self-signed certificate valid `days` days, written where the console keeps its own.
fn sp_certificate(data: &Path, days: u32) {
    let saml = data.join("saml");
    std::fs::create_dir_all(&saml).unwrap();
    self_signed_certificate(
        &saml.join("sp.key"),
        &saml.join("sp.crt"),
        "ops.epsm.example",
        days,
    );
}

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// One run of the doctor: its exit code and each check's status with its text (line and fix).
struct Diagnosis {
    code: i32,
    checks: BTreeMap<String, (String, String)>,
    output: String,
}

impl Diagnosis {
    /// The check `name`'s status ("ok", "warn", "FAIL") and text.
    fn of(&self, name: &str) -> (&str, &str) {
        let (status, text) = self
            .checks
            .get(name)
            .unwrap_or_else(|| panic!("no check {name:?} in:\n{}", self.output));
        (status, text)
    }

    /// The checks that are not ok, by name.
    fn not_ok(&self) -> Vec<&str> {
        self.checks
            .iter()
            .filter(|(_, (status, _))| status != "ok")
            .map(|(name, _)| name.as_str())
            .collect()
    }
}

struct Setup {
    project: StackProject,
    data_parent: tempfile::TempDir,
    data: PathBuf,
    env: Vec<(String, String)>,
}

impl Setup {
    fn good() -> Setup {
        let project = StackProject::new("epsmdoctor");
        chmod(&project.dir.path().join(".env.production"), 0o600);
        let data_parent = tempfile::tempdir().unwrap();
        let data = data_parent.path().join("data");
        std::fs::create_dir(&data).unwrap();
        chmod(&data, 0o700);
        let backups = data.join("backups");
        std::fs::create_dir(&backups).unwrap();
        chmod(&backups, 0o700);
        std::fs::write(backups.join("epsm-1.dump"), vec![0u8; 4096]).unwrap();
        sp_certificate(&data, 3650);
        let idp = PySaml2Idp::with_cert_days("https://idp.example.org", &[], 3650);
        let metadata = idp.metadata_file();
        // The metadata file outlives the IdP's directory.
        let kept = data_parent.path().join("idp-metadata.xml");
        std::fs::copy(&metadata, &kept).unwrap();
        // One alert channel, its secrets private.
        let url = private_file(data_parent.path(), "hook.url", "https://hooks.example/x");
        let secret = private_file(data_parent.path(), "hook.secret", "s3cret");
        let config = private_file(
            data_parent.path(),
            "epsm-ops.toml",
            &format!(
                "[[alerts.channels]]\nname = \"hook\"\nkind = \"webhook\"\nurl_file = {url:?}\n\
                 secret_file = {secret:?}\n"
            ),
        );
        let env = [
            ("EPSM_OPS_CONFIG", config),
            (
                "EPSM_OPS_PROJECT_DIR",
                project.dir.path().display().to_string(),
            ),
            ("EPSM_OPS_DATA_DIR", data.display().to_string()),
            ("EPSM_OPS_PUBLIC_URL", "https://ops.epsm.example/".into()),
            ("EPSM_OPS_AUTH_IDP_METADATA", kept.display().to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        Setup {
            project,
            data_parent,
            data,
            env,
        }
    }

    /// Runs the doctor with the setup's configuration and `more` (which may override it).
    fn doctor(&self, more: &[(&str, &str)]) -> Diagnosis {
        let mut command = Command::new(bin());
        command.arg("doctor").current_dir(self.project.dir.path());
        for (k, v) in &self.env {
            command.env(k, v);
        }
        for (k, v) in more {
            command.env(k, v);
        }
        let out = command.output().unwrap();
        let output = String::from_utf8_lossy(&out.stdout).into_owned();
        let mut checks = BTreeMap::new();
        let mut last: Option<String> = None;
        for line in output.lines() {
            if let Some(fix) = line.trim_start().strip_prefix("fix: ") {
                let name = last.clone().unwrap();
                let entry: &mut (String, String) = checks.get_mut(&name).unwrap();
                entry.1.push_str(&format!(" | fix: {fix}"));
                continue;
            }
            let Some((status, rest)) = line.split_once(' ') else {
                continue;
            };
            if !["ok", "warn", "FAIL"].contains(&status) {
                continue;
            }
            // The name is padded to 24 columns after the 6 of the status.
            let name = line.get(6..30).unwrap_or_default().trim().to_string();
            let text = line.get(30..).unwrap_or(rest).to_string();
            checks.insert(name.clone(), (status.to_string(), text));
            last = Some(name);
        }
        Diagnosis {
            code: out.status.code().unwrap_or(-1),
            checks,
            output: format!("{output}{}", String::from_utf8_lossy(&out.stderr)),
        }
    }
}

/// Runs `doctor` with `env` and asserts that `check` (only it) is `status`, its text containing
/// `says`; a failure exits 1, a warning 0.
fn broken(setup: &Setup, env: &[(&str, &str)], check: &str, status: &str, says: &str) {
    let d = setup.doctor(env);
    let (got, text) = d.of(check);
    assert_eq!(got, status, "{check}:\n{}", d.output);
    assert!(text.contains(says), "{check}: {text:?} lacks {says:?}");
    assert_eq!(d.not_ok(), [check], "{}", d.output);
    assert_eq!(d.code, if status == "FAIL" { 1 } else { 0 }, "{}", d.output);
}

#[tokio::test]
async fn a_good_host_is_all_ok_and_each_broken_check_fails_with_its_fix() {
    let setup = Setup::good();
    let d = setup.doctor(&[]);
    assert_eq!(d.not_ok(), Vec::<&str>::new(), "{}", d.output);
    assert_eq!(d.code, 0, "{}", d.output);
    for name in [
        "configuration",
        "Docker engine",
        "compose",
        "git",
        "env file",
        "git checkout",
        "git remote",
        "IdP metadata",
        "IdP signing certificate",
        "SP certificate",
        "public URL",
        "data directory",
        "backups directory",
        "alert channels",
        "development IdP",
    ] {
        assert_eq!(d.of(name).0, "ok", "{name}:\n{}", d.output);
    }
    assert!(
        d.output.ends_with("15 ok, 0 warning(s), 0 failed\n"),
        "{}",
        d.output
    );

    // The configuration: the project directory does not exist. Nothing else can be checked.
    let d = setup.doctor(&[("EPSM_OPS_PROJECT_DIR", "/nonexistent/epsm")]);
    assert_eq!(d.of("configuration").0, "FAIL", "{}", d.output);
    assert!(
        d.of("configuration").1.contains("project.dir"),
        "{}",
        d.output
    );
    assert_eq!(d.checks.len(), 1, "{}", d.output);
    assert_eq!(d.code, 1);

    // The engine, compose, git.
    broken(
        &setup,
        &[("EPSM_OPS_DOCKER_HOST", "unix:///nonexistent/docker.sock")],
        "Docker engine",
        "FAIL",
        "fix: start the Docker engine",
    );
    broken(
        &setup,
        &[("EPSM_OPS_DOCKER_CLI", "/bin/false")],
        "compose",
        "FAIL",
        "fix: install the Docker Compose v2 plugin",
    );
    let docker = String::from_utf8(
        Command::new("sh")
            .args(["-c", "command -v docker"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    // Without git, the checkout cannot be read either.
    let d = setup.doctor(&[
        ("PATH", "/nonexistent"),
        ("EPSM_OPS_DOCKER_CLI", docker.trim()),
    ]);
    assert_eq!(d.not_ok(), ["git", "git checkout"], "{}", d.output);
    assert!(d.of("git").1.contains("cannot run git"), "{}", d.output);
    assert!(d.of("git").1.contains("fix: install git"), "{}", d.output);
    assert_eq!(d.code, 1);

    // The project's files.
    let d = setup.doctor(&[("EPSM_OPS_PROJECT_COMPOSE_FILE", "docker-compose.nope.yml")]);
    assert_eq!(d.not_ok(), ["configuration"], "{}", d.output);
    assert!(
        d.of("configuration")
            .1
            .contains("docker-compose.nope.yml\": no such file")
    );
    let env_file = setup.project.dir.path().join(".env.production");
    chmod(&env_file, 0o644);
    broken(&setup, &[], "env file", "FAIL", "chmod 600");
    chmod(&env_file, 0o600);

    // The checkout and its remote.
    let dot_git = setup.project.dir.path().join(".git");
    let moved = setup.project.dir.path().join("git.moved");
    std::fs::rename(&dot_git, &moved).unwrap();
    broken(
        &setup,
        &[],
        "git checkout",
        "FAIL",
        "fix: clone EPSM into project.dir",
    );
    std::fs::rename(&moved, &dot_git).unwrap();
    broken(
        &setup,
        &[("EPSM_OPS_PROJECT_GIT_REMOTE", "/nonexistent/epsm.git")],
        "git remote",
        "FAIL",
        "fix: check project.git.remote",
    );

    // The IdP: its metadata unreadable; its signing certificate near its end.
    let d = setup.doctor(&[("EPSM_OPS_AUTH_IDP_METADATA", "/nonexistent/idp.xml")]);
    assert_eq!(d.of("IdP metadata").0, "FAIL", "{}", d.output);
    assert!(
        d.of("IdP metadata")
            .1
            .contains("fix: check auth.idp_metadata")
    );
    assert!(!d.checks.contains_key("IdP signing certificate"));
    assert_eq!(d.code, 1);
    let soon_idp = PySaml2Idp::with_cert_days("https://idp.example.org", &[], 10);
    let soon = soon_idp.metadata_file();
    broken(
        &setup,
        &[("EPSM_OPS_AUTH_IDP_METADATA", soon.to_str().unwrap())],
        "IdP signing certificate",
        "warn",
        "expires in ",
    );

    // The console's own certificate near its end.
    sp_certificate(&setup.data, 10);
    broken(&setup, &[], "SP certificate", "warn", "expires in ");
    sp_certificate(&setup.data, 3650);

    // Plain HTTP on the network.
    broken(
        &setup,
        &[("EPSM_OPS_PUBLIC_URL", "http://ops.epsm.example/")],
        "public URL",
        "FAIL",
        "in the clear",
    );

    // The private directories, and room for backups: a (sparse) backup twice the free space leaves
    // no room for two more, even if the disk's other users free some meanwhile.
    chmod(&setup.data, 0o755);
    broken(&setup, &[], "data directory", "FAIL", "chmod 700");
    chmod(&setup.data, 0o700);
    let huge = setup.data.join("backups/epsm-2.dump");
    let df = Command::new("df")
        .args(["--output=avail", "-B1"])
        .arg(&setup.data)
        .output()
        .unwrap();
    let free: u64 = String::from_utf8_lossy(&df.stdout)
        .lines()
        .nth(1)
        .and_then(|l| l.trim().parse().ok())
        .expect("df's free bytes");
    std::fs::File::create(&huge)
        .unwrap()
        .set_len((free * 2).min(15 << 40))
        .unwrap();
    broken(
        &setup,
        &[],
        "backups directory",
        "FAIL",
        "two more backups must fit",
    );
    std::fs::remove_file(&huge).unwrap();

    // An alert channel's secret readable by others; no channel at all.
    let secret = setup.data_parent.path().join("hook.secret");
    chmod(&secret, 0o644);
    broken(&setup, &[], "alert channels", "FAIL", "chmod 600");
    chmod(&secret, 0o600);
    let bare = private_file(setup.data_parent.path(), "bare.toml", "");
    broken(
        &setup,
        &[("EPSM_OPS_CONFIG", bare.as_str())],
        "alert channels",
        "warn",
        "nobody is told",
    );

    // The development IdP (on loopback only, or the configuration itself refuses it).
    let d = setup.doctor(&[
        ("EPSM_OPS_AUTH_DEV_IDP", "true"),
        ("EPSM_OPS_PUBLIC_URL", "http://127.0.0.1:3000/"),
    ]);
    assert_eq!(d.of("development IdP").0, "FAIL", "{}", d.output);
    assert!(
        d.of("development IdP")
            .1
            .contains("anybody can log in as anyone")
    );
    assert_eq!(d.of("public URL").0, "warn", "{}", d.output);
    assert_eq!(d.code, 1);

    // Mended: all ok again.
    assert_eq!(setup.doctor(&[]).not_ok(), Vec::<&str>::new());
}
