//! `GET /api/tags`, `POST /api/show`, `GET /api/ps`, `GET /api/version`: the configured models
//! in Ollama's shapes. `/api/tags` lists every configured model; `/api/ps` the loaded ones (a remote one
//! with no size; a `load = "on_demand"` model only while it is loaded); `/api/version` is hearth's.

use std::collections::BTreeMap;

use actix_web::{web, HttpResponse};
use engine::ModelKind;

use super::types::{Details, InfoValue, Processes, Running, ShowRequest, ShowResponse, Tag, Tags, Version};
use super::{resolve, tagged, unix_rfc3339, OllamaError};
use crate::api::{parse_json, Body};
use crate::error::ApiError;
use crate::provider::Backend;
use crate::state::AppState;

pub(super) async fn tags(state: web::Data<AppState>) -> Result<HttpResponse, OllamaError> {
    let models = state.models().map_err(ApiError::from)?.all().iter().map(|b| Tag {
        name: tagged(b.name()),
        model: tagged(b.name()),
        modified_at: modified_at(b),
        size: size(b),
        details: details(b),
    });
    Ok(HttpResponse::Ok().json(Tags { models: models.collect() }))
}

pub(super) async fn ps(state: web::Data<AppState>) -> Result<HttpResponse, OllamaError> {
    let loaded = state.models().map_err(ApiError::from)?.all().iter().filter(|b| b.provider() == "remote" || b.engine_now().is_some());
    let models = loaded.map(|b| Running {
        name: tagged(b.name()),
        model: tagged(b.name()),
        size: size(b),
        size_vram: b.engine_now().filter(|e| e.info().on_gpu).map_or(0, |e| e.info().size_bytes),
        details: details(b),
        context_length: b.max_model_len().unwrap_or(0),
    });
    Ok(HttpResponse::Ok().json(Processes { models: models.collect() }))
}

pub(super) async fn version() -> HttpResponse {
    HttpResponse::Ok().json(Version { version: env!("CARGO_PKG_VERSION") })
}

pub(super) async fn show(state: web::Data<AppState>, body: Body) -> Result<HttpResponse, OllamaError> {
    let request: ShowRequest = parse_json(body, &state)?;
    let name = request.model.or(request.name).ok_or_else(|| ApiError::invalid("model", "`model` is required"))?;
    let backend = resolve(&state, &name)?;
    let mut info: BTreeMap<String, InfoValue> = BTreeMap::new();
    let mut parameters = String::new();
    if let Some(engine) = backend.engine_now().as_ref() {
        let i = engine.info();
        let arch = if i.architecture.is_empty() { "general" } else { i.architecture.as_str() };
        info.insert("general.architecture".to_owned(), i.architecture.clone().into());
        info.insert("general.parameter_count".to_owned(), i.n_params.into());
        info.insert(format!("{arch}.context_length"), i.max_model_len.into());
        info.insert(format!("{arch}.embedding_length"), i.n_embd.into());
        info.insert(format!("{arch}.vocab_size"), i.n_vocab.into());
        parameters = format!("num_ctx {}", i.max_model_len);
    } else if let Some(context) = backend.max_model_len() {
        info.insert("general.context_length".to_owned(), context.into());
    }
    let capabilities = match backend.kind() {
        ModelKind::Chat => vec!["completion"],
        ModelKind::Embedding => vec!["embedding"],
    };
    Ok(HttpResponse::Ok().json(ShowResponse {
        modelfile: String::new(),
        parameters,
        template: String::new(),
        details: details(&backend),
        model_info: info,
        capabilities,
        modified_at: modified_at(&backend),
    }))
}

fn modified_at(backend: &Backend) -> String {
    unix_rfc3339(match backend {
        Backend::Local(local) => local.info().map_or(0, |i| i.loaded_at),
        Backend::Remote(remote) => remote.created(),
    })
}

fn size(backend: &Backend) -> u64 {
    backend.engine_now().map_or(0, |e| e.info().size_bytes)
}

fn details(backend: &Backend) -> Details {
    match backend.engine_now().as_ref() {
        Some(engine) => {
            let info = engine.info();
            let family = info.architecture.clone();
            Details {
                parent_model: String::new(),
                format: "gguf",
                families: (!family.is_empty()).then(|| vec![family.clone()]),
                family,
                parameter_size: parameter_size(info.n_params),
                quantization_level: String::new(),
            }
        }
        None => Details {
            parent_model: String::new(),
            format: "remote",
            family: String::new(),
            families: None,
            parameter_size: String::new(),
            quantization_level: String::new(),
        },
    }
}

/// Ollama's short parameter count: `135M`, `7.2B`.
fn parameter_size(n: u64) -> String {
    let n = n as f64;
    let (value, unit) = if n >= 1e9 { (n / 1e9, "B") } else if n >= 1e6 { (n / 1e6, "M") } else { (n / 1e3, "K") };
    if value >= 100.0 {
        format!("{value:.0}{unit}")
    } else {
        format!("{value:.1}{unit}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameter_sizes_read_as_ollama_writes_them() {
        assert_eq!(parameter_size(134_515_008), "135M");
        assert_eq!(parameter_size(7_241_732_096), "7.2B");
        assert_eq!(parameter_size(22_565_376), "22.6M");
    }
}
