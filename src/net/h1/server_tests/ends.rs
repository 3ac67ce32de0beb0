//! How answers and connections end: cuts and resets, clients that leave, limits, drains.

use super::*;

#[tokio::test]
async fn a_body_that_fails_cuts_the_connection_without_the_last_chunk() {
    let (mut client, _drain) = connect(SERVER, |_req| async {
        Response::new(paced(
            vec![Ok("data: 1\n\n"), Err(())],
            Duration::from_millis(1),
        ))
    })
    .await;
    get(&mut client, "/s").await;
    let answer = read_to_close(&mut client).await;
    assert!(answer.ends_with("9\r\ndata: 1\n\n\r\n"), "{answer:?}");
}

#[tokio::test]
async fn a_body_longer_than_the_length_it_announced_is_cut() {
    let answer = reset_after(vec![Ok("abc"), Ok("def")], "4").await;
    assert!(answer.contains("\r\ncontent-length: 4\r\n"), "{answer}");
    assert!(!answer.contains("def"), "{answer:?}");
}

/// What a client reads before the connection is reset, when the answer is `frames` under a
/// `content-length` of `length`; a close or no end fails the test.
async fn reset_after(frames: Vec<Result<&'static str, ()>>, length: &'static str) -> String {
    let (mut client, _drain) = connect(SERVER, move |_req| {
        let frames = frames.clone();
        async move {
            let mut resp = Response::new(paced(frames, Duration::from_millis(1)));
            resp.headers_mut().insert(
                "content-length",
                hyper::header::HeaderValue::from_static(length),
            );
            resp
        }
    })
    .await;
    get(&mut client, "/s").await;
    read_to_reset(&mut client).await
}

/// What a client reads before the connection is reset; a close or no end fails the test.
async fn read_to_reset(client: &mut TcpStream) -> String {
    let mut all = Vec::new();
    let mut buf = [0u8; 1024];
    let err = loop {
        match tokio::time::timeout(DEADLINE, client.read(&mut buf)).await {
            Ok(Ok(0)) => panic!("a close, not a reset"),
            Ok(Ok(n)) => all.extend_from_slice(&buf[..n]),
            Ok(Err(e)) => break e,
            Err(_) => panic!("the connection was not cut"),
        }
    };
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionReset, "{err}");
    String::from_utf8_lossy(&all).into_owned()
}

/// Sets its flag when dropped.
struct Dropped(Arc<AtomicBool>);

impl Drop for Dropped {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

#[tokio::test]
async fn a_client_that_closes_its_side_ends_the_answer_it_was_waiting_for() {
    // While the handler works (a non-streamed answer), and while a stream waits for its next
    // frame: both are dropped, freeing what they hold.
    for streamed in [false, true] {
        let dropped = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&dropped);
        let (mut client, _drain) = connect(SERVER, move |_req| {
            let guard = Dropped(Arc::clone(&flag));
            async move {
                if !streamed {
                    let _held = guard;
                    std::future::pending::<()>().await;
                    unreachable!()
                }
                let body = futures_util::stream::once(async move {
                    let _held = guard;
                    std::future::pending::<()>().await;
                    Ok::<_, std::io::Error>(Frame::data(Bytes::new()))
                });
                Response::new(StreamBody::new(body).boxed_unsync())
            }
        })
        .await;
        get(&mut client, "/s").await;
        if streamed {
            read_until(&mut client, "\r\n\r\n").await;
        }
        client.shutdown().await.unwrap();
        let gone = async {
            while !dropped.load(Ordering::SeqCst) {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        };
        tokio::time::timeout(DEADLINE, gone)
            .await
            .unwrap_or_else(|_| panic!("streamed {streamed}: still held after the client left"));
    }
}

#[tokio::test]
async fn a_silent_or_trickling_client_is_cut_at_the_head_limit_and_a_prompt_one_is_served() {
    let limit = Duration::from_millis(300);
    let quick = Server {
        header_read_timeout: Some(limit),
        ..SERVER
    };
    let (mut silent, _d1) = connect(quick, echo).await;
    let (mut trickling, _d2) = connect(quick, echo).await;
    // A byte every 50 ms: each read comes well within the limit, the whole head does not.
    let started = std::time::Instant::now();
    let trickle = async {
        for byte in b"GET / HTTP/1.1\r\nhost: a-very-long-host-name\r\n".iter() {
            if trickling.write_all(&[*byte]).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let mut rest = Vec::new();
        let _ = tokio::time::timeout(DEADLINE, trickling.read_to_end(&mut rest)).await;
        rest
    };
    assert_eq!(trickle.await, b"", "a half head gets no answer");
    assert!(
        started.elapsed() < limit * 4,
        "cut at {:?}",
        started.elapsed()
    );
    assert_eq!(read_to_close(&mut silent).await, "", "nor does silence");

    let (mut prompt, _d3) = connect(quick, echo).await;
    // The blank line that ends the first head comes in a write of its own, split in two.
    prompt
        .write_all(b"GET /1 HTTP/1.1\r\nhost: t\r\n\r")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    prompt.write_all(b"\n").await.unwrap();
    read_until(&mut prompt, "GET /1 ").await;
    prompt
        .write_all(b"\r\nGET /2 HTTP/1.1\r\nhost: t\r\n\r\n")
        .await
        .unwrap();
    read_until(&mut prompt, "GET /2 ").await;
    // Then idle: cut at the limit, as hyper's server cut it.
    let idle_since = std::time::Instant::now();
    assert_eq!(read_to_close(&mut prompt).await, "");
    assert!(idle_since.elapsed() >= limit - Duration::from_millis(50));
}

#[tokio::test]
async fn an_upload_that_stalls_is_answered_408_and_a_slow_steady_one_is_served() {
    let pause = Duration::from_secs(1);
    let quick = Server {
        body_read_timeout: Some(pause),
        ..SERVER
    };
    // Half the body, then nothing: the handler never sees it.
    let (mut stalled, _d1) = connect(quick, echo).await;
    let started = std::time::Instant::now();
    stalled
        .write_all(b"POST /up HTTP/1.1\r\nhost: t\r\ncontent-length: 10\r\n\r\nabc")
        .await
        .unwrap();
    let answer = read_to_close(&mut stalled).await;
    assert!(answer.starts_with("HTTP/1.1 408 "), "{answer:?}");
    assert!(!answer.contains("POST /up"), "{answer:?}");
    assert!(started.elapsed() >= pause, "cut at {:?}", started.elapsed());

    // A chunked body whose pieces come 250 ms apart: each pause is well within the limit (a
    // busy machine may stretch one), the whole body takes longer than it, and it is read
    // whole.
    let (mut steady, _d2) = connect(quick, echo).await;
    steady
        .write_all(b"POST /up HTTP/1.1\r\nhost: t\r\ntransfer-encoding: chunked\r\n\r\n")
        .await
        .unwrap();
    for piece in [
        "2\r\nab\r\n",
        "2\r\ncd\r\n",
        "2\r\nef\r\n",
        "2\r\ngh\r\n",
        "0\r\n\r\n",
    ] {
        tokio::time::sleep(Duration::from_millis(250)).await;
        steady.write_all(piece.as_bytes()).await.unwrap();
    }
    read_until(&mut steady, "POST /up abcdefgh").await;
}

#[tokio::test]
async fn a_drain_closes_an_idle_connection_and_lets_the_answer_in_flight_finish() {
    let (mut idle, drain) = connect(SERVER, echo).await;
    drain.send_replace(true);
    assert_eq!(read_to_close(&mut idle).await, "");

    let (mut busy, drain) = connect(SERVER, |_req| async {
        Response::new(paced(vec![Ok("a"), Ok("b")], Duration::from_millis(50)))
    })
    .await;
    get(&mut busy, "/").await;
    read_until(&mut busy, "\r\n\r\n").await;
    drain.send_replace(true);
    let rest = read_to_close(&mut busy).await;
    assert!(rest.ends_with("0\r\n\r\n"), "{rest:?}");
}

#[tokio::test]
async fn a_client_still_writing_a_body_over_the_limit_reads_its_answer() {
    // The body is far over the limit and more than the kernel's buffers hold: the server must
    // not reset the connection under the client before the answer is read.
    let (mut client, _drain) = connect(SERVER, echo).await;
    let body = vec![b'x'; 4 << 20];
    let head = format!(
        "POST /big HTTP/1.1\r\nhost: t\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    let wire = [head.as_bytes(), &body].concat();
    let (answer, ended) = write_while_reading(&mut client, &wire).await;
    ended.expect("the answer arrived, not a reset");
    let answer = String::from_utf8(answer).unwrap();
    assert!(
        answer.ends_with(&format!("refused: {}", TooLarge { limit: 64 })),
        "{answer}"
    );
}

#[tokio::test]
async fn a_drain_while_the_handler_works_makes_its_answer_the_last() {
    let (started_tx, started_rx) = tokio::sync::oneshot::channel::<()>();
    let started = std::sync::Mutex::new(Some(started_tx));
    let (mut client, drain) = connect(SERVER, move |req: Request<Upload>| {
        if let Some(tx) = started.lock().unwrap().take() {
            let _ = tx.send(());
        }
        async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            echo(req).await
        }
    })
    .await;
    get(&mut client, "/w").await;
    tokio::time::timeout(DEADLINE, started_rx)
        .await
        .unwrap()
        .unwrap();
    drain.send_replace(true);
    let answer = read_to_close(&mut client).await;
    assert!(answer.contains("\r\nconnection: close\r\n"), "{answer}");
    assert!(answer.ends_with("GET /w "), "{answer}");
}

#[tokio::test]
async fn a_sized_body_that_fails_or_ends_short_ends_with_a_reset_not_a_close() {
    // A FIN would make the short body look like the client's own read error at best.
    for frames in [vec![Ok("abc"), Err(())], vec![Ok("abc")]] {
        let answer = reset_after(frames, "10").await;
        assert!(answer.ends_with("\r\n\r\nabc"), "{answer:?}");
    }
}

#[tokio::test]
async fn a_sized_body_is_done_once_its_length_is_written_and_frees_what_it_holds_first() {
    // The body gives all it announced, then would wait for ever: the answer is whole, its
    // body (and what it holds) is gone, and the next request is served.
    let dropped = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&dropped);
    let (mut client, _drain) = connect(SERVER, move |req: Request<Upload>| {
        let guard = Dropped(Arc::clone(&flag));
        async move {
            if req.uri().path() == "/next" {
                return echo(req).await;
            }
            let frames = futures_util::stream::iter([Ok(Frame::data(Bytes::from_static(b"abc")))])
                .chain(futures_util::stream::once(async move {
                    let _held = guard;
                    std::future::pending::<Result<Frame<Bytes>, std::io::Error>>().await
                }));
            let mut resp = Response::new(StreamBody::new(frames).boxed_unsync());
            resp.headers_mut().insert(
                "content-length",
                hyper::header::HeaderValue::from_static("3"),
            );
            resp
        }
    })
    .await;
    get(&mut client, "/first").await;
    read_until(&mut client, "abc").await;
    assert!(
        dropped.load(Ordering::SeqCst),
        "the body outlived its last bytes"
    );
    get(&mut client, "/next").await;
    read_until(&mut client, "GET /next ").await;
}

#[tokio::test]
async fn a_hangup_asked_by_a_body_comes_after_the_frame_it_returned_then() {
    let (ask, asked) = tokio::sync::oneshot::channel::<()>();
    let signal: HangupSignal = Box::pin(async move {
        let _ = asked.await;
        Hangup::Fin
    });
    // The body asks for the end as it returns its second frame, then has nothing more.
    let mut ask = Some(ask);
    let frames = futures_util::stream::iter(["a", "b"])
        .map(move |text| {
            if text == "b" {
                if let Some(ask) = ask.take() {
                    let _ = ask.send(());
                }
            }
            Ok::<_, std::io::Error>(Frame::data(Bytes::from_static(text.as_bytes())))
        })
        .chain(futures_util::stream::pending());
    let mut body = Some(StreamBody::new(frames).boxed_unsync());
    let (mut client, _drain) = connect_hanging_up(SERVER, Some(signal), move |_req| {
        let body = body.take().unwrap_or_else(|| full("again"));
        async move { Response::new(body) }
    })
    .await;
    get(&mut client, "/").await;
    let got = read_to_close(&mut client).await;
    assert!(got.ends_with("\r\n1\r\na\r\n1\r\nb\r\n"), "{got:?}");
}

#[tokio::test]
async fn a_hangup_while_the_handler_works_resets_without_an_answer() {
    let signal: HangupSignal = Box::pin(async { Hangup::Reset });
    let (mut client, _drain) = connect_hanging_up(SERVER, Some(signal), |_req| async {
        std::future::pending::<Response<Boxed>>().await
    })
    .await;
    get(&mut client, "/").await;
    let before = read_to_reset(&mut client).await;
    assert!(before.is_empty(), "{before:?}");
}
