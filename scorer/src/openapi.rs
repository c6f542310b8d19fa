//! The OpenAPI 3.0 document the server serves at `/openapi.json`: the endpoints written by hand
//! (the API is small), the request schema generated from the loaded model's feature contract,
//! since the request is whatever the job's `inference_requests` step selects.

use rtb_features::{FeatureContract, FieldType};
use serde_json::{Value, json};

/// The `BidRequest` schema of `contract`: its fields, only the key required.
fn request_schema(contract: Option<&FeatureContract>) -> Value {
    let Some(contract) = contract else {
        return json!({
            "type": "object",
            "description": "no model is loaded: the request fields are those of the model's feature contract, see /v1/model once ready"
        });
    };
    let properties: serde_json::Map<String, Value> = contract
        .request
        .iter()
        .map(|f| {
            let kind = match f.field_type {
                FieldType::String => "string",
                FieldType::Integer => "integer",
                FieldType::Float => "number",
                FieldType::Boolean => "boolean",
            };
            let mut schema = json!({ "type": kind, "nullable": f.name != contract.key });
            if let Some(source) = contract.openrtb.get(&f.name) {
                schema["description"] = json!(format!("from OpenRTB: {source}"));
            }
            (f.name.clone(), schema)
        })
        .collect();
    let features: Vec<String> = contract
        .features
        .iter()
        .map(|f| format!("{} = {}", f.name, f.expr))
        .collect();
    json!({
        "type": "object",
        "required": [contract.key],
        "description": format!(
            "the request of feature job {} (contract {}); a missing field is null, unknown fields are ignored. Model inputs: {}",
            contract.job, contract.version, features.join("; ")
        ),
        "properties": properties,
    })
}

pub fn document(contract: Option<&FeatureContract>) -> Value {
    let error = json!({ "$ref": "#/components/schemas/Error" });
    let errors = |codes: &[(&str, &str)]| {
        let mut map = serde_json::Map::new();
        for (code, text) in codes {
            map.insert(
                (*code).to_owned(),
                json!({ "description": text, "content": { "application/json": { "schema": error } } }),
            );
        }
        map
    };
    let scoring_errors = [
        (
            "400",
            "malformed json, a wrong type, a missing field or a value out of range",
        ),
        (
            "413",
            "body over the size limit, or more requests/impressions than allowed",
        ),
        ("503", "no model loaded yet"),
    ];
    let ok = |schema: &str, text: &str| json!({ "description": text, "content": { "application/json": { "schema": { "$ref": format!("#/components/schemas/{schema}") } } } });
    let with = |mut map: serde_json::Map<String, Value>, ok_response: Value| {
        map.insert("200".to_owned(), ok_response);
        Value::Object(map)
    };
    let body = |schema: &str| json!({ "required": true, "content": { "application/json": { "schema": { "$ref": format!("#/components/schemas/{schema}") } } } });
    json!({
        "openapi": "3.0.3",
        "info": {
            "title": "rtb-scorer",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Bid filtering: the likelihood that a bid request is worth bidding on, from the published LightGBM model. Unseen categories take the vocabulary's unknown index, as in training."
        },
        "paths": {
            "/v1/score": { "post": {
                "summary": "Score one bid request (the fields of the model's feature job; ?explain=true adds the feature vector)",
                "requestBody": body("BidRequest"),
                "responses": with(errors(&scoring_errors), ok("Score", "the likelihood to bid"))
            }},
            "/v1/score/batch": { "post": {
                "summary": "Score several bid requests in one call (bounded by --max-batch)",
                "requestBody": body("BatchRequest"),
                "responses": with(errors(&scoring_errors), ok("BatchScore", "one likelihood per request, in order"))
            }},
            "/v1/openrtb": { "post": {
                "summary": "Score each impression of an OpenRTB 2.5/2.6 BidRequest",
                "description": "Each request field is read from the OpenRTB source its BidRequest property names (e.g. device.ua; imp.* from the impression); @day_of_week and @hour come from ext.timestamp (epoch ms or RFC 3339) or the server clock, in the model's time zone (or --time-zone). Unknown fields and ext objects are ignored.",
                "parameters": [{ "name": "advertiserId", "in": "query", "required": false, "schema": { "type": "string" } }],
                "requestBody": { "required": true, "content": { "application/json": { "schema": { "type": "object", "required": ["id", "imp"] } } } },
                "responses": with(errors(&scoring_errors), ok("OpenRtbScore", "one likelihood per impression, in imp order"))
            }},
            "/v1/model": { "get": {
                "summary": "The model being served: version, manifest, vocabulary",
                "responses": with(errors(&[("503", "no model loaded yet")]), json!({ "description": "model info" }))
            }},
            "/healthz": { "get": { "summary": "Liveness: the process answers", "responses": { "200": { "description": "alive" } } } },
            "/readyz": { "get": { "summary": "Readiness: a model is loaded and the scorer is not shutting down", "responses": { "200": { "description": "ready" }, "503": { "description": "not ready" } } } },
            "/metrics": { "get": { "summary": "Prometheus metrics", "responses": { "200": { "description": "text exposition format", "content": { "text/plain": {} } } } } },
            "/openapi.json": { "get": { "summary": "This document", "responses": { "200": { "description": "OpenAPI 3.0" } } } },
            "/admin/reload": { "post": {
                "summary": "Load the model the parameter store names now, check it, and swap it in",
                "security": [{ "bearer": [] }],
                "responses": with(errors(&[
                    ("401", "missing or wrong bearer token"),
                    ("403", "the admin api is off (no --admin-token)"),
                    ("422", "the new model was refused; the old one keeps serving"),
                ]), json!({ "description": "swapped or unchanged" }))
            }}
        },
        "components": {
            "securitySchemes": { "bearer": { "type": "http", "scheme": "bearer" } },
            "schemas": {
                "BidRequest": request_schema(contract),
                "BatchRequest": {
                    "type": "object", "required": ["requests"],
                    "properties": { "requests": { "type": "array", "items": { "$ref": "#/components/schemas/BidRequest" } } }
                },
                "Score": {
                    "type": "object",
                    "properties": {
                        "bidId": { "type": "string" },
                        "likelihood": { "type": "number", "minimum": 0, "maximum": 1 },
                        "modelVersion": { "type": "string" }
                    }
                },
                "BatchScore": {
                    "type": "object",
                    "properties": {
                        "modelVersion": { "type": "string" },
                        "results": { "type": "array", "items": { "type": "object", "properties": {
                            "bidId": { "type": "string" }, "likelihood": { "type": "number" } } } }
                    }
                },
                "OpenRtbScore": {
                    "type": "object",
                    "properties": {
                        "id": { "type": "string" },
                        "modelVersion": { "type": "string" },
                        "dayOfWeek": { "type": "integer" },
                        "hour": { "type": "integer" },
                        "imp": { "type": "array", "items": { "type": "object", "properties": {
                            "impId": { "type": "string" }, "likelihood": { "type": "number" } } } }
                    }
                },
                "Error": {
                    "type": "object", "required": ["error", "message"],
                    "properties": {
                        "error": { "type": "string", "enum": ["malformed_json", "wrong_type", "missing_field", "invalid_value", "body_too_large", "batch_too_large", "not_ready", "unauthorized", "admin_disabled", "not_found", "model_rejected", "internal"] },
                        "message": { "type": "string" }
                    }
                }
            }
        }
    })
}
