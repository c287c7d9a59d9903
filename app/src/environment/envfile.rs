//! `.env.production` read exactly as `docker compose --env-file` reads it (compose-go's dotenv
//! parser): `KEY=value`, `KEY: value`, `export KEY=value`, a bare `KEY` (taken from the environment),
//! `#` comments (inline after " #" when unquoted), single quotes (literal), double quotes (escapes and
//! interpolation), values across lines inside quotes, CRLF and a UTF-8 BOM. Every entry keeps its line;
//! a file compose would reject is an error with the line and the reason, never with a value.

use super::interpolate::{Reference, TemplateError, interpolate};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quoting {
    None,
    Single,
    Double,
}

/// One assignment in the file, in file order (a key set twice appears twice).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvEntry {
    pub key: String,
    /// The value compose uses: unquoted, unescaped and interpolated.
    pub value: String,
    /// 1-based line of the key.
    pub line: usize,
    pub quoting: Quoting,
    /// A bare `KEY` line: the value comes from the environment compose runs in.
    pub inherited: bool,
    /// Variables the value's template referred to.
    pub references: Vec<Reference>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {reason}")]
pub struct EnvFileError {
    pub line: usize,
    pub reason: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EnvFile {
    pub entries: Vec<EnvEntry>,
}

impl EnvFile {
    /// The assignment compose ends up using for `key` (the last one wins).
    pub fn last(&self, key: &str) -> Option<&EnvEntry> {
        self.entries.iter().rev().find(|e| e.key == key)
    }

    /// The value compose ends up with for `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.last(key).map(|e| e.value.as_str())
    }

    /// Every key with its final value, sorted by key.
    pub fn resolved(&self) -> std::collections::BTreeMap<&str, &str> {
        self.entries
            .iter()
            .map(|e| (e.key.as_str(), e.value.as_str()))
            .collect()
    }
}

/// Parses an env file. `environment` is the environment compose runs in: compose consults it first
/// when interpolating (then the values set earlier in the file), and bare `KEY` lines take it from there.
pub fn parse(
    text: &str,
    environment: &dyn Fn(&str) -> Option<String>,
) -> Result<EnvFile, EnvFileError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut parser = Parser {
        rest: text,
        line: 1,
    };
    let mut file = EnvFile::default();
    while let Some((key, line, inherited)) = parser.next_key()? {
        if inherited && key.is_empty() {
            continue; // `export` alone on a line: compose ignores it
        }
        if inherited {
            if let Some(value) = environment(&key) {
                file.entries.push(EnvEntry {
                    key,
                    value,
                    line,
                    quoting: Quoting::None,
                    inherited: true,
                    references: Vec::new(),
                });
            }
            continue;
        }
        let (raw, quoting) = parser.value(&key)?;
        let (value, references) = if quoting == Quoting::Single {
            (raw, Vec::new())
        } else {
            let lookup =
                |name: &str| environment(name).or_else(|| file.get(name).map(str::to_string));
            interpolate(&raw, &lookup).map_err(|e| EnvFileError {
                line,
                reason: match e {
                    TemplateError::Invalid => format!("{key}: {e}"),
                    TemplateError::MissingRequired { .. } => e.to_string(),
                },
            })?
        };
        file.entries.push(EnvEntry {
            key,
            value,
            line,
            quoting,
            inherited: false,
            references,
        });
    }
    Ok(file)
}

struct Parser<'a> {
    rest: &'a str,
    line: usize,
}

/// Whitespace within a line (compose's isSpace: no line feed).
fn is_space(c: char) -> bool {
    matches!(
        c,
        '\t' | '\u{b}' | '\u{c}' | '\r' | ' ' | '\u{85}' | '\u{a0}'
    )
}

impl<'a> Parser<'a> {
    fn advance(&mut self, by: usize) {
        self.line += self.rest[..by].matches('\n').count();
        self.rest = &self.rest[by..];
    }

    /// Skips blank space and comment lines; returns the next key, its line, and whether it is bare.
    fn next_key(&mut self) -> Result<Option<(String, usize, bool)>, EnvFileError> {
        loop {
            let start = self
                .rest
                .find(|c: char| !c.is_whitespace())
                .unwrap_or(self.rest.len());
            self.advance(start);
            if self.rest.is_empty() {
                return Ok(None);
            }
            if !self.rest.starts_with('#') {
                break;
            }
            let end = self.rest.find('\n').unwrap_or(self.rest.len());
            self.advance(end);
        }
        let line = self.line;
        if let Some(after) = self.rest.strip_prefix("export")
            && after.starts_with(|c: char| c.is_whitespace())
        {
            let skip = after.len() - after.trim_start_matches(is_space).len();
            self.rest = &after[skip..];
        }
        let mut end = None;
        for (i, c) in self.rest.char_indices() {
            match c {
                c if is_space(c) => {}
                '=' | ':' | '\n' => {
                    end = Some((i, c));
                    break;
                }
                '_' | '.' | '-' | '[' | ']' => {}
                c if c.is_alphanumeric() => {}
                c => {
                    return Err(EnvFileError {
                        line,
                        reason: format!("unexpected character {c:?} in a variable name"),
                    });
                }
            }
        }
        // A last line with neither `=` nor a line feed: a bare key.
        let (end, separator) = end.unwrap_or((self.rest.len(), '\n'));
        let key = self.rest[..end].trim_end().to_string();
        if key.contains(' ') {
            return Err(EnvFileError {
                line,
                reason: format!("key {key:?} contains a space"),
            });
        }
        let inherited = separator == '\n';
        if key.is_empty() && !inherited {
            return Err(EnvFileError {
                line,
                reason: "a value without a key".into(),
            });
        }
        let consumed = (end + separator.len_utf8()).min(self.rest.len());
        self.advance(consumed);
        if !inherited {
            let skip = self.rest.len() - self.rest.trim_start_matches(is_space).len();
            self.advance(skip);
        }
        Ok(Some((key, line, inherited)))
    }

    /// The raw value after the separator: unquoted (up to the line end or " #"), or quoted (with the
    /// escapes compose applies). Double-quoted values still need interpolation.
    fn value(&mut self, key: &str) -> Result<(String, Quoting), EnvFileError> {
        let quote = match self.rest.chars().next() {
            Some('"') => '"',
            Some('\'') => '\'',
            _ => {
                let end = self.rest.find('\n').unwrap_or(self.rest.len());
                let line = &self.rest[..end];
                let value = line.split(" #").next().unwrap_or("").trim_end();
                let value = value.to_string();
                self.advance(end);
                return Ok((value, Quoting::None));
            }
        };
        let start_line = self.line;
        let mut chars = String::new();
        let mut escaped = false;
        for (i, c) in self.rest.char_indices().skip(1) {
            if c != quote {
                if !escaped && c == '\\' {
                    escaped = true;
                    continue;
                }
                if escaped {
                    escaped = false;
                    chars.push('\\');
                }
                chars.push(c);
                continue;
            }
            if escaped {
                escaped = false;
                chars.push(c);
                continue;
            }
            self.advance(i + 1);
            return Ok(if quote == '"' {
                (unescape_double_quoted(&chars), Quoting::Double)
            } else {
                (chars, Quoting::Single)
            });
        }
        Err(EnvFileError {
            line: start_line,
            reason: format!("the quoted value of {key} is not terminated"),
        })
    }
}

/// Escapes compose honours in double quotes: \a \b \f \n \r \t \v \" \\ and \0NNN (octal); `\$` stays
/// a literal dollar through interpolation. Any other backslash is kept as written.
fn unescape_double_quoted(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        let Some(&next) = chars.peek() else {
            out.push('\\');
            break;
        };
        let simple = match next {
            'a' => Some('\u{7}'),
            'b' => Some('\u{8}'),
            'f' => Some('\u{c}'),
            'n' => Some('\n'),
            'r' => Some('\r'),
            't' => Some('\t'),
            'v' => Some('\u{b}'),
            '"' => Some('"'),
            '\\' => Some('\\'),
            _ => None,
        };
        if let Some(ch) = simple {
            chars.next();
            out.push(ch);
        } else if next == '$' {
            chars.next();
            out.push_str("$$");
        } else if next == '0' {
            // `\0` and up to three digits; only exactly three octal digits (<= 255) make a character.
            chars.next();
            let mut digits = String::new();
            while digits.len() < 3 && chars.peek().is_some_and(|d| d.is_ascii_digit()) {
                digits.push(chars.next().unwrap_or('0'));
            }
            let octal = (digits.len() == 3 && digits.bytes().all(|d| d < b'8'))
                .then(|| u32::from_str_radix(&digits, 8).ok())
                .flatten()
                .filter(|v| *v <= 255)
                .and_then(char::from_u32);
            match octal {
                Some(ch) => out.push(ch),
                // As compose does: the `0` is gone, the backslash and digits stay.
                None => {
                    out.push('\\');
                    out.push_str(&digits);
                }
            }
        } else {
            out.push('\\');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    fn values(text: &str) -> Vec<(String, String)> {
        parse(text, &no_env)
            .unwrap_or_else(|e| panic!("{text:?}: {e}"))
            .entries
            .into_iter()
            .map(|e| (e.key, e.value))
            .collect()
    }

    #[test]
    fn values_are_read_as_compose_reads_them() {
        let cases: &[(&str, &[(&str, &str)])] = &[
            ("A=1\nB=two words\n", &[("A", "1"), ("B", "two words")]),
            ("export A=1", &[("A", "1")]),
            ("exportA=1", &[("exportA", "1")]),
            ("A: yaml style", &[("A", "yaml style")]),
            ("A = spaced  ", &[("A", "spaced")]),
            (
                "# comment\n\n  A=1 # inline\nB=a#b\n",
                &[("A", "1"), ("B", "a#b")],
            ),
            ("A=\nB=", &[("A", ""), ("B", "")]),
            ("A='single $HOME \\n'", &[("A", "single $HOME \\n")]),
            ("A='it\\'s'", &[("A", "it's")]),
            ("A=\"tab\\tnl\\nq\\\"bs\\\\\"", &[("A", "tab\tnl\nq\"bs\\")]),
            ("A=\"keep \\q\"", &[("A", "keep \\q")]),
            ("A=\"dollar \\$A\"", &[("A", "dollar $A")]),
            (
                "A=\"multi\nline\"\nB=2",
                &[("A", "multi\nline"), ("B", "2")],
            ),
            ("A=1\r\nB=2\r\n", &[("A", "1"), ("B", "2")]),
            ("\u{feff}A=1", &[("A", "1")]),
            (
                "A=x\nB=${A}y\nC=\"$A-$B\"\nD='$A'",
                &[("A", "x"), ("B", "xy"), ("C", "x-xy"), ("D", "$A")],
            ),
            (
                "P=pw\nURL=redis://:${P}@redis:6379/0",
                &[("P", "pw"), ("URL", "redis://:pw@redis:6379/0")],
            ),
            ("A=1\nA=2", &[("A", "1"), ("A", "2")]),
            (
                "A=\"quoted\" # comment\nB=2",
                &[("A", "quoted"), ("B", "2")],
            ),
            ("A.B-C[0]=ok", &[("A.B-C[0]", "ok")]),
            ("A=\"\\0101\\012\\0\"", &[("A", "A\\12\\")]),
        ];
        for (text, want) in cases {
            let want: Vec<(String, String)> = want
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            assert_eq!(values(text), want, "{text:?}");
        }
    }

    #[test]
    fn lines_are_kept_for_every_entry() {
        let file = parse("# head\n\nA=1\nB=\"two\nlines\"\n\nexport C=3\n", &no_env).unwrap();
        let lines: Vec<_> = file
            .entries
            .iter()
            .map(|e| (e.key.as_str(), e.line))
            .collect();
        assert_eq!(lines, [("A", 3), ("B", 4), ("C", 7)]);
    }

    #[test]
    fn the_environment_wins_in_interpolation_and_fills_bare_keys() {
        let environment = |k: &str| (k == "HOST").then(|| "from-env".to_string());
        let file = parse(
            "HOST=file\nURL=http://${HOST}/\nHOST\nMISSING\n",
            &environment,
        )
        .unwrap();
        assert_eq!(file.get("URL"), Some("http://from-env/"));
        let bare: Vec<_> = file
            .entries
            .iter()
            .filter(|e| e.inherited)
            .map(|e| e.key.as_str())
            .collect();
        assert_eq!(
            bare,
            ["HOST"],
            "a bare key unknown to the environment is not set"
        );
        assert_eq!(file.get("HOST"), Some("from-env"));
    }

    #[test]
    fn malformed_files_are_errors_with_the_line_and_without_the_value() {
        let cases: &[(&str, usize, &str)] = &[
            (
                "A=1\nB=\"s3cret-unterminated\nC=3",
                2,
                "the quoted value of B is not terminated",
            ),
            ("A=1\nB C=2", 2, "key \"B C\" contains a space"),
            (
                "A=1\n\nB!=s3cret",
                3,
                "unexpected character '!' in a variable name",
            ),
            (
                "A=${B:?B is required}",
                1,
                "required variable B is missing a value: B is required",
            ),
            ("A=${s3cret", 1, "A: invalid interpolation"),
            ("=s3cret", 1, "a value without a key"),
        ];
        for (text, line, reason) in cases {
            let err = parse(text, &no_env).unwrap_err();
            assert_eq!(err.line, *line, "{text:?}: {err}");
            assert!(
                err.reason.starts_with(reason),
                "{text:?}: got {:?}",
                err.reason
            );
            assert!(
                !err.to_string().contains("s3cret"),
                "a value leaked into {err}"
            );
        }
    }

    #[test]
    fn any_input_parses_or_fails_without_panicking() {
        let pieces = [
            "A", "=", "\"", "'", "\\", "$", "{", "}", ":-", "#", " ", "\n", "\r", "é", "export ",
        ];
        // Every sequence of up to four pieces: 15^4 inputs, each must return, not panic.
        let mut count = 0;
        for a in pieces {
            for b in pieces {
                for c in pieces {
                    for d in pieces {
                        let text = format!("{a}{b}{c}{d}");
                        let _ = parse(&text, &no_env);
                        count += 1;
                    }
                }
            }
        }
        assert_eq!(count, 15usize.pow(4));
    }

    /// Random fuzzing on stable Rust (cargo-fuzz needs a nightly toolchain): random lines of keys,
    /// separators and values built from the dialect's tokens and random characters, for
    /// `EPSM_FUZZ_SECS` seconds (default 2). Every input must return and an error's line must exist.
    /// When every line has a separator and there are no quotes (which may carry a value's text across
    /// lines into key position, where errors name it), the secret-looking token stands only in values
    /// and must never appear in an error.
    #[test]
    fn random_inputs_parse_or_fail_without_quoting_a_value() {
        use rand::{Rng, SeedableRng};
        const SENTINEL: &str = "s3cret-Value";
        let keys = [
            "A", "KEY_1", "a.b-c", "", " ", "é", "1X", "export", "#C", "K K",
        ];
        let separators = ["=", ": ", ":", " = ", "", "=\"", "='"];
        let pieces = [
            "\"", "'", "\\", "\\n", "\\'", "\\\"", "\\0", "\\101", "$", "${", "}", "$A", "${A}",
            ":-", ":?", "?", "-", "+", ":+", "#", " #", " ", "\t", "é", "\u{feff}", "=", SENTINEL,
        ];
        let endings = ["\n", "\r\n", "\r", ""];
        let secs = std::env::var("EPSM_FUZZ_SECS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(2u64);
        let seed = std::env::var("EPSM_FUZZ_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(20261125u64);
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let pick = |list: &[&'static str], rng: &mut rand::rngs::StdRng| {
            list[rng.random_range(0..list.len())]
        };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
        let mut inputs = 0u64;
        while std::time::Instant::now() < deadline {
            let mut text = String::new();
            // Whether every value is plainly in value position (a separator, no quotes).
            let mut plain = true;
            for _ in 0..rng.random_range(1..6) {
                if rng.random_bool(0.2) {
                    text.push_str("export ");
                }
                text.push_str(pick(&keys, &mut rng));
                let separator = pick(&separators, &mut rng);
                plain &= !separator.is_empty();
                text.push_str(separator);
                for _ in 0..rng.random_range(0..12) {
                    if rng.random_bool(0.1) {
                        // Any character but line breaks (those belong to the line structure).
                        let c = char::from_u32(rng.random_range(0x20..0x2FFF)).unwrap_or('x');
                        text.push(c);
                    } else {
                        text.push_str(pick(&pieces, &mut rng));
                    }
                }
                text.push_str(pick(&endings, &mut rng));
            }
            let lines = text.split('\n').count() + text.matches('\r').count() + 1;
            if let Err(e) = parse(&text, &no_env) {
                assert!(e.line >= 1 && e.line <= lines, "{text:?}: {e}");
                if plain && !text.contains(['"', '\'']) {
                    assert!(
                        !e.to_string().contains(SENTINEL),
                        "a value in the error: {text:?}: {e}"
                    );
                }
            }
            inputs += 1;
        }
        eprintln!(
            "fuzzed the env-file parser with {inputs} random inputs in {secs} s (seed {seed})"
        );
        assert!(inputs > 0);
    }
}
