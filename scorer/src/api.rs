//! The HTTP surface: scoring (one request, a batch, an OpenRTB request), health, readiness,
//! metrics, model info, the OpenAPI document and the admin reload. Every error is a JSON body
//! `{"error": kind, "message": ...}` with a 4xx or 5xx status, counted by kind.

use std::time::Instant;

use actix_web::http::StatusCode;
use actix_web::http::header::{AUTHORIZATION, CONTENT_LENGTH, ContentType};
use actix_web::{HttpRequest, HttpResponse, web};
use bytes::BytesMut;
use futures::StreamExt;
use rtb_features::RequestTime;
use rtb_features::openrtb::Context;
use serde::Serialize;
use serde_json::json;

use crate::artifacts::{LoadedModel, Scored};
use crate::decode::{self, DecodeError};
use crate::metrics::{Endpoint, ErrorKind};
use crate::openapi;
use crate::state::{AppState, ReloadOutcome};

type State = web::Data<AppState>;

/// Routes; the server and the tests build their apps from this.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/v1/score", web::post().to(score))
        .route("/v1/score/batch", web::post().to(score_batch))
        .route("/v1/openrtb", web::post().to(score_openrtb))
        .route("/v1/model", web::get().to(model_info))
        .route("/healthz", web::get().to(healthz))
        .route("/readyz", web::get().to(readyz))
        .route("/metrics", web::get().to(metrics))
        .route("/openapi.json", web::get().to(openapi_document))
        .route("/admin/reload", web::post().to(admin_reload))
        .default_service(web::to(not_found));
}

fn status(kind: ErrorKind) -> StatusCode {
    match kind {
        ErrorKind::MalformedJson
        | ErrorKind::WrongType
        | ErrorKind::MissingField
        | ErrorKind::InvalidValue
        | ErrorKind::MalformedHttp => StatusCode::BAD_REQUEST,
        ErrorKind::HeadTooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
        ErrorKind::HeadTimeout => StatusCode::REQUEST_TIMEOUT,
        ErrorKind::BodyTooLarge | ErrorKind::BatchTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        ErrorKind::BodyTimeout => StatusCode::REQUEST_TIMEOUT,
        ErrorKind::TooManyAttempts => StatusCode::TOO_MANY_REQUESTS,
        ErrorKind::NotReady => StatusCode::SERVICE_UNAVAILABLE,
        ErrorKind::Unauthorized => StatusCode::UNAUTHORIZED,
        ErrorKind::AdminDisabled => StatusCode::FORBIDDEN,
        ErrorKind::NotFound => StatusCode::NOT_FOUND,
        ErrorKind::ModelRejected => StatusCode::UNPROCESSABLE_ENTITY,
        ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

fn error_response(err: &DecodeError) -> HttpResponse {
    HttpResponse::build(status(err.kind)).json(json!({
        "error": err.kind.label(),
        "message": err.message,
    }))
}

fn not_ready() -> DecodeError {
    DecodeError::new(
        ErrorKind::NotReady,
        "no model is loaded yet; see /readyz and the scorer's log",
    )
}

/// The body, refused as soon as it is known to exceed `limit` (by its Content-Length, or
/// while streaming one without it).
async fn read_body(
    req: &HttpRequest,
    mut payload: web::Payload,
    limits: &crate::state::Limits,
) -> Result<BytesMut, DecodeError> {
    let (limit, deadline) = (limits.max_body_bytes, limits.body_timeout);
    let too_large = |size: String| {
        DecodeError::new(
            ErrorKind::BodyTooLarge,
            format!("the body is {size} bytes; at most {limit} are accepted"),
        )
    };
    let declared = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if let Some(length) = declared
        && length > limit
    {
        return Err(too_large(length.to_string()));
    }
    let mut body = BytesMut::with_capacity(declared.unwrap_or(1024).min(limit));
    // a client that sends its headers and then trickles (or never sends) the body would hold a
    // socket forever: the whole body must arrive within the deadline
    let reading = async {
        while let Some(chunk) = payload.next().await {
            let chunk = chunk.map_err(|e| {
                DecodeError::new(
                    ErrorKind::MalformedJson,
                    format!("the body cannot be read: {e}"),
                )
            })?;
            if body.len() + chunk.len() > limit {
                return Err(too_large(format!("more than {limit}")));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(())
    };
    match tokio::time::timeout(deadline, reading).await {
        Ok(read) => read.map(|()| body),
        Err(_) => Err(DecodeError::new(
            ErrorKind::BodyTimeout,
            format!(
                "the body did not arrive within {} ms ({} bytes came)",
                deadline.as_millis(),
                body.len()
            ),
        )),
    }
}

/// Counts and answers a scoring request: `Ok((rows, json))` or the error.
fn finish(
    state: &AppState,
    endpoint: Endpoint,
    started: Instant,
    result: Result<(usize, Vec<u8>), DecodeError>,
) -> HttpResponse {
    let elapsed = started.elapsed();
    match result {
        Ok((rows, body)) => {
            state.metrics.scored(endpoint, rows, elapsed);
            state.statsd.scored(rows, elapsed);
            HttpResponse::Ok()
                .content_type(ContentType::json())
                .body(body)
        }
        Err(err) => {
            state.metrics.failed(Some(endpoint), err.kind, elapsed);
            state.statsd.failed();
            error_response(&err)
        }
    }
}

fn to_json<T: Serialize>(value: &T) -> Result<Vec<u8>, DecodeError> {
    serde_json::to_vec(value).map_err(|e| {
        DecodeError::new(
            ErrorKind::Internal,
            format!("cannot write the response: {e}"),
        )
    })
}

/// `?explain=true`: answers carry the feature vector the scorer computed, by feature name,
/// for a user chasing training/serving skew.
fn explain(req: &HttpRequest) -> bool {
    url::form_urlencoded::parse(req.query_string().as_bytes())
        .any(|(k, v)| k == "explain" && (v == "true" || v == "1"))
}

/// The feature vector of one row, by name; NaN (a missing value) shows as null.
fn explained(model: &LoadedModel, row: &[f64]) -> serde_json::Map<String, serde_json::Value> {
    model
        .features
        .names()
        .zip(row)
        .map(|(name, v)| {
            let value =
                serde_json::Number::from_f64(*v).map_or(serde_json::Value::Null, Into::into);
            (name.to_owned(), value)
        })
        .collect()
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ScoreAnswer<'a> {
    bid_id: &'a str,
    likelihood: f64,
    model_version: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    features: Option<serde_json::Map<String, serde_json::Value>>,
}

async fn score(req: HttpRequest, payload: web::Payload, state: State) -> HttpResponse {
    let started = Instant::now();
    let result = async {
        let body = read_body(&req, payload, &state.limits).await?;
        let guard = state.model_guard();
        let model = (*guard).as_ref().ok_or_else(not_ready)?;
        let mut rows = model.rows(1);
        decode::score_request(&body, &mut rows)?;
        let scored = model.score(&rows)?;
        let body = to_json(&ScoreAnswer {
            bid_id: &rows.keys()[0],
            likelihood: scored.likelihoods[0],
            model_version: model.model_id(),
            features: explain(&req).then(|| explained(model, scored.row(0))),
        })?;
        Ok::<_, DecodeError>((1, body))
    }
    .await;
    finish(&state, Endpoint::Score, started, result)
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct BatchItem<'a> {
    bid_id: &'a str,
    likelihood: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    features: Option<serde_json::Map<String, serde_json::Value>>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct BatchScored<'a> {
    model_version: &'a str,
    results: Vec<BatchItem<'a>>,
}

fn items<'a>(
    model: &LoadedModel,
    keys: &'a [String],
    scored: &Scored,
    explain: bool,
) -> Vec<BatchItem<'a>> {
    keys.iter()
        .enumerate()
        .map(|(i, key)| BatchItem {
            bid_id: key,
            likelihood: scored.likelihoods[i],
            features: explain.then(|| explained(model, scored.row(i))),
        })
        .collect()
}

async fn score_batch(req: HttpRequest, payload: web::Payload, state: State) -> HttpResponse {
    let started = Instant::now();
    let result = async {
        let body = read_body(&req, payload, &state.limits).await?;
        let guard = state.model_guard();
        let model = (*guard).as_ref().ok_or_else(not_ready)?;
        let mut rows = model.rows(16);
        decode::batch_request(&body, state.limits.max_batch, &mut rows)?;
        let scored = model.score(&rows)?;
        let results = items(model, rows.keys(), &scored, explain(&req));
        let n = results.len();
        let body = to_json(&BatchScored {
            model_version: model.model_id(),
            results,
        })?;
        Ok::<_, DecodeError>((n, body))
    }
    .await;
    finish(&state, Endpoint::Batch, started, result)
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ImpScored<'a> {
    imp_id: &'a str,
    likelihood: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    features: Option<serde_json::Map<String, serde_json::Value>>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct OpenRtbScored<'a> {
    id: &'a str,
    model_version: &'a str,
    day_of_week: u8,
    hour: u8,
    imp: Vec<ImpScored<'a>>,
}

async fn score_openrtb(req: HttpRequest, payload: web::Payload, state: State) -> HttpResponse {
    let started = Instant::now();
    let result = async {
        let body = read_body(&req, payload, &state.limits).await?;
        let request = decode::openrtb_request(&body, state.limits.max_batch)?;
        let at = match request.timestamp() {
            None => chrono::Utc::now(),
            Some(RequestTime::EpochMillis(ms)) => chrono::DateTime::from_timestamp_millis(ms)
                .ok_or_else(|| {
                    DecodeError::new(
                        ErrorKind::InvalidValue,
                        format!("ext.timestamp {ms} is not a time in epoch milliseconds"),
                    )
                })?,
            Some(RequestTime::Text(text)) => chrono::DateTime::parse_from_rfc3339(text)
                .map_err(|e| {
                    DecodeError::new(
                        ErrorKind::InvalidValue,
                        format!("ext.timestamp {text:?} is not an RFC 3339 time ({e})"),
                    )
                })?
                .with_timezone(&chrono::Utc),
        };
        let guard = state.model_guard();
        let model = (*guard).as_ref().ok_or_else(not_ready)?;
        let (day_of_week, hour) = model.clock.day_hour(at);
        let timestamp = model.clock.log_timestamp(at);
        let query: Vec<(String, String)> =
            url::form_urlencoded::parse(req.query_string().as_bytes())
                .into_owned()
                .collect();
        let context = Context {
            day_of_week,
            hour,
            timestamp: &timestamp,
            query: &query,
        };
        let mut rows = model.rows(request.imps());
        for imp in 0..request.imps() {
            rows.push_openrtb(&request, imp, &model.openrtb, &context)?;
        }
        let scored = model.score(&rows)?;
        let explain = explain(&req);
        let imp = request
            .imp_ids
            .iter()
            .enumerate()
            .map(|(i, imp_id)| ImpScored {
                imp_id,
                likelihood: scored.likelihoods[i],
                features: explain.then(|| explained(model, scored.row(i))),
            })
            .collect();
        let body = to_json(&OpenRtbScored {
            id: &request.id,
            model_version: model.model_id(),
            day_of_week,
            hour,
            imp,
        })?;
        Ok::<_, DecodeError>((request.imps(), body))
    }
    .await;
    finish(&state, Endpoint::OpenRtb, started, result)
}

async fn model_info(state: State) -> HttpResponse {
    let Some(model) = state.model() else {
        let err = not_ready();
        state.metrics.failed(None, err.kind, Default::default());
        return error_response(&err);
    };
    let sizes: serde_json::Map<String, serde_json::Value> = model
        .vocabulary
        .columns()
        .map(|(name, indexer)| (name.to_owned(), json!(indexer.labels().len())))
        .collect();
    // where the artifacts are stored is the operator's business, not every caller's
    let mut manifest = serde_json::to_value(&model.manifest).unwrap_or_default();
    if let Some(fields) = manifest.as_object_mut() {
        fields.remove("model");
        fields.remove("vocabulary");
    }
    HttpResponse::Ok().json(json!({
        "modelVersion": model.model_id(),
        "loadedAt": model.loaded_at.to_rfc3339(),
        "trees": model.ensemble.iterations(),
        "features": model.manifest.features,
        "contract": model.manifest.contract,
        "timeZone": model.manifest.contract.time_zone,
        "vocabularyVersion": model.vocabulary.version,
        "vocabularySizes": sizes,
        "manifest": manifest,
    }))
}

async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({ "status": "alive" }))
}

async fn readyz(state: State) -> HttpResponse {
    let model = state.model();
    if state.ready() {
        return HttpResponse::Ok().json(json!({
            "ready": true,
            "modelVersion": model.as_ref().map(|m| m.model_id()),
        }));
    }
    let reason = if state.shutting_down() {
        "shutting down"
    } else {
        "no model loaded"
    };
    HttpResponse::ServiceUnavailable().json(json!({ "ready": false, "reason": reason }))
}

async fn metrics(state: State) -> HttpResponse {
    let model = state.model();
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(state.metrics.render(model.as_deref(), state.ready()))
}

async fn openapi_document(state: State) -> HttpResponse {
    let model = state.model();
    HttpResponse::Ok().json(openapi::document(
        model.as_deref().map(|m| &m.manifest.contract),
    ))
}

/// Compares without an early exit, so response time does not reveal how much of a guess matched.
fn same_secret(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn admin_reload(req: HttpRequest, state: State) -> HttpResponse {
    let fail = |err: DecodeError| {
        state.metrics.failed(None, err.kind, Default::default());
        error_response(&err)
    };
    let Some(expected) = &state.admin_token else {
        return fail(DecodeError::new(
            ErrorKind::AdminDisabled,
            "the admin api is off; start the scorer with --admin-token (RTB_ADMIN_TOKEN) to use it",
        ));
    };
    if let Some(wait) = state.admin_locked_out() {
        return fail(DecodeError::new(
            ErrorKind::TooManyAttempts,
            format!("too many failed admin attempts; try again in {wait} s"),
        ));
    }
    let given = req
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    if !given.is_some_and(|g| same_secret(g.trim().as_bytes(), expected.as_bytes())) {
        state.admin_failed();
        return fail(DecodeError::new(
            ErrorKind::Unauthorized,
            "send the admin token as Authorization: Bearer <token>",
        ));
    }
    match state.reload(true).await {
        ReloadOutcome::Swapped { from, to } => HttpResponse::Ok().json(json!({
            "outcome": "swapped", "from": from, "modelVersion": to,
        })),
        ReloadOutcome::Unchanged { model_id } => HttpResponse::Ok().json(json!({
            "outcome": "unchanged", "modelVersion": model_id,
        })),
        ReloadOutcome::Rejected(err) => {
            let serving = state.model().map(|m| m.model_id().to_owned());
            state
                .metrics
                .failed(None, ErrorKind::ModelRejected, Default::default());
            HttpResponse::build(status(ErrorKind::ModelRejected)).json(json!({
                "error": ErrorKind::ModelRejected.label(),
                "message": err.to_string(),
                "modelVersion": serving,
            }))
        }
    }
}

async fn not_found(req: HttpRequest, state: State) -> HttpResponse {
    let err = DecodeError::new(
        ErrorKind::NotFound,
        format!(
            "no endpoint {} {}; see /openapi.json",
            req.method(),
            req.path()
        ),
    );
    state.metrics.failed(None, err.kind, Default::default());
    error_response(&err)
}
