//! An IdP the project did not write: pysaml2 (PyPI) with xmlsec1 (Debian), driven through
//! `end2end/pysaml2/idp.py` in the virtualenv `scripts/setup.sh` makes at `.tools/pysaml2`. Its own
//! RSA key and certificate (openssl), its own metadata, and responses to the console's real
//! AuthnRequest in the shapes ADFS and Shibboleth send.

use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use crate::healthcheck::with_margin;
use crate::host::repo_root;

/// The person the IdP vouches for.
pub const EPPN: &str = "anna@chalmers.se";

/// Starting `idp.py` (Python, pysaml2's imports, the configuration): 0.96 s median of five runs of
/// `idp.py metadata` on a quiet 2-core machine (farm-bench, 2026-12-01).
pub const IDP_START_SEEN: Duration = Duration::from_secs(1);

/// The IdP's answer to a login (parse the request, sign and encrypt through xmlsec1): at most 2 s,
/// as seen in `server/tests/saml_interop.rs` (five `idp.py respond` runs, each with its own start,
/// and a console in 9.0 s).
pub const IDP_ANSWER_SEEN: Duration = Duration::from_secs(2);

/// A pysaml2 IdP in a temporary directory.
pub struct PySaml2Idp {
    dir: tempfile::TempDir,
    pub entity_id: String,
}

/// The shapes `idp.py` makes (see its docstring).
pub const SHAPES: [&str; 4] = ["adfs", "adfs-encrypted", "shibboleth", "signed-both"];

impl PySaml2Idp {
    /// A new IdP with a fresh 2048-bit key; `affiliations` go into eduPersonScopedAffiliation. Its
    /// endpoints are on https://idp.example.org (nothing answers there: the tests post its
    /// responses themselves).
    pub fn new(affiliations: &[&str]) -> PySaml2Idp {
        PySaml2Idp::at("https://idp.example.org", affiliations)
    }

    /// A new IdP whose endpoints are under `base` (`serve` answers there).
    pub fn at(base: &str, affiliations: &[&str]) -> PySaml2Idp {
        PySaml2Idp::with_cert_days(base, affiliations, 2)
    }

    /// `at`, its signing certificate valid `days` days from now.
    pub fn with_cert_days(base: &str, affiliations: &[&str], days: u32) -> PySaml2Idp {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = |name: &str| dir.path().join(name).display().to_string();
        crate::host::self_signed_certificate(
            &dir.path().join("idp.key"),
            &dir.path().join("idp.crt"),
            "pysaml2 test IdP",
            days,
        );
        let entity_id = format!("{base}/idp/shibboleth");
        let sso_url = if base.starts_with("https://") {
            format!("{base}/idp/profile/SAML2/Redirect/SSO")
        } else {
            format!("{base}/sso")
        };
        let config = serde_json::json!({
            "entity_id": entity_id,
            "sso_url": sso_url,
            "slo_url": format!("{base}/slo"),
            "key": path("idp.key"),
            "cert": path("idp.crt"),
            "sp_metadata": path("sp-metadata.xml"),
            "user": {
                "eppn": EPPN,
                "mail": "anna.andersson@chalmers.se",
                "display_name": "Anna Andersson",
                "affiliations": affiliations,
            }
        });
        std::fs::write(path("config.json"), config.to_string()).expect("write config");
        PySaml2Idp { dir, entity_id }
    }

    fn run(&self, args: &[&str]) -> String {
        let python = repo_root().join(".tools/pysaml2/bin/python");
        assert!(
            python.exists(),
            "{} is missing: run scripts/setup.sh",
            python.display()
        );
        let out = Command::new(python)
            .arg(repo_root().join("end2end/pysaml2/idp.py"))
            .args(args)
            .output()
            .expect("run idp.py");
        assert!(
            out.status.success(),
            "idp.py {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout)
            .expect("UTF-8")
            .trim()
            .to_string()
    }

    fn config(&self) -> String {
        self.dir.path().join("config.json").display().to_string()
    }

    /// Writes the IdP's metadata (as pysaml2 makes it) and returns its path.
    pub fn metadata_file(&self) -> PathBuf {
        let xml = self.run(&["metadata", &self.config()]);
        let file = self.dir.path().join("idp-metadata.xml");
        std::fs::write(&file, xml).expect("write IdP metadata");
        file
    }

    /// Registers the SP (its metadata XML, as `/saml/metadata` serves it).
    pub fn register_sp(&self, metadata: &str) {
        std::fs::write(self.dir.path().join("sp-metadata.xml"), metadata)
            .expect("write SP metadata");
    }

    /// Serves the IdP's pages at http://127.0.0.1:`port` in `shape`, once it answers; stopped when
    /// the returned server is dropped, however the test ends.
    pub async fn serve(&self, shape: &str, port: u16) -> IdpServer {
        let server = IdpServer(
            Command::new(repo_root().join(".tools/pysaml2/bin/python"))
                .arg(repo_root().join("end2end/pysaml2/idp.py"))
                .args(["serve", &self.config(), shape, &port.to_string()])
                .spawn()
                .expect("start idp.py serve"),
        );
        let deadline = Instant::now() + with_margin(IDP_START_SEEN);
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            assert!(Instant::now() < deadline, "the IdP did not start");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        server
    }

    /// The base64 SAMLResponse answering `saml_request` (the SAMLRequest query parameter of the
    /// console's redirect) in `shape`.
    pub fn respond(&self, shape: &str, saml_request: &str) -> String {
        self.run(&["respond", &self.config(), shape, saml_request])
    }
}

/// `idp.py serve` running; killed on drop.
pub struct IdpServer(Child);

impl Drop for IdpServer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
