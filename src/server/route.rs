//! One request to one answer: pick the API by path and content type, read a bounded body, check
//! the signature, run the action, and answer `200` with `Content-Type: application/json`.

use std::collections::BTreeMap;
use std::io::{Cursor, Read};
use std::panic::{AssertUnwindSafe, catch_unwind};

use zeroize::Zeroizing;

use super::State;
use super::actions;
use super::auth::{self, FormTarget};
use super::params::Params;
use super::reply::{Reply, Style, render_error};
use crate::kms::tencent::sign;
use crate::kms::{KmsError, new_request_id};

/// The largest request body read (the service documents 1 MB for form POSTs).
pub const MAX_BODY_LEN: usize = 1024 * 1024;

/// The API version every 3.0 call must name.
pub const API_VERSION: &str = "2019-01-18";

/// The path of the legacy 2.0 API.
pub const LEGACY_PATH: &str = "/v2/index.php";

/// The exact Content-Type of every answer (the official SDK reads errors only with this one).
const JSON_CONTENT_TYPE: &str = "application/json";

const FORM_CONTENT_TYPE: &str = "application/x-www-form-urlencoded";

/// Answers one request; never panics, whatever the input.
pub fn answer(state: &State, mut request: tiny_http::Request) {
    let request_id = new_request_id();
    let handled = catch_unwind(AssertUnwindSafe(|| {
        handle(state, &mut request, &request_id)
    }));
    let body = handled.unwrap_or_else(|_| {
        log::debug!("request {request_id} panicked");
        let err = KmsError::internal("the server failed on this request");
        render_error(Style::V3, &err, &request_id)
    });

    let length = body.len();
    let content_type = tiny_http::Header::from_bytes("Content-Type", JSON_CONTENT_TYPE)
        .expect("a constant header is valid");
    let response = tiny_http::Response::new(
        tiny_http::StatusCode(200),
        vec![content_type],
        Cursor::new(body),
        Some(length),
        None,
    );
    if let Err(err) = request.respond(response) {
        log::debug!("answering request {request_id} failed: {err}");
    }
}

/// The API a request is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Api {
    /// POST `/` with a JSON body and TC3 signature.
    Tc3,
    /// `/` with form parameters (POST body or GET query) and a v1 signature.
    V1Form,
    /// `/v2/index.php`, form parameters in the body or the query.
    Legacy,
    /// Anything else.
    Unknown,
}

impl Api {
    fn style(self) -> Style {
        match self {
            Self::Legacy => Style::Legacy,
            _ => Style::V3,
        }
    }
}

/// A request's parts, with the headers as text pairs.
struct Incoming<'a> {
    method: &'a str,
    path: &'a str,
    query: &'a str,
    headers: Vec<(&'a str, &'a str)>,
}

fn handle(state: &State, request: &mut tiny_http::Request, request_id: &str) -> Zeroizing<Vec<u8>> {
    let body = read_body(request);
    let method = request.method().as_str().to_owned();
    let url = request.url().to_owned();
    let (path, query) = url.split_once('?').unwrap_or((&url, ""));
    let incoming = Incoming {
        method: &method,
        path,
        query,
        headers: request
            .headers()
            .iter()
            .map(|header| (header.field.as_str().as_str(), header.value.as_str()))
            .collect(),
    };

    let api = classify(&incoming);
    let outcome = body.and_then(|body| dispatch(state, api, &incoming, &body));
    match &outcome {
        Ok(_) => log::debug!("{method} {path} {request_id}: ok"),
        Err(err) => log::debug!("{method} {path} {request_id}: {}", err.code),
    }
    match outcome {
        Ok(reply) => reply.render(api.style(), request_id),
        Err(err) => render_error(api.style(), &err, request_id),
    }
}

fn classify(incoming: &Incoming<'_>) -> Api {
    let content_type = auth::find_header(&incoming.headers, "Content-Type").unwrap_or("");
    let media_type = content_type.split(';').next().unwrap_or("").trim();
    match (incoming.path, incoming.method) {
        (LEGACY_PATH, "GET" | "POST") => Api::Legacy,
        ("/", "POST") if media_type.eq_ignore_ascii_case(JSON_CONTENT_TYPE) => Api::Tc3,
        ("/", "POST") if media_type.eq_ignore_ascii_case(FORM_CONTENT_TYPE) => Api::V1Form,
        ("/", "GET") if is_tc3(incoming) => Api::Tc3,
        ("/", "GET") if !incoming.query.is_empty() => Api::V1Form,
        _ => Api::Unknown,
    }
}

/// Whether a request carries a TC3 `Authorization` header (a v1 GET signs in the query).
fn is_tc3(incoming: &Incoming<'_>) -> bool {
    auth::find_header(&incoming.headers, "Authorization")
        .is_some_and(|value| value.trim_start().starts_with(sign::TC3_ALGORITHM))
}

fn dispatch(
    state: &State,
    api: Api,
    incoming: &Incoming<'_>,
    body: &[u8],
) -> Result<Reply, KmsError> {
    match api {
        Api::Tc3 => tc3(state, incoming, body),
        Api::V1Form | Api::Legacy => form(state, api, incoming, body),
        Api::Unknown => Err(KmsError::new(
            "UnsupportedOperation",
            format!(
                "{} {} is not served: use POST / with application/json, a form POST to /, or {}",
                incoming.method, incoming.path, LEGACY_PATH
            ),
        )),
    }
}

/// API 3.0: a JSON body in a POST, or (as the SDK sends with `reqMethod="GET"`) form
/// parameters in the query of a GET.
fn tc3(state: &State, incoming: &Incoming<'_>, body: &[u8]) -> Result<Reply, KmsError> {
    let is_get = incoming.method == "GET";
    if is_get {
        auth::verify_tc3_get(&state.credentials, &incoming.headers, incoming.query, now())?;
    } else {
        auth::verify_tc3(&state.credentials, &incoming.headers, body, now())?;
    }

    let header = |name| auth::find_header(&incoming.headers, name).filter(|v| !v.is_empty());
    let action = header("X-TC-Action")
        .ok_or_else(|| KmsError::missing_parameter("the X-TC-Action header is required"))?;
    check_version(header("X-TC-Version"))?;
    header("X-TC-Region")
        .ok_or_else(|| KmsError::missing_parameter("the X-TC-Region header is required"))?;

    let params = if is_get {
        Params::form(Params::form_fields(incoming.query.as_bytes())?)
    } else {
        Params::json(body)?
    };
    actions::dispatch(&state.kms, action, &params)
}

fn form(state: &State, api: Api, incoming: &Incoming<'_>, body: &[u8]) -> Result<Reply, KmsError> {
    let text = match incoming.method {
        "GET" => incoming.query.as_bytes(),
        _ => body,
    };
    let fields = Params::form_fields(text)?;
    let target = FormTarget {
        method: incoming.method,
        host: auth::find_header(&incoming.headers, "Host").unwrap_or(""),
        path: incoming.path,
    };
    auth::verify_form(&state.credentials, target, &fields, now())?;

    let action = required_field(&fields, "Action")?.to_owned();
    if api == Api::V1Form {
        check_version(fields.get("Version").map(|v| v.as_str()))?;
        required_field(&fields, "Region")?;
    }
    let params = match api {
        Api::Legacy => Params::legacy_form(fields),
        _ => Params::form(fields),
    };
    actions::dispatch(&state.kms, &action, &params)
}

fn required_field<'a>(
    fields: &'a BTreeMap<String, Zeroizing<String>>,
    name: &str,
) -> Result<&'a str, KmsError> {
    fields
        .get(name)
        .map(|value| value.as_str())
        .filter(|value| !value.is_empty())
        .ok_or_else(|| KmsError::missing_parameter(format!("the parameter {name} is required")))
}

fn check_version(version: Option<&str>) -> Result<(), KmsError> {
    match version {
        Some(API_VERSION) => Ok(()),
        Some(other) => Err(KmsError::new(
            "NoSuchVersion",
            format!("version {other:?} is not {API_VERSION}"),
        )),
        None => Err(KmsError::missing_parameter(format!(
            "the version ({API_VERSION}) is required"
        ))),
    }
}

/// Reads the body, refusing more than [`MAX_BODY_LEN`] bytes.
fn read_body(request: &mut tiny_http::Request) -> Result<Zeroizing<Vec<u8>>, KmsError> {
    let too_large = || {
        KmsError::new(
            "RequestSizeLimitExceeded",
            format!("the request body is larger than {MAX_BODY_LEN} bytes"),
        )
    };
    if request.body_length().is_some_and(|len| len > MAX_BODY_LEN) {
        return Err(too_large());
    }

    let mut body = Zeroizing::new(Vec::new());
    request
        .as_reader()
        .take(MAX_BODY_LEN as u64 + 1)
        .read_to_end(&mut body)
        .map_err(|err| KmsError::invalid_parameter(format!("reading the body failed: {err}")))?;
    if body.len() > MAX_BODY_LEN {
        return Err(too_large());
    }
    Ok(body)
}

fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}
