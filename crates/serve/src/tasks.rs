//! The endpoints of the other three tasks, and the listing ones: `/v1/translate`, `/v1/caption`,
//! `/v1/classify`, `/v1/models`, `/healthz`. Each request runs on the blocking pool.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, JsonRejection, QueryRejection};
use axum::extract::{Query, State as AxumState};
use axum::Json;
use seqlab_decode::Decoding;
use serde_json::{json, Value};

use crate::error::ApiError;
use crate::fields::Fields;
use crate::models::{Model, Task};
use crate::AppState;

/// A JSON request's fields and the model it names, which must be of `task` (see [`Models::pick`]).
///
/// [`Models::pick`]: crate::Models::pick
pub(crate) fn json_request<'a>(
    app: &'a AppState,
    body: Result<Json<Value>, JsonRejection>,
    task: &str,
) -> Result<(Fields, &'a Model), ApiError> {
    let Json(body) = body?;
    let fields = Fields::new(body)?;
    let model = app.models.pick(fields.string("model")?.as_deref(), task)?;
    Ok((fields, model))
}

/// Greedy, or beam search of a width.
fn decoding(beam: Option<u64>) -> Decoding {
    match beam {
        Some(width) if width > 1 => Decoding::beam(width as usize),
        _ => Decoding::GREEDY,
    }
}

/// Runs `work` on the blocking pool; its error is the client's (`param`) when it is one of the input.
async fn blocking<T: Send + 'static>(
    param: &'static str,
    work: impl FnOnce() -> seqlab_train::Result<T> + Send + 'static,
) -> Result<T, ApiError> {
    match tokio::task::spawn_blocking(work).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => Err(match e {
            seqlab_train::Error::InvalidSetting(_)
            | seqlab_train::Error::Data(_)
            | seqlab_train::Error::Tokenize(_) => {
                ApiError::invalid(param, seqlab_base::one_line(e))
            }
            other => ApiError::internal(other),
        }),
        Err(e) => Err(ApiError::internal(e)),
    }
}

/// `POST /v1/translate`: `{"model", "text": string or [string], "beam", "attention"}`.
pub async fn translate(
    AxumState(app): AxumState<Arc<AppState>>,
    body: Result<Json<Value>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let (fields, model) = json_request(&app, body, "translate")?;
    let Task::Translate(translator) = &model.task else {
        unreachable!("pick checked the task")
    };
    let texts = fields
        .strings("text")?
        .ok_or_else(|| ApiError::invalid("text", "text is missing: the sentence to translate"))?;
    let decoding = decoding(fields.integer("beam", 1, 64)?);
    let attention = fields.boolean("attention")?.unwrap_or(false);
    let translator = translator.clone();
    let translations = blocking("text", move || translator.translate(&texts, decoding)).await?;
    let translations: Vec<Value> = translations
        .into_iter()
        .map(|t| {
            let mut out = json!({
                "text": t.text,
                "source_tokens": t.source_tokens,
                "target_tokens": t.target_tokens,
            });
            if attention {
                out["attention"] = json!(t.attention);
            }
            out
        })
        .collect();
    Ok(Json(
        json!({"model": model.name, "translations": translations}),
    ))
}

/// `POST /v1/caption?model=NAME&beam=W&max_words=N` with the image's bytes (PNG or JPEG) as the body.
pub async fn caption(
    AxumState(app): AxumState<Arc<AppState>>,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(query) = query?;
    let bytes = body?;
    let fields = Fields::new(Value::Object(
        query
            .into_iter()
            .map(|(k, v)| {
                let value = v.parse::<u64>().map_or(Value::String(v), Value::from);
                (k, value)
            })
            .collect(),
    ))?;
    let model = app
        .models
        .pick(fields.string("model")?.as_deref(), "caption")?;
    let Task::Caption(captioner) = &model.task else {
        unreachable!("pick checked the task")
    };
    let decoding = decoding(fields.integer("beam", 1, 64)?);
    let max_words = fields.integer("max_words", 1, 200)?.unwrap_or(20) as usize;
    if bytes.is_empty() {
        return Err(ApiError::invalid(
            "image",
            "the body is empty: send the image's bytes (PNG or JPEG)",
        ));
    }
    let pixels = seqlab_data::decode_image(
        &bytes,
        &captioner.image_options(),
        Path::new("the uploaded image"),
    )
    .map_err(|e| ApiError::invalid("image", seqlab_base::one_line(e)))?;
    let captioner = captioner.clone();
    let captions = blocking("image", move || {
        captioner.caption(&[pixels], decoding, max_words)
    })
    .await?;
    Ok(Json(json!({
        "model": model.name,
        "caption": captions.into_iter().next().unwrap_or_default(),
    })))
}

/// `POST /v1/classify`: `{"model", "text": string or [string]}` → each text's labels, most probable first.
pub async fn classify(
    AxumState(app): AxumState<Arc<AppState>>,
    body: Result<Json<Value>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let (fields, model) = json_request(&app, body, "classify")?;
    let Task::Classify(classifier) = &model.task else {
        unreachable!("pick checked the task")
    };
    let texts = fields
        .strings("text")?
        .ok_or_else(|| ApiError::invalid("text", "text is missing: the text to classify"))?;
    let labels = classifier.labels.clone();
    let classifier = classifier.clone();
    let probabilities = blocking("text", move || classifier.predict(&texts)).await?;
    let results: Vec<Value> = probabilities
        .into_iter()
        .map(|row| {
            let mut ranked: Vec<(usize, f32)> = row.into_iter().enumerate().collect();
            ranked.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
            json!({
                "label": labels[ranked[0].0],
                "labels": ranked
                    .iter()
                    .map(|&(i, p)| json!({"label": labels[i], "probability": p}))
                    .collect::<Vec<_>>(),
            })
        })
        .collect();
    Ok(Json(json!({"model": model.name, "results": results})))
}

/// `GET /v1/models`: OpenAI's list, each entry with its seqlab task.
pub async fn models(AxumState(app): AxumState<Arc<AppState>>) -> Json<Value> {
    let data: Vec<Value> = app
        .models
        .iter()
        .map(|m| {
            json!({
                "id": m.name,
                "object": "model",
                "created": m.created,
                "owned_by": "seqlab",
                "task": m.task.name(),
                "endpoint": m.task.endpoint(),
            })
        })
        .collect();
    Json(json!({"object": "list", "data": data}))
}

/// `GET /healthz`.
pub async fn healthz(AxumState(app): AxumState<Arc<AppState>>) -> Json<Value> {
    Json(json!({"status": "ok", "models": app.models.len()}))
}
