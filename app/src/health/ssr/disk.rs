//! The engine's disk use (`docker system df`), read now and then, not every round.

use super::*;

impl HealthMonitor {
    pub(super) fn refresh_disk_usage_when_due(self: &Arc<Self>) {
        {
            let mut state = self.state.lock().expect("health state");
            if state.disk_due.is_some_and(|due| Instant::now() < due) {
                return;
            }
            let every = Duration::from_secs(self.config.health.disk_usage_interval_secs);
            state.disk_due = Some(Instant::now() + every);
        }
        let monitor = Arc::clone(self);
        tokio::spawn(async move {
            match disk_usage(&monitor.compose.program, &monitor.config.docker.host).await {
                Ok(disk) => {
                    monitor.state.lock().expect("health state").disk = Some(disk);
                    monitor.publish();
                }
                Err(e) => tracing::warn!("health: disk usage: {e}"),
            }
        });
    }
}

/// `docker system df` through the CLI: it speaks every engine's dialect of `/system/df` (the engine
/// API's format changed in 1.52 and bollard follows the newest).
pub(super) async fn disk_usage(program: &PathBuf, host: &str) -> Result<DiskUsage, String> {
    let out = tokio::process::Command::new(program)
        .args(["system", "df", "--format", "{{json .}}"])
        .env("DOCKER_HOST", host)
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(60), out)
        .await
        .map_err(|_| "no answer within 60 s".to_string())?
        .map_err(|e| format!("cannot run {}: {e}", program.display()))?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).trim().to_string());
    }
    Ok(DiskUsage {
        taken_at: Utc::now(),
        rows: parse_disk_usage(&String::from_utf8_lossy(&out.stdout)),
    })
}

pub(super) fn parse_disk_usage(text: &str) -> Vec<DiskUsageRow> {
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct Line {
        #[serde(rename = "Type")]
        kind: String,
        total_count: String,
        active: String,
        size: String,
        reclaimable: String,
    }
    text.lines()
        .filter_map(|l| serde_json::from_str::<Line>(l).ok())
        .map(|l| DiskUsageRow {
            kind: l.kind,
            total: l.total_count,
            active: l.active,
            size: l.size,
            reclaimable: l.reclaimable,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disk_usage_lines_are_read_and_junk_is_skipped() {
        let text = r#"{"Active":"7","Reclaimable":"1.2GB (40%)","Size":"3GB","TotalCount":"10","Type":"Images"}
WARNING: something
{"Active":"1","Reclaimable":"0B","Size":"12kB","TotalCount":"2","Type":"Build Cache"}
"#;
        let rows = parse_disk_usage(text);
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].kind, "Images");
        assert_eq!(rows[0].reclaimable, "1.2GB (40%)");
        assert_eq!(rows[1].total, "2");
    }
}
