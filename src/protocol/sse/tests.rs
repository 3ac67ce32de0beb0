//! The codec against the standard's line rules, under every way a stream can be cut in frames.

use super::*;

/// A stream in pieces, each marked with whether it ends with an event end: line endings of
/// every kind, a comment block, an `event:` without data, a `data` line without a colon.
const SEGMENTS: &[(&str, bool)] = &[
    ("data: a\n\n", true),
    (": keep-alive\r\n\r\n", false),
    ("event: x\rdata: 1\rdata: 2\r\r", true),
    ("id: 7\r\ndata:b\r\n\r\n", true),
    ("event: lone\n\n", false),
    ("retry: 10\ndata\n\n", true),
    ("data: {\"k\": \"v\"}\r\n\n", true),
];

fn stream() -> Vec<u8> {
    SEGMENTS.iter().flat_map(|(s, _)| s.bytes()).collect()
}

fn expected_ends() -> Vec<usize> {
    let mut at = 0;
    let mut ends = Vec::new();
    for (s, ends_event) in SEGMENTS {
        at += s.len();
        if *ends_event {
            ends.push(at);
        }
    }
    ends
}

fn expected_events() -> Vec<(String, String)> {
    [
        ("", "a"),
        ("x", "1\n2"),
        ("", "b"),
        ("", ""),
        ("", "{\"k\": \"v\"}"),
    ]
    .iter()
    .map(|(n, d)| (n.to_string(), d.to_string()))
    .collect()
}

/// Event ends, as offsets into the whole stream, when it arrives in `pieces`. An event whose
/// `\r\n` is split between pieces ends after the `\n`, as the proxy cuts it (`owes_lf`).
fn scan(pieces: &[&[u8]]) -> Vec<usize> {
    let mut s = EventScanner::default();
    let mut found: Vec<usize> = Vec::new();
    let mut base = 0;
    let mut ended_at_piece_end = false;
    for piece in pieces.iter().filter(|p| !p.is_empty()) {
        if std::mem::take(&mut ended_at_piece_end) && s.owes_lf() && piece[0] == b'\n' {
            if let Some(last) = found.last_mut() {
                *last += 1;
            }
        }
        let mut at = 0;
        while let Some(end) = s.next_end(&piece[at..]) {
            at += end;
            found.push(base + at);
            ended_at_piece_end = at == piece.len();
        }
        base += piece.len();
    }
    found
}

fn decode(pieces: &[&[u8]]) -> Vec<(String, String)> {
    let mut d = Decoder::default();
    let mut out = Vec::new();
    for piece in pieces {
        let mut input = *piece;
        while let Some(e) = d.next(&mut input) {
            out.push((e.name.to_string(), e.data.to_string()));
        }
        assert!(input.is_empty(), "the decoder leaves nothing unread");
    }
    out
}

/// Every way of cutting `body` into one, two or three pieces, and one byte at a time.
fn framings(body: &[u8]) -> Vec<Vec<&[u8]>> {
    let mut all = vec![vec![body], body.chunks(1).collect()];
    for i in 0..=body.len() {
        for j in i..=body.len() {
            all.push(vec![&body[..i], &body[i..j], &body[j..]]);
        }
    }
    all
}

#[test]
fn every_framing_of_a_mixed_stream_gives_the_same_events_and_ends() {
    let body = stream();
    let framings = framings(&body);
    assert!(framings.len() > 5000, "{} framings", framings.len());
    for pieces in framings {
        let lens: Vec<usize> = pieces.iter().map(|p| p.len()).collect();
        assert_eq!(scan(&pieces), expected_ends(), "pieces of {lens:?}");
        assert_eq!(decode(&pieces), expected_events(), "pieces of {lens:?}");
    }
}

#[test]
fn lf_crlf_and_cr_line_ends_read_alike() {
    let lf = "event: n\ndata: 1\ndata: 2\n\n: c\n\ndata: 3\n\n";
    for ending in ["\n", "\r\n", "\r"] {
        let body = lf.replace('\n', ending);
        for pieces in [vec![body.as_bytes()], body.as_bytes().chunks(1).collect()] {
            assert_eq!(
                decode(&pieces),
                [("n".into(), "1\n2".into()), (String::new(), "3".into())],
                "{ending:?}"
            );
            assert_eq!(scan(&pieces).len(), 2, "{ending:?}");
        }
    }
}

#[test]
fn a_cr_ending_one_frame_and_a_lf_starting_the_next_are_one_line_end() {
    // Were the `\n` a second line end, the blank line would dispatch `a` on its own.
    let pieces: [&[u8]; 2] = [b"data: a\r", b"\ndata: b\r\n\r\n"];
    assert_eq!(decode(&pieces), [(String::new(), "a\nb".into())]);
    assert_eq!(scan(&pieces), [20]);

    let mut s = EventScanner::default();
    assert_eq!(s.next_end(b"data: a\r\n\r"), Some(10));
    assert!(s.owes_lf(), "the \\n of the event's \\r\\n may still come");
    assert_eq!(s.next_end(b"\ndata: b\n"), None);
    assert!(!s.owes_lf());
}

#[test]
fn field_rules_follow_the_standard() {
    let body = "data:  two spaces\n\n\
                database: not data\n\n\
                data2: not data\n\n\
                event: only a name\n\n\
                : comment\ndata: after a comment\n\n\
                event: a\ndata: 1\n\n\
                data: unnamed again\n\n\
                unknown: field\ndata:\n\n";
    let got = decode(&[body.as_bytes()]);
    let want: Vec<(String, String)> = [
        ("", " two spaces"),
        ("", "after a comment"),
        ("a", "1"),
        ("", "unnamed again"),
        ("", ""),
    ]
    .iter()
    .map(|(n, d)| (n.to_string(), d.to_string()))
    .collect();
    assert_eq!(got, want);
    for pieces in framings(body.as_bytes()) {
        assert_eq!(scan(&pieces).len(), want.len());
    }
}

#[test]
fn an_event_over_the_limit_is_dropped_and_recorded() {
    let mut d = Decoder::new(64);
    let big = format!("data: {}\n\ndata: small\n\n", "x".repeat(100));
    let mut got = Vec::new();
    for chunk in big.as_bytes().chunks(7) {
        let mut input = chunk;
        while let Some(e) = d.next(&mut input) {
            got.push(e.data.to_string());
        }
        assert!(d.held() <= 64, "held {}", d.held());
    }
    assert_eq!(got, ["small"]);
    assert!(d.overflowed());

    // A body without line ends at all stays bounded too.
    let mut d = Decoder::new(64);
    for _ in 0..100 {
        assert!(d.next(&mut &[b'x'; 50][..]).is_none());
        assert!(d.held() <= 64);
    }
    assert!(d.overflowed());
    let mut rest: &[u8] = b"\n\ndata: [DONE]\n\n";
    assert_eq!(
        d.next(&mut rest).map(|e| e.data.to_string()),
        Some(DONE.into())
    );

    let mut fine = Decoder::new(64);
    assert!(fine.next(&mut &b"data: ok\n\n"[..]).is_some());
    assert!(!fine.overflowed());
}

#[test]
fn written_events_read_back() {
    let mut out = String::new();
    write_event(&mut out, Some("n\nnot: part of the name"), "a\r\nb\rc\nd");
    write_event(&mut out, None, "");
    out.push_str(&json_event(
        Some("j"),
        &serde_json::json!({"s": "line\nbreak"}),
    ));
    out.push_str(&json_event(None, &serde_json::json!([1])));
    out.push_str(&done_event());
    let want: Vec<(String, String)> = [
        ("n", "a\nb\nc\nd"),
        ("", ""),
        ("j", r#"{"s":"line\nbreak"}"#),
        ("", "[1]"),
        ("", "[DONE]"),
    ]
    .iter()
    .map(|(n, d)| (n.to_string(), d.to_string()))
    .collect();
    assert_eq!(decode_all(out.as_bytes()), want);
    assert_eq!(scan(&[out.as_bytes()]).len(), want.len());
    assert_eq!(done_event(), "data: [DONE]\n\n");
}

#[test]
fn closing_makes_what_follows_a_new_event_wherever_the_stream_was_cut() {
    let body = stream();
    for cut in 0..=body.len() {
        let mut d = Decoder::default();
        let mut input = &body[..cut];
        while d.next(&mut input).is_some() {}
        let rest = format!("{}event: end\ndata: e\n\n", d.closing()).into_bytes();
        let mut last = None;
        let mut input = &rest[..];
        while let Some(e) = d.next(&mut input) {
            last = Some((e.name.to_string(), e.data.to_string()));
        }
        assert_eq!(last, Some(("end".into(), "e".into())), "cut at {cut}");
    }
}

#[test]
fn invalid_utf8_is_replaced_not_fatal() {
    let got = decode(&[b"data: \xff\xfe ok\n\n"]);
    assert_eq!(got, [(String::new(), "\u{fffd}\u{fffd} ok".into())]);
}
