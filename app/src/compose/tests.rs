//! The compose CLI's model, project names and collisions, checked against the real `docker compose config`.
use super::*;

#[test]
fn services_come_in_the_order_the_file_lists_them() {
    let json = r#"{"name":"epsm","services":{"backend":{"environment":{"A":"1","B":null}},"database":{},"nginx":{},"redis":{},"zz":{}}}"#;
    let text =
        "services:\n  database:\n    image: x\n  redis:\n    image: y\n  \"backend\":\n  nginx:\n";
    let model = parse_model(json, text).unwrap();
    assert_eq!(
        model.services,
        ["database", "redis", "backend", "nginx", "zz"]
    );
}

#[test]
fn output_that_is_not_a_compose_model_is_an_error() {
    assert!(
        parse_model("not json", "")
            .unwrap_err()
            .starts_with("not JSON")
    );
    assert_eq!(parse_model("{}", "").unwrap_err(), "no `services` object");
}

#[test]
fn container_names_and_published_ports_are_read_from_compose_config() {
    let json = r#"{"name":"epsm_prod","services":{
        "database":{"container_name":"epsm_database_prod","ports":[{"mode":"ingress","host_ip":"127.0.0.1","target":5432,"published":"5432","protocol":"tcp"}]},
        "nginx":{"container_name":"epsm_nginx_prod","ports":[{"target":80,"published":"80"},{"target":443,"published":443,"protocol":"tcp"}]},
        "worker":{"ports":[{"target":9000}]}}}"#;
    let model = parse_model(json, "").unwrap();
    assert!(
        model.registry_images.is_empty(),
        "no service without a build"
    );
    let tools = r#"{"services":{"energyplus":{"image":"nrel/energyplus:23.2.0","profiles":["tools"]},
        "backend":{"image":"epsm-backend","build":{"context":"."}}}}"#;
    assert_eq!(
        parse_model(tools, "").unwrap().registry_images,
        [(
            "energyplus".to_string(),
            "nrel/energyplus:23.2.0".to_string()
        )]
        .into()
    );
    assert_eq!(model.container_names["database"], "epsm_database_prod");
    assert_eq!(model.published["database"], ["127.0.0.1:5432/tcp"]);
    assert_eq!(
        model.published["nginx"],
        ["0.0.0.0:80/tcp", "0.0.0.0:443/tcp"]
    );
    assert!(
        !model.published.contains_key("worker"),
        "nothing on the host"
    );
}

#[test]
fn ports_collide_on_the_same_port_and_an_overlapping_address() {
    for (a, b, want) in [
        ("127.0.0.1:8080/tcp", "127.0.0.1:8080/tcp", true),
        ("0.0.0.0:8080/tcp", "127.0.0.1:8080/tcp", true),
        ("127.0.0.1:8080/tcp", "127.0.0.2:8080/tcp", false),
        ("127.0.0.1:8080/tcp", "127.0.0.1:8081/tcp", false),
        ("127.0.0.1:53/tcp", "127.0.0.1:53/udp", false),
        ("[::]:80/tcp", "127.0.0.1:80/tcp", true),
    ] {
        assert_eq!(ports_collide(a, b), want, "{a} {b}");
    }
}

fn model_with_names() -> ComposeModel {
    ComposeModel {
        services: vec!["database".into(), "nginx".into()],
        container_names: [("database".to_string(), "epsm_database_prod".to_string())].into(),
        published: [("nginx".to_string(), vec!["127.0.0.1:8080/tcp".to_string()])].into(),
        ..Default::default()
    }
}

#[test]
fn a_service_running_under_another_project_name_is_found_by_directory_or_container_name() {
    let model = model_with_names();
    let dir = std::path::Path::new("/opt/epsm");
    let containers = [
        SeenContainer {
            name: "epsm_database_prod".into(),
            project: Some("epsm_prod".into()),
            service: Some("database".into()),
            working_dir: Some("/somewhere/else".into()),
            ..Default::default()
        },
        SeenContainer {
            name: "epsm_prod-nginx-1".into(),
            project: Some("epsm_prod".into()),
            service: Some("nginx".into()),
            working_dir: Some("/opt/epsm".into()),
            ..Default::default()
        },
        // Another project's nginx from another directory is not ours.
        SeenContainer {
            name: "shop-nginx-1".into(),
            project: Some("shop".into()),
            service: Some("nginx".into()),
            working_dir: Some("/srv/shop".into()),
            ..Default::default()
        },
    ];
    let held: Vec<(String, String)> = model
        .held_elsewhere("epsm", dir, &containers)
        .into_iter()
        .map(|(s, c)| (s, c.name.clone()))
        .collect();
    assert_eq!(
        held,
        [
            ("database".to_string(), "epsm_database_prod".to_string()),
            ("nginx".to_string(), "epsm_prod-nginx-1".to_string())
        ]
    );
    assert!(
        model
            .held_elsewhere("epsm_prod", dir, &containers[..2])
            .is_empty(),
        "under the right name nothing is elsewhere"
    );
}

#[test]
fn collisions_name_the_container_and_its_project() {
    let model = model_with_names();
    let containers = [
        SeenContainer {
            name: "epsm_database_prod".into(),
            state: "exited".into(),
            project: Some("epsm_prod".into()),
            ..Default::default()
        },
        SeenContainer {
            name: "other-proxy".into(),
            state: "running".into(),
            ports: vec!["0.0.0.0:8080/tcp".into()],
            ..Default::default()
        },
    ];
    assert_eq!(
        model.collisions("epsm", &containers),
        [
            "service database: its container name epsm_database_prod is taken by container epsm_database_prod of compose project epsm_prod",
            "service nginx: host port 127.0.0.1:8080/tcp is published by container other-proxy (not started by compose)",
        ]
    );
    assert!(
        model.collisions("epsm_prod", &containers[..1]).is_empty(),
        "its own containers are no collision"
    );
}

#[test]
fn a_written_out_top_level_name_is_read_an_interpolated_one_is_not() {
    assert_eq!(
        top_level_name("# x\nname: epsm_prod\nservices: {}\n").as_deref(),
        Some("epsm_prod")
    );
    assert_eq!(top_level_name("name: \"q\"\n").as_deref(), Some("q"));
    assert_eq!(top_level_name("name: ${NAME}\n"), None);
    assert_eq!(top_level_name("services:\n  x:\n    name: y\n"), None);
}

#[tokio::test]
async fn a_missing_program_is_a_spawn_error_with_its_name() {
    let cli = ComposeCli {
        program: "/nonexistent/docker".into(),
        project: "p".into(),
        dir: std::env::temp_dir(),
        compose_file: "c.yml".into(),
        env_file: ".env".into(),
        docker_host: "unix:///x".into(),
    };
    let err = cli
        .model(&Scrubber::new(&[]))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("cannot run `/nonexistent/docker compose`"),
        "{err}"
    );
}
