//! Streaming routes, outside the request timeout: the live health reports and a service's log as
//! server-sent events, and the console's own counters for monitoring (`/metrics`). Every stream ends
//! when the server shuts down, so a graceful shutdown never waits on an open page, and when its
//! session ends (logout, expiry, a role rule removed); each holds a place within the stream limits.

use std::convert::Infallible;
use std::time::Duration;

use app::auth::Role;

use crate::auth::{LiveViewer, SignedIn};
use app::health::LogEvent;
use app::state::AppState;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures::{Stream, StreamExt, stream};
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

/// Lines of history a log view starts with, at most.
const MAX_TAIL: usize = 5000;

pub fn routes(shutdown: CancellationToken) -> Router<AppState> {
    let (for_health, for_logs, for_deploys) = (shutdown.clone(), shutdown.clone(), shutdown);
    Router::new()
        .route(
            "/api/health/events",
            get(move |state, user| health_events(state, user, for_health.clone())),
        )
        .route(
            "/api/logs/{service}",
            get(move |state, user, path, query| {
                service_logs(state, user, path, query, for_logs.clone())
            }),
        )
        .route(
            "/api/deploys/{id}/events",
            get(move |state, user, path| deploy_events(state, user, path, for_deploys.clone())),
        )
        .route("/backups/{id}/download", get(download_backup))
        .route("/deploys/{id}/log.txt", get(deploy_raw_log))
        .route("/metrics", get(metrics))
}

/// The newest health report at once, then every new one.
async fn health_events(
    State(state): State<AppState>,
    viewer: LiveViewer,
    shutdown: CancellationToken,
) -> Response {
    let receiver = state.health.subscribe();
    let reports = stream::unfold((receiver, true), |(mut rx, first)| async move {
        if !first {
            rx.changed().await.ok()?;
        }
        let report = rx.borrow_and_update().clone();
        let event = Event::default().json_data(&*report).ok()?;
        Some((Ok::<_, Infallible>(event), (rx, false)))
    });
    sse(reports, shutdown, viewer, state)
}

#[derive(Deserialize)]
struct LogQuery {
    tail: Option<usize>,
}

/// A service's log: the last `tail` lines, then new ones as they are written, every line scrubbed.
async fn service_logs(
    State(state): State<AppState>,
    viewer: LiveViewer,
    Path(service): Path<String>,
    Query(query): Query<LogQuery>,
    shutdown: CancellationToken,
) -> Response {
    let project = state.config.project_name();
    let container = match state.engine.service_container(&project, &service).await {
        Ok(Some(id)) => id,
        Ok(None) => {
            return (
                StatusCode::NOT_FOUND,
                format!("project {project} has no container for service {service:?}"),
            )
                .into_response();
        }
        Err(e) => return (StatusCode::SERVICE_UNAVAILABLE, e.to_string()).into_response(),
    };
    let scrubber = state.health.log_scrubber(&container).await;
    let tail = query.tail.unwrap_or(200).min(MAX_TAIL);
    let engine = state.engine.clone();
    let lines = stream::once(async move {
        let frames = match engine.logs(&container, tail, true).await {
            Ok(frames) => frames.boxed(),
            Err(e) => {
                let end = LogEvent::End {
                    reason: scrubber.scrub(&e.to_string()),
                };
                return stream::iter(vec![end]).boxed();
            }
        };
        let mut seq = 0u64;
        let scrubber = std::sync::Arc::new(scrubber);
        let end_scrubber = scrubber.clone();
        frames
            .map(move |frame| match frame {
                Ok(frame) => stream::iter(app::health::ssr::log_lines(&frame, &mut seq, &scrubber))
                    .map(LogEvent::Line)
                    .boxed(),
                Err(e) => stream::iter(vec![LogEvent::End {
                    reason: end_scrubber.scrub(&e.to_string()),
                }])
                .boxed(),
            })
            .flatten()
            .chain(stream::once(async {
                LogEvent::End {
                    reason: "the log ended (the container stopped or was removed)".into(),
                }
            }))
            .boxed()
    })
    .flatten()
    .map(|event| Ok::<_, Infallible>(Event::default().json_data(&event).unwrap_or_default()));
    sse(lines, shutdown, viewer, state)
}

/// A deploy's events: everything so far, then (while it runs) each new one until it finishes. A
/// finished deploy's stream is its steps, its stored log and its outcome.
async fn deploy_events(
    State(state): State<AppState>,
    viewer: LiveViewer,
    Path(id): Path<i64>,
    shutdown: CancellationToken,
) -> Response {
    use app::deploy::DeployEvent;
    let to_sse =
        |e: DeployEvent| Ok::<_, Infallible>(Event::default().json_data(&e).unwrap_or_default());
    if let Some((history, live)) = state.deployer.follow(id) {
        let finished = history
            .iter()
            .any(|e| matches!(e, DeployEvent::Finished { .. }));
        let rest = stream::unfold((live, finished), |(mut rx, done)| async move {
            if done {
                return None;
            }
            loop {
                match rx.recv().await {
                    Ok(event) => {
                        let done = matches!(event, DeployEvent::Finished { .. });
                        return Some((event, (rx, done)));
                    }
                    // A slow viewer missed lines: they are in the store; go on with the newest.
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
                }
            }
        });
        return sse(
            stream::iter(history).chain(rest).map(to_sse),
            shutdown,
            viewer,
            state,
        );
    }
    let deploy = match state.deployer.get(id).await {
        Ok(Some(deploy)) => deploy,
        Ok(None) => {
            return (StatusCode::NOT_FOUND, format!("there is no deploy #{id}")).into_response();
        }
        Err(e) => return (StatusCode::SERVICE_UNAVAILABLE, e.to_string()).into_response(),
    };
    // The newest lines only; the raw log (`/deploys/{id}/log.txt`) has every one.
    let (lines, earlier) = match state
        .store
        .deploy_log_tail(id, app::deploy::LOG_WINDOW)
        .await
    {
        Ok(tail) => tail,
        Err(e) => return (StatusCode::SERVICE_UNAVAILABLE, e.to_string()).into_response(),
    };
    let running = deploy.outcome == app::deploy::DeployOutcome::Running;
    let last_seq = lines.last().map_or(0, |l| l.seq);
    let mut events: Vec<DeployEvent> = deploy
        .steps
        .iter()
        .cloned()
        .enumerate()
        .map(|(position, step)| DeployEvent::Step { position, step })
        .collect();
    if earlier > 0 {
        events.push(DeployEvent::Earlier { lines: earlier });
    }
    events.extend(lines.into_iter().map(DeployEvent::Line));
    if !running {
        events.push(DeployEvent::Finished {
            outcome: deploy.outcome,
            summary: deploy.summary,
        });
        return sse(stream::iter(events).map(to_sse), shutdown, viewer, state);
    }
    // Another process runs it (`epsm-ops deploy`): follow what it writes to the store.
    let follow = stream::unfold(
        (state.store.clone(), deploy.steps, last_seq, false),
        move |(store, mut steps, mut seq, done)| async move {
            if done {
                return None;
            }
            tokio::time::sleep(STORE_POLL).await;
            let mut out = Vec::new();
            let now = match store.deploy(id).await {
                Ok(Some(now)) => now,
                _ => return None,
            };
            if let Ok(lines) = store
                .deploy_log_after(id, seq, app::deploy::LOG_WINDOW)
                .await
            {
                seq = lines.last().map_or(seq, |l| l.seq);
                out.extend(lines.into_iter().map(DeployEvent::Line));
            }
            for (position, step) in now.steps.iter().enumerate() {
                if steps.get(position) != Some(step) {
                    out.push(DeployEvent::Step {
                        position,
                        step: step.clone(),
                    });
                }
            }
            steps = now.steps;
            let done = now.outcome != app::deploy::DeployOutcome::Running;
            if done {
                out.push(DeployEvent::Finished {
                    outcome: now.outcome,
                    summary: now.summary,
                });
            }
            Some((stream::iter(out), (store, steps, seq, done)))
        },
    )
    .flatten();
    sse(
        stream::iter(events).chain(follow).map(to_sse),
        shutdown,
        viewer,
        state,
    )
}

/// A deploy's whole log as plain text, read from the store a page at a time while it is sent (a
/// build log of any length costs one page of memory).
async fn deploy_raw_log(
    State(state): State<AppState>,
    _viewer: SignedIn,
    Path(id): Path<i64>,
) -> Response {
    match state.deployer.get(id).await {
        Ok(Some(_)) => {}
        Ok(None) => {
            return (StatusCode::NOT_FOUND, format!("there is no deploy #{id}")).into_response();
        }
        Err(e) => return (StatusCode::SERVICE_UNAVAILABLE, e.to_string()).into_response(),
    }
    let store = state.store.clone();
    let pages = stream::unfold(Some(0u64), move |after| {
        let store = store.clone();
        async move {
            let seq = after?;
            match store
                .deploy_log_after(id, seq, app::deploy::LOG_WINDOW)
                .await
            {
                Ok(lines) if lines.is_empty() => None,
                Ok(lines) => {
                    let next = lines.last().map(|l| l.seq);
                    let text: String = lines
                        .iter()
                        .map(|l| format!("{}{}\n", if l.stderr { "! " } else { "  " }, l.text))
                        .collect();
                    Some((Ok::<_, std::io::Error>(text), next))
                }
                Err(e) => Some((
                    Ok(format!("\n[the log could not be read further: {e}]\n")),
                    None,
                )),
            }
        }
    });
    (
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        axum::body::Body::from_stream(pages),
    )
        .into_response()
}

/// How often a viewer of a deploy another process runs reads the store for what is new.
const STORE_POLL: Duration = Duration::from_secs(1);

/// `events` as server-sent events, until the server shuts down or the viewer's session ends; the
/// viewer's place within the stream limits is held as long as the stream is.
fn sse<S>(events: S, shutdown: CancellationToken, viewer: LiveViewer, state: AppState) -> Response
where
    S: Stream<Item = Result<Event, Infallible>> + Send + 'static,
{
    let LiveViewer { ticket, session } = viewer;
    let session_over = async move {
        loop {
            tokio::time::sleep(app::streams::SESSION_CHECK).await;
            if !state.gate.session_holds(&session, Role::Viewer).await {
                tracing::info!("a live stream ended with its session");
                return;
            }
        }
    };
    let end = async move {
        tokio::select! {
            () = shutdown.cancelled_owned() => {}
            () = session_over => {}
        }
    };
    let events = events.take_until(end).map(move |event| {
        let _held = &ticket;
        event
    });
    let mut response = Sse::new(events)
        // Also how soon a closed page is noticed (a write fails) and its place in the limits freed.
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(5)))
        .into_response();
    // Proxies (nginx) must pass events on as they come.
    response
        .headers_mut()
        .insert("x-accel-buffering", header::HeaderValue::from_static("no"));
    response
}

/// A backup file, with its size, a file name, its sha256 in a header, and range requests (a resumed
/// download) served by tower-http. Every download is in the audit log.
async fn download_backup(
    State(state): State<AppState>,
    user: SignedIn,
    Path(id): Path<i64>,
    request: axum::extract::Request,
) -> Response {
    use app::backup::BackupOutcome;
    use tower::ServiceExt;
    let actor = match user
        .at_least(&state, Role::Deployer, &format!("/backups/{id}/download"))
        .await
    {
        Ok(user) => user.actor(),
        Err(refused) => return refused,
    };
    let backup = match state.backups.get(id).await {
        Ok(Some(b)) if b.outcome == BackupOutcome::Succeeded => b,
        Ok(_) => {
            return (
                StatusCode::NOT_FOUND,
                format!("there is no backup #{id} to download"),
            )
                .into_response();
        }
        Err(e) => return (StatusCode::SERVICE_UNAVAILABLE, e.to_string()).into_response(),
    };
    let Some(file_name) = backup.file_name.clone() else {
        return (StatusCode::NOT_FOUND, format!("backup #{id} has no file")).into_response();
    };
    let path = state.config.backups_dir().join(&file_name);
    let range = request
        .headers()
        .get(header::RANGE)
        .and_then(|r| r.to_str().ok())
        .map(|r| format!(" ({r})"))
        .unwrap_or_default();
    let _ = state
        .store
        .record(app::audit::AuditEvent {
            actor: actor.name,
            action: "backup.download".into(),
            target: format!("backup #{id}"),
            outcome: app::audit::AuditOutcome::Ok,
            detail: format!("{file_name}{range}"),
        })
        .await;
    let mut response = match tower_http::services::ServeFile::new(&path)
        .oneshot(request)
        .await
    {
        Ok(r) => r.into_response(),
        Err(e) => return (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    };
    let headers = response.headers_mut();
    if let Ok(v) = header::HeaderValue::from_str(&format!("attachment; filename=\"{file_name}\"")) {
        headers.insert(header::CONTENT_DISPOSITION, v);
    }
    if let Some(sha) = backup
        .sha256
        .and_then(|s| header::HeaderValue::from_str(&s).ok())
    {
        headers.insert("x-checksum-sha256", sha);
    }
    headers.insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/octet-stream"),
    );
    response
}

/// Counters in the Prometheus text format: what the health benchmark reads, and what an operator's
/// monitoring can scrape.
async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    let page_reads = state.store.page_reads();
    let body = format!(
        "# HELP epsm_ops_docker_api_calls_total Requests the console made to the Docker engine.\n\
         # TYPE epsm_ops_docker_api_calls_total counter\n\
         epsm_ops_docker_api_calls_total {}\n\
         # HELP epsm_ops_health_rounds_total Health monitor rounds since start.\n\
         # TYPE epsm_ops_health_rounds_total counter\n\
         epsm_ops_health_rounds_total {}\n\
         # HELP epsm_ops_health_viewers Pages following the live health reports now.\n\
         # TYPE epsm_ops_health_viewers gauge\n\
         epsm_ops_health_viewers {}\n\
         # HELP epsm_ops_store_commits_total Transactions that wrote to the console's store.\n\
         # TYPE epsm_ops_store_commits_total counter\n\
         epsm_ops_store_commits_total {}\n\
         # HELP epsm_ops_page_reads_kept_total Page reads of the store answered from memory.\n\
         # TYPE epsm_ops_page_reads_kept_total counter\n\
         epsm_ops_page_reads_kept_total {}\n\
         # HELP epsm_ops_page_reads_queried_total Page reads of the store that queried SQLite.\n\
         # TYPE epsm_ops_page_reads_queried_total counter\n\
         epsm_ops_page_reads_queried_total {}\n",
        state.engine.api_calls(),
        state.health.rounds(),
        state.health.viewers(),
        state.store.commits(),
        page_reads.0,
        page_reads.1,
    );
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body)
}
