//! Plain-text tables for people (`--json` prints the same data for scripts).

use serde_json::Value;

pub struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(header: &[&str]) -> Self {
        Self {
            header: header.iter().map(|s| s.to_string()).collect(),
            rows: Vec::new(),
        }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    pub fn render(&self) -> String {
        let cols = self.header.len();
        let mut widths: Vec<usize> = self.header.iter().map(|h| h.chars().count()).collect();
        for r in &self.rows {
            for (i, c) in r.iter().enumerate().take(cols) {
                widths[i] = widths[i].max(c.chars().count());
            }
        }
        let line = |cells: &[String]| {
            let mut s = String::new();
            for (i, w) in widths.iter().enumerate() {
                let c = cells.get(i).map(String::as_str).unwrap_or("");
                s.push_str(c);
                if i + 1 < cols {
                    s.push_str(&" ".repeat(w - c.chars().count() + 2));
                }
            }
            s.trim_end().to_string()
        };
        let mut out = line(&self.header);
        out.push('\n');
        for r in &self.rows {
            out.push_str(&line(r));
            out.push('\n');
        }
        out
    }

    pub fn print(&self) {
        crate::out::text(&self.render());
    }
}

/// A JSON value as a table cell (`-` for null or missing).
pub fn cell(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// A timestamp cut to seconds (`2026-03-01 10:15:30`), or `-`.
pub fn short_time(v: &Value) -> String {
    match v.as_str() {
        Some(s) if s.len() >= 19 => s[..19].replace('T', " "),
        Some(s) => s.to_string(),
        None => "-".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn columns_are_aligned_to_the_widest_cell() {
        let mut t = Table::new(&["a", "bb"]);
        t.row(vec!["long".into(), "x".into()]);
        assert_eq!(t.render(), "a     bb\nlong  x\n");
    }

    #[test]
    fn cells_show_dashes_for_nothing_and_times_to_the_second() {
        assert_eq!(cell(&Value::Null), "-");
        assert_eq!(cell(&json!(3)), "3");
        assert_eq!(
            short_time(&json!("2026-03-01T10:15:30.123Z")),
            "2026-03-01 10:15:30"
        );
    }
}
