//! `request.prompts`: a JSONL file of prompts, read and checked with the experiment file, so a
//! bad line is an error with its file and line before anything starts.

use std::path::Path;

use serde::Deserialize;

/// The most prompts one file may hold; a drill needs a mix, not a corpus held in memory.
pub const MAX_PROMPTS: usize = 100_000;

/// One prompt of the file.
#[derive(Clone, Debug, PartialEq)]
pub enum Prompt {
    /// `{"prompt": "..."}`: sent as the user message's content.
    Text(String),
    /// `{"messages": [...]}`: sent as the chat's `messages`, as written.
    Messages(Vec<serde_json::Value>),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Line {
    #[serde(default)]
    prompt: Option<String>,
    #[serde(default)]
    messages: Option<Vec<serde_json::Value>>,
}

/// A problem with the file: the line it is on (0 for the whole file) and what is wrong.
#[derive(Debug, PartialEq)]
pub struct PromptsError {
    pub line: usize,
    pub message: String,
}

/// Reads `path` (already resolved against the experiment file's folder).
pub fn read(path: &Path) -> Result<Vec<Prompt>, PromptsError> {
    let text = std::fs::read_to_string(path).map_err(|e| PromptsError {
        line: 0,
        message: format!("cannot read {}: {e}", path.display()),
    })?;
    parse(&text)
}

/// Parses the file's text: blank lines are skipped; every other line is one prompt.
pub fn parse(text: &str) -> Result<Vec<Prompt>, PromptsError> {
    let mut prompts = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let at = |message: String| PromptsError { line, message };
        if raw.trim().is_empty() {
            continue;
        }
        if prompts.len() == MAX_PROMPTS {
            return Err(at(format!("more than {MAX_PROMPTS} prompts")));
        }
        let parsed: Line = serde_json::from_str(raw).map_err(|e| {
            at(format!(
                "not a JSON object with a `prompt` string or a `messages` array: {e}"
            ))
        })?;
        let prompt = match (parsed.prompt, parsed.messages) {
            (Some(p), None) => Prompt::Text(p),
            (None, Some(m)) if m.is_empty() => return Err(at("`messages` is empty".into())),
            (None, Some(m)) => {
                if let Some(bad) = m.iter().position(|m| {
                    m.get("role").and_then(serde_json::Value::as_str).is_none()
                        || m.get("content").is_none()
                }) {
                    return Err(at(format!(
                        "message {} needs a `role` string and a `content`",
                        bad + 1
                    )));
                }
                Prompt::Messages(m)
            }
            (Some(_), Some(_)) => return Err(at("give `prompt` or `messages`, not both".into())),
            (None, None) => return Err(at("needs a `prompt` string or a `messages` array".into())),
        };
        prompts.push(prompt);
    }
    if prompts.is_empty() {
        return Err(PromptsError {
            line: 0,
            message: "the prompts file holds no prompt".into(),
        });
    }
    Ok(prompts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_forms_read_and_blank_lines_are_skipped() {
        let text = "{\"prompt\": \"hello there\"}\n\n{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}]}\n";
        let p = parse(text).unwrap();
        assert_eq!(p.len(), 2);
        assert_eq!(p[0], Prompt::Text("hello there".into()));
        assert!(matches!(&p[1], Prompt::Messages(m) if m.len() == 1));
    }

    #[test]
    fn a_bad_line_is_named() {
        let cases = [
            (
                "{\"prompt\": \"a\"}\n{\"prompt\": 3}\n",
                2,
                "not a JSON object",
            ),
            ("{\"prompt\": \"a\"}\n\n{}\n", 3, "needs a `prompt`"),
            ("{\"prompt\": \"a\", \"messages\": []}", 1, "not both"),
            ("{\"messages\": []}", 1, "is empty"),
            (
                "{\"messages\": [{\"content\": \"x\"}]}",
                1,
                "message 1 needs a `role`",
            ),
            ("{\"prompt\": \"a\", \"model\": \"m\"}", 1, "unknown field"),
            ("not json", 1, "not a JSON object"),
        ];
        for (text, line, says) in cases {
            let e = parse(text).unwrap_err();
            assert_eq!(e.line, line, "{text}: {e:?}");
            assert!(e.message.contains(says), "{text}: {}", e.message);
        }
    }

    #[test]
    fn an_empty_or_missing_file_is_refused() {
        assert_eq!(parse("\n \n").unwrap_err().line, 0);
        let e = read(Path::new("/nonexistent/prompts.jsonl")).unwrap_err();
        assert!(e.message.contains("cannot read"), "{}", e.message);
    }
}
