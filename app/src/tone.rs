//! How a log line is coloured: by what it says, not by the stream it came on. compose prints its
//! normal progress ("Built", "Started") on stderr and gunicorn its INFO lines too; painting all of
//! stderr red makes a green deploy look full of errors.

/// Words that mark a line as an error wherever they stand (whole words, any case).
const ERROR_WORDS: [&str; 7] = [
    "error",
    "errors",
    "fatal",
    "traceback",
    "exception",
    "panic",
    "critical",
];

/// Whether a line says that something went wrong: one of `ERROR_WORDS`, or an exception's name
/// (`OperationalError`, `RuntimeException`).
pub fn says_error(text: &str) -> bool {
    // Identifiers stay whole: `add_error_messages` names a migration, it does not say "error".
    text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .any(|word| {
            ERROR_WORDS.iter().any(|e| word.eq_ignore_ascii_case(e))
                || (word.len() > "Error".len() && word.ends_with("Error"))
                || (word.len() > "Exception".len() && word.ends_with("Exception"))
        })
}

/// The CSS class of a log line: `err` (red) for an error, `out` (neutral) for anything else.
/// `failed_step` marks the stderr of a step that failed: what it said last is why.
pub fn line_class(text: &str, stderr: bool, failed_step: bool) -> &'static str {
    if says_error(text) || (stderr && failed_step) {
        "line err"
    } else {
        "line out"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_lines_that_say_error_are_red() {
        for (text, stderr, failed, want) in [
            (
                " Container epsm-backend-1  Started",
                true,
                false,
                "line out",
            ),
            ("#12 DONE 0.4s", true, false, "line out"),
            (
                "[2026-12-01 10:00:00 +0000] [7] [INFO] Booting worker with pid: 7",
                true,
                false,
                "line out",
            ),
            (
                "  Applying auth.0007_alter_validators_add_error_messages... OK",
                false,
                false,
                "line out",
            ),
            (
                "Applying simulations.0002_failure_switch... OK",
                false,
                false,
                "line out",
            ),
            (
                "Traceback (most recent call last):",
                true,
                false,
                "line err",
            ),
            (
                "django.db.utils.OperationalError: could not connect",
                true,
                false,
                "line err",
            ),
            (
                "ERROR: failed to solve: process did not complete",
                true,
                false,
                "line err",
            ),
            (
                "FATAL:  password authentication failed",
                false,
                false,
                "line err",
            ),
            (
                "Error response from daemon: no such container",
                true,
                false,
                "line err",
            ),
            // A failed step's stderr is why it failed, whatever its words.
            ("RuntimeError raised in migration", true, true, "line err"),
            ("exit status 1", true, true, "line err"),
            ("exit status 1", false, true, "line out"),
            // Words that merely contain one are not it.
            ("terrorist_detection app loaded", false, false, "line out"),
            ("errorless run", false, false, "line out"),
        ] {
            assert_eq!(line_class(text, stderr, failed), want, "{text:?}");
        }
    }
}
