//! Server-sent events, read and written the one way every stage agrees on: the WHATWG HTML
//! standard's event-stream rules ("Server-sent events", interpreting an event stream).
//!
//! - A line ends in `\n`, `\r\n` or a lone `\r`. A `\r` that ends one input may be followed by
//!   the `\n` of the same `\r\n` at the start of the next, so state is kept across inputs.
//! - A line starting with `:` is a comment. Otherwise the field name runs to the first `:`, and
//!   one space after that colon is dropped from the value; a line without a colon is a field
//!   with an empty value.
//! - `data` appends its value and a `\n` to the event's data; `event` sets its type; every
//!   other field (`id`, `retry`, unknown names) changes nothing that faultline reads.
//! - An empty line ends the event. It is dispatched, and counted, only if it had at least one
//!   `data` field; otherwise (comments, keep-alives, a lone `event:`) it is dropped unseen.
//!
//! Two readers share those rules: [`EventScanner`] only finds where events end (the proxy
//! cuts streams there, and copies nothing), and [`Decoder`] also yields each event's type and
//! data (the load generator and the gateway read them). Their counts agree by construction and
//! by test. The writers ([`write_event`], [`json_event`], [`done_event`]) are what the
//! simulator and the gateway send.
//!
//! Not handled: a byte-order mark at the very start of a stream (no inference server sends one;
//! it would make the first line's field name unrecognised).

const DATA: &[u8] = b"data";
const EVENT: &[u8] = b"event";

/// What a decoder holds at most for one event (its current line plus its fields) unless told
/// otherwise: no event of a chat completion stream comes close, and a body without line ends
/// must not eat memory.
pub const DEFAULT_LIMIT: usize = 1 << 20;

/// Line splitting, the part of the rules both readers share.
#[derive(Clone, Copy, Debug, Default)]
struct LineEnds {
    /// The last byte seen was a `\r` ending a line: a `\n` next is part of that line end.
    after_cr: bool,
}

/// Where the line in progress stands within one input.
enum Split {
    /// The line's last bytes are `input[start..end]`; reading goes on at `next`.
    Ended {
        start: usize,
        end: usize,
        next: usize,
    },
    /// `input[start..]` belongs to a line that has not ended yet.
    Open { start: usize },
}

impl LineEnds {
    fn split(&mut self, input: &[u8]) -> Split {
        let mut start = 0;
        if self.after_cr && !input.is_empty() {
            self.after_cr = false;
            if input[0] == b'\n' {
                start = 1;
            }
        }
        let rest = &input[start..];
        match memchr::memchr2(b'\n', b'\r', rest) {
            None => Split::Open { start },
            Some(i) => {
                let end = start + i;
                let mut next = end + 1;
                if input[end] == b'\r' {
                    match input.get(next) {
                        Some(b'\n') => next += 1,
                        Some(_) => {}
                        None => self.after_cr = true,
                    }
                }
                Split::Ended { start, end, next }
            }
        }
    }
}

/// Finds where events end in a stream fed in arbitrary pieces, keeping a few bytes of state.
#[derive(Clone, Debug, Default)]
pub struct EventScanner {
    lines: LineEnds,
    /// The first bytes of the line in progress: enough to tell a `data` field from the rest.
    head: [u8; 5],
    /// Length of the line in progress (saturating; only "0", "4" and "5 or more" matter).
    line_len: usize,
    /// The event in progress has a `data` field, so the next empty line dispatches it.
    has_data: bool,
}

impl EventScanner {
    /// The offset just past the first event end in `input`; the scanner has consumed exactly
    /// the bytes before that offset, so the caller continues with the rest. `None`: all of
    /// `input` was consumed without an event ending.
    ///
    /// An event that ends in `\r\n` split across inputs ends at the `\r`; [`Self::owes_lf`]
    /// then says the `\n` starting the next input still belongs to it.
    pub fn next_end(&mut self, input: &[u8]) -> Option<usize> {
        let mut at = 0;
        while at < input.len() {
            match self.lines.split(&input[at..]) {
                Split::Open { start } => {
                    self.extend_line(&input[at + start..]);
                    return None;
                }
                Split::Ended { start, end, next } => {
                    self.extend_line(&input[at + start..at + end]);
                    at += next;
                    if self.end_line() {
                        return Some(at);
                    }
                }
            }
        }
        None
    }

    /// The last byte consumed was a `\r` ending a line, so a `\n` starting the next input
    /// belongs to that line end (and, after an event end, to that event).
    pub fn owes_lf(&self) -> bool {
        self.lines.after_cr
    }

    fn extend_line(&mut self, bytes: &[u8]) {
        for (slot, &b) in self.head.iter_mut().skip(self.line_len).zip(bytes) {
            *slot = b;
        }
        self.line_len = self.line_len.saturating_add(bytes.len());
    }

    /// Ends the line in progress; true when it was the empty line that dispatches an event.
    fn end_line(&mut self) -> bool {
        let len = std::mem::take(&mut self.line_len);
        if len == 0 {
            return std::mem::take(&mut self.has_data);
        }
        let head = &self.head[..len.min(self.head.len())];
        // `data` alone or `data:...`; `database: x` and `data2` are other fields.
        let is_data = head.strip_prefix(DATA).is_some_and(|after| match after {
            [] => len == DATA.len(),
            [b':', ..] => true,
            _ => false,
        });
        self.has_data |= is_data;
        false
    }
}

/// One dispatched event, borrowed from the decoder until the next call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Event<'a> {
    /// The `event:` field; empty when none was given (the standard's type `message`).
    pub name: &'a str,
    /// The `data:` lines, joined with `\n`.
    pub data: &'a str,
}

/// The fields of the event in progress.
#[derive(Clone, Debug, Default)]
struct Fields {
    /// Every `data` value followed by `\n`, as the standard builds its data buffer: non-empty
    /// exactly when the event has a `data` field.
    data: String,
    name: String,
    /// A field line (not a comment) has been read since the last empty line.
    open: bool,
}

impl Fields {
    fn reset(&mut self) {
        // Cleared, not dropped: the buffers are reused by every event of the stream.
        self.data.clear();
        self.name.clear();
        self.open = false;
    }

    fn size(&self) -> usize {
        self.data.len() + self.name.len()
    }

    fn take_line(&mut self, line: &[u8]) {
        if line.first() == Some(&b':') {
            return;
        }
        self.open = true;
        let (field, value) = match line.iter().position(|&b| b == b':') {
            Some(i) => {
                let value = &line[i + 1..];
                (&line[..i], value.strip_prefix(b" ").unwrap_or(value))
            }
            None => (line, &[][..]),
        };
        if field == DATA {
            push_lossy(&mut self.data, value);
            self.data.push('\n');
        } else if field == EVENT {
            self.name.clear();
            push_lossy(&mut self.name, value);
        }
    }

    fn event(&self) -> Event<'_> {
        Event {
            name: &self.name,
            data: self.data.strip_suffix('\n').unwrap_or(&self.data),
        }
    }
}

/// Appends `bytes` as text, invalid UTF-8 replaced as the standard says. Valid text (every
/// event of every backend) takes `str::from_utf8`'s fast check instead of the lossy decoder's
/// chunk-by-chunk walk.
fn push_lossy(out: &mut String, bytes: &[u8]) {
    match std::str::from_utf8(bytes) {
        Ok(text) => out.push_str(text),
        Err(_) => out.push_str(&String::from_utf8_lossy(bytes)),
    }
}

/// Decodes events from a stream fed in arbitrary pieces. A line that ends inside one piece is
/// read in place; only a line split across pieces is copied, into a buffer reused throughout.
#[derive(Clone, Debug)]
pub struct Decoder {
    lines: LineEnds,
    /// The start of a line split across inputs.
    line: Vec<u8>,
    /// The line in progress has at least one byte (held in `line`, or dropped while skipping).
    partial: bool,
    fields: Fields,
    /// The last call returned an event that still borrows `fields`; cleared on the next call.
    dispatched: bool,
    limit: usize,
    /// The event in progress outgrew `limit` and is dropped up to its empty line.
    skipping: bool,
    overflowed: bool,
}

impl Default for Decoder {
    fn default() -> Self {
        Decoder::new(DEFAULT_LIMIT)
    }
}

impl Decoder {
    /// A decoder that holds at most `limit` bytes for one event; a bigger event is dropped
    /// whole and recorded (see [`Self::overflowed`]).
    pub fn new(limit: usize) -> Self {
        Decoder {
            lines: LineEnds::default(),
            line: Vec::new(),
            partial: false,
            fields: Fields::default(),
            dispatched: false,
            limit,
            skipping: false,
            overflowed: false,
        }
    }

    /// Reads from the front of `input`, advancing it, up to and including the next event end,
    /// and returns that event. `None` when `input` is used up without one; what it held of an
    /// unfinished event is kept for the next call.
    pub fn next(&mut self, input: &mut &[u8]) -> Option<Event<'_>> {
        if std::mem::take(&mut self.dispatched) {
            self.fields.reset();
        }
        loop {
            let bytes = *input;
            if bytes.is_empty() {
                return None;
            }
            let (start, end, next) = match self.lines.split(bytes) {
                Split::Open { start } => {
                    self.hold(&bytes[start..]);
                    *input = &[];
                    return None;
                }
                Split::Ended { start, end, next } => (start, end, next),
            };
            *input = &bytes[next..];
            let piece = &bytes[start..end];
            if !self.partial && piece.is_empty() {
                let dropped = std::mem::take(&mut self.skipping);
                if !dropped && !self.fields.data.is_empty() {
                    self.dispatched = true;
                    return Some(self.fields.event());
                }
                self.fields.reset();
                continue;
            }
            if self.line.is_empty() && !self.partial {
                self.fields.take_line(piece);
            } else {
                self.hold(piece);
                if !self.skipping {
                    self.fields.take_line(&self.line);
                }
                self.line.clear();
            }
            self.partial = false;
            self.check_limit();
        }
    }

    /// Some event was bigger than the limit and was dropped.
    pub fn overflowed(&self) -> bool {
        self.overflowed
    }

    /// Bytes held for the event in progress.
    pub fn held(&self) -> usize {
        self.line.len() + self.fields.size()
    }

    /// What to send after the bytes decoded so far so that the next bytes start a new event:
    /// nothing between events, else the line end and empty line that close the open one. (A
    /// `\n` right after a `\r` would only complete that `\r\n`, hence the second one.)
    pub fn closing(&self) -> &'static str {
        if self.partial {
            "\n\n"
        } else if self.fields.open || self.skipping {
            if self.lines.after_cr {
                "\n\n"
            } else {
                "\n"
            }
        } else {
            ""
        }
    }

    /// Keeps part of a line split across inputs, unless the event is being dropped.
    fn hold(&mut self, bytes: &[u8]) {
        self.partial |= !bytes.is_empty();
        if self.skipping {
            return;
        }
        self.line.extend_from_slice(bytes);
        self.check_limit();
    }

    fn check_limit(&mut self) {
        if self.held() > self.limit {
            self.overflowed = true;
            self.skipping = true;
            self.line.clear();
            self.fields.reset();
            // Still open: the empty line that ends the dropped event is yet to come.
            self.fields.open = true;
        }
    }
}

/// Appends one event to `out`: its `event:` line when `name` is given (up to any line break,
/// which a name cannot hold), one `data:` line per line of `data`, and the empty line. Lines
/// end in `\n`, which every reader accepts.
pub fn write_event(out: &mut String, name: Option<&str>, data: &str) {
    if let Some(name) = name {
        write_event_name(out, name);
    }
    let mut rest = data;
    loop {
        let (line, tail) = match rest.find(['\r', '\n']) {
            Some(i) => {
                let skip = if rest[i..].starts_with("\r\n") { 2 } else { 1 };
                (&rest[..i], Some(&rest[i + skip..]))
            }
            None => (rest, None),
        };
        out.push_str("data: ");
        out.push_str(line);
        out.push('\n');
        match tail {
            Some(t) => rest = t,
            None => break,
        }
    }
    out.push('\n');
}

/// One event whose data is `value` as compact JSON, named or not. Compact JSON escapes every
/// line break inside strings, so it is always a single `data:` line. A typed value renders the
/// bytes its `serde_json::Value` would (fields in the same order) without building that tree.
pub fn json_event(name: Option<&str>, value: &impl serde::Serialize) -> String {
    let mut out = String::new();
    if let Some(name) = name {
        write_event_name(&mut out, name);
    }
    out.push_str("data: ");
    // Only a map with keys that are not strings can fail, and no event has one; should one,
    // the event says `null` rather than breaking the stream's framing.
    match serde_json::to_string(value) {
        Ok(json) => out.push_str(&json),
        Err(_) => out.push_str("null"),
    }
    out.push_str("\n\n");
    out
}

fn write_event_name(out: &mut String, name: &str) {
    let name = name.split(['\r', '\n']).next().unwrap_or_default();
    out.push_str("event: ");
    out.push_str(name);
    out.push('\n');
}

/// The data of the event that ends an OpenAI-style stream.
pub const DONE: &str = "[DONE]";

/// The event that ends an OpenAI-style stream: `data: [DONE]`.
pub fn done_event() -> String {
    let mut out = String::new();
    write_event(&mut out, None, DONE);
    out
}

/// Decodes a whole body in one go (tests and one-shot readers).
pub fn decode_all(body: &[u8]) -> Vec<(String, String)> {
    let mut d = Decoder::default();
    let mut input = body;
    let mut out = Vec::new();
    while let Some(e) = d.next(&mut input) {
        out.push((e.name.to_string(), e.data.to_string()));
    }
    out
}

#[cfg(test)]
mod tests;
