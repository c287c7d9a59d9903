//! Authorization over the real server and the real SAML flow (the development IdP signs and
//! encrypts with real keys): every page, server function and route for anonymous, viewer, deployer
//! and admin; refusals and logins in the audit log; the outsider; CSRF; logout; replay and a forged
//! response at the ACS.

use std::path::Path;

use end2end::{ADMIN, Console, DEPLOYER, OUTSIDER, VIEWER};

/// What a request must get.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Expect {
    /// 303 to the login (pages) or 401 (server functions, streams).
    LogIn,
    /// 403.
    Refused,
    /// Past the guard: anything but 401/403 (the request itself may still fail, e.g. 404).
    Allowed,
}

use Expect::*;

/// A project directory whose compose file is broken: a deploy started by the matrix fails at its
/// preflight instead of deploying anything.
fn broken_project() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("docker-compose.production.yml"),
        "services: [\n",
    )
    .unwrap();
    std::fs::write(dir.path().join(".env.production"), "DEBUG=False\n").unwrap();
    dir
}

async fn start() -> (Console, tempfile::TempDir) {
    let project = broken_project();
    let dir = project.path().display().to_string();
    let console = Console::start(
        Path::new(env!("CARGO_BIN_EXE_epsm-ops")),
        &[
            ("EPSM_OPS_PROJECT_DIR", dir.as_str()),
            ("EPSM_OPS_PROJECT_NAME", "epsmauthz"),
            ("EPSM_OPS_AUTH_ALLOW_UNSOLICITED", "true"),
        ],
    )
    .await;
    (console, project)
}

#[tokio::test]
async fn every_page_function_and_route_gives_each_role_exactly_its_outcome() {
    let (console, _project) = start().await;
    let clients = [
        ("anonymous", console.anonymous_client()),
        ("viewer", console.login(VIEWER).await.unwrap()),
        ("deployer", console.login(DEPLOYER).await.unwrap()),
        ("admin", console.login(ADMIN).await.unwrap()),
    ];
    // (method, path, form, [anonymous, viewer, deployer, admin])
    type Row<'a> = (&'a str, &'a str, &'a [(&'a str, &'a str)], [Expect; 4]);
    let everyone = [LogIn, Allowed, Allowed, Allowed];
    let deployers = [LogIn, Refused, Allowed, Allowed];
    let admins = [LogIn, Refused, Refused, Allowed];
    let public = [Allowed, Allowed, Allowed, Allowed];
    let matrix: &[Row] = &[
        ("GET", "/", &[], everyone),
        ("GET", "/health", &[], everyone),
        ("GET", "/deploys", &[], everyone),
        ("GET", "/deploys/1", &[], everyone),
        ("GET", "/environment", &[], everyone),
        ("GET", "/backups", &[], everyone),
        ("GET", "/audit", &[], everyone),
        ("GET", "/notifications", &[], everyone),
        ("POST", "/api/notifications", &[], admins),
        (
            "POST",
            "/api/notifications_test",
            &[("channel", "none")],
            admins,
        ),
        ("POST", "/api/engine_status", &[], everyone),
        ("POST", "/api/project_info", &[], everyone),
        ("POST", "/api/health_report", &[], everyone),
        ("POST", "/api/environment_report", &[], everyone),
        ("POST", "/api/audit_log", &[], everyone),
        ("POST", "/api/deploy_list", &[], everyone),
        ("POST", "/api/deploy_get", &[("id", "1")], everyone),
        ("POST", "/api/backup_list", &[], everyone),
        ("POST", "/api/backup_policy", &[], everyone),
        ("POST", "/api/overview", &[], everyone),
        ("POST", "/api/deploy_changes", &[], everyone),
        (
            "POST",
            "/api/deploy_changes",
            &[("fetch", "true")],
            deployers,
        ),
        ("GET", "/api/health/events", &[], everyone),
        ("GET", "/api/logs/backend", &[], everyone),
        ("GET", "/api/deploys/1/events", &[], everyone),
        ("GET", "/deploys/1/log.txt", &[], everyone),
        ("POST", "/api/deploy_start", &[], deployers),
        ("POST", "/api/deploy_cancel", &[("id", "999")], deployers),
        ("POST", "/api/deploy_rollback", &[("id", "999")], deployers),
        ("POST", "/api/backup_start", &[], deployers),
        ("POST", "/api/backup_drill", &[], deployers),
        (
            "POST",
            "/api/deploy_undo_choices",
            &[("id", "999")],
            deployers,
        ),
        ("POST", "/api/deploy_undo", &[("id", "999")], deployers),
        (
            "POST",
            "/api/deploy_undo",
            &[("id", "999"), ("with_data", "true")],
            admins,
        ),
        ("GET", "/backups/999/download", &[], deployers),
        (
            "POST",
            "/api/deploy_start",
            &[("options[recreate_volumes]", "true")],
            admins,
        ),
        (
            "POST",
            "/api/deploy_start",
            &[("options[discard_local_changes]", "true")],
            admins,
        ),
        (
            "POST",
            "/api/backup_delete",
            &[("id", "999"), ("confirm", "x")],
            admins,
        ),
        (
            "POST",
            "/api/backup_restore",
            &[("id", "999"), ("confirm", "x")],
            admins,
        ),
        ("POST", "/api/backup_restore_facts", &[], admins),
        (
            "POST",
            "/api/maintenance_prune",
            &[("target", "DanglingImages")],
            admins,
        ),
        ("GET", "/saml/metadata", &[], public),
        ("GET", "/healthz", &[], public),
        ("GET", "/metrics", &[], public),
        ("POST", "/api/login_state", &[], public),
    ];
    let mut wrong = Vec::new();
    for (method, path, form, expected) in matrix {
        for ((who, client), expect) in clients.iter().zip(expected) {
            let url = format!("{}{path}", console.url);
            let request = if *method == "GET" {
                client.get(&url)
            } else {
                client.post(&url).form(form)
            };
            let reply = request.send().await.unwrap();
            let status = reply.status().as_u16();
            let location = reply
                .headers()
                .get("location")
                .and_then(|l| l.to_str().ok())
                .unwrap_or("")
                .to_string();
            let got = match status {
                401 => LogIn,
                303 if location.starts_with("/saml/login?return_to=") => LogIn,
                403 => Refused,
                _ => Allowed,
            };
            if got != *expect {
                wrong.push(format!(
                    "{method} {path} as {who}: {status} {location}, want {expect:?}"
                ));
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));

    // Refusals name who and what in the audit log; the people logged in are there too.
    let (_, audit) = console.call("audit_log", &[]).await;
    for expected in [
        "auth.refused",
        "Vera Viewer (viewer@dev.idp)",
        "/api/deploy_start",
        "this needs the deployer role; you are viewer",
        "Dan Deployer (deployer@dev.idp)",
    ] {
        assert!(audit.contains(expected), "{expected} not in {audit}");
    }
}

#[tokio::test]
async fn the_outsider_gets_a_clear_page_logout_closes_and_cross_origin_posts_are_refused() {
    let (console, _project) = start().await;
    let refused = console.login(OUTSIDER).await.unwrap_err();
    assert!(
        refused.contains("403") && refused.contains("no role rule of EPSM Ops admits them"),
        "{refused}"
    );

    // CSRF: a logged-in admin's cookie is not enough without this console's Origin.
    let cookie = admin_cookie(&console).await;
    for origin in [None, Some("https://evil.example")] {
        let mut request = reqwest::Client::new()
            .post(format!("{}/api/deploy_list", console.url))
            .header("cookie", &cookie);
        if let Some(origin) = origin {
            request = request.header("origin", origin);
        }
        let reply = request.send().await.unwrap();
        assert_eq!(reply.status(), 403, "origin {origin:?}");
        assert!(
            reply
                .text()
                .await
                .unwrap()
                .contains("cross-origin request refused")
        );
    }

    // Logout ends the session: the same client is anonymous again, pages send it to the login.
    let viewer = console.login(VIEWER).await.unwrap();
    let list = |client: &reqwest::Client| {
        client
            .post(format!("{}/api/deploy_list", console.url))
            .send()
    };
    assert_eq!(list(&viewer).await.unwrap().status(), 200);
    let out = viewer
        .post(format!("{}/saml/logout", console.url))
        .send()
        .await
        .unwrap();
    assert_eq!(out.status(), 303);
    assert_eq!(list(&viewer).await.unwrap().status(), 401);
    let page = viewer
        .get(format!("{}/deploys", console.url))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 303);

    let (_, audit) = console.call("audit_log", &[]).await;
    for expected in [
        "auth.logout",
        "outsider@elsewhere.example is not authorized to use EPSM Ops: no role rule matches",
    ] {
        assert!(audit.contains(expected), "{expected} not in {audit}");
    }
}

/// An admin login whose session cookie is returned as a `Cookie` header value, for requests sent
/// by a client that adds no Origin (the test bed's clients always add this console's).
async fn admin_cookie(console: &Console) -> String {
    let (_, cookies) = console.login_trace(ADMIN).await.unwrap();
    let [before_login, after_login] = &cookies[..] else {
        panic!("two session cookies expected: {cookies:?}");
    };
    assert_ne!(after_login, before_login, "a new session id at login");
    after_login.clone()
}

#[tokio::test]
async fn a_replayed_or_forged_response_at_the_acs_is_refused_and_recorded() {
    let (console, _project) = start().await;
    // An IdP-initiated response (this console allows them here), used once, then again.
    let response = console
        .dev_idp_response(&console.anonymous_client(), "", VIEWER)
        .await
        .unwrap();
    let post = |response: String| {
        let client = console.anonymous_client();
        let url = format!("{}/saml/acs", console.url);
        async move {
            let reply = client
                .post(url)
                .form(&[("SAMLResponse", response.as_str())])
                .send()
                .await
                .unwrap();
            (reply.status().as_u16(), reply.text().await.unwrap())
        }
    };
    assert_eq!(post(response.clone()).await.0, 303, "first use logs in");
    let (status, body) = post(response.clone()).await;
    assert_eq!(status, 400);
    assert!(body.contains("already used (replay)"), "{body}");

    // A forged response: the same, with the ciphertext changed.
    let mut forged = response.into_bytes();
    let at = forged.len() / 2;
    forged[at] = if forged[at] == b'A' { b'B' } else { b'A' };
    let (status, body) = post(String::from_utf8(forged).unwrap()).await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("Login refused"), "{body}");

    let (_, audit) = console.call("audit_log", &[]).await;
    assert!(audit.contains("already used (replay)"), "{audit}");
    assert!(audit.matches("\"auth.login\"").count() >= 4, "{audit}");
}

#[tokio::test]
async fn a_login_older_than_the_absolute_lifetime_is_over() {
    let console = Console::start(
        Path::new(env!("CARGO_BIN_EXE_epsm-ops")),
        &[("EPSM_OPS_AUTH_SESSION_MAX_HOURS", "0")],
    )
    .await;
    // The test bed's own login went through (303 from the ACS), but the session is already too old.
    let (status, body) = console.call("deploy_list", &[]).await;
    assert_eq!(status, 401, "{body}");
}

#[tokio::test]
async fn the_sp_metadata_is_what_swamid_needs_and_stays_the_same_across_restarts() {
    let (mut console, project) = start().await;
    let get = |url: String| async move { reqwest::get(url).await.unwrap().text().await.unwrap() };
    let metadata = get(format!("{}/saml/metadata", console.url)).await;
    let base = console.url.clone();
    for expected in [
        format!("entityID=\"{base}/saml/metadata\""),
        format!(
            "Binding=\"urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST\" Location=\"{base}/saml/acs\""
        ),
        "<md:KeyDescriptor use=\"signing\">".to_string(),
        "<md:KeyDescriptor use=\"encryption\">".to_string(),
        "<md:OrganizationName xml:lang=\"en\">Chalmers University of Technology".to_string(),
        "contactType=\"technical\"".to_string(),
        "contactType=\"support\"".to_string(),
        "<mdui:DisplayName xml:lang=\"en\">EPSM Ops</mdui:DisplayName>".to_string(),
        "<mdui:Description xml:lang=\"en\">".to_string(),
        "Name=\"urn:oid:1.3.6.1.4.1.5923.1.1.1.9\"".to_string(),
        "AuthnRequestsSigned=\"true\" WantAssertionsSigned=\"true\"".to_string(),
    ] {
        assert!(metadata.contains(&expected), "{expected} not in {metadata}");
    }
    // The generated key is kept: a restart on the same data directory publishes the same
    // certificates, so the IdP's registration stays valid.
    let certificates = |metadata: &str| -> Vec<String> {
        metadata
            .split("<ds:X509Certificate>")
            .skip(1)
            .filter_map(|s| s.split("</ds:X509Certificate>").next())
            .map(String::from)
            .collect()
    };
    let data = console.data_path().display().to_string();
    console.stop();
    let dir = project.path().display().to_string();
    let again = Console::start(
        Path::new(env!("CARGO_BIN_EXE_epsm-ops")),
        &[
            ("EPSM_OPS_PROJECT_DIR", dir.as_str()),
            ("EPSM_OPS_DATA_DIR", data.as_str()),
        ],
    )
    .await;
    let before = certificates(&metadata);
    assert_eq!(before.len(), 2, "signing and encryption");
    assert_eq!(
        certificates(&get(format!("{}/saml/metadata", again.url)).await),
        before
    );
}

/// A browser that has started a login: its client (holding the session) and the request id the
/// console is waiting for, read from the AuthnRequest it sent to the IdP.
async fn pending_login(console: &Console) -> (reqwest::Client, String) {
    let client = console.anonymous_client();
    let reply = client
        .get(format!("{}/saml/login?return_to=/", console.url))
        .send()
        .await
        .unwrap();
    let location = url::Url::parse(reply.headers()["location"].to_str().unwrap()).unwrap();
    let request = location
        .query_pairs()
        .find(|(k, _)| k == "SAMLRequest")
        .map(|(_, v)| v.into_owned())
        .unwrap();
    let xml = app::auth::ssr::inflate_request(&request).unwrap();
    let (id, _) = app::auth::ssr::read_authn_request(&xml).unwrap();
    (client, id)
}

/// What the attacks below hold that a real attacker does not: the development IdP's own key (read
/// from the console's data directory), to show that a response signed by the trusted key is still
/// refused when anything else is wrong; and the SP's encryption certificate (public anyway).
struct TrustedIdp {
    idp: app::auth::idp::IdentityProvider,
    sp_cert: openssl::x509::X509,
    base: String,
}

impl TrustedIdp {
    fn of(console: &Console) -> TrustedIdp {
        use app::auth::keys::KeyPair;
        let data = console.data_path();
        let key = |name: &str| {
            KeyPair::load_or_generate(
                &data.join(format!("saml/{name}.key")),
                &data.join(format!("saml/{name}.crt")),
                "unused",
            )
            .unwrap()
            .0
        };
        TrustedIdp {
            idp: app::auth::idp::IdentityProvider {
                entity_id: format!("{}/dev-idp", console.url),
                signing: key("dev-idp"),
            },
            sp_cert: key("sp").cert,
            base: console.url.clone(),
        }
    }

    /// An assertion for the admin answering `request_id`.
    fn spec(&self, request_id: &str) -> app::auth::idp::AssertionSpec {
        app::auth::idp::AssertionSpec::new(
            &self.idp.entity_id,
            &format!("{}/saml/metadata", self.base),
            &format!("{}/saml/acs", self.base),
            Some(request_id),
            app::auth::idp::TestUser {
                subject_id: ADMIN.into(),
                display_name: "Ada Admin".into(),
                mail: ADMIN.into(),
                affiliations: vec![],
            },
            chrono::Utc::now(),
        )
    }

    fn signed(&self, spec: &app::auth::idp::AssertionSpec, shape: app::auth::idp::Shape) -> String {
        self.idp
            .response_xml(spec, shape, Some(&self.sp_cert))
            .unwrap()
    }
}

/// The `auth.login` refusals in the audit log, oldest first.
async fn login_refusals(console: &Console) -> Vec<String> {
    let (_, audit) = console.call("audit_log", &[]).await;
    let audit: Vec<serde_json::Value> = serde_json::from_str(&audit).unwrap();
    let mut refusals: Vec<String> = audit
        .iter()
        .filter(|e| e["action"] == "auth.login" && e["outcome"] == "Refused")
        .map(|e| e["detail"].as_str().unwrap().to_string())
        .collect();
    refusals.reverse();
    refusals
}

#[tokio::test]
async fn a_signature_that_reaches_outside_the_document_opens_nothing_and_is_refused() {
    use app::auth::idp::{Shape, encode};
    use end2end::saml_attacks::reference_attacks;
    use std::os::unix::fs::OpenOptionsExt;
    let console = Console::start(Path::new(env!("CARGO_BIN_EXE_epsm-ops")), &[]).await;
    let trusted = TrustedIdp::of(&console);
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("fifo");
    assert!(
        std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    // A non-blocking open for writing succeeds only while somebody has the FIFO open for reading:
    // the console, had xmlsec followed the reference.
    let reader_seen = || {
        std::fs::OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&fifo)
            .is_ok()
    };
    let sample = trusted.signed(&trusted.spec("_sample"), Shape::ADFS);
    let count = reference_attacks(&sample, &fifo.display().to_string()).len();
    for i in 0..count {
        let (client, request_id) = pending_login(&console).await;
        let response = trusted.signed(&trusted.spec(&request_id), Shape::ADFS);
        let (what, attack) =
            reference_attacks(&response, &fifo.display().to_string()).swap_remove(i);
        // Each from its own address (behind the console's nginx): one audit entry each, not
        // folded.
        let post = tokio::spawn(
            client
                .post(format!("{}/saml/acs", console.url))
                .header("x-real-ip", format!("192.0.2.{}", i + 1))
                .form(&[("SAMLResponse", encode(&attack))])
                .send(),
        );
        let mut opened = false;
        while !post.is_finished() {
            opened |= reader_seen();
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        opened |= reader_seen();
        let reply = post.await.unwrap().unwrap();
        assert!(!opened, "{what}: the console opened the FIFO");
        assert_eq!(reply.status(), 400, "{what}");
    }
    let refusals = login_refusals(&console).await;
    assert_eq!(refusals.len(), count, "{refusals:#?}");
    for detail in refusals {
        assert!(
            detail.contains("signature's form is not allowed"),
            "{detail}"
        );
    }
}

#[tokio::test]
async fn attacks_posted_to_the_acs_are_refused_and_each_refusal_is_in_the_audit_log() {
    use app::auth::idp::{IdentityProvider, Shape, encode};
    use app::auth::keys::KeyPair;
    use chrono::{Duration, Utc};
    use end2end::saml_attacks::signature_wrapping;
    const EVE: &str = "eve@evil.example";
    let console = Console::start(Path::new(env!("CARGO_BIN_EXE_epsm-ops")), &[]).await;
    let trusted = TrustedIdp::of(&console);
    let stranger = IdentityProvider {
        entity_id: trusted.idp.entity_id.clone(),
        signing: KeyPair::generate("stranger").unwrap(),
    };
    let spec = |request_id: &str| trusted.spec(request_id);
    let signed = |s: &_, shape: Shape| trusted.signed(s, shape);
    type Attack<'a> = Box<dyn Fn(&str) -> String + 'a>;
    let mut cases: Vec<(&str, Attack, &str)> = vec![
        (
            "no signature",
            Box::new(|r| {
                signed(
                    &spec(r),
                    Shape {
                        sign_assertion: false,
                        ..Shape::ADFS
                    },
                )
            }),
            "not covered by a valid signature",
        ),
        (
            "signed by another key",
            Box::new(|r| stranger.response_xml(&spec(r), Shape::ADFS, None).unwrap()),
            "not covered by a valid signature",
        ),
        (
            "changed after signing",
            Box::new(|r| signed(&spec(r), Shape::ADFS).replace("Ada Admin", "Eve Evil")),
            "not covered by a valid signature",
        ),
        (
            "expired",
            Box::new(|r| {
                let mut s = spec(r);
                s.not_on_or_after = Utc::now() - Duration::minutes(10);
                signed(&s, Shape::ADFS)
            }),
            "expired at",
        ),
        (
            "not yet valid",
            Box::new(|r| {
                let mut s = spec(r);
                s.not_before = Utc::now() + Duration::minutes(10);
                signed(&s, Shape::ADFS)
            }),
            "not valid before",
        ),
        (
            "another audience",
            Box::new(|r| {
                let mut s = spec(r);
                s.audience = "https://other.example/sp".into();
                signed(&s, Shape::ADFS)
            }),
            "not for this service",
        ),
        (
            "another destination",
            Box::new(|r| {
                let mut s = spec(r);
                s.recipient = "https://evil.example/acs".into();
                signed(&s, Shape::ADFS)
            }),
            "not to this ACS",
        ),
        (
            "another request",
            Box::new(|_| signed(&spec("_not_this_browsers"), Shape::ADFS)),
            "not the one this browser started",
        ),
        (
            "no InResponseTo",
            Box::new(|r| {
                let mut s = spec(r);
                s.in_response_to = None;
                signed(&s, Shape::ADFS)
            }),
            "not the one this browser started",
        ),
        (
            "a DOCTYPE",
            Box::new(|r| {
                format!(
                    "<!DOCTYPE x [<!ENTITY e \"e\">]>{}",
                    signed(&spec(r), Shape::ADFS)
                )
            }),
            "DOCTYPE",
        ),
        (
            "SHA-1",
            Box::new(|r| {
                signed(
                    &spec(r),
                    Shape {
                        sha1: true,
                        ..Shape::ADFS
                    },
                )
            }),
            "rsa-sha1 is not allowed",
        ),
    ];
    // The signature-wrapping shapes, each built from a response signed for this request.
    let sample = signed(&spec("_sample"), Shape::ADFS);
    for (i, (what, _)) in signature_wrapping(&sample, ADMIN, EVE)
        .into_iter()
        .enumerate()
    {
        let attack: Attack = Box::new(move |r| {
            signature_wrapping(&signed(&spec(r), Shape::ADFS), ADMIN, EVE)
                .swap_remove(i)
                .1
        });
        cases.push((what, attack, "exactly one assertion"));
    }
    // Unsolicited: posted by a browser that started no login (this console does not allow them).
    let unsolicited = {
        let mut s = spec("");
        s.in_response_to = None;
        signed(&s, Shape::ADFS)
    };
    cases.push((
        "unsolicited",
        Box::new(move |_| unsolicited.clone()),
        "unsolicited responses",
    ));
    for (i, (what, attack, _)) in cases.iter().enumerate() {
        let (client, request_id) = if *what == "unsolicited" {
            (console.anonymous_client(), String::new())
        } else {
            pending_login(&console).await
        };
        // Each from its own address: one audit entry each (one client's repeats are folded).
        let reply = client
            .post(format!("{}/saml/acs", console.url))
            .header("x-real-ip", format!("192.0.2.{}", i + 1))
            .form(&[("SAMLResponse", encode(&attack(&request_id)))])
            .send()
            .await
            .unwrap();
        assert_eq!(
            reply.status(),
            400,
            "{what}: {}",
            reply.text().await.unwrap()
        );
    }
    let refusals = login_refusals(&console).await;
    assert_eq!(refusals.len(), cases.len(), "{refusals:#?}");
    for ((what, _, reason), detail) in cases.iter().zip(refusals.iter()) {
        assert!(detail.contains(reason), "{what}: {detail}");
    }
}

/// POSTs `login_state` with `cookie` and `console`'s Origin: the role the console gives that
/// session now, or None when it is no login.
async fn role_now(console: &Console, cookie: &str) -> Option<String> {
    let reply = reqwest::Client::new()
        .post(format!("{}/api/login_state", console.url))
        .header("cookie", cookie)
        .header("origin", &console.url)
        .send()
        .await
        .unwrap();
    let state: serde_json::Value = serde_json::from_str(&reply.text().await.unwrap()).unwrap();
    state["user"]["role"].as_str().map(String::from)
}

#[tokio::test]
async fn a_changed_role_rule_takes_effect_at_the_next_request_not_at_the_next_login() {
    let (mut console, project) = start().await;
    let (_, cookies) = console.login_trace(DEPLOYER).await.unwrap();
    let cookie = cookies.last().unwrap().clone();
    assert_eq!(
        role_now(&console, &cookie).await.as_deref(),
        Some("Deployer")
    );
    let data = console.data_path().display().to_string();
    let dir = project.path().display().to_string();
    console.stop();
    // The same store (the session is in it), the rules changed: the deployer is a viewer now.
    let restart = |deployers: &'static str, viewers: &'static str| {
        let (data, dir) = (data.clone(), dir.clone());
        async move {
            Console::start(
                Path::new(env!("CARGO_BIN_EXE_epsm-ops")),
                &[
                    ("EPSM_OPS_PROJECT_DIR", dir.as_str()),
                    ("EPSM_OPS_DATA_DIR", data.as_str()),
                    ("EPSM_OPS_AUTH_DEPLOYERS", deployers),
                    ("EPSM_OPS_AUTH_VIEWERS", viewers),
                ],
            )
            .await
        }
    };
    let mut demoted = restart("{ids=[]}", "{ids=[\"deployer@dev.idp\"]}").await;
    assert_eq!(role_now(&demoted, &cookie).await.as_deref(), Some("Viewer"));
    demoted.stop();
    // No rule admits them any more: the session is over.
    let removed = restart("{ids=[]}", "{ids=[]}").await;
    assert_eq!(role_now(&removed, &cookie).await, None);
}

/// Reads `response`'s body until it ends; Err when it has not ended within `bound`.
async fn ends_within(response: reqwest::Response, bound: std::time::Duration) -> Result<(), ()> {
    use futures::StreamExt;
    let mut body = response.bytes_stream();
    tokio::time::timeout(bound, async { while body.next().await.is_some() {} })
        .await
        .map_err(|_| ())
}

#[tokio::test]
async fn live_streams_end_with_their_session_and_each_session_has_a_limit() {
    let console = Console::start(
        Path::new(env!("CARGO_BIN_EXE_epsm-ops")),
        &[("EPSM_OPS_LIMITS_STREAMS_PER_SESSION", "2")],
    )
    .await;
    let viewer = console.login(VIEWER).await.unwrap();
    let open = |client: &reqwest::Client| {
        client
            .get(format!("{}/api/health/events", console.url))
            .send()
    };
    let first = open(&viewer).await.unwrap();
    let second = open(&viewer).await.unwrap();
    assert_eq!(
        (first.status().as_u16(), second.status().as_u16()),
        (200, 200)
    );
    let third = open(&viewer).await.unwrap();
    assert_eq!(third.status(), 429);
    assert!(third.text().await.unwrap().contains("close one"));
    // Another session has its own places.
    let other = console.login(VIEWER).await.unwrap();
    assert_eq!(open(&other).await.unwrap().status(), 200);
    // The health stream never ends on its own; logout ends both of this session's.
    let out = viewer
        .post(format!("{}/saml/logout", console.url))
        .send()
        .await
        .unwrap();
    assert_eq!(out.status(), 303);
    // The stream ends at the first session check after the logout: within two checks.
    let bound = end2end::with_margin(app::streams::SESSION_CHECK * 2);
    assert!(
        ends_within(first, bound).await.is_ok(),
        "the stream outlived its session"
    );
    assert!(
        ends_within(second, bound).await.is_ok(),
        "the stream outlived its session"
    );
}

#[tokio::test]
async fn anonymous_flooding_is_rate_limited_per_client_and_folded_in_the_audit_log() {
    let console = Console::start(
        Path::new(env!("CARGO_BIN_EXE_epsm-ops")),
        &[("EPSM_OPS_LIMITS_SAML_PER_MINUTE", "20")],
    )
    .await;
    // Clients behind the console's nginx: the peer is loopback, the client is X-Real-IP.
    let from = |client: &'static str| {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        let url = console.url.clone();
        move |path: &str| {
            http.post(format!("{url}{path}"))
                .header("x-real-ip", client)
        }
    };
    let attacker = from("198.51.100.9");
    // 150 KB of attacker text per post, quoted by the refusal (the IdP's "status message").
    use base64::Engine;
    let junk = base64::engine::general_purpose::STANDARD.encode(format!(
        "<samlp:Response xmlns:samlp=\"urn:oasis:names:tc:SAML:2.0:protocol\"><samlp:Status><samlp:StatusCode Value=\"x\"/><samlp:StatusMessage>{}</samlp:StatusMessage></samlp:Status></samlp:Response>",
        "A".repeat(150_000)
    ));
    for i in 0..20 {
        let reply = attacker("/saml/acs")
            .form(&[("SAMLResponse", junk.as_str())])
            .send()
            .await
            .unwrap();
        assert_eq!(reply.status(), 400, "post {i}");
    }
    let limited = attacker("/saml/acs")
        .form(&[("SAMLResponse", junk.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(limited.status(), 429);
    assert!(limited.headers().contains_key("retry-after"));
    assert!(
        limited
            .text()
            .await
            .unwrap()
            .contains("too many login requests from your address")
    );
    // Another client has its own allowance.
    let other = from("203.0.113.5")("/saml/acs")
        .form(&[("SAMLResponse", "PHg+")])
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), 400);

    let (_, audit) = console.call("audit_log", &[]).await;
    let audit: Vec<serde_json::Value> = serde_json::from_str(&audit).unwrap();
    let rows: Vec<&serde_json::Value> = audit
        .iter()
        .filter(|e| e["actor"] == "anonymous (198.51.100.9)")
        .collect();
    assert_eq!(rows.len(), 1, "{rows:#?}");
    assert_eq!(rows[0]["repeats"], 19);
    assert!(rows[0]["detail"].as_str().unwrap().len() < 2200);
    assert!(
        audit
            .iter()
            .any(|e| e["actor"] == "anonymous (203.0.113.5)")
    );

    // The page to return to is chosen by an anonymous visitor and stored: a long one is not kept.
    let long = format!("/deploys?{}", "x".repeat(5000));
    assert_eq!(console.login_returning_to(ADMIN, &long).await.unwrap(), "/");
    assert_eq!(
        console
            .login_returning_to(ADMIN, "/deploys?page=2")
            .await
            .unwrap(),
        "/deploys?page=2"
    );
}
