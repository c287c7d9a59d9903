//! A command's output as lines, bounded: bytes are kept until a newline, so a UTF-8 character split
//! across two reads stays whole (and a secret in it is still found by the scrubber); a line longer
//! than `max` bytes is cut at a character boundary, marked, and the rest of it dropped as it comes,
//! so no line (however long, with or without a newline) holds more than `max` bytes in memory.

/// Appended to a line that was cut.
pub const CUT: &str = " [line cut]";

#[derive(Debug)]
pub struct LineSplitter {
    max: usize,
    buf: Vec<u8>,
    /// The current line was cut: drop bytes until its newline.
    dropping: bool,
}

impl LineSplitter {
    pub fn new(max: usize) -> LineSplitter {
        LineSplitter {
            max,
            buf: Vec::new(),
            dropping: false,
        }
    }

    /// The lines `bytes` completes (without their newlines).
    pub fn push(&mut self, mut bytes: &[u8]) -> Vec<String> {
        let mut lines = Vec::new();
        while !bytes.is_empty() {
            let newline = bytes.iter().position(|b| *b == b'\n');
            let (part, rest) = match newline {
                Some(at) => (&bytes[..at], &bytes[at + 1..]),
                None => (bytes, &[][..]),
            };
            if !self.dropping {
                let room = self.max - self.buf.len();
                if part.len() > room {
                    self.buf.extend_from_slice(&part[..room]);
                    lines.push(self.take(true));
                    self.dropping = true;
                } else {
                    self.buf.extend_from_slice(part);
                }
            }
            if newline.is_some() {
                if self.dropping {
                    self.dropping = false;
                } else {
                    lines.push(self.take(false));
                }
            }
            bytes = rest;
        }
        lines
    }

    /// What is left after the output ended (a last line without a newline).
    pub fn finish(mut self) -> Option<String> {
        (!self.buf.is_empty() && !self.dropping).then(|| self.take(false))
    }

    fn take(&mut self, cut: bool) -> String {
        let mut bytes = std::mem::take(&mut self.buf);
        if bytes.last() == Some(&b'\r') {
            bytes.pop();
        }
        if cut {
            // Do not end inside a character: back up to the start of the last, incomplete one.
            let valid = match std::str::from_utf8(&bytes) {
                Ok(_) => bytes.len(),
                Err(e) if e.error_len().is_none() => e.valid_up_to(),
                Err(_) => bytes.len(),
            };
            bytes.truncate(valid);
        }
        let mut line = String::from_utf8_lossy(&bytes).into_owned();
        if cut {
            line.push_str(CUT);
        }
        line
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(chunks: &[&[u8]], max: usize) -> Vec<String> {
        let mut s = LineSplitter::new(max);
        let mut lines: Vec<String> = chunks.iter().flat_map(|c| s.push(c)).collect();
        lines.extend(s.finish());
        lines
    }

    #[test]
    fn lines_come_whole_across_reads_and_a_character_split_between_reads_survives() {
        let secret = "lösenord-ö".as_bytes();
        let (a, b) = secret.split_at(2); // inside "ö"
        assert_eq!(
            split(&[b"one\ntw", b"o\r\npw=", a, b, b"\nlast"], 100),
            ["one", "two", "pw=lösenord-ö", "last"]
        );
        assert_eq!(split(&[b"\n\n"], 10), ["", ""]);
    }

    #[test]
    fn a_long_line_is_cut_at_a_character_and_the_rest_dropped_as_it_comes() {
        let long = "é".repeat(10); // 20 bytes
        let lines = split(&[long.as_bytes(), b"more of the same", b"\nnext\n"], 7);
        assert_eq!(lines, [format!("ééé{CUT}"), "next".to_string()]);
        // Without a newline at all: cut once, nothing kept.
        let mut s = LineSplitter::new(8);
        for _ in 0..1000 {
            s.push(&[b'x'; 1000]);
            assert!(s.buf.len() <= 8);
        }
        assert_eq!(s.finish(), None);
    }
}
