//! The generation worker of a language model: concurrent requests batched into one recurrent step.
//!
//! One thread per model owns its decoding loop. Every request is one row: the worker reads the row's prompt
//! alone (a batch of one), then joins it to the rows already decoding, so each step feeds every row's last
//! token through the model at once — the rows of one state, as beam search keeps its hypotheses — and each
//! row picks its next token from its own logits with its own sampler (temperature, top-k, top-p, seed).
//! A row leaves the batch when it ends (`<eos>`, a stop sequence, `max_tokens`) or its client goes away.
//! `max_batch` caps the rows; 1 turns batching off (one request at a time, the others queue).
//!
//! A row's tokens are exactly what `seqlab lm generate` gives with the same settings and seed: the same
//! priming, the same [`Sampler`] stream, and rows never share random numbers.

use std::collections::VecDeque;
use std::sync::mpsc::{self, Receiver, Sender, TryRecvError};
use std::sync::Arc;

use candle_core::{Device, Tensor};
use seqlab_cells::State;
use seqlab_decode::{Sampler, Sampling, StepModel};
use seqlab_train::{LoadedLm, TextStream};
use tokio::sync::mpsc::UnboundedSender;

/// One completion to generate.
#[derive(Debug)]
pub struct LmRequest {
    /// The choice this is, in the response.
    pub index: usize,
    /// The prompt's tokens, without `<bos>`.
    pub prompt_ids: Vec<u32>,
    /// How tokens are chosen.
    pub sampling: Sampling,
    /// The seed of the sampler.
    pub seed: u64,
    /// At most this many tokens.
    pub max_tokens: usize,
    /// Generation ends before the first of these strings; the text stops short of it.
    pub stop: Vec<String>,
    /// Report each token's log-probability, with this many most likely alternatives.
    pub logprobs: Option<usize>,
    /// Where the text goes as it is generated.
    pub events: UnboundedSender<LmEvent>,
}

/// A token as the client sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenInfo {
    /// The text the token added.
    pub text: String,
    /// The model's log-probability of the token (its own distribution: temperature 1, nothing truncated).
    pub logprob: f32,
    /// The most likely tokens at that step and their log-probabilities, when asked for.
    pub top: Vec<(String, f32)>,
}

/// Why a completion ended, in the API's words.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinishReason {
    /// `<eos>` or a stop sequence.
    Stop,
    /// `max_tokens`.
    Length,
}

impl FinishReason {
    /// The API's word.
    pub fn as_str(self) -> &'static str {
        match self {
            FinishReason::Stop => "stop",
            FinishReason::Length => "length",
        }
    }
}

/// What the worker reports about one request.
#[derive(Debug, Clone, PartialEq)]
pub enum LmEvent {
    /// New text, and the tokens that make it.
    Text {
        /// The request's index.
        index: usize,
        /// The text.
        text: String,
        /// Its tokens (with their log-probabilities when asked for).
        tokens: Vec<TokenInfo>,
    },
    /// The end of a request.
    Done {
        /// The request's index.
        index: usize,
        /// Why it ended.
        reason: FinishReason,
        /// Tokens generated.
        tokens: usize,
    },
    /// The model failed on the request.
    Failed {
        /// The request's index.
        index: usize,
        /// What went wrong.
        message: String,
    },
}

/// The handle of a language model's worker thread.
#[derive(Debug)]
pub struct LmWorker {
    /// The model.
    pub lm: Arc<LoadedLm>,
    /// Rows decoded together at most.
    pub max_batch: usize,
    jobs: Sender<LmRequest>,
}

impl LmWorker {
    /// Starts the worker of `lm`, batching up to `max_batch` requests into one step.
    pub fn start(name: &str, lm: Arc<LoadedLm>, max_batch: usize) -> std::io::Result<LmWorker> {
        let (jobs, queue) = mpsc::channel();
        let model = lm.clone();
        let max_batch = max_batch.max(1);
        std::thread::Builder::new()
            .name(format!("lm {name}"))
            .spawn(move || run(&model, &queue, max_batch))?;
        Ok(LmWorker {
            lm,
            max_batch,
            jobs,
        })
    }

    /// Queues a request. Fails only when the worker has stopped.
    pub fn submit(&self, request: LmRequest) -> Result<(), String> {
        self.jobs
            .send(request)
            .map_err(|_| "the model's generation worker has stopped".to_string())
    }
}

/// A request being decoded.
struct Row<'a> {
    request: LmRequest,
    sampler: Sampler,
    stream: TextStream<'a>,
    /// The token the next step feeds.
    input: u32,
    /// The tokens that end it (`<eos>`).
    eos: Vec<u32>,
    generated: usize,
    /// The continuation so far, and how much of it the client has.
    text: String,
    sent: usize,
    /// Tokens not yet sent, with the end of their text in `text`.
    unsent: VecDeque<(TokenInfo, usize)>,
}

/// The worker's loop: admit queued requests up to `max_batch` rows, step every row at once, repeat. Ends
/// when the server drops the queue and no row is left.
fn run(lm: &LoadedLm, queue: &Receiver<LmRequest>, max_batch: usize) {
    let device = Device::Cpu;
    let mut rows: Vec<Row> = Vec::new();
    let mut state: Option<State> = None;
    let mut open = true;
    loop {
        // Wait for work when idle; take what is queued when busy.
        while open && rows.len() < max_batch {
            let next = if rows.is_empty() {
                queue.recv().map_err(|_| TryRecvError::Disconnected)
            } else {
                queue.try_recv()
            };
            match next {
                Ok(request) => {
                    let Some((row, row_state)) = start(lm, request) else {
                        continue;
                    };
                    match state.take() {
                        None => {
                            state = Some(row_state);
                            rows.push(row);
                        }
                        Some(batch) => match join(&batch, &row_state) {
                            Ok(joined) => {
                                state = Some(joined);
                                rows.push(row);
                            }
                            Err(e) => {
                                fail(&row.request, &e);
                                state = Some(batch);
                            }
                        },
                    }
                }
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => open = false,
            }
        }
        let Some(batch) = state.take() else {
            if open {
                continue;
            }
            return;
        };
        match step(lm, &device, &mut rows, &batch) {
            Ok(next) => state = next,
            Err(e) => {
                for row in rows.drain(..) {
                    fail(&row.request, &e);
                }
            }
        }
    }
}

/// One step of every row; returns the state of the rows still going (`None` when none is).
fn step(
    lm: &LoadedLm,
    device: &Device,
    rows: &mut Vec<Row<'_>>,
    state: &State,
) -> candle_core::Result<Option<State>> {
    let inputs: Vec<u32> = rows.iter().map(|r| r.input).collect();
    let tokens = Tensor::from_vec(inputs, rows.len(), device)?;
    let (logits, next) = lm.model.step(&tokens, state)?;
    let logits: Vec<f32> = logits.flatten_all()?.to_vec1()?;
    let vocab = logits.len() / rows.len().max(1);
    let mut keep = Vec::with_capacity(rows.len());
    for (i, row) in rows.iter_mut().enumerate() {
        if !row.advance(lm, &logits[i * vocab..(i + 1) * vocab]) {
            keep.push(i as u32);
        }
    }
    if keep.len() == rows.len() {
        return Ok(Some(next));
    }
    let mut k = 0;
    rows.retain(|_| {
        let kept = keep.contains(&(k as u32));
        k += 1;
        kept
    });
    if keep.is_empty() {
        return Ok(None);
    }
    let indices = Tensor::from_vec(keep.clone(), keep.len(), device)?;
    Ok(Some(lm.model.select(&next, &indices)?))
}

/// Primes a request's row, or reports why it cannot be (and returns `None`). A request for no tokens
/// ends here.
fn start(lm: &LoadedLm, request: LmRequest) -> Option<(Row<'_>, State)> {
    let begin = || -> seqlab_train::Result<(Sampler, TextStream<'_>, u32, State)> {
        let sampler = Sampler::new(request.sampling, request.seed, &lm.banned())?;
        let stream = TextStream::new(&lm.tokenizer, request.prompt_ids.clone())?;
        let (first, state) = lm.prime(&request.prompt_ids)?;
        Ok((sampler, stream, first, state))
    };
    if request.max_tokens == 0 {
        let _ = request.events.send(LmEvent::Done {
            index: request.index,
            reason: FinishReason::Length,
            tokens: 0,
        });
        return None;
    }
    match begin() {
        Ok((sampler, stream, input, state)) => Some((
            Row {
                request,
                sampler,
                stream,
                input,
                eos: lm.eos(),
                generated: 0,
                text: String::new(),
                sent: 0,
                unsent: VecDeque::new(),
            },
            state,
        )),
        Err(e) => {
            fail(&request, &e);
            None
        }
    }
}

/// The state of `a`'s rows, then `b`'s.
fn join(a: &State, b: &State) -> candle_core::Result<State> {
    Ok(State::new(
        Tensor::cat(&[&a.h, &b.h], 1)?,
        a.memory
            .iter()
            .zip(&b.memory)
            .map(|(x, y)| Tensor::cat(&[x, y], 1))
            .collect::<candle_core::Result<_>>()?,
    ))
}

fn fail(request: &LmRequest, error: &dyn std::fmt::Display) {
    let _ = request.events.send(LmEvent::Failed {
        index: request.index,
        message: seqlab_base::one_line(error),
    });
}

impl Row<'_> {
    /// Takes the row's next token from its logits and sends what the client can have; returns whether the
    /// row is finished.
    fn advance(&mut self, lm: &LoadedLm, logits: &[f32]) -> bool {
        let token = match self.sampler.sample(logits) {
            Ok(token) => token,
            Err(e) => {
                fail(&self.request, &e);
                return true;
            }
        };
        if self.eos.contains(&token) {
            return self.finish(FinishReason::Stop, self.text.len());
        }
        let piece = match self.stream.push(token) {
            Ok(piece) => piece,
            Err(e) => {
                fail(&self.request, &e);
                return true;
            }
        };
        self.generated += 1;
        self.input = token;
        let info = TokenInfo {
            text: piece.clone(),
            logprob: log_prob(logits, token),
            top: self
                .request
                .logprobs
                .map_or_else(Vec::new, |n| top(lm, logits, n)),
        };
        self.text.push_str(&piece);
        self.unsent.push_back((info, self.text.len()));
        if let Some(at) = self.stop_at() {
            return self.finish(FinishReason::Stop, at);
        }
        if self.generated >= self.request.max_tokens {
            return self.finish(FinishReason::Length, self.text.len());
        }
        let safe = self.text.len() - self.held_back();
        self.send_to(safe)
    }

    /// Where the first stop sequence begins in the text, if one has appeared.
    fn stop_at(&self) -> Option<usize> {
        // A stop sequence can only be new where it overlaps the text not yet sent.
        self.request
            .stop
            .iter()
            .filter_map(|s| {
                let from = self.sent.saturating_sub(s.len());
                let from = (0..=from)
                    .rev()
                    .find(|&i| self.text.is_char_boundary(i))
                    .unwrap_or(0);
                self.text[from..].find(s.as_str()).map(|i| from + i)
            })
            .min()
    }

    /// Bytes at the end of the text that could begin a stop sequence: held back until it is known.
    fn held_back(&self) -> usize {
        self.request
            .stop
            .iter()
            .map(|s| {
                (1..s.len())
                    .rev()
                    .find(|&k| {
                        s.is_char_boundary(k)
                            && self.text.len() >= k
                            && self.text.as_bytes()[self.text.len() - k..] == s.as_bytes()[..k]
                    })
                    .unwrap_or(0)
            })
            .max()
            .unwrap_or(0)
            .min(self.text.len() - self.sent)
    }

    /// Sends the text up to byte `end` with the tokens it completes; returns whether the client is gone.
    fn send_to(&mut self, end: usize) -> bool {
        if end <= self.sent {
            return self.request.events.is_closed();
        }
        let mut tokens = Vec::new();
        while self.unsent.front().is_some_and(|(_, e)| *e <= end) {
            if let Some((info, _)) = self.unsent.pop_front() {
                tokens.push(info);
            }
        }
        let text = self.text[self.sent..end].to_string();
        self.sent = end;
        self.request
            .events
            .send(LmEvent::Text {
                index: self.request.index,
                text,
                tokens,
            })
            .is_err()
    }

    /// Sends the text up to `end` and the end; the row is finished.
    fn finish(&mut self, reason: FinishReason, end: usize) -> bool {
        if end > self.sent {
            self.send_to(end);
        }
        let _ = self.request.events.send(LmEvent::Done {
            index: self.request.index,
            reason,
            tokens: self.generated,
        });
        true
    }
}

/// `log softmax(logits)[token]`.
fn log_prob(logits: &[f32], token: u32) -> f32 {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let sum: f64 = logits.iter().map(|&l| f64::from(l - max).exp()).sum();
    (f64::from(logits[token as usize] - max) - sum.ln()) as f32
}

/// The `n` most likely tokens (ties to the lower id) and their log-probabilities.
fn top(lm: &LoadedLm, logits: &[f32], n: usize) -> Vec<(String, f32)> {
    let mut ids: Vec<u32> = (0..logits.len() as u32).collect();
    ids.sort_by(|&a, &b| {
        logits[b as usize]
            .total_cmp(&logits[a as usize])
            .then(a.cmp(&b))
    });
    ids.truncate(n);
    ids.into_iter()
        .map(|id| {
            let text = lm
                .tokenizer
                .decode(&[id])
                .ok()
                .filter(|t| !t.is_empty())
                .or_else(|| lm.tokenizer.id_to_token(id))
                .unwrap_or_default();
            (text, log_prob(logits, id))
        })
        .collect()
}
