//! `inspect` and `keys`: showing headers and managing the local keyring.

use std::path::PathBuf;

use serde_json::json;

use datakey::context::EncryptionContext;
use datakey::envelope::{self, EXIT_KMS, EXIT_USAGE, Inspection};
use datakey::kms::keyring::KeyState;
use datakey::kms::local::{KeyInfo, LocalKms};

use super::args::{InspectArgs, KeysCommand};
use super::{Failure, emit, keyring_path, open_local, printable};

pub(crate) fn inspect(args: InspectArgs) -> Result<(), Failure> {
    let found = envelope::inspect(&args.input).map_err(|e| Failure::new(e.exit_code(), e))?;
    let text = if args.json {
        inspection_json(&found)
    } else {
        inspection_text(&found)
    };
    emit(&text)
}

pub(crate) fn inspection_json(found: &Inspection) -> String {
    let core = &found.header.core;
    let keys: Vec<_> = found
        .header
        .wrapped_keys
        .iter()
        .map(|k| {
            json!({"backend": k.backend, "key_id": k.key_id, "region": k.region,
                   "endpoint": k.endpoint, "ciphertext_blob_len": k.blob.len()})
        })
        .collect();
    let context: serde_json::Map<_, _> = core
        .context
        .iter()
        .map(|(k, v)| (k.clone(), json!(v)))
        .collect();
    let value = json!({
        "version": datakey::format::VERSION,
        "cipher": core.cipher.name(),
        "chunk_size": core.chunk_size,
        "wrapped_keys": keys,
        "encryption_context": context,
        "chunks": found.chunks,
        "header_len": found.header_len,
        "file_len": found.file_len,
        "plaintext_len": found.plaintext_len,
        "truncated": found.truncated,
    });
    serde_json::to_string_pretty(&value).expect("json values serialize")
}

pub(crate) fn inspection_text(found: &Inspection) -> String {
    let core = &found.header.core;
    let mut out = format!(
        "format:        datakey v{}\ncipher:        {}\nchunk size:    {}\n",
        datakey::format::VERSION,
        core.cipher,
        core.chunk_size
    );
    for key in &found.header.wrapped_keys {
        let (backend, key_id) = (printable(&key.backend), printable(&key.key_id));
        out += &format!("wrapped key:   {backend} {key_id}");
        if let Some(region) = &key.region {
            out += &format!(" region {}", printable(region));
        }
        if let Some(endpoint) = &key.endpoint {
            out += &format!(" endpoint {}", printable(endpoint));
        }
        out.push('\n');
    }
    let context = EncryptionContext::from_pairs(core.context.iter().cloned())
        .map(|c| c.to_canonical_json())
        .unwrap_or_default();
    let context = if context.is_empty() {
        "(none)".to_owned()
    } else {
        context
    };
    out += &format!(
        "context:       {context}\nchunks:        {}\nheader size:   {}\nfile size:     {}\n\
         plaintext:     {}",
        found.chunks, found.header_len, found.file_len, found.plaintext_len
    );
    if found.truncated {
        out += "\nbody:          truncated: it ends inside a chunk's tag, so decrypt will fail";
    }
    out
}

pub(crate) fn keys(keyring: Option<PathBuf>, command: KeysCommand) -> Result<(), Failure> {
    if let KeysCommand::Create { alias, description } = &command {
        let path = keyring_path(keyring)?;
        let (ring, id) = datakey::kms::keyring::Keyring::update(&path, |ring| {
            ring.create_key(alias.as_deref(), description)
                .map(|key| key.key_id.clone())
        })
        .map_err(|e| Failure::new(EXIT_USAGE, e))?;
        drop(ring);
        return emit(&id).map_err(|f| {
            let message = format!("created key {id}, but {}", f.message);
            Failure::new(f.code, message)
        });
    }

    let kms = open_local(keyring)?;
    let changed = match command {
        KeysCommand::List { json } => return list_keys(&kms, json),
        KeysCommand::Enable { id } => kms.set_state(&id, KeyState::Enabled),
        KeysCommand::Disable { id } => kms.set_state(&id, KeyState::Disabled),
        KeysCommand::Create { .. } => unreachable!("handled above"),
    };
    let key = changed.map_err(|e| Failure::new(EXIT_KMS, e))?;
    emit(&format!("{} {}", key.key_id, key.state.as_str()))
}

pub(crate) fn list_keys(kms: &LocalKms, json: bool) -> Result<(), Failure> {
    let keys = kms.list().map_err(|e| Failure::new(EXIT_KMS, e))?;
    if json {
        let rows: Vec<_> = keys.iter().map(key_json).collect();
        return emit(&serde_json::to_string_pretty(&rows).expect("json values serialize"));
    }
    let mut table = format!(
        "{:<36}  {:<20}  {:<8}  {:<20}  DESCRIPTION",
        "KEY ID", "ALIAS", "STATE", "CREATED"
    );
    for key in &keys {
        let alias = key
            .alias
            .as_deref()
            .map(|a| format!("alias/{a}"))
            .unwrap_or_default();
        table += &format!(
            "\n{:<36}  {:<20}  {:<8}  {:<20}  {}",
            key.key_id,
            printable(&alias),
            key.state.as_str(),
            format_time(key.create_time),
            printable(&key.description)
        );
    }
    emit(&table)
}

pub(crate) fn key_json(key: &KeyInfo) -> serde_json::Value {
    json!({
        "KeyId": key.key_id,
        "Alias": key.alias,
        "Description": key.description,
        "CreateTime": key.create_time,
        "KeyState": key.state.as_str(),
    })
}

pub(crate) fn format_time(unix: i64) -> String {
    let format = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second]");
    time::OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| t.format(&format).ok())
        .unwrap_or_else(|| unix.to_string())
}
