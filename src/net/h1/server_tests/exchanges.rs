//! Requests read and answers framed: keep-alive, pipelining, uploads, HTTP/1.0, bad requests.

use super::*;
use hyper::StatusCode;

#[tokio::test]
async fn keeps_the_connection_for_request_after_request_and_answers_pipelined_ones_in_order() {
    let (mut client, _drain) = connect(SERVER, echo).await;
    client
        .write_all(b"POST /a HTTP/1.1\r\nhost: t\r\ncontent-length: 2\r\n\r\nhi")
        .await
        .unwrap();
    let first = read_until(&mut client, "POST /a hi").await;
    assert!(first.starts_with("HTTP/1.1 200 OK\r\n"), "{first}");
    assert!(first.contains("\r\ncontent-length: 10\r\n"), "{first}");
    assert!(first.contains("\r\ndate: "), "{first}");
    assert!(!first.contains("connection: close"), "{first}");
    // Two more in one write: the second waits in the buffer while the first is answered.
    client
        .write_all(b"GET /b HTTP/1.1\r\nhost: t\r\n\r\nGET /c HTTP/1.1\r\nhost: t\r\n\r\n")
        .await
        .unwrap();
    let both = read_until(&mut client, "GET /c ").await;
    let b = both.find("GET /b ").unwrap();
    assert!(b < both.find("GET /c ").unwrap(), "{both}");
}

#[tokio::test]
async fn reads_a_chunked_request_body_and_answers_expect_continue_before_the_body() {
    let (mut client, _drain) = connect(SERVER, echo).await;
    client
        .write_all(
            b"POST /up HTTP/1.1\r\nhost: t\r\ntransfer-encoding: chunked\r\nexpect: 100-continue\r\n\r\n",
        )
        .await
        .unwrap();
    let interim = read_until(&mut client, "\r\n\r\n").await;
    assert_eq!(interim, "HTTP/1.1 100 Continue\r\n\r\n");
    client
        .write_all(b"3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n")
        .await
        .unwrap();
    read_until(&mut client, "POST /up abcde").await;
}

#[tokio::test]
async fn a_body_over_the_limit_reaches_the_handler_as_too_large_and_the_connection_closes() {
    for request in [
        &b"POST /big HTTP/1.1\r\nhost: t\r\ncontent-length: 65\r\n\r\n"[..],
        b"POST /big HTTP/1.1\r\nhost: t\r\ntransfer-encoding: chunked\r\n\r\n41\r\n",
    ] {
        let (mut client, _drain) = connect(SERVER, echo).await;
        client.write_all(request).await.unwrap();
        if request.ends_with(b"41\r\n") {
            client.write_all(&[b'x'; 65]).await.unwrap();
        }
        let answer = read_to_close(&mut client).await;
        let expected = format!("refused: {}", TooLarge { limit: 64 });
        assert!(answer.ends_with(&expected), "{answer}");
        assert!(answer.contains("\r\nconnection: close\r\n"), "{answer}");
    }
}

#[tokio::test]
async fn a_streamed_body_goes_out_in_chunks_and_ends_with_the_last_chunk() {
    let (mut client, _drain) = connect(SERVER, |_req| async {
        Response::new(paced(
            vec![Ok("data: 1\n\n"), Ok("data: 2\n\n")],
            Duration::from_millis(5),
        ))
    })
    .await;
    client
        .write_all(b"POST /s HTTP/1.1\r\nhost: t\r\ncontent-length: 0\r\n\r\n")
        .await
        .unwrap();
    let answer = read_until(&mut client, "0\r\n\r\n").await;
    assert!(
        answer.contains("\r\ntransfer-encoding: chunked\r\n"),
        "{answer}"
    );
    assert!(
        answer.ends_with("\r\n\r\n9\r\ndata: 1\n\n\r\n9\r\ndata: 2\n\n\r\n0\r\n\r\n"),
        "{answer:?}"
    );
}

#[tokio::test]
async fn an_http_1_0_client_reads_a_streamed_body_to_the_close() {
    let (mut client, _drain) = connect(SERVER, |_req| async {
        Response::new(paced(vec![Ok("a"), Ok("b")], Duration::from_millis(1)))
    })
    .await;
    client.write_all(b"GET /s HTTP/1.0\r\n\r\n").await.unwrap();
    let answer = read_to_close(&mut client).await;
    assert!(!answer.contains("chunked"), "{answer}");
    assert!(answer.contains("\r\nconnection: close\r\n"), "{answer}");
    assert!(answer.ends_with("\r\n\r\nab"), "{answer:?}");
}

#[tokio::test]
async fn a_head_request_gets_the_length_and_no_body() {
    let (mut client, _drain) = connect(SERVER, echo).await;
    client
        .write_all(b"HEAD /h HTTP/1.1\r\nhost: t\r\n\r\nGET /after HTTP/1.1\r\nhost: t\r\n\r\n")
        .await
        .unwrap();
    let answer = read_until(&mut client, "GET /after ").await;
    let (head_answer, rest) = answer.split_once("\r\n\r\n").unwrap();
    assert!(head_answer.contains("content-length: 8"), "{answer}");
    assert!(rest.starts_with("HTTP/1.1 200 OK"), "{answer}");
}

#[tokio::test]
async fn bad_requests_get_a_400_or_431_and_the_connection_closes() {
    let many: String = (0..101).map(|i| format!("x-h{i}: v\r\n")).collect();
    let cases = [
        (
            "GET / HTTP/1.1\r\nbad header\r\n\r\n".to_string(),
            "400 Bad Request",
        ),
        (
            "POST / HTTP/1.1\r\ncontent-length: 2\r\ntransfer-encoding: chunked\r\n\r\n"
                .to_string(),
            "400 Bad Request",
        ),
        (
            "POST / HTTP/1.1\r\ncontent-length: -1\r\n\r\n".to_string(),
            "400 Bad Request",
        ),
        (
            format!("GET / HTTP/1.1\r\n{many}\r\n"),
            "431 Request Header Fields Too Large",
        ),
    ];
    for (request, status) in cases {
        let (mut client, _drain) = connect(SERVER, echo).await;
        client.write_all(request.as_bytes()).await.unwrap();
        let answer = read_to_close(&mut client).await;
        assert!(
            answer.starts_with(&format!("HTTP/1.1 {status}\r\n")),
            "{request:?}: {answer}"
        );
        assert!(answer.contains("connection: close"), "{answer}");
    }
}

#[tokio::test]
async fn status_without_content_gets_no_body_framing() {
    let (mut client, _drain) = connect(SERVER, |_req| async {
        let mut resp = Response::new(full(""));
        *resp.status_mut() = StatusCode::NO_CONTENT;
        resp
    })
    .await;
    client
        .write_all(b"GET / HTTP/1.1\r\nhost: t\r\n\r\nGET / HTTP/1.1\r\nhost: t\r\n\r\n")
        .await
        .unwrap();
    let mut both = read_until(&mut client, "\r\n\r\n").await;
    if both.matches("\r\n\r\n").count() < 2 {
        both += &read_until(&mut client, "\r\n\r\n").await;
    }
    assert_eq!(
        both.matches("HTTP/1.1 204 No Content\r\n").count(),
        2,
        "{both}"
    );
    assert!(!both.contains("content-length"), "{both}");
    assert!(!both.contains("transfer-encoding"), "{both}");
}

#[tokio::test]
async fn a_request_sent_while_an_answer_is_being_prepared_is_answered_after_it() {
    let (mut client, _drain) = connect(SERVER, |req: Request<Upload>| async move {
        if req.uri().path() == "/slow" {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        echo(req).await
    })
    .await;
    get(&mut client, "/slow").await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    get(&mut client, "/next").await;
    let both = read_until(&mut client, "GET /next ").await;
    assert!(both.contains("GET /slow "), "{both}");
}

#[tokio::test]
async fn an_http_1_0_client_that_asks_to_keep_the_connection_gets_it() {
    let (mut client, _drain) = connect(SERVER, echo).await;
    for path in ["/a", "/b"] {
        let request = format!("GET {path} HTTP/1.0\r\nconnection: keep-alive\r\n\r\n");
        client.write_all(request.as_bytes()).await.unwrap();
        let answer = read_until(&mut client, &format!("GET {path} ")).await;
        assert!(answer.starts_with("HTTP/1.0 200 OK\r\n"), "{answer}");
        assert!(
            answer.contains("\r\nconnection: keep-alive\r\n"),
            "{answer}"
        );
    }
}

#[tokio::test]
async fn a_handler_that_says_close_closes_and_its_framing_headers_are_replaced() {
    let (mut client, _drain) = connect(SERVER, |_req| async {
        let mut resp = Response::new(paced(vec![Ok("abc")], Duration::ZERO));
        let headers = resp.headers_mut();
        headers.insert(
            "connection",
            hyper::header::HeaderValue::from_static("close"),
        );
        headers.insert(
            "transfer-encoding",
            hyper::header::HeaderValue::from_static("gzip"),
        );
        resp
    })
    .await;
    get(&mut client, "/").await;
    let answer = read_to_close(&mut client).await;
    assert_eq!(answer.matches("connection:").count(), 1, "{answer}");
    assert!(answer.contains("\r\nconnection: close\r\n"), "{answer}");
    assert!(
        answer.contains("\r\ntransfer-encoding: chunked\r\n"),
        "{answer}"
    );
    assert!(!answer.contains("gzip"), "{answer}");
    assert!(answer.ends_with("3\r\nabc\r\n0\r\n\r\n"), "{answer:?}");
}

#[tokio::test]
async fn requests_whose_end_is_ambiguous_or_whose_head_never_ends_are_refused() {
    let endless = format!("GET / HTTP/1.1\r\nx-long: {}", "a".repeat(500 * 1024));
    let cases = [
        (
            "POST / HTTP/1.0\r\ntransfer-encoding: chunked\r\n\r\n".to_string(),
            "400 Bad Request",
        ),
        (
            "POST / HTTP/1.1\r\ntransfer-encoding: gzip\r\n\r\n".to_string(),
            "400 Bad Request",
        ),
        (
            "POST / HTTP/1.1\r\ntransfer-encoding: ,\r\n\r\n".to_string(),
            "400 Bad Request",
        ),
        (endless, "431 Request Header Fields Too Large"),
    ];
    for (request, status) in cases {
        let (mut client, _drain) = connect(SERVER, echo).await;
        let (answer, _ended) = write_while_reading(&mut client, request.as_bytes()).await;
        let answer = String::from_utf8(answer).unwrap();
        let shown = &request[..request.len().min(60)];
        assert!(
            answer.starts_with(&format!("HTTP/1.1 {status}\r\n")),
            "{shown:?}: {answer}"
        );
    }
}
