//! Tasks from a JSON-lines file, or stdin (`-`): one object per line with `task_id`,
//! `wasm_cid`, optional `input_cid` and `entry` (or the Go names `TaskID`, `WasmCID`,
//! `InputCID`, `Entry`). A bad line is reported with its number and skipped; blank lines
//! and lines starting with `#` are ignored.

use std::future::Future;
use std::path::Path;
use std::pin::Pin;

use tokio::io::{AsyncBufRead, AsyncBufReadExt, BufReader};
use tracing::warn;

use crate::source::TaskSource;
use crate::task::Task;

pub struct JsonLinesSource {
    name: String,
    lines: tokio::io::Lines<Box<dyn AsyncBufRead + Send + Unpin>>,
    line_no: u64,
}

impl std::fmt::Debug for JsonLinesSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "JsonLinesSource({}, line {})", self.name, self.line_no)
    }
}

impl JsonLinesSource {
    /// Opens `path`, or stdin for `-`.
    pub async fn open(path: &Path) -> std::io::Result<Self> {
        let (name, reader): (String, Box<dyn AsyncBufRead + Send + Unpin>) =
            if path == Path::new("-") {
                ("stdin".into(), Box::new(BufReader::new(tokio::io::stdin())))
            } else {
                let file = tokio::fs::File::open(path).await?;
                (path.display().to_string(), Box::new(BufReader::new(file)))
            };
        Ok(Self::from_reader(name, reader))
    }

    pub fn from_reader(name: String, reader: Box<dyn AsyncBufRead + Send + Unpin>) -> Self {
        Self {
            name,
            lines: reader.lines(),
            line_no: 0,
        }
    }
}

/// One line's task, or why the line is not one.
pub fn parse_line(line: &str) -> Result<Option<Task>, String> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return Ok(None);
    }
    let task: Task = serde_json::from_str(line).map_err(|e| e.to_string())?;
    task.validated().map(Some)
}

impl TaskSource for JsonLinesSource {
    fn next_task(&mut self) -> Pin<Box<dyn Future<Output = Option<Task>> + Send + '_>> {
        Box::pin(async move {
            loop {
                let line = match self.lines.next_line().await {
                    Ok(Some(l)) => l,
                    Ok(None) => return None,
                    Err(e) => {
                        warn!(source = %self.name, "cannot read tasks any more: {e}");
                        return None;
                    }
                };
                self.line_no += 1;
                match parse_line(&line) {
                    Ok(Some(task)) => return Some(task),
                    Ok(None) => {}
                    Err(e) => {
                        warn!(source = %self.name, line = self.line_no, "skipping line {}: {e}", self.line_no)
                    }
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CID: &str = "QmbFMke1KXqnYyBBWxB74N4c5SBnJMVAiMNRcGu6x1AwQH";

    #[tokio::test]
    async fn bad_lines_are_skipped_and_the_rest_run() {
        let text = format!(
            "{{\"task_id\":\"a\",\"wasm_cid\":\"{CID}\"}}\nnot json\n\n# comment\n{{\"task_id\":\"b\",\"wasm_cid\":\"bad\"}}\n{{\"TaskID\":\"c\",\"WasmCID\":\"{CID}\",\"Entry\":\"f\"}}\n"
        );
        let mut src = JsonLinesSource::from_reader(
            "t".into(),
            Box::new(BufReader::new(std::io::Cursor::new(text.into_bytes()))),
        );
        let mut ids = Vec::new();
        while let Some(t) = src.next_task().await {
            ids.push(t.task_id);
        }
        assert_eq!(ids, vec!["a", "c"]);
        assert_eq!(src.line_no, 6);
    }

    #[test]
    fn parse_errors_say_what_is_wrong() {
        assert!(parse_line("{\"task_id\":\"a\"}")
            .unwrap_err()
            .contains("wasm_cid"));
        assert_eq!(parse_line("   ").unwrap(), None);
    }
}
