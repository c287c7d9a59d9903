//! A container's log as the Health page follows it: Docker's frames cut into bounded, numbered
//! lines, every line through the scrubber that knows this container's secrets.

use super::*;

impl HealthMonitor {
    /// A scrubber for one container's log: the env file's secrets and those in the container's own
    /// environment (it may have been started with values the file no longer holds).
    pub async fn log_scrubber(&self, container: &str) -> Scrubber {
        let env = crate::environment::disk::env_values(&self.config);
        let inspect = self.engine.inspect_container(container).await.ok();
        let container_env = inspect
            .as_ref()
            .and_then(|i| i.config.as_ref()?.env.as_deref());
        self.scrubber_with(&env, container_env)
    }

    /// A scrubber for the env file's secrets and the secret-looking values of containers' own
    /// environments (`KEY=value` lists): a container started before the env file changed may hold
    /// values the file no longer has.
    pub(super) fn scrubber_with<'a>(
        &self,
        env: &BTreeMap<String, String>,
        container_envs: impl IntoIterator<Item = &'a [String]>,
    ) -> Scrubber {
        let mut secrets = self
            .masker
            .secret_values(env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        for vars in container_envs {
            secrets.extend(
                self.masker
                    .secret_values(vars.iter().filter_map(|kv| kv.split_once('='))),
            );
        }
        Scrubber::new(&secrets)
    }
}

/// The lines of one frame of a container's log (`timestamps` on): each scrubbed, then cut to
/// `MAX_LOG_LINE` bytes, numbered from `seq`.
pub fn log_lines(
    frame: &bollard::container::LogOutput,
    seq: &mut u64,
    scrubber: &Scrubber,
) -> Vec<LogLine> {
    use bollard::container::LogOutput;
    let (bytes, stderr) = match frame {
        LogOutput::StdErr { message } => (message, true),
        LogOutput::StdOut { message } | LogOutput::Console { message } => (message, false),
        LogOutput::StdIn { .. } => return vec![],
    };
    String::from_utf8_lossy(bytes)
        .split('\n')
        .map(|l| l.trim_end_matches('\r'))
        .filter(|l| !l.is_empty())
        .map(|line| {
            let (time, text) = match line.split_once(' ') {
                Some((t, rest)) if DateTime::parse_from_rfc3339(t).is_ok() => (t, rest),
                _ => ("", line),
            };
            let mut text = scrubber.scrub(text);
            if text.len() > MAX_LOG_LINE {
                let mut end = MAX_LOG_LINE;
                while !text.is_char_boundary(end) {
                    end -= 1;
                }
                text.truncate(end);
                text.push_str(" [line cut]");
            }
            *seq += 1;
            LogLine {
                seq: *seq,
                stderr,
                time: time.to_string(),
                text,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_frames_become_scrubbed_numbered_lines() {
        use crate::environment::secrets::Secret;
        let scrubber = Scrubber::new(&[Secret::new("hunter2-secret")]);
        let frame = bollard::container::LogOutput::StdErr {
            message: "2026-11-25T10:00:00.000000001Z password=hunter2-secret\r\n\
                      2026-11-25T10:00:01Z redis://:pw12345@redis:6379/0\nno timestamp here\n"
                .into(),
        };
        let mut seq = 10;
        let lines = log_lines(&frame, &mut seq, &scrubber);
        assert_eq!(lines.len(), 3);
        assert!(lines.iter().all(|l| l.stderr));
        assert_eq!(lines[0].seq, 11);
        assert_eq!(lines[0].time, "2026-11-25T10:00:00.000000001Z");
        assert!(!lines[0].text.contains("hunter2"), "{}", lines[0].text);
        assert!(!lines[1].text.contains("pw12345"), "{}", lines[1].text);
        assert_eq!(lines[2].time, "");
        assert_eq!(lines[2].text, "no timestamp here");
        assert_eq!(seq, 13);
    }

    #[test]
    fn a_runaway_line_is_cut() {
        let frame = bollard::container::LogOutput::StdOut {
            message: "é".repeat(MAX_LOG_LINE).into(),
        };
        let lines = log_lines(&frame, &mut 0, &Scrubber::new(&[]));
        assert!(lines[0].text.len() <= MAX_LOG_LINE + 12);
        assert!(lines[0].text.ends_with("[line cut]"));
    }
}
