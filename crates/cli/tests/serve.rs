//! `seqlab serve` end to end: the binary on an ephemeral loopback port, every endpoint called with good and
//! bad input, streaming included; completions equal `seqlab lm generate` with the same settings and seed,
//! alone or batched with other requests; SIGTERM drains a stream in flight and exits 0.

mod serve_common;

use serde_json::{json, Value};
use serve_common::*;

/// `seqlab lm generate`'s continuation (its output without the prompt and the newline).
fn cli_generate(lm: &str, prompt: &str, extra: &[&str]) -> String {
    let mut args = vec!["lm", "generate", "--model", lm, "--prompt", prompt];
    args.extend(extra);
    let out = ok(&args);
    out.strip_prefix(prompt)
        .unwrap()
        .trim_end_matches('\n')
        .to_string()
}

fn text_of(body: &Value, choice: usize) -> String {
    body["choices"][choice]["text"]
        .as_str()
        .unwrap()
        .to_string()
}

/// The error's field, after checking its shape.
fn error_param(status: u16, body: &Value, expected_status: u16) -> String {
    assert_eq!(status, expected_status, "{body}");
    let error = &body["error"];
    assert!(
        error["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{body}"
    );
    assert!(error["type"].is_string(), "{body}");
    error["param"].as_str().unwrap_or("").to_string()
}

#[test]
fn every_endpoint_answers_good_and_bad_input() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let lm = lm(d);
    let (classify, translate, caption, image) = other_tasks(d);
    let server = Serving::start(&[
        "--model",
        p(&lm),
        "--model",
        p(&classify),
        "--model",
        p(&translate),
        "--model",
        p(&caption),
        "--max-tokens",
        "200",
        "--max-body",
        "100000",
    ]);
    let completions = server.url("/v1/completions");

    // Listing.
    let (status, health) = get(&server.url("/healthz"));
    assert_eq!(
        (status, health["models"].as_u64()),
        (200, Some(4)),
        "{health}"
    );
    let (_, models) = get(&server.url("/v1/models"));
    let tasks: Vec<(&str, &str)> = models["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["id"].as_str().unwrap(), m["task"].as_str().unwrap()))
        .collect();
    assert_eq!(
        tasks,
        [
            ("caption", "caption"),
            ("classify", "classify"),
            ("lm", "lm"),
            ("translate", "translate")
        ]
    );
    let page = ureq::get(&server.url("/"))
        .call()
        .unwrap()
        .into_string()
        .unwrap();
    assert!(page.contains("seqlab playground") && page.contains("/v1/completions"));

    // A seeded completion is what the command line generates, and again the same.
    let request =
        json!({"model": "lm", "prompt": "the ", "max_tokens": 40, "temperature": 0.8, "seed": 7});
    let (status, body) = post(&completions, &request);
    assert_eq!(status, 200, "{body}");
    let sampled = text_of(&body, 0);
    let cli = cli_generate(
        p(&lm),
        "the ",
        &["--length", "40", "--temperature", "0.8", "--seed", "7"],
    );
    assert_eq!(sampled, cli);
    assert_eq!(body["object"], "text_completion");
    assert_eq!(body["usage"]["prompt_tokens"], 4);
    let completion_tokens = body["usage"]["completion_tokens"].as_u64().unwrap();
    assert!(completion_tokens <= 40 && completion_tokens >= sampled.chars().count() as u64);
    assert_eq!(
        post(&completions, &request).1["choices"][0]["text"],
        sampled.as_str()
    );
    // Greedy (temperature 0) is the command line's --greedy.
    let (_, body) = post(
        &completions,
        &json!({"model": "lm", "prompt": "the ", "max_tokens": 40, "temperature": 0}),
    );
    let greedy = text_of(&body, 0);
    assert_eq!(
        greedy,
        cli_generate(p(&lm), "the ", &["--length", "40", "--greedy"])
    );

    // n choices: the first is the n = 1 completion, the others the seeds after.
    let (_, body) = post(
        &completions,
        &json!({"model": "lm", "prompt": "the ", "max_tokens": 40, "temperature": 0.8, "seed": 7, "n": 3}),
    );
    assert_eq!(body["choices"].as_array().unwrap().len(), 3);
    assert_eq!(text_of(&body, 0), sampled);
    let third = cli_generate(
        p(&lm),
        "the ",
        &["--length", "40", "--temperature", "0.8", "--seed", "9"],
    );
    assert_eq!(text_of(&body, 2), third);

    // Concurrent requests are batched into shared steps, and each still gets its own seed's text.
    let expected: Vec<String> = (0..8u64)
        .map(|seed| {
            let request = json!({"model": "lm", "prompt": "a", "max_tokens": 60, "temperature": 1.0, "seed": seed});
            text_of(&post(&completions, &request).1, 0)
        })
        .collect();
    let concurrent: Vec<String> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..8u64)
            .map(|seed| {
                let url = completions.clone();
                scope.spawn(move || {
                    let request =
                        json!({"model": "lm", "prompt": "a", "max_tokens": 60, "temperature": 1.0, "seed": seed});
                    text_of(&post(&url, &request).1, 0)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(concurrent, expected);
    assert!(
        expected
            .iter()
            .collect::<std::collections::HashSet<_>>()
            .len()
            > 1,
        "seeds differ"
    );

    // Streaming: the chunks add up to the completion, a finish reason, then [DONE].
    let mut streamed = request.clone();
    streamed["stream"] = json!(true);
    let events = stream(&completions, &streamed);
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    let chunks: Vec<Value> = events[..events.len() - 1]
        .iter()
        .map(|e| serde_json::from_str(e).unwrap())
        .collect();
    assert!(chunks.len() > 2, "streamed in pieces: {events:?}");
    let joined: String = chunks
        .iter()
        .map(|c| c["choices"][0]["text"].as_str().unwrap())
        .collect();
    assert_eq!(joined, sampled);
    let reason = &chunks.last().unwrap()["choices"][0]["finish_reason"];
    assert!(reason == "length" || reason == "stop", "{reason}");

    // A stop sequence ends the text just before it, also when streamed.
    let stop: String = greedy.chars().skip(6).take(2).collect();
    let cut = greedy.find(&stop).unwrap();
    let stopped = json!({"model": "lm", "prompt": "the ", "max_tokens": 40, "temperature": 0, "stop": [stop]});
    let (_, body) = post(&completions, &stopped);
    assert_eq!(text_of(&body, 0), greedy[..cut]);
    assert_eq!(body["choices"][0]["finish_reason"], "stop");
    let mut stopped_stream = stopped.clone();
    stopped_stream["stream"] = json!(true);
    let events = stream(&completions, &stopped_stream);
    let joined: String = events[..events.len() - 1]
        .iter()
        .map(|e| {
            serde_json::from_str::<Value>(e).unwrap()["choices"][0]["text"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(joined, greedy[..cut]);

    // Log-probabilities: one per token, the tokens spell the text, the alternatives asked for.
    let (_, body) = post(
        &completions,
        &json!({"model": "lm", "prompt": "the ", "max_tokens": 20, "temperature": 0, "logprobs": 2}),
    );
    let logprobs = &body["choices"][0]["logprobs"];
    let tokens: String = logprobs["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    assert_eq!(tokens, text_of(&body, 0));
    for (lp, top) in logprobs["token_logprobs"]
        .as_array()
        .unwrap()
        .iter()
        .zip(logprobs["top_logprobs"].as_array().unwrap())
    {
        let lp = lp.as_f64().unwrap();
        assert!(lp <= 0.0);
        let top = top.as_object().unwrap();
        assert_eq!(top.len(), 2);
        // Greedy: the chosen token is the most likely one.
        let best = top
            .values()
            .map(|v| v.as_f64().unwrap())
            .fold(f64::NEG_INFINITY, f64::max);
        assert!((best - lp).abs() < 1e-5, "{lp} vs {best}");
    }
    // Beam search, an extra of seqlab's.
    let (status, body) = post(
        &completions,
        &json!({"model": "lm", "prompt": "the ", "max_tokens": 30, "beam": 3}),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        text_of(&body, 0),
        cli_generate(p(&lm), "the ", &["--length", "30", "--beam", "3"])
    );

    // The other tasks.
    let (status, body) = post(
        &server.url("/v1/translate"),
        &json!({"model": "translate", "text": "cat dog", "beam": 2, "attention": true}),
    );
    assert_eq!(status, 200, "{body}");
    let t = &body["translations"][0];
    assert!(t["text"].is_string());
    let rows = t["attention"].as_array().unwrap();
    assert_eq!(rows.len(), t["target_tokens"].as_array().unwrap().len());
    for row in rows {
        let row = row.as_array().unwrap();
        assert_eq!(row.len(), t["source_tokens"].as_array().unwrap().len());
        let sum: f64 = row.iter().map(|w| w.as_f64().unwrap()).sum();
        assert!((sum - 1.0).abs() < 1e-4, "attention rows sum to 1: {sum}");
    }
    let bytes = std::fs::read(&image).unwrap();
    let (status, body) = post_raw(
        &server.url("/v1/caption?model=caption&beam=2"),
        "image/png",
        &bytes,
    );
    assert_eq!(status, 200, "{body}");
    assert!(body["caption"].is_string(), "{body}");
    let (status, body) = post(
        &server.url("/v1/classify"),
        &json!({"model": "classify", "text": ["bread and cheese", "the cat and the dog"]}),
    );
    assert_eq!(status, 200, "{body}");
    for result in body["results"].as_array().unwrap() {
        let labels = result["labels"].as_array().unwrap();
        assert_eq!(labels.len(), 2);
        assert_eq!(result["label"], labels[0]["label"]);
        let sum: f64 = labels
            .iter()
            .map(|l| l["probability"].as_f64().unwrap())
            .sum();
        assert!((sum - 1.0).abs() < 1e-4);
    }

    // Bad input: a 4xx naming the field, and the server goes on serving.
    let bad = |body: Value| post(&completions, &body);
    let (s, b) = post_raw(&completions, "application/json", b"{\"model\": \"lm\", ");
    assert_eq!(error_param(s, &b, 400), "body");
    let (s, b) = post_raw(&completions, "text/plain", b"{}");
    assert_eq!(error_param(s, &b, 415), "body");
    let (s, b) = bad(json!({"model": "nope", "prompt": "the"}));
    assert_eq!(error_param(s, &b, 404), "model");
    assert!(
        b["error"]["message"].as_str().unwrap().contains("lm"),
        "names the loaded models: {b}"
    );
    let (s, b) = bad(json!({"model": "lm", "prompt": "the", "temperature": -1}));
    assert_eq!(error_param(s, &b, 400), "temperature");
    let (s, b) = bad(json!({"model": "lm", "prompt": "the", "temperature": "hot"}));
    assert_eq!(error_param(s, &b, 400), "temperature");
    for top_p in [0.0, 1.5] {
        let (s, b) = bad(json!({"model": "lm", "prompt": "the", "top_p": top_p}));
        assert_eq!(error_param(s, &b, 400), "top_p");
    }
    let (s, b) = bad(json!({"model": "lm", "prompt": "the", "max_tokens": 201}));
    assert_eq!(error_param(s, &b, 400), "max_tokens");
    let (s, b) = bad(json!({"model": "lm", "prompt": "the", "n": 0}));
    assert_eq!(error_param(s, &b, 400), "n");
    let (s, b) = bad(json!({"model": "lm", "prompt": "the QUIZ €"}));
    assert_eq!(error_param(s, &b, 400), "prompt");
    let message = b["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("'Q'") && message.contains("'€'"),
        "{message}"
    );
    let (s, b) = bad(json!({"model": "classify", "prompt": "the"}));
    assert_eq!(error_param(s, &b, 400), "model");
    assert!(b["error"]["message"]
        .as_str()
        .unwrap()
        .contains("/v1/classify"));
    let (s, b) = bad(json!({"model": "lm", "prompt": "the", "echo": true}));
    assert_eq!(error_param(s, &b, 400), "echo");
    let (s, b) = bad(json!(["not", "an", "object"]));
    assert_eq!(error_param(s, &b, 400), "body");
    let big = json!({"model": "lm", "prompt": "a".repeat(200_000)});
    let (s, b) = bad(big);
    assert_eq!(error_param(s, &b, 413), "body");
    let (s, b) = post_raw(
        &server.url("/v1/caption?model=caption"),
        "image/png",
        b"GIF89a not an image",
    );
    assert_eq!(error_param(s, &b, 400), "image");
    let (s, b) = post(&server.url("/v1/translate"), &json!({"model": "translate"}));
    assert_eq!(error_param(s, &b, 400), "text");
    let (s, b) = post(
        &server.url("/v1/classify"),
        &json!({"model": "classify", "text": ""}),
    );
    assert_eq!(error_param(s, &b, 400), "text");
    let (s, b) = get(&server.url("/v2/nothing"));
    assert_eq!(s, 404, "{b}");
    let (status, _) = get(&server.url("/healthz"));
    assert_eq!(status, 200, "still serving after the bad requests");
    assert_eq!(
        post(&completions, &request).1["choices"][0]["text"],
        sampled.as_str()
    );
}

#[test]
fn a_model_directory_that_does_not_load_is_one_line_and_exit_1() {
    let dir = tempfile::tempdir().unwrap();
    let output = seqlab(&[
        "serve",
        "--model",
        p(&dir.path().join("missing")),
        "--port",
        "0",
    ]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("missing"), "{stderr}");
}

#[cfg(unix)]
#[test]
fn sigterm_drains_the_streams_in_flight_and_exits_0() {
    use std::io::{BufRead, BufReader};
    let dir = tempfile::tempdir().unwrap();
    let lm = lm(dir.path());
    let mut server = Serving::start(&["--model", p(&lm)]);
    let response = ureq::post(&server.url("/v1/completions"))
        .set("Content-Type", "application/json")
        .send_string(
            &json!({"model": "lm", "prompt": "the", "max_tokens": 3000, "temperature": 1.0, "stop": ["zzz"], "stream": true})
                .to_string(),
        )
        .unwrap();
    let mut lines = BufReader::new(response.into_reader()).lines();
    // The first chunk has come: the request is in flight.
    let first = lines
        .find(|l| l.as_ref().unwrap().starts_with("data: "))
        .unwrap()
        .unwrap();
    assert!(first.contains("text_completion"), "{first}");
    let pid = server.child.id().to_string();
    assert!(std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let rest: Vec<String> = lines
        .map(Result::unwrap)
        .filter(|l| l.starts_with("data: "))
        .collect();
    assert_eq!(
        rest.last().map(String::as_str),
        Some("data: [DONE]"),
        "the stream ran to its end"
    );
    let status = server.child.wait().unwrap();
    assert_eq!(status.code(), Some(0));
}
