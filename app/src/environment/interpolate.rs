//! Compose's `${VAR}` interpolation, as compose-go's `template` package does it: `$VAR`, `${VAR}`,
//! `$$` (a literal `$`), and the operators `:-` `-` (default), `:?` `?` (required), `:+` `+`
//! (alternative), with nested templates in defaults. A lone `$` stays literal; a malformed `${...}` is
//! an error. Pure: the caller says where values come from.

/// Why a template could not be interpolated. Never carries a variable's value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    /// Carries nothing of the text: it may be part of a secret. The caller names the key or line.
    #[error(
        "invalid interpolation: expected `${{NAME}}` or `${{NAME<op>...}}` with op one of :- - :? ? :+ +"
    )]
    Invalid,
    #[error("required variable {name} is missing a value{}", reason_suffix(.reason))]
    MissingRequired { name: String, reason: String },
}

fn reason_suffix(reason: &str) -> String {
    if reason.is_empty() {
        String::new()
    } else {
        format!(": {reason}")
    }
}

/// One variable a template referred to: its name and whether the lookup knew it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    pub name: String,
    pub found: bool,
}

/// Interpolates `template`, asking `lookup` for each variable. Also returns the references it made,
/// in order (unset ones included: compose warns and uses "").
pub fn interpolate(
    template: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<(String, Vec<Reference>), TemplateError> {
    let mut refs = Vec::new();
    let out = substitute(template, lookup, &mut refs)?;
    Ok((out, refs))
}

fn substitute(
    template: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
    refs: &mut Vec<Reference>,
) -> Result<String, TemplateError> {
    let bytes = template.as_bytes();
    let mut out = String::with_capacity(template.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'$' {
            // Copy the whole run up to the next `$` (keeps multi-byte characters intact).
            let next = template[i..].find('$').map_or(bytes.len(), |p| i + p);
            out.push_str(&template[i..next]);
            i = next;
            continue;
        }
        match bytes.get(i + 1) {
            Some(b'$') => {
                out.push('$');
                i += 2;
            }
            Some(&c) if is_name_start(c) => {
                let end = name_end(bytes, i + 1);
                let name = &template[i + 1..end];
                out.push_str(&look(name, lookup, refs).unwrap_or_default());
                i = end;
            }
            Some(b'{') => {
                let close = matching_brace(bytes, i + 1).ok_or(TemplateError::Invalid)?;
                out.push_str(&braced(&template[i + 2..close], lookup, refs)?);
                i = close + 1;
            }
            // `$` before anything else (or at the end) is a literal dollar.
            _ => {
                out.push('$');
                i += 1;
            }
        }
    }
    Ok(out)
}

/// The body of `${...}`: a name, optionally followed by an operator and its (templated) argument.
fn braced(
    body: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
    refs: &mut Vec<Reference>,
) -> Result<String, TemplateError> {
    let bytes = body.as_bytes();
    if bytes.first().is_none_or(|&c| !is_name_start(c)) {
        return Err(TemplateError::Invalid);
    }
    let end = name_end(bytes, 0);
    let name = &body[..end];
    let rest = &body[end..];
    if rest.is_empty() {
        return Ok(look(name, lookup, refs).unwrap_or_default());
    }
    let (colon, op_rest) = match rest.strip_prefix(':') {
        Some(r) => (true, r),
        None => (false, rest),
    };
    let mut chars = op_rest.chars();
    let op = chars.next().ok_or(TemplateError::Invalid)?;
    let arg = chars.as_str();
    let value = look(name, lookup, refs);
    let empty_counts = |v: &Option<String>| colon && v.as_deref() == Some("");
    match op {
        '-' => match &value {
            None => substitute(arg, lookup, refs),
            v if empty_counts(v) => substitute(arg, lookup, refs),
            Some(v) => Ok(v.clone()),
        },
        '+' => match &value {
            Some(v) if !(colon && v.is_empty()) => substitute(arg, lookup, refs),
            other => Ok(other.clone().unwrap_or_default()),
        },
        '?' => match &value {
            Some(v) if !(colon && v.is_empty()) => Ok(v.clone()),
            _ => Err(TemplateError::MissingRequired {
                name: name.to_string(),
                reason: substitute(arg, lookup, refs)?,
            }),
        },
        _ => Err(TemplateError::Invalid),
    }
}

fn look(
    name: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
    refs: &mut Vec<Reference>,
) -> Option<String> {
    let value = lookup(name);
    refs.push(Reference {
        name: name.to_string(),
        found: value.is_some(),
    });
    value
}

fn is_name_start(c: u8) -> bool {
    c.is_ascii_alphabetic() || c == b'_'
}

fn name_end(bytes: &[u8], start: usize) -> usize {
    start
        + bytes[start..]
            .iter()
            .take_while(|c| c.is_ascii_alphanumeric() || **c == b'_')
            .count()
}

/// Index of the `}` closing the `{` at `open`, counting nested `${...}` as compose does.
fn matching_brace(bytes: &[u8], open: usize) -> Option<usize> {
    let mut depth = 0usize;
    let mut i = open;
    while i < bytes.len() {
        match bytes[i] {
            b'{' => {
                depth += 1;
                i += 1; // compose skips the character after an opening brace
            }
            b'}' => {
                depth = depth.checked_sub(1)?;
                if depth == 0 {
                    return Some(i);
                }
            }
            _ => {}
        }
        i += 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: std::collections::HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn interpolation_follows_compose() {
        let lookup = env(&[("SET", "v"), ("EMPTY", ""), ("PW", "s3cret")]);
        let cases: &[(&str, &str)] = &[
            ("plain", "plain"),
            ("$SET", "v"),
            ("${SET}", "v"),
            ("a${SET}b$SET.c", "avbv.c"),
            ("$$SET", "$SET"),
            ("cost $5 and $", "cost $5 and $"),
            ("${UNSET}", ""),
            ("${UNSET:-d}", "d"),
            ("${EMPTY:-d}", "d"),
            ("${EMPTY-d}", ""),
            ("${UNSET-d}", "d"),
            ("${SET:-d}", "v"),
            ("${SET:+alt}", "alt"),
            ("${EMPTY:+alt}", ""),
            ("${EMPTY+alt}", "alt"),
            ("${UNSET+alt}", ""),
            ("${UNSET:-${SET}}", "v"),
            ("${UNSET:-${ALSO_UNSET:-deep}}x", "deepx"),
            (
                "redis://:${PW}@redis:6379/0",
                "redis://:s3cret@redis:6379/0",
            ),
            ("${UNSET:-a-b:c}", "a-b:c"),
            ("${SET?must}", "v"),
            ("é$SET€", "év€"),
        ];
        for (template, want) in cases {
            let (got, _) =
                interpolate(template, &lookup).unwrap_or_else(|e| panic!("{template}: {e}"));
            assert_eq!(&got, want, "template {template:?}");
        }
    }

    #[test]
    fn required_and_malformed_templates_are_errors() {
        let lookup = env(&[("EMPTY", "")]);
        assert_eq!(
            interpolate("${X:?set X in .env.production}", &lookup)
                .unwrap_err()
                .to_string(),
            "required variable X is missing a value: set X in .env.production"
        );
        assert_eq!(
            interpolate("${EMPTY:?}", &lookup).unwrap_err(),
            TemplateError::MissingRequired {
                name: "EMPTY".into(),
                reason: String::new()
            }
        );
        assert!(
            interpolate("${EMPTY?}", &lookup).is_ok(),
            "`?` accepts an empty value"
        );
        for bad in [
            "${}",
            "${1A}",
            "${A B}",
            "${A:x}",
            "${unterminated",
            "${A:-secret",
        ] {
            let err = interpolate(bad, &lookup).unwrap_err();
            assert_eq!(err, TemplateError::Invalid, "{bad}");
            assert!(!err.to_string().contains("secret"), "{err}");
        }
    }

    #[test]
    fn references_are_reported_in_order_with_whether_they_were_set() {
        let (_, refs) = interpolate("${A:-${B}} $C", &env(&[("B", "b"), ("C", "c")])).unwrap();
        let names: Vec<_> = refs.iter().map(|r| (r.name.as_str(), r.found)).collect();
        assert_eq!(names, [("A", false), ("B", true), ("C", true)]);
    }
}
