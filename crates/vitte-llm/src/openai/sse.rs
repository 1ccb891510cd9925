//! An incremental parser of server-sent events
//! (<https://html.spec.whatwg.org/multipage/server-sent-events.html#event-stream-interpretation>).
//!
//! Bytes arrive in arbitrary pieces: a line, a UTF-8 character or a `\r\n`
//! pair may be split between two network reads, so the parser keeps the
//! unfinished line and only decodes whole ones.

use crate::error::LlmError;

/// A line longer than this is not an SSE stream we can use; stop before it
/// eats the memory.
const MAX_LINE_BYTES: usize = 4 * 1024 * 1024;

/// One dispatched event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SseEvent {
    /// The `event:` field, when the server named the event.
    pub(crate) event: Option<String>,
    /// The `data:` lines, joined with `\n`.
    pub(crate) data: String,
}

/// Parser state between two pieces of the body.
#[derive(Debug, Default)]
pub(crate) struct SseParser {
    /// Bytes of the line not yet terminated.
    line: Vec<u8>,
    /// The previous piece ended in `\r`: a leading `\n` belongs to it.
    skip_lf: bool,
    /// Nothing has been read yet: a byte-order mark may follow.
    started: bool,
    data: String,
    has_data: bool,
    event: Option<String>,
}

impl SseParser {
    /// Feeds the next piece of the body; returns the events it completed.
    pub(crate) fn push(&mut self, bytes: &[u8]) -> Result<Vec<SseEvent>, LlmError> {
        let mut events = Vec::new();
        let mut rest = bytes;
        if self.skip_lf {
            self.skip_lf = false;
            if let Some(tail) = rest.strip_prefix(b"\n") {
                rest = tail;
            }
        }
        while let Some(end) = rest.iter().position(|&b| b == b'\n' || b == b'\r') {
            self.line.extend_from_slice(&rest[..end]);
            let terminator = rest[end];
            rest = &rest[end + 1..];
            if terminator == b'\r' {
                match rest.first() {
                    Some(b'\n') => rest = &rest[1..],
                    Some(_) => {}
                    None => self.skip_lf = true,
                }
            }
            let line = std::mem::take(&mut self.line);
            if let Some(event) = self.line_done(&line) {
                events.push(event);
            }
        }
        self.line.extend_from_slice(rest);
        if self.line.len() > MAX_LINE_BYTES {
            return Err(LlmError::Protocol {
                detail: format!("an event-stream line is longer than {MAX_LINE_BYTES} bytes"),
            });
        }
        Ok(events)
    }

    /// The body ended. The specification drops an event not followed by a
    /// blank line; servers that forget the last blank line are common enough
    /// that it is dispatched instead.
    pub(crate) fn finish(&mut self) -> Option<SseEvent> {
        let line = std::mem::take(&mut self.line);
        let mut event = None;
        if !line.is_empty() {
            event = self.line_done(&line);
        }
        event.or_else(|| self.dispatch())
    }

    fn line_done(&mut self, raw: &[u8]) -> Option<SseEvent> {
        let mut line = String::from_utf8_lossy(raw);
        if !self.started {
            self.started = true;
            if let Some(stripped) = line.strip_prefix('\u{feff}') {
                line = stripped.to_owned().into();
            }
        }
        if line.is_empty() {
            return self.dispatch();
        }
        if line.starts_with(':') {
            // A comment; OpenRouter sends `: OPENROUTER PROCESSING` as a
            // keep-alive while the model is queued.
            return None;
        }
        let (field, value) = match line.split_once(':') {
            Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
            None => (line.as_ref(), ""),
        };
        match field {
            "data" => {
                if self.has_data {
                    self.data.push('\n');
                }
                self.data.push_str(value);
                self.has_data = true;
            }
            "event" => self.event = Some(value.to_owned()),
            // `id` and `retry` only matter to reconnecting browsers.
            _ => {}
        }
        None
    }

    fn dispatch(&mut self) -> Option<SseEvent> {
        let event = self.event.take();
        if !std::mem::take(&mut self.has_data) {
            return None;
        }
        Some(SseEvent {
            event,
            data: std::mem::take(&mut self.data),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(s: &str) -> SseEvent {
        SseEvent {
            event: None,
            data: s.to_owned(),
        }
    }

    fn parse_all(pieces: &[&[u8]]) -> Vec<SseEvent> {
        let mut parser = SseParser::default();
        let mut events = Vec::new();
        for piece in pieces {
            events.extend(parser.push(piece).expect("parses"));
        }
        events.extend(parser.finish());
        events
    }

    #[test]
    fn data_lines_comments_and_done() {
        let body =
            b": OPENROUTER PROCESSING\n\ndata: {\"a\":1}\n\n: keep-alive\n\ndata: [DONE]\n\n";
        assert_eq!(parse_all(&[body]), vec![data("{\"a\":1}"), data("[DONE]")]);
    }

    #[test]
    fn multi_line_events_are_joined_with_newlines() {
        let body = b"data: first\ndata:second\ndata\n\n";
        assert_eq!(parse_all(&[body]), vec![data("first\nsecond\n")]);
    }

    #[test]
    fn named_events_keep_their_name_and_reset_after_dispatch() {
        let body = b"event: error\ndata: {\"error\":{}}\n\ndata: x\n\n";
        assert_eq!(
            parse_all(&[body]),
            vec![
                SseEvent {
                    event: Some("error".into()),
                    data: "{\"error\":{}}".into()
                },
                data("x")
            ]
        );
    }

    #[test]
    fn every_line_ending_and_split_point_gives_the_same_events() {
        let text = "data: héllo\r\n\r\ndata: wörld\rdata: again\r\rdata: end\n\n";
        let expected = vec![data("héllo"), data("wörld\nagain"), data("end")];
        let bytes = text.as_bytes();
        for split in 0..=bytes.len() {
            let (a, b) = bytes.split_at(split);
            assert_eq!(parse_all(&[a, b]), expected, "split at {split}");
        }
        let one_by_one: Vec<&[u8]> = bytes.chunks(1).collect();
        assert_eq!(parse_all(&one_by_one), expected);
    }

    #[test]
    fn a_last_event_without_blank_line_is_still_dispatched() {
        assert_eq!(parse_all(&[b"data: [DONE]"]), vec![data("[DONE]")]);
        assert_eq!(parse_all(&[b"data: [DONE]\n"]), vec![data("[DONE]")]);
    }

    #[test]
    fn blank_lines_without_data_dispatch_nothing() {
        assert_eq!(parse_all(&[b"\n\n\r\n: c\n\nevent: ping\n\n"]), vec![]);
    }

    #[test]
    fn a_byte_order_mark_is_ignored() {
        assert_eq!(
            parse_all(&["\u{feff}data: x\n\n".as_bytes()]),
            vec![data("x")]
        );
    }

    #[test]
    fn an_endless_line_is_refused() {
        let mut parser = SseParser::default();
        let piece = vec![b'a'; 1024 * 1024];
        let mut result = Ok(Vec::new());
        for _ in 0..5 {
            result = parser.push(&piece);
        }
        assert!(matches!(result, Err(LlmError::Protocol { .. })));
    }
}
