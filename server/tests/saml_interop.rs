//! Logins with responses from an IdP the project did not write: pysaml2 with xmlsec1, answering the
//! console's real AuthnRequest, in the shapes ADFS (signed assertion, encrypted or not) and
//! Shibboleth (signed response, encrypted unsigned assertion) send. The console trusts it through
//! the metadata pysaml2 made, as it would Chalmers' IdP.

use std::path::Path;

use end2end::Console;
use end2end::pysaml2::{EPPN, PySaml2Idp, SHAPES};

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_epsm-ops"))
}

/// A started login: the client holding the session and the SAMLRequest the console sent.
async fn start_login(console: &Console) -> (reqwest::Client, String) {
    let client = console.anonymous_client();
    let reply = client
        .get(format!("{}/saml/login?return_to=/deploys", console.url))
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), 303);
    let location = url::Url::parse(reply.headers()["location"].to_str().unwrap()).unwrap();
    assert!(
        location
            .as_str()
            .starts_with("https://idp.example.org/idp/profile/SAML2/Redirect/SSO?"),
        "{location}"
    );
    let request = location
        .query_pairs()
        .find(|(k, _)| k == "SAMLRequest")
        .map(|(_, v)| v.into_owned())
        .unwrap();
    (client, request)
}

#[tokio::test]
async fn pysaml2_responses_in_the_adfs_and_shibboleth_shapes_log_in_and_a_changed_one_does_not() {
    let idp = PySaml2Idp::new(&["employee@chalmers.se"]);
    let metadata = idp.metadata_file().display().to_string();
    let admins = format!("{{ids=[\"{EPPN}\"]}}");
    let console = Console::start_anonymous(
        bin(),
        &[
            ("EPSM_OPS_AUTH_DEV_IDP", "false"),
            ("EPSM_OPS_AUTH_IDP_METADATA", metadata.as_str()),
            ("EPSM_OPS_AUTH_ADMINS", admins.as_str()),
        ],
    )
    .await;
    let sp_metadata = reqwest::get(format!("{}/saml/metadata", console.url))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    idp.register_sp(&sp_metadata);
    for shape in SHAPES {
        let (client, request) = start_login(&console).await;
        let response = idp.respond(shape, &request);
        let reply = client
            .post(format!("{}/saml/acs", console.url))
            .form(&[("SAMLResponse", response.as_str())])
            .send()
            .await
            .unwrap();
        let status = reply.status();
        let location = reply
            .headers()
            .get("location")
            .map(|l| l.to_str().unwrap().to_string());
        let body = reply.text().await.unwrap();
        assert_eq!(status, 303, "{shape}: {body}\n{}", console.log());
        assert_eq!(location.as_deref(), Some("/deploys"), "{shape}");
        let who = client
            .post(format!("{}/api/login_state", console.url))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let who: serde_json::Value = serde_json::from_str(&who).unwrap();
        assert_eq!(who["user"]["id"], EPPN, "{shape}: {who}");
        assert_eq!(who["user"]["display_name"], "Anna Andersson", "{shape}");
        assert_eq!(who["user"]["role"], "Admin", "{shape}: {who}");
    }
    // The same IdP's genuine response with the person changed after signing.
    let (client, request) = start_login(&console).await;
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD;
    let xml = String::from_utf8(b64.decode(idp.respond("adfs", &request)).unwrap()).unwrap();
    let changed = xml.replace(EPPN, "mallory@chalmers.se");
    assert_ne!(changed, xml);
    let reply = client
        .post(format!("{}/saml/acs", console.url))
        .form(&[("SAMLResponse", b64.encode(changed))])
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), 400);
    assert!(
        reply
            .text()
            .await
            .unwrap()
            .contains("not covered by a valid signature")
    );
}

/// How often the console below tries to read its metadata again.
const RETRY: std::time::Duration = std::time::Duration::from_secs(1);

#[tokio::test]
async fn without_its_idp_metadata_the_console_starts_says_why_login_waits_and_retries() {
    let idp = PySaml2Idp::new(&[]);
    let dir = tempfile::tempdir().unwrap();
    let later = dir.path().join("idp-metadata.xml");
    let path = later.display().to_string();
    let console = Console::start_anonymous(
        bin(),
        &[
            ("EPSM_OPS_AUTH_DEV_IDP", "false"),
            ("EPSM_OPS_AUTH_IDP_METADATA", path.as_str()),
            (
                "EPSM_OPS_AUTH_METADATA_RETRY_SECS",
                &RETRY.as_secs().to_string(),
            ),
        ],
    )
    .await;
    let get = |path: &str| {
        console
            .anonymous_client()
            .get(format!("{}{path}", console.url))
            .send()
    };
    assert_eq!(get("/healthz").await.unwrap().status(), 200);
    assert_eq!(get("/saml/metadata").await.unwrap().status(), 200);
    let login = get("/saml/login").await.unwrap();
    assert_eq!(login.status(), 503);
    let page = login.text().await.unwrap();
    assert!(
        page.contains("login unavailable") && page.contains(&path) && page.contains("retrying"),
        "{page}"
    );
    // The metadata appears: the console finds it on its own.
    std::fs::copy(idp.metadata_file(), &later).unwrap();
    // Found at the next retry: within two.
    let deadline = std::time::Instant::now() + end2end::with_margin(RETRY * 2);
    loop {
        let status = get("/saml/login").await.unwrap().status();
        if status == 303 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "login still {status} {:?} after the metadata appeared",
            end2end::with_margin(RETRY * 2)
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}
