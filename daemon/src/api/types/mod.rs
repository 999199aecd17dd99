//! The JSON the API answers with, as typed structs: one `#[derive(Serialize, ToSchema)]` type per
//! OpenAI object, built from the services' domain types (`From` impls beside each), so the shape
//! on the wire and the schema in `/openapi.json` are one definition (`api::openapi` names these
//! types; schemathesis checks live answers against them).
//!
//! Field order follows OpenAI's objects (and what hearth answered before these types existed):
//! clients read fields by name, but a diff of two answers stays readable. Fields that are always
//! null here (`expires_at`, `next_page`) are still sent, as OpenAI sends them. A constant `object`
//! is a `&'static str` whose schema pattern allows only that value.

pub mod completions;
pub mod embeddings;
pub mod files;
pub mod health;
pub mod logprobs;
pub mod models;
pub mod models_library;
pub mod responses;
pub mod tokens;
pub mod vector_stores;

use serde::Serialize;
use utoipa::ToSchema;

use crate::service::listing::Page;

/// A page of a list endpoint: `{"object": "list", "first_id", "last_id", "has_more", "data"}`.
/// Its schema is built per item type (`api::openapi`, `list_of`).
#[derive(Debug, Serialize)]
pub struct List<T> {
    pub object: &'static str,
    pub first_id: Option<String>,
    pub last_id: Option<String>,
    pub has_more: bool,
    pub data: Vec<T>,
}

impl<T> List<T> {
    /// The wire form of `page`, each item converted by `From`.
    pub fn of<D>(page: Page<D>) -> List<T>
    where
        T: From<D>,
    {
        let page = page.map(T::from);
        List { object: "list", first_id: page.first_id, last_id: page.last_id, has_more: page.has_more, data: page.data }
    }
}

/// A deletion's answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct Deleted {
    pub id: String,
    /// The deleted object's type: `file`, `vector_store.deleted`, `vector_store.file.deleted`,
    /// `response`, `model`.
    pub object: &'static str,
    pub deleted: bool,
}

impl Deleted {
    /// `id`, of type `object`, is gone.
    pub fn new(id: String, object: &'static str) -> Deleted {
        Deleted { id, object, deleted: true }
    }
}
