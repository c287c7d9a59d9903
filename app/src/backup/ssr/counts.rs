//! Row counts of a database's tables: recorded around a backup's dump (before and after, so writes
//! during the dump widen the range rather than make a false alarm), and compared with what a restore
//! drill finds in its scratch copy.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::backup::TableCount;
use crate::engine::ssr::Engine;

/// Tables with fewer rows than this (by PostgreSQL's estimate) are counted exactly; larger ones are
/// taken at the estimate (`pg_class.reltuples`), which costs nothing.
pub const EXACT_BELOW: i64 = 1_000_000;

/// How far a restored table may be from an estimated count (estimates trail the truth).
pub const ESTIMATE_TOLERANCE: f64 = 0.25;

/// How long one counting query may take.
const COUNT_WITHIN: Duration = Duration::from_secs(300);

/// Every user table with its rows: exact below `EXACT_BELOW`, else the estimate (a table never
/// analysed has no estimate, -1, and is counted). One query; `query_to_xml` runs each count.
fn counting_sql() -> String {
    format!(
        "SELECT format('%I.%I', n.nspname, c.relname), \
           CASE WHEN c.reltuples < {EXACT_BELOW} THEN \
             (xpath('/row/c/text()', query_to_xml(format('SELECT count(*) AS c FROM %I.%I', \
               n.nspname, c.relname), false, true, '')))[1]::text::bigint \
           ELSE c.reltuples::bigint END, \
           c.reltuples < {EXACT_BELOW} \
         FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema') \
           AND n.nspname NOT LIKE 'pg_toast%' ORDER BY 1"
    )
}

/// The tables and rows of the database `conninfo` names, through psql in `container`. The
/// connection string carries the session's application name, so what ends a backup's sessions ends
/// its counting too (it waits on a lock as pg_dump would).
pub async fn count_tables(
    engine: &Engine,
    container: &str,
    user: &str,
    conninfo: &str,
) -> Result<BTreeMap<String, (i64, bool)>, String> {
    let sql = counting_sql();
    let cmd = [
        "psql", "-X", "-At", "-F", "\t", "-U", user, "-d", conninfo, "-c", &sql,
    ];
    let out = engine
        .exec(container, &cmd, &[], COUNT_WITHIN)
        .await
        .map_err(|e| e.to_string())?;
    if !out.succeeded() {
        let said = out.stderr.lines().rfind(|l| !l.trim().is_empty());
        return Err(format!(
            "counting rows: psql exited {:?}: {}",
            out.exit_code,
            said.unwrap_or("no message")
        ));
    }
    parse_counts(&out.stdout)
}

fn parse_counts(text: &str) -> Result<BTreeMap<String, (i64, bool)>, String> {
    text.lines()
        .filter(|l| !l.is_empty())
        .map(|line| {
            let mut parts = line.split('\t');
            let (Some(table), Some(rows), Some(exact), None) =
                (parts.next(), parts.next(), parts.next(), parts.next())
            else {
                return Err(format!("counting rows: an unexpected line {line:?}"));
            };
            let rows: i64 = rows
                .parse()
                .map_err(|_| format!("counting rows: {table}: {rows:?} is not a count"))?;
            Ok((table.to_string(), (rows, exact == "t")))
        })
        .collect()
}

/// The record of a backup's tables from the counts before and after its dump. A table in only one
/// of them was created or dropped during the dump: it is left out.
pub fn record(
    before: &BTreeMap<String, (i64, bool)>,
    after: &BTreeMap<String, (i64, bool)>,
) -> Vec<TableCount> {
    before
        .iter()
        .filter_map(|(table, &(a, exact_a))| {
            let &(b, exact_b) = after.get(table)?;
            Some(TableCount {
                table: table.clone(),
                low: a.min(b),
                high: a.max(b),
                exact: exact_a && exact_b,
            })
        })
        .collect()
}

/// What a drill found, compared with the record: Ok with a summary, or Err with every difference.
pub fn compare(
    recorded: &[TableCount],
    restored: &BTreeMap<String, (i64, bool)>,
) -> Result<String, String> {
    let mut wrong = Vec::new();
    for t in recorded {
        let Some(&(rows, _)) = restored.get(&t.table) else {
            wrong.push(format!("table {} is missing", t.table));
            continue;
        };
        let fits = if t.exact {
            (t.low..=t.high).contains(&rows)
        } else {
            let slack = (t.high as f64 * ESTIMATE_TOLERANCE).ceil() as i64;
            (t.low - slack..=t.high + slack).contains(&rows)
        };
        if !fits {
            let expected = if t.low == t.high {
                t.low.to_string()
            } else {
                format!("{}..{}", t.low, t.high)
            };
            let how = if t.exact { "" } else { " (estimated)" };
            wrong.push(format!(
                "{} has {rows} rows, {expected}{how} were recorded",
                t.table
            ));
        }
    }
    if !wrong.is_empty() {
        return Err(wrong.join("; "));
    }
    let exact = recorded.iter().filter(|t| t.exact).count();
    Ok(format!(
        "{} tables with their rows as recorded ({exact} counted exactly, {} by estimate within {:.0}%)",
        recorded.len(),
        recorded.len() - exact,
        ESTIMATE_TOLERANCE * 100.0
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(rows: &[(&str, i64, bool)]) -> BTreeMap<String, (i64, bool)> {
        rows.iter()
            .map(|(t, n, e)| (t.to_string(), (*n, *e)))
            .collect()
    }

    #[test]
    fn psql_lines_parse_and_anything_else_is_an_error() {
        let parsed = parse_counts("public.a\t3\tt\npublic.big\t2000000\tf\n").unwrap();
        assert_eq!(
            parsed,
            counts(&[("public.a", 3, true), ("public.big", 2_000_000, false)])
        );
        assert!(parse_counts("public.a\tthree\tt").is_err());
        assert!(parse_counts("public.a\t3").is_err());
        assert_eq!(parse_counts("").unwrap(), BTreeMap::new());
    }

    #[test]
    fn writes_during_the_dump_widen_the_range_and_the_comparison_names_every_difference() {
        let before = counts(&[
            ("a", 3, true),
            ("b", 10, true),
            ("gone", 1, true),
            ("big", 1000, false),
        ]);
        let after = counts(&[
            ("a", 3, true),
            ("b", 12, true),
            ("big", 1100, false),
            ("new", 5, true),
        ]);
        let recorded = record(&before, &after);
        assert_eq!(
            recorded
                .iter()
                .map(|t| t.table.as_str())
                .collect::<Vec<_>>(),
            ["a", "b", "big"],
            "a table created or dropped during the dump is left out"
        );
        assert_eq!((recorded[1].low, recorded[1].high), (10, 12));
        let ok = compare(
            &recorded,
            &counts(&[("a", 3, true), ("b", 11, true), ("big", 1300, true)]),
        );
        assert!(ok.unwrap().starts_with("3 tables"));
        let wrong =
            compare(&recorded, &counts(&[("a", 2, true), ("big", 2000, true)])).unwrap_err();
        assert_eq!(
            wrong,
            "a has 2 rows, 3 were recorded; table b is missing; \
             big has 2000 rows, 1000..1100 (estimated) were recorded"
        );
    }
}
