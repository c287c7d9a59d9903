//! PostgreSQL's tools as the console calls them: what a dump file is, and the command that restores
//! one (a restore of the live database and a restore drill alike).

use crate::backup::BackupFormat;

/// "`tool` exited 1: <its last message>", for a PostgreSQL tool that did not exit 0.
pub(crate) fn exited(tool: &str, code: Option<i64>, messages: &str) -> String {
    let said = messages
        .lines()
        .rfind(|l| !l.trim().is_empty())
        .unwrap_or("no message");
    format!(
        "{tool} exited {}: {said}",
        code.map_or("without a code".into(), |c| c.to_string())
    )
}

pub(crate) fn restore_tool(format: BackupFormat) -> &'static str {
    match format {
        BackupFormat::Custom => "pg_restore",
        BackupFormat::Plain => "psql",
    }
}

/// The command that reads the dump on its stdin and restores it in one transaction, stopping at the
/// first error.
pub(crate) fn restore_command(format: BackupFormat, user: &str, conninfo: &str) -> Vec<String> {
    let args: &[&str] = match format {
        BackupFormat::Custom => &[
            "pg_restore",
            "--clean",
            "--if-exists",
            "--single-transaction",
            "--no-owner",
            "-U",
            user,
            "-d",
            conninfo,
        ],
        BackupFormat::Plain => &[
            "psql",
            "-X",
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            "--single-transaction",
            "-U",
            user,
            "-d",
            conninfo,
        ],
    };
    args.iter().map(|s| s.to_string()).collect()
}

/// A pg_dump custom archive starts with `PGDMP`; plain SQL is text that starts with a comment or a
/// statement. Anything else is refused before anything is stopped.
pub(crate) async fn dump_format(path: &std::path::Path) -> Result<BackupFormat, String> {
    use tokio::io::AsyncReadExt;
    let mut head = [0u8; 256];
    let mut file = tokio::fs::File::open(path)
        .await
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let mut n = 0;
    while n < head.len() {
        match file.read(&mut head[n..]).await {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
        }
    }
    format_of(&head[..n]).ok_or_else(|| {
        format!(
            "{} is neither a pg_dump custom archive nor plain SQL",
            path.display()
        )
    })
}

fn format_of(head: &[u8]) -> Option<BackupFormat> {
    if head.starts_with(b"PGDMP") {
        return Some(BackupFormat::Custom);
    }
    let text = std::str::from_utf8(head)
        .ok()
        .or_else(|| {
            // The head may end inside a multi-byte character.
            let valid = std::str::from_utf8(head).err()?.valid_up_to();
            std::str::from_utf8(&head[..valid]).ok()
        })?
        .trim_start();
    let sql = ["--", "/*", "SET ", "CREATE ", "BEGIN", "SELECT "];
    sql.iter()
        .any(|start| text.starts_with(start))
        .then_some(BackupFormat::Plain)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_format_is_read_from_the_first_bytes() {
        assert_eq!(format_of(b"PGDMP\x01\x0e\x00"), Some(BackupFormat::Custom));
        assert_eq!(
            format_of(b"--\n-- PostgreSQL database dump\n"),
            Some(BackupFormat::Plain)
        );
        assert_eq!(
            format_of(b"\n  SET statement_timeout = 0;"),
            Some(BackupFormat::Plain)
        );
        assert_eq!(format_of(b"\x1f\x8b\x08 gzip"), None, "not a dump");
        assert_eq!(format_of(b"hello"), None);
        assert_eq!(format_of(b""), None, "an empty file");
        // A head cut inside a character is still read as text.
        let mut cut = b"-- caf".to_vec();
        cut.push(0xc3);
        assert_eq!(format_of(&cut), Some(BackupFormat::Plain));
    }

    #[test]
    fn both_commands_restore_in_one_transaction_and_stop_at_the_first_error() {
        let custom = restore_command(BackupFormat::Custom, "epsm", "dbname='epsm'");
        for flag in [
            "--single-transaction",
            "--clean",
            "--if-exists",
            "--no-owner",
        ] {
            assert!(custom.iter().any(|a| a == flag), "{flag}");
        }
        let plain = restore_command(BackupFormat::Plain, "epsm", "dbname='epsm'");
        assert!(plain.iter().any(|a| a == "--single-transaction"));
        assert!(plain.windows(2).any(|w| w == ["-v", "ON_ERROR_STOP=1"]));
    }
}
