//! Commands in a container through the exec API: waited for with bounded output, followed line by
//! line, or streamed into a writer (a dump).

use super::*;

impl Engine {
    /// Runs `cmd` in a running container through the API (no `docker` CLI), waits up to `timeout` for
    /// it to end, and returns its exit code and output.
    pub async fn exec(
        &self,
        container: &str,
        cmd: &[&str],
        env: &[String],
        timeout: Duration,
    ) -> Result<ExecOutput, EngineError> {
        self.exec_following(container, cmd, env, timeout, None)
            .await
    }

    /// Like `exec`, and every chunk of output is also sent to `follow` as it comes (`true` for
    /// stderr), for steps whose output is shown live.
    pub async fn exec_following(
        &self,
        container: &str,
        cmd: &[&str],
        env: &[String],
        timeout: Duration,
        follow: Option<tokio::sync::mpsc::Sender<(bool, Vec<u8>)>>,
    ) -> Result<ExecOutput, EngineError> {
        let docker = self.client().await?;
        let what = format!(
            "exec `{}` in {}",
            cmd.first().copied().unwrap_or(""),
            short_id(container)
        );
        let options = CreateExecOptions {
            cmd: Some(cmd.iter().map(|s| s.to_string()).collect()),
            env: Some(env.to_vec()),
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            ..Default::default()
        };
        // create, start, inspect
        self.count(3);
        let run = async {
            let created = docker
                .create_exec(container, options)
                .await
                .map_err(|e| self.call_error(&what, &e))?;
            let mut out = ExecOutput {
                exit_code: None,
                stdout: String::new(),
                stderr: String::new(),
            };
            if let StartExecResults::Attached { mut output, .. } = docker
                .start_exec(&created.id, None)
                .await
                .map_err(|e| self.call_error(&what, &e))?
            {
                while let Some(chunk) = output.next().await {
                    let (stderr, message) = match chunk.map_err(|e| self.call_error(&what, &e))? {
                        LogOutput::StdErr { message } => (true, message),
                        LogOutput::StdOut { message } | LogOutput::Console { message } => {
                            (false, message)
                        }
                        LogOutput::StdIn { .. } => continue,
                    };
                    append_bounded(
                        if stderr {
                            &mut out.stderr
                        } else {
                            &mut out.stdout
                        },
                        &message,
                    );
                    if let Some(follow) = &follow {
                        // A viewer that went away does not stop the command.
                        let _ = follow.send((stderr, message.to_vec())).await;
                    }
                }
            }
            let inspect = docker
                .inspect_exec(&created.id)
                .await
                .map_err(|e| self.call_error(&what, &e))?;
            out.exit_code = inspect.exit_code;
            Ok(out)
        };
        match tokio::time::timeout(timeout, run).await {
            Ok(result) => result,
            Err(_) => Err(EngineError::Timeout {
                what,
                after: timeout,
            }),
        }
    }

    /// Runs `cmd` in a container with its stdout written to `sink` as it comes (never held in memory)
    /// and, when given, `stdin` fed to it. Returns the exit code and the (bounded) stderr. No timeout:
    /// a dump of a large database takes as long as it takes; the caller may drop the future.
    pub async fn exec_streaming(
        &self,
        container: &str,
        cmd: &[&str],
        sink: &mut (dyn tokio::io::AsyncWrite + Unpin + Send),
        stdin: Option<Box<dyn tokio::io::AsyncRead + Unpin + Send>>,
    ) -> Result<(Option<i64>, String), EngineError> {
        use tokio::io::AsyncWriteExt;
        let docker = self.client().await?;
        let what = format!(
            "exec `{}` in {}",
            cmd.first().copied().unwrap_or(""),
            short_id(container)
        );
        let options = CreateExecOptions {
            cmd: Some(cmd.iter().map(|s| s.to_string()).collect()),
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            attach_stdin: Some(stdin.is_some()),
            ..Default::default()
        };
        self.count(3);
        let created = docker
            .create_exec(container, options)
            .await
            .map_err(|e| self.call_error(&what, &e))?;
        let mut stderr = String::new();
        if let StartExecResults::Attached {
            mut output,
            mut input,
        } = docker
            .start_exec(&created.id, None)
            .await
            .map_err(|e| self.call_error(&what, &e))?
        {
            // Feeds stdin, then waits forever: the exec is over when its output ends, and a command
            // that exits before reading all its input (pg_restore --list stops after the TOC) must
            // not leave us pushing the rest into a pipe nobody reads.
            let feeding = async {
                if let Some(mut stdin) = stdin {
                    let _ = tokio::io::copy(&mut stdin, &mut input).await;
                    // End of input: the command sees EOF on its stdin. (Without stdin the connection
                    // is left alone: half-closing it could end the output early.)
                    let _ = input.shutdown().await;
                }
                std::future::pending::<std::convert::Infallible>().await
            };
            let reading = async {
                while let Some(chunk) = output.next().await {
                    match chunk.map_err(|e| self.call_error(&what, &e))? {
                        LogOutput::StdOut { message } | LogOutput::Console { message } => sink
                            .write_all(&message)
                            .await
                            .map_err(|e| EngineError::Call {
                                endpoint: self.endpoint.clone(),
                                what: what.clone(),
                                reason: format!("writing its output: {e}"),
                            })?,
                        LogOutput::StdErr { message } => append_bounded(&mut stderr, &message),
                        LogOutput::StdIn { .. } => {}
                    }
                }
                Ok::<(), EngineError>(())
            };
            tokio::select! {
                read = reading => read?,
                never = feeding => match never {},
            }
        }
        let inspect = docker
            .inspect_exec(&created.id)
            .await
            .map_err(|e| self.call_error(&what, &e))?;
        Ok((inspect.exit_code, stderr))
    }
}

/// The result of a command run inside a container.
#[derive(Debug, Clone, PartialEq)]
pub struct ExecOutput {
    /// None when the engine did not report one (the process did not finish).
    pub exit_code: Option<i64>,
    pub stdout: String,
    pub stderr: String,
}

impl ExecOutput {
    pub fn succeeded(&self) -> bool {
        self.exit_code == Some(0)
    }
}

pub(super) fn append_bounded(buf: &mut String, bytes: &[u8]) {
    const CUT: &str = "\n[output cut]\n";
    if buf.len() >= EXEC_OUTPUT_LIMIT {
        return;
    }
    let room = EXEC_OUTPUT_LIMIT - buf.len();
    let text = String::from_utf8_lossy(bytes);
    if text.len() <= room {
        buf.push_str(&text);
    } else {
        let mut end = room;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        buf.push_str(&text[..end]);
        buf.push_str(CUT);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_is_cut_at_the_limit_on_a_char_boundary() {
        let mut buf = String::new();
        append_bounded(&mut buf, "é".repeat(EXEC_OUTPUT_LIMIT).as_bytes());
        assert!(buf.ends_with("[output cut]\n"));
        assert!(buf.len() <= EXEC_OUTPUT_LIMIT + 20);
        let before = buf.len();
        append_bounded(&mut buf, b"more");
        assert_eq!(
            buf.len(),
            before,
            "nothing is added once the limit is reached"
        );
    }
}
