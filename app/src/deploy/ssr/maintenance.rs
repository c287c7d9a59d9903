//! The maintenance page during a deploy's switch. The public service (nginx) is the last to be
//! recreated: when the switch begins its container is stopped and a small container takes its
//! published ports, answering every request with a 503 page (`Retry-After`); once the new version has
//! started, migrated and collected its static files, that container goes and compose starts nginx.
//!
//! The stand-in runs nginx's own image (it is on the host, and it has nginx) with a configuration of
//! its own passed in its environment, so nothing is written to the project or pulled from anywhere. It
//! carries no compose label: `down --remove-orphans` does not see it.

use std::collections::HashMap;

use bollard::models::{ContainerCreateBody, HostConfig, PortBinding};

use super::*;

/// The header the maintenance page carries, so a probe tells it from an error.
pub(super) const MAINTENANCE_HEADER: &str = "x-epsm-ops-maintenance";
/// What clients are told to wait before they ask again.
const RETRY_AFTER_SECS: u32 = 30;
/// The page itself (static: it says nothing of the host).
const PAGE: &str = "<!doctype html><html lang=en><meta charset=utf-8>\
<meta name=viewport content=\"width=device-width,initial-scale=1\">\
<title>EPSM is being updated</title>\
<body style=\"font-family:system-ui,sans-serif;max-width:34rem;margin:15vh auto;padding:0 1rem\">\
<h1>EPSM is being updated</h1><p>A new version is being started. This takes a minute or two; \
the page will answer again when it is done. Running simulations are not lost.</p></body></html>";

impl Deployer {
    /// The stand-in container's name: one per project.
    fn stand_in(&self) -> String {
        format!("{}-epsm-ops-maintenance", self.config.project_name())
    }

    /// The switch begins: the public service's container stops and the maintenance page takes its ports.
    pub(super) async fn maintenance_on(
        &self,
        position: usize,
        out: &mut Output<'_>,
    ) -> Result<(), StepFailure> {
        let service = &self.config.deploy.public_service;
        let failed = |e: crate::engine::ssr::EngineError| StepFailure::new(e.to_string());
        let Some(id) = self.container_of(service).await? else {
            out.line(
                position,
                false,
                &format!("{service} has no container: no maintenance page is needed"),
            )
            .await;
            return Ok(());
        };
        let inspect = self.engine.inspect_container(&id).await.map_err(failed)?;
        let image = inspect.image.clone().unwrap_or_default();
        let host = inspect.host_config.clone().unwrap_or_default();
        let published: HashMap<String, Option<Vec<PortBinding>>> = host
            .port_bindings
            .clone()
            .unwrap_or_default()
            .into_iter()
            .filter(|(_, b)| b.as_ref().is_some_and(|b| !b.is_empty()))
            .collect();
        let tls = self
            .config
            .deploy
            .maintenance_tls_certificate
            .as_deref()
            .zip(self.config.deploy.maintenance_tls_key.as_deref());
        let (config, served, unserved) = nginx_config(published.keys(), tls);
        for port in &unserved {
            out.line(
                position,
                true,
                &format!(
                    "{port}: a TLS port with no deploy.maintenance_tls_certificate: it is not answered during the switch"
                ),
            )
            .await;
        }
        // A stand-in a cancelled deploy left behind.
        let name = self.stand_in();
        self.engine
            .stop_and_remove(&name, 0)
            .await
            .map_err(failed)?;
        let bindings: HashMap<String, Option<Vec<PortBinding>>> = published
            .into_iter()
            .filter(|(port, _)| served.contains(port))
            .collect();
        let addresses = bindings
            .values()
            .flatten()
            .flatten()
            .map(|b| {
                format!(
                    "{}:{}",
                    b.host_ip
                        .as_deref()
                        .filter(|ip| !ip.is_empty())
                        .unwrap_or("0.0.0.0"),
                    b.host_port.as_deref().unwrap_or("?")
                )
            })
            .collect::<Vec<_>>()
            .join(", ");
        let body = ContainerCreateBody {
            image: Some(image),
            entrypoint: Some(vec!["sh".into(), "-c".into(), START.into()]),
            cmd: Some(vec![]),
            env: Some(vec![format!("EPSM_OPS_MAINTENANCE_CONF={config}")]),
            exposed_ports: Some(bindings.keys().cloned().collect()),
            labels: Some(HashMap::from([(
                "epsm-ops.maintenance".to_string(),
                self.config.project_name(),
            )])),
            host_config: Some(HostConfig {
                port_bindings: Some(bindings),
                // The certificates are where nginx has them.
                binds: tls.and(host.binds),
                mounts: tls.and(host.mounts),
                ..Default::default()
            }),
            ..Default::default()
        };
        // Created before nginx stops, so the ports are taken back as fast as the engine starts it.
        self.engine
            .create_container(&name, body)
            .await
            .map_err(failed)?;
        self.engine.stop_and_remove(&id, 10).await.map_err(failed)?;
        self.engine.start_container(&name).await.map_err(failed)?;
        out.line(
            position,
            false,
            &format!("{service} stopped; the maintenance page starts on {addresses}"),
        )
        .await;
        // Seen, not assumed: the public URL answers with the page (else the log says what it got).
        let said = match self.maintenance_answers().await {
            Ok(()) => format!(
                "the maintenance page answers at {} (503, Retry-After: {RETRY_AFTER_SECS})",
                self.config.project.public_url
            ),
            Err(got) => {
                let logs = self.stand_in_output(&name).await;
                format!(
                    "the maintenance page does not answer at {} ({got}); the switch goes on{logs}",
                    self.config.project.public_url
                )
            }
        };
        out.line(position, false, &said).await;
        Ok(())
    }

    /// Until the public URL answers with the maintenance page (bounded); else what it answered.
    async fn maintenance_answers(&self) -> Result<(), String> {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()
            .map_err(|e| e.to_string())?;
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let got = match client
                .get(self.config.project.public_url.clone())
                .send()
                .await
            {
                Ok(r) if r.headers().contains_key(MAINTENANCE_HEADER) => return Ok(()),
                Ok(r) => format!("HTTP {}", r.status()),
                Err(e) => crate::health::ssr::http_reason(&e),
            };
            if Instant::now() >= deadline {
                return Err(got);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The stand-in's last lines of output, for a log line.
    async fn stand_in_output(&self, name: &str) -> String {
        use futures::StreamExt;
        let Ok(stream) = self.engine.logs(name, 5, false).await else {
            return String::new();
        };
        let lines: Vec<String> = stream
            .filter_map(|l| async move { l.ok().map(|l| l.to_string().trim().to_string()) })
            .collect()
            .await;
        if lines.is_empty() {
            String::new()
        } else {
            format!("; it said: {}", lines.join(" | "))
        }
    }

    /// The switch ends: the maintenance page goes and compose starts the public service (`args`).
    pub(super) async fn reopen(
        &self,
        args: &[String],
        position: usize,
        out: &mut Output<'_>,
    ) -> Result<i64, StepFailure> {
        let removed = self
            .engine
            .stop_and_remove(&self.stand_in(), 0)
            .await
            .map_err(|e| StepFailure::new(e.to_string()))?;
        if removed {
            out.line(position, false, "the maintenance page stopped")
                .await;
        }
        self.compose_step(args, position, out).await
    }
}

/// The stand-in's command: its configuration from the environment, then nginx in the foreground.
const START: &str = "printf '%s' \"$EPSM_OPS_MAINTENANCE_CONF\" > /tmp/epsm-ops-maintenance.conf \
&& exec nginx -c /tmp/epsm-ops-maintenance.conf -g 'daemon off;'";

/// The maintenance page's nginx configuration for the public service's published container ports
/// (`80/tcp`), with the ports it serves and the TLS ones it cannot (no certificate configured).
fn nginx_config<'a>(
    ports: impl Iterator<Item = &'a String>,
    tls: Option<(&str, &str)>,
) -> (String, Vec<String>, Vec<String>) {
    let mut servers = String::new();
    let (mut served, mut unserved) = (Vec::new(), Vec::new());
    let mut ports: Vec<&String> = ports.filter(|p| p.ends_with("/tcp")).collect();
    ports.sort();
    for port in ports {
        let Ok(number) = port.trim_end_matches("/tcp").parse::<u16>() else {
            continue;
        };
        let listen = if number == 443 {
            match tls {
                Some((cert, key)) => format!(
                    "listen {number} ssl; ssl_certificate {cert}; ssl_certificate_key {key};"
                ),
                None => {
                    unserved.push(port.clone());
                    continue;
                }
            }
        } else {
            format!("listen {number};")
        };
        served.push(port.clone());
        servers.push_str(&format!(
            "server {{ {listen} location / {{ default_type text/html; \
             add_header Retry-After {RETRY_AFTER_SECS} always; \
             add_header {MAINTENANCE_HEADER} 1 always; \
             add_header Cache-Control no-store always; \
             return 503 '{PAGE}'; }} }}\n"
        ));
    }
    let config = format!(
        "worker_processes 1; pid /tmp/epsm-ops-maintenance.pid; error_log stderr warn;\n\
         events {{ worker_connections 256; }}\n\
         http {{ access_log off; server_tokens off;\n{servers}}}\n"
    );
    (config, served, unserved)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_published_port_answers_and_tls_only_with_a_certificate() {
        let ports = [
            "80/tcp".to_string(),
            "443/tcp".to_string(),
            "53/udp".to_string(),
        ];
        let (config, served, unserved) = nginx_config(ports.iter(), None);
        assert_eq!(served, ["80/tcp"]);
        assert_eq!(unserved, ["443/tcp"]);
        assert!(config.contains("listen 80;"));
        assert!(config.contains("return 503 '<!doctype html>"));
        assert!(
            !PAGE.contains('\''),
            "the page is quoted with ' in the configuration"
        );
        let (config, served, _) = nginx_config(ports.iter(), Some(("/etc/nginx/ssl/c.pem", "/k")));
        assert_eq!(served, ["443/tcp", "80/tcp"]);
        assert!(config.contains("listen 443 ssl; ssl_certificate /etc/nginx/ssl/c.pem;"));
    }
}
