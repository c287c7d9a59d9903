//! The deep probes: the deployment guide's verification checklist as data. What each probe runs and
//! how its output is judged are plain functions here; running them (exec, HTTP) is `ssr.rs`'s work.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::human_duration;

/// A deep probe of one service, as the configuration names it (`[health.probes.<service>]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Probe {
    /// `pg_isready -U <user> -d <db>`, user and database from the env file (`DB_USER`/`DB_NAME`, else
    /// `POSTGRES_USER`/`POSTGRES_DB`).
    PgIsready,
    /// `redis-cli ping` must answer PONG; the password (`REDIS_PASSWORD` in the env file) is passed in
    /// the exec's environment, never on a command line.
    RedisPing,
    /// GET `url` inside the container and read the JSON: `status` and `database` must be "healthy"
    /// (EPSM answers 200 with `"database": "unhealthy: ..."` when its database is down).
    DjangoHealth {
        #[serde(default = "default_django_health_url")]
        url: String,
    },
    /// `celery -A <app> inspect ping` gets a pong.
    CeleryPing {
        #[serde(default = "default_celery_app")]
        app: String,
    },
    /// The file exists and was written less than `max_age_secs` ago (celery beat's schedule).
    FileFresh {
        path: String,
        #[serde(default = "default_max_age_secs")]
        max_age_secs: u64,
    },
    /// GET `path` on the project's public URL from the console (through nginx, as a user would).
    PublicUrl {
        #[serde(default = "default_public_path")]
        path: String,
    },
    /// Any command in the container; exit code 0 passes.
    Exec { command: Vec<String> },
    /// No deep probe: Docker's state and healthcheck only.
    None,
}

fn default_django_health_url() -> String {
    "http://localhost:8000/health/".into()
}
fn default_celery_app() -> String {
    "config".into()
}
fn default_max_age_secs() -> u64 {
    // celery beat writes its schedule when it sends a task and at most every 3 minutes.
    600
}
fn default_public_path() -> String {
    "/health/".into()
}

/// The guide's probe for an EPSM service name, used when the configuration names none.
pub fn default_probe(service: &str) -> Probe {
    match service {
        "database" => Probe::PgIsready,
        "redis" => Probe::RedisPing,
        "backend" => Probe::DjangoHealth {
            url: default_django_health_url(),
        },
        "celery_worker" => Probe::CeleryPing {
            app: default_celery_app(),
        },
        "celery_beat" => Probe::FileFresh {
            path: "/app/celerybeat-schedule".into(),
            max_age_secs: default_max_age_secs(),
        },
        "nginx" => Probe::PublicUrl {
            path: default_public_path(),
        },
        _ => Probe::None,
    }
}

/// What running a probe means, with the values it needs filled in.
#[derive(Debug, Clone, PartialEq)]
pub enum ProbePlan {
    /// A command in the service's container. `env` holds `KEY=value` pairs for the exec only.
    Exec {
        cmd: Vec<String>,
        env: Vec<String>,
        judge: Judge,
    },
    /// A GET from the console.
    Http {
        url: String,
    },
    None,
}

/// How the output of an exec probe is read.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Judge {
    ExitCode,
    Pong,
    DjangoHealthJson,
    CeleryPong,
    FileAge { max_age_secs: u64 },
}

impl Probe {
    /// The plan for this probe, with values from the env file (`env`). `public_url` is the project's.
    pub fn plan(&self, env: &BTreeMap<&str, &str>, public_url: &url::Url) -> ProbePlan {
        let exec = |cmd: Vec<&str>, env: Vec<String>, judge| ProbePlan::Exec {
            cmd: cmd.into_iter().map(String::from).collect(),
            env,
            judge,
        };
        let value = |keys: &[&str]| {
            keys.iter()
                .find_map(|k| env.get(k).filter(|v| !v.is_empty()).copied())
        };
        match self {
            Probe::PgIsready => {
                let mut cmd = vec!["pg_isready"];
                if let Some(user) = value(&["DB_USER", "POSTGRES_USER"]) {
                    cmd.extend(["-U", user]);
                }
                if let Some(db) = value(&["DB_NAME", "POSTGRES_DB"]) {
                    cmd.extend(["-d", db]);
                }
                exec(cmd, vec![], Judge::ExitCode)
            }
            Probe::RedisPing => {
                let auth = value(&["REDIS_PASSWORD"])
                    .map(|p| vec![format!("REDISCLI_AUTH={p}")])
                    .unwrap_or_default();
                exec(vec!["redis-cli", "ping"], auth, Judge::Pong)
            }
            Probe::DjangoHealth { url } => exec(
                vec!["curl", "-sS", "--max-time", "8", url],
                vec![],
                Judge::DjangoHealthJson,
            ),
            Probe::CeleryPing { app } => exec(
                vec!["celery", "-A", app, "inspect", "ping", "--timeout", "2"],
                vec![],
                Judge::CeleryPong,
            ),
            Probe::FileFresh { path, max_age_secs } => exec(
                // The container's clock is the host's: one `date` and one `stat`, compared here.
                vec!["sh", "-c", "date +%s && stat -c %Y \"$0\"", path],
                vec![],
                Judge::FileAge {
                    max_age_secs: *max_age_secs,
                },
            ),
            Probe::PublicUrl { path } => ProbePlan::Http {
                url: public_url
                    .join(path)
                    .map_or_else(|_| public_url.to_string(), |u| u.to_string()),
            },
            Probe::Exec { command } => ProbePlan::Exec {
                cmd: command.clone(),
                env: vec![],
                judge: Judge::ExitCode,
            },
            Probe::None => ProbePlan::None,
        }
    }
}

/// Reads an exec probe's result: `Ok(what passed)` or `Err(why it failed)`, in the operator's words.
pub fn judge(
    judge: Judge,
    exit_code: Option<i64>,
    stdout: &str,
    stderr: &str,
) -> Result<String, String> {
    let said = || {
        last_line(stderr)
            .or_else(|| last_line(stdout))
            .unwrap_or("no output")
    };
    match judge {
        Judge::ExitCode => match exit_code {
            Some(0) => Ok(last_line(stdout).unwrap_or("exit 0").to_string()),
            Some(code) => Err(format!("exit {code}: {}", said())),
            None => Err(format!("did not finish: {}", said())),
        },
        Judge::Pong => {
            if stdout.trim() == "PONG" {
                Ok("PONG".into())
            } else {
                Err(format!("no PONG: {}", said()))
            }
        }
        Judge::DjangoHealthJson => django_health(exit_code, stdout, stderr),
        Judge::CeleryPong => {
            if exit_code == Some(0) && stdout.contains("pong") {
                let nodes = stdout.matches("pong").count();
                Ok(format!(
                    "{nodes} worker{} answered pong",
                    super::plural(nodes)
                ))
            } else {
                Err(said().to_string())
            }
        }
        Judge::FileAge { max_age_secs } => {
            if exit_code != Some(0) {
                return Err(said().to_string());
            }
            let numbers: Vec<i64> = stdout
                .split_whitespace()
                .filter_map(|n| n.parse().ok())
                .collect();
            let [now, written] = numbers[..] else {
                return Err(format!("unexpected output: {}", said()));
            };
            let age = (now - written).max(0);
            if age as u64 <= max_age_secs {
                Ok(format!("written {} ago", human_duration(age as u64)))
            } else {
                Err(format!(
                    "last written {} ago (more than {})",
                    human_duration(age as u64),
                    human_duration(max_age_secs)
                ))
            }
        }
    }
}

/// EPSM's `/health/`: 200 with `{"status": "healthy", "database": "healthy"}`. Anything else fails,
/// with the JSON's own reason when it gives one.
fn django_health(exit_code: Option<i64>, stdout: &str, stderr: &str) -> Result<String, String> {
    if exit_code != Some(0) {
        return Err(format!(
            "request failed: {}",
            last_line(stderr).unwrap_or("no answer")
        ));
    }
    let json: serde_json::Value = serde_json::from_str(stdout.trim())
        .map_err(|_| format!("answer is not JSON: {}", first_chars(stdout, 120)))?;
    let field = |name: &str| json.get(name).and_then(|v| v.as_str());
    let mut problems = Vec::new();
    for name in ["status", "database"] {
        match field(name) {
            Some("healthy") => {}
            Some(other) => problems.push(format!("{name}: {other}")),
            None => problems.push(format!("{name}: missing")),
        }
    }
    if let Some(reason) = field("reason") {
        problems.push(format!("reason: {reason}"));
    }
    if problems.is_empty() {
        Ok("status healthy, database healthy".into())
    } else {
        Err(problems.join("; "))
    }
}

fn last_line(text: &str) -> Option<&str> {
    text.lines().map(str::trim).rfind(|l| !l.is_empty())
}

fn first_chars(text: &str, n: usize) -> String {
    let t: String = text.trim().chars().take(n).collect();
    if t.is_empty() { "(empty)".into() } else { t }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&'static str, &'static str)]) -> BTreeMap<&'static str, &'static str> {
        pairs.iter().copied().collect()
    }

    fn public() -> url::Url {
        url::Url::parse("https://epsm.chalmers.se/").unwrap()
    }

    #[test]
    fn pg_isready_uses_the_apps_user_and_database() {
        let plan = Probe::PgIsready.plan(
            &env(&[
                ("DB_USER", "epsm_user"),
                ("DB_NAME", "epsm_db"),
                ("POSTGRES_USER", "x"),
            ]),
            &public(),
        );
        let ProbePlan::Exec { cmd, env, .. } = plan else {
            panic!()
        };
        assert_eq!(cmd, ["pg_isready", "-U", "epsm_user", "-d", "epsm_db"]);
        assert!(env.is_empty());
        let ProbePlan::Exec { cmd, .. } = Probe::PgIsready.plan(&env_none(), &public()) else {
            panic!()
        };
        assert_eq!(cmd, ["pg_isready"]);
    }

    fn env_none() -> BTreeMap<&'static str, &'static str> {
        BTreeMap::new()
    }

    #[test]
    fn the_redis_password_goes_in_the_exec_environment_not_the_command() {
        let plan = Probe::RedisPing.plan(&env(&[("REDIS_PASSWORD", "s3cret-pw")]), &public());
        let ProbePlan::Exec { cmd, env, judge } = plan else {
            panic!()
        };
        assert_eq!(cmd, ["redis-cli", "ping"]);
        assert_eq!(env, ["REDISCLI_AUTH=s3cret-pw"]);
        assert_eq!(judge, Judge::Pong);
        let ProbePlan::Exec { env, .. } = Probe::RedisPing.plan(&env_none(), &public()) else {
            panic!()
        };
        assert!(env.is_empty(), "no password, no auth");
    }

    #[test]
    fn the_public_probe_joins_the_path_to_the_public_url() {
        let plan = default_probe("nginx").plan(&env_none(), &public());
        assert_eq!(
            plan,
            ProbePlan::Http {
                url: "https://epsm.chalmers.se/health/".into()
            }
        );
        assert_eq!(
            default_probe("frontend").plan(&env_none(), &public()),
            ProbePlan::None
        );
    }

    #[test]
    fn django_health_reads_the_json_not_only_the_status() {
        // (exit code, stdout, stderr, verdict)
        type Case<'a> = (Option<i64>, &'a str, &'a str, Result<&'a str, &'a str>);
        let cases: &[Case] = &[
            (
                Some(0),
                r#"{"status": "healthy", "database": "healthy"}"#,
                "",
                Ok("status healthy, database healthy"),
            ),
            (
                Some(0),
                r#"{"status": "healthy", "database": "unhealthy: could not connect to server"}"#,
                "",
                Err("database: unhealthy: could not connect to server"),
            ),
            (
                Some(0),
                r#"{"status": "unhealthy", "database": "healthy", "reason": "EPSM_FAILURE=unhealthy"}"#,
                "",
                Err("status: unhealthy; reason: EPSM_FAILURE=unhealthy"),
            ),
            (
                Some(0),
                r#"{"status": "healthy"}"#,
                "",
                Err("database: missing"),
            ),
            (
                Some(0),
                "<html>502</html>",
                "",
                Err("answer is not JSON: <html>502</html>"),
            ),
            (
                Some(7),
                "",
                "curl: (7) Failed to connect to localhost port 8000",
                Err("request failed: curl: (7) Failed to connect to localhost port 8000"),
            ),
        ];
        for (code, out, err, want) in cases {
            let got = judge(Judge::DjangoHealthJson, *code, out, err);
            let got = got.as_ref().map(String::as_str).map_err(String::as_str);
            assert_eq!(got, *want, "{out}");
        }
    }

    #[test]
    fn redis_and_celery_need_their_answers() {
        assert_eq!(judge(Judge::Pong, Some(0), "PONG\n", ""), Ok("PONG".into()));
        assert_eq!(
            judge(
                Judge::Pong,
                Some(0),
                "NOAUTH Authentication required.\n",
                ""
            ),
            Err("no PONG: NOAUTH Authentication required.".into())
        );
        assert_eq!(
            judge(
                Judge::Pong,
                Some(1),
                "",
                "Could not connect to Redis at 127.0.0.1:6379: Connection refused"
            ),
            Err("no PONG: Could not connect to Redis at 127.0.0.1:6379: Connection refused".into())
        );
        let pong = "->  celery@abc: OK\n        pong\n\n1 node online.\n";
        assert_eq!(
            judge(Judge::CeleryPong, Some(0), pong, ""),
            Ok("1 worker answered pong".into())
        );
        assert_eq!(
            judge(
                Judge::CeleryPong,
                Some(69),
                "",
                "Error: No nodes replied within time constraint\n"
            ),
            Err("Error: No nodes replied within time constraint".into())
        );
    }

    #[test]
    fn a_schedule_file_is_fresh_until_max_age() {
        let j = Judge::FileAge { max_age_secs: 600 };
        assert_eq!(
            judge(j, Some(0), "1000\n900\n", ""),
            Ok("written 100 s ago".into())
        );
        assert_eq!(
            judge(j, Some(0), "5000\n1000\n", ""),
            Err("last written 66 min ago (more than 10 min)".into())
        );
        assert_eq!(
            judge(
                j,
                Some(1),
                "1000\n",
                "stat: cannot statx '/app/celerybeat-schedule': No such file or directory"
            ),
            Err("stat: cannot statx '/app/celerybeat-schedule': No such file or directory".into())
        );
        assert_eq!(
            judge(j, Some(0), "garbage", ""),
            Err("unexpected output: garbage".into())
        );
    }

    #[test]
    fn exit_codes_decide_generic_probes() {
        assert_eq!(
            judge(
                Judge::ExitCode,
                Some(0),
                "/var/run/postgresql:5432 - accepting connections\n",
                ""
            ),
            Ok("/var/run/postgresql:5432 - accepting connections".into())
        );
        assert_eq!(
            judge(
                Judge::ExitCode,
                Some(2),
                "/var/run/postgresql:5432 - no response\n",
                ""
            ),
            Err("exit 2: /var/run/postgresql:5432 - no response".into())
        );
        assert_eq!(
            judge(Judge::ExitCode, None, "", ""),
            Err("did not finish: no output".into())
        );
    }

    #[test]
    fn probes_parse_from_the_configuration() {
        let probes: BTreeMap<String, Probe> = toml_like(
            r#"{"backend": {"kind": "django_health"},
                "worker2": {"kind": "exec", "command": ["true"]},
                "celery_beat": {"kind": "file_fresh", "path": "/x", "max_age_secs": 60}}"#,
        );
        assert_eq!(probes["backend"], default_probe("backend"));
        assert_eq!(
            probes["worker2"],
            Probe::Exec {
                command: vec!["true".into()]
            }
        );
        assert_eq!(
            probes["celery_beat"],
            Probe::FileFresh {
                path: "/x".into(),
                max_age_secs: 60
            }
        );
        let bad = serde_json::from_str::<Probe>(r#"{"kind": "exec", "url": "x"}"#);
        assert!(bad.is_err(), "unknown keys are refused");
    }

    fn toml_like(json: &str) -> BTreeMap<String, Probe> {
        serde_json::from_str(json).unwrap()
    }
}
