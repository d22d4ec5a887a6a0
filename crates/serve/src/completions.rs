//! `POST /v1/completions`: OpenAI's legacy completions, streamed as server-sent events when asked.

use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::rejection::JsonRejection;
use axum::extract::State as AxumState;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use seqlab_decode::{Decoding, Sampling};
use serde_json::{json, Value};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use crate::error::ApiError;
use crate::fields::Fields;
use crate::lm::{FinishReason, LmEvent, LmRequest, LmWorker, TokenInfo};
use crate::models::Task;
use crate::tasks::json_request;
use crate::AppState;

/// A completion request, validated.
#[derive(Debug)]
struct Settings {
    prompts: Vec<String>,
    max_tokens: usize,
    sampling: Sampling,
    n: usize,
    seed: u64,
    stop: Vec<String>,
    stream: bool,
    beam: Option<usize>,
    logprobs: Option<usize>,
}

/// The most choices per prompt.
const MAX_N: u64 = 16;
/// The most alternatives `logprobs` reports (OpenAI's limit).
const MAX_LOGPROBS: u64 = 5;
/// The most stop sequences (OpenAI's limit).
const MAX_STOP: usize = 4;

fn settings(fields: &Fields, max_tokens_limit: usize) -> Result<Settings, ApiError> {
    fields.unsupported("echo", &json!(false))?;
    fields.unsupported("suffix", &Value::Null)?;
    fields.unsupported("best_of", &json!(1))?;
    let prompts = fields
        .strings("prompt")?
        .unwrap_or_else(|| vec![String::new()]);
    let max_tokens = fields
        .integer("max_tokens", 0, max_tokens_limit as u64)?
        .unwrap_or(16) as usize;
    let temperature = fields.number("temperature", 0.0, false, f64::INFINITY)?;
    let top_p = fields.number("top_p", 0.0, true, 1.0)?;
    let top_k = fields.integer("top_k", 1, u64::from(u32::MAX))?;
    let sampling = match temperature {
        Some(0.0) => Sampling::Greedy,
        t => Sampling::Sample {
            temperature: t.unwrap_or(1.0),
            top_k: top_k.map(|k| k as usize),
            top_p: top_p.filter(|&p| p < 1.0),
        },
    };
    let n = fields.integer("n", 1, MAX_N)?.unwrap_or(1) as usize;
    let seed = match fields.integer("seed", 0, u64::MAX)? {
        Some(seed) => seed,
        None => fresh_seed(),
    };
    let stop = fields.strings("stop")?.unwrap_or_default();
    if stop.len() > MAX_STOP || stop.iter().any(String::is_empty) {
        return Err(ApiError::invalid(
            "stop",
            format!("stop takes at most {MAX_STOP} non-empty strings"),
        ));
    }
    let beam = fields.integer("beam", 1, 64)?.map(|b| b as usize);
    if beam.is_some() && n > 1 {
        return Err(ApiError::invalid(
            "n",
            "beam search returns one completion; n must be 1 with beam",
        ));
    }
    Ok(Settings {
        prompts,
        max_tokens,
        sampling,
        n,
        seed,
        stop,
        stream: fields.boolean("stream")?.unwrap_or(false),
        beam,
        logprobs: fields
            .integer("logprobs", 0, MAX_LOGPROBS)?
            .map(|l| l as usize),
    })
}

/// A seed for a request that gives none: from the clock and a counter, so that two requests differ.
fn fresh_seed() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    seqlab_base::SplitMix64::new(nanos ^ COUNTER.fetch_add(1, Ordering::Relaxed)).next_u64()
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn completion_id() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    format!("cmpl-{}", NEXT.fetch_add(1, Ordering::Relaxed))
}

/// The handler.
pub async fn completions(
    AxumState(app): AxumState<Arc<AppState>>,
    body: Result<Json<Value>, JsonRejection>,
) -> Result<Response, ApiError> {
    let (fields, model) = json_request(&app, body, seqlab_train::TASK)?;
    let Task::Lm(worker) = &model.task else {
        unreachable!("pick checked the task")
    };
    let settings = settings(&fields, app.config.max_tokens)?;
    let mut prompt_ids = Vec::with_capacity(settings.prompts.len());
    for prompt in &settings.prompts {
        prompt_ids.push(encode_prompt(worker, prompt)?);
    }
    let prompt_tokens: usize = prompt_ids.iter().map(Vec::len).sum();
    let (events, mut received) = mpsc::unbounded_channel();
    let choices = settings.prompts.len() * settings.n;
    for (p, ids) in prompt_ids.into_iter().enumerate() {
        for k in 0..settings.n {
            let index = p * settings.n + k;
            let request = LmRequest {
                index,
                prompt_ids: ids.clone(),
                sampling: settings.sampling,
                seed: settings.seed.wrapping_add(k as u64),
                max_tokens: settings.max_tokens,
                stop: settings.stop.clone(),
                logprobs: settings.logprobs,
                events: events.clone(),
            };
            match settings.beam {
                Some(width) => beam(worker, request, width, settings.prompts[p].clone()),
                None => worker.submit(request).map_err(ApiError::internal)?,
            }
        }
    }
    drop(events);
    let id = completion_id();
    let created = now();
    let name = model.name.clone();
    let with_logprobs = settings.logprobs.is_some();
    if settings.stream {
        let (sse, stream) = mpsc::channel::<Result<Event, Infallible>>(64);
        tokio::spawn(async move {
            let mut done = 0;
            while let Some(event) = received.recv().await {
                let chunk = match event {
                    LmEvent::Text {
                        index,
                        text,
                        tokens,
                    } => choice_chunk(
                        &id,
                        created,
                        &name,
                        index,
                        &text,
                        None,
                        with_logprobs,
                        &tokens,
                    ),
                    LmEvent::Done { index, reason, .. } => {
                        done += 1;
                        choice_chunk(&id, created, &name, index, "", Some(reason), false, &[])
                    }
                    LmEvent::Failed { message, .. } => {
                        done += 1;
                        ApiError::internal(message).body()
                    }
                };
                if sse
                    .send(Ok(Event::default().data(chunk.to_string())))
                    .await
                    .is_err()
                {
                    return; // the client left: dropping `received` cancels its rows
                }
                if done == choices {
                    break;
                }
            }
            let _ = sse.send(Ok(Event::default().data("[DONE]"))).await;
        });
        return Ok(Sse::new(ReceiverStream::new(stream))
            .keep_alive(KeepAlive::default())
            .into_response());
    }
    let mut texts = vec![String::new(); choices];
    let mut tokens: Vec<Vec<TokenInfo>> = vec![Vec::new(); choices];
    let mut reasons = vec![None; choices];
    let mut completion_tokens = 0;
    while let Some(event) = received.recv().await {
        match event {
            LmEvent::Text {
                index,
                text,
                tokens: t,
            } => {
                texts[index].push_str(&text);
                tokens[index].extend(t);
            }
            LmEvent::Done {
                index,
                reason,
                tokens: n,
            } => {
                reasons[index] = Some(reason);
                completion_tokens += n;
            }
            LmEvent::Failed { message, .. } => return Err(ApiError::internal(message)),
        }
    }
    let choices: Vec<Value> = (0..choices)
        .map(|i| {
            json!({
                "text": texts[i],
                "index": i,
                "logprobs": with_logprobs.then(|| logprobs_json(&tokens[i])),
                "finish_reason": reasons[i].unwrap_or(FinishReason::Stop).as_str(),
            })
        })
        .collect();
    Ok(Json(json!({
        "id": id,
        "object": "text_completion",
        "created": created,
        "model": name,
        "choices": choices,
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }))
    .into_response())
}

/// The prompt's tokens; characters (or words) the model's vocabulary lacks are a 400 naming them.
fn encode_prompt(worker: &LmWorker, prompt: &str) -> Result<Vec<u32>, ApiError> {
    let tokenizer = &worker.lm.tokenizer;
    let ids = tokenizer
        .encode(prompt)
        .map_err(|e| ApiError::invalid("prompt", format!("cannot tokenize the prompt: {e}")))?;
    let Some(unk) = tokenizer.unk_id() else {
        return Ok(ids);
    };
    let unknown = ids.iter().filter(|&&id| id == unk).count();
    if unknown == 0 {
        return Ok(ids);
    }
    let mut chars: Vec<char> = Vec::new();
    for c in prompt.chars() {
        if !chars.contains(&c)
            && tokenizer
                .encode(&c.to_string())
                .is_ok_and(|t| t.contains(&unk))
        {
            chars.push(c);
        }
    }
    let what = if chars.is_empty() || tokenizer.kind() != seqlab_tokenize::Kind::Char {
        format!("{unknown} of its tokens are")
    } else {
        let shown: Vec<String> = chars.iter().take(8).map(|c| format!("{c:?}")).collect();
        match shown.len() {
            1 => format!("the character {} is", shown[0]),
            _ => format!("the characters {} are", shown.join(", ")),
        }
    };
    Err(ApiError::invalid(
        "prompt",
        format!("the prompt cannot be read by this model: {what} not in its vocabulary"),
    ))
}

/// Beam search for one request, on the blocking pool (it is not batched with other requests); the result
/// goes to the request's events as one piece.
fn beam(worker: &LmWorker, request: LmRequest, width: usize, prompt: String) {
    let lm = worker.lm.clone();
    tokio::task::spawn_blocking(move || {
        let result = lm.generate(&prompt, request.max_tokens, &Decoding::beam(width), |_| {});
        let event = match result {
            Ok(generated) => {
                let mut text = generated.text;
                let mut reason = if generated.tokens.len() >= request.max_tokens {
                    FinishReason::Length
                } else {
                    FinishReason::Stop
                };
                if let Some(at) = request
                    .stop
                    .iter()
                    .filter_map(|s| text.find(s.as_str()))
                    .min()
                {
                    text.truncate(at);
                    reason = FinishReason::Stop;
                }
                let _ = request.events.send(LmEvent::Text {
                    index: request.index,
                    text,
                    tokens: Vec::new(),
                });
                LmEvent::Done {
                    index: request.index,
                    reason,
                    tokens: generated.tokens.len(),
                }
            }
            Err(e) => LmEvent::Failed {
                index: request.index,
                message: seqlab_base::one_line(e),
            },
        };
        let _ = request.events.send(event);
    });
}

/// One streamed chunk: a choice's new text, or its end.
#[allow(clippy::too_many_arguments)]
fn choice_chunk(
    id: &str,
    created: u64,
    model: &str,
    index: usize,
    text: &str,
    reason: Option<FinishReason>,
    with_logprobs: bool,
    tokens: &[TokenInfo],
) -> Value {
    json!({
        "id": id,
        "object": "text_completion",
        "created": created,
        "model": model,
        "choices": [{
            "text": text,
            "index": index,
            "logprobs": with_logprobs.then(|| logprobs_json(tokens)),
            "finish_reason": reason.map(FinishReason::as_str),
        }],
    })
}

/// OpenAI's `logprobs` object of some tokens.
fn logprobs_json(tokens: &[TokenInfo]) -> Value {
    let mut offset = 0;
    let offsets: Vec<usize> = tokens
        .iter()
        .map(|t| {
            let at = offset;
            offset += t.text.len();
            at
        })
        .collect();
    json!({
        "tokens": tokens.iter().map(|t| t.text.as_str()).collect::<Vec<_>>(),
        "token_logprobs": tokens.iter().map(|t| t.logprob).collect::<Vec<_>>(),
        "top_logprobs": tokens
            .iter()
            .map(|t| t.top.iter().map(|(s, l)| (s.clone(), json!(l))).collect::<serde_json::Map<_, _>>())
            .collect::<Vec<_>>(),
        "text_offset": offsets,
    })
}
