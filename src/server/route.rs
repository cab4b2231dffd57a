//! One request to one answer: pick the API by path and content type, read a bounded body, check
//! the signature, run the action, and answer `200` with `Content-Type: application/json`.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;

use bytes::Buf;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming as Body;
use hyper::http::request::Parts;
use hyper::{Request, Response, header};
use zeroize::{Zeroize, Zeroizing};

use super::State;
use super::actions;
use super::auth::{self, FormTarget};
use super::params::Params;
use super::reply::{Reply, Style, render_error};
use crate::kms::tencent::sign;
use crate::kms::{KmsError, new_request_id};

/// The largest request body read (the service documents 1 MB for form POSTs).
pub const MAX_BODY_LEN: usize = 1024 * 1024;

/// The most bytes of an oversized body read and thrown away before answering.
const MAX_DRAINED_LEN: usize = 8 * MAX_BODY_LEN;

/// The API version every 3.0 call must name.
pub const API_VERSION: &str = "2019-01-18";

/// The path of the legacy 2.0 API.
pub const LEGACY_PATH: &str = "/v2/index.php";

/// The exact Content-Type of every answer (the official SDK reads errors only with this one).
const JSON_CONTENT_TYPE: &str = "application/json";

const FORM_CONTENT_TYPE: &str = "application/x-www-form-urlencoded";

/// Answers one request; never panics, whatever the input. The body is read here, within the
/// server's read timeout; the keyring work runs on a blocking thread.
pub async fn answer(
    state: Arc<State>,
    request: Request<Body>,
) -> Result<Response<Full<SecretBuf>>, Infallible> {
    let request_id = new_request_id();
    let (parts, body) = request.into_parts();
    let body = read_body(&parts, body, state.read_timeout).await;

    let id = request_id.clone();
    let handled = tokio::task::spawn_blocking(move || {
        catch_unwind(AssertUnwindSafe(|| handle(&state, &parts, body, &id))).ok()
    })
    .await;
    let body = handled.ok().flatten().unwrap_or_else(|| {
        log::debug!("request {request_id} failed inside the server");
        let err = KmsError::internal("the server failed on this request");
        render_error(Style::V3, &err, &request_id)
    });

    let mut response = Response::new(Full::new(SecretBuf::new(body)));
    let content_type = header::HeaderValue::from_static(JSON_CONTENT_TYPE);
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, content_type);
    Ok(response)
}

/// An answer's bytes, wiped when the response is dropped (answers carry plaintext data keys).
pub struct SecretBuf {
    bytes: Zeroizing<Vec<u8>>,
    sent: usize,
}

impl SecretBuf {
    fn new(bytes: Zeroizing<Vec<u8>>) -> Self {
        Self { bytes, sent: 0 }
    }
}

impl Buf for SecretBuf {
    fn remaining(&self) -> usize {
        self.bytes.len() - self.sent
    }

    fn chunk(&self) -> &[u8] {
        &self.bytes[self.sent..]
    }

    fn advance(&mut self, count: usize) {
        self.sent = (self.sent + count).min(self.bytes.len());
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

fn handle(
    state: &State,
    parts: &Parts,
    body: Result<Zeroizing<Vec<u8>>, KmsError>,
    request_id: &str,
) -> Zeroizing<Vec<u8>> {
    let method = parts.method.as_str();
    let path = parts.uri.path();
    let headers: Vec<(&str, String)> = parts
        .headers
        .iter()
        .map(|(name, value)| {
            (
                name.as_str(),
                String::from_utf8_lossy(value.as_bytes()).into(),
            )
        })
        .collect();
    let incoming = Incoming {
        method,
        path,
        query: parts.uri.query().unwrap_or(""),
        headers: headers.iter().map(|(n, v)| (*n, v.as_str())).collect(),
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

/// Reads the body within `timeout`, refusing more than [`MAX_BODY_LEN`] bytes. An oversized
/// body is read on and thrown away up to [`MAX_DRAINED_LEN`], so that a client still sending it
/// gets the answer; a declared length beyond that is refused before anything is read, and the
/// connection is closed after the answer.
async fn read_body(
    parts: &Parts,
    mut body: Body,
    timeout: std::time::Duration,
) -> Result<Zeroizing<Vec<u8>>, KmsError> {
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|len| len > MAX_DRAINED_LEN as u64) {
        return Err(too_large());
    }

    let mut read = Zeroizing::new(Vec::new());
    let mut seen = 0;
    let collect = async {
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|err| reading_failed(&err))?;
            let Ok(data) = frame.into_data() else {
                continue;
            };
            seen += data.len();
            if seen > MAX_DRAINED_LEN {
                break;
            }
            if seen > MAX_BODY_LEN {
                // Refused whatever follows: drop (and wipe) what was kept, only count the rest.
                read = Zeroizing::new(Vec::new());
                continue;
            }
            let mut data = Vec::from(data);
            read.extend_from_slice(&data);
            data.zeroize();
        }
        Ok(())
    };
    match tokio::time::timeout(timeout, collect).await {
        Ok(Ok(())) if seen > MAX_BODY_LEN => Err(too_large()),
        Ok(collected) => collected.map(|()| read),
        Err(_) => Err(reading_failed(&format!(
            "no body within {}s",
            timeout.as_secs()
        ))),
    }
}

fn too_large() -> KmsError {
    KmsError::new(
        "RequestSizeLimitExceeded",
        format!("the request body is larger than {MAX_BODY_LEN} bytes"),
    )
}

fn reading_failed(err: &dyn std::fmt::Display) -> KmsError {
    KmsError::invalid_parameter(format!("reading the body failed: {err}"))
}

fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}
