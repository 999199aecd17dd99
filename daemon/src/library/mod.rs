//! The library: what hearth knows and can look up — the vector stores and their documents (the
//! store), the uploaded files, and the embedding models that turn text into the stores' vectors.
//!
//! Design: one `Library` per process, shared behind an `Arc` by the API (vector stores, files,
//! search, embeddings), by retrieval for `file_search` (`rag/`) and by the ingestion service,
//! which writes into it. It owns no background work: queue, workers, sandbox and watched folders
//! are the ingestion service's (`crate::ingest`), which holds an `Arc<Library>` and never the
//! other way round.
//!
//! The library also keeps the live progress of documents being ingested ([`Progress`]): the
//! ingestion workers publish it here, and the API reads it when it lists a vector store's files,
//! so reading a file's state needs only the library. The API's share of each embedding model's
//! admission ([`admission`]) lives here too, beside the embedders it guards.

pub mod admission;
pub mod embed_limits;
pub mod failure;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use store::Store;

use crate::config::{LimitSettings, Settings};
use crate::files::FileRegistry;
use crate::provider::{Backend, EmbedInput};
use crate::fault::ServiceError;

/// Where a running ingestion job is, for the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// The parser child is reading the file.
    Parsing,
    /// Chunks embedded and stored so far, of all the file's chunks.
    Embedding { done: usize, total: usize },
}

/// (vector store id, file id)
type DocKey = (String, String);

/// How a library is put together (from `[store]`, `[limits]`, `[[models]]` and the state directory).
#[derive(Debug)]
pub struct LibraryParts {
    /// The store, opened.
    pub store: Arc<Store>,
    /// The uploaded files, opened.
    pub files: FileRegistry,
    /// The embedding models served (the first is the default for new vector stores).
    pub embedders: Vec<Backend>,
    /// The vector index a new vector store gets (`[store]`).
    pub index: store::VectorIndexConfig,
    /// `[limits]`, for searches.
    pub limits: LimitSettings,
    /// The API's share of each embedding model's admission.
    pub api_admission: admission::ApiAdmission,
    /// The state directory (file batches keep their records under it).
    pub state_dir: PathBuf,
    /// `[ingest]`'s chunking, shown for files attached without a strategy.
    pub chunking: ingest::ChunkingOptions,
}

/// Vector stores, files and embedders; one per process.
#[derive(Debug)]
pub struct Library {
    store: Arc<Store>,
    files: FileRegistry,
    embedders: Vec<Backend>,
    index: store::VectorIndexConfig,
    limits: LimitSettings,
    api_admission: admission::ApiAdmission,
    state_dir: PathBuf,
    chunking: ingest::ChunkingOptions,
    /// Documents being ingested and how far they are.
    progress: Mutex<HashMap<DocKey, Progress>>,
}

impl Library {
    /// A library from its opened parts.
    pub fn new(parts: LibraryParts) -> Library {
        let LibraryParts { store, files, embedders, index, limits, api_admission, state_dir, chunking } = parts;
        Library { store, files, embedders, index, limits, api_admission, state_dir, chunking, progress: Mutex::new(HashMap::new()) }
    }

    /// Open the store and the files directory under `settings.server.state_dir`, with the
    /// embedding models among `models` (blocking: the store may catch its indexes up first).
    pub fn open(settings: &Settings, models: &[Backend]) -> anyhow::Result<Library> {
        use anyhow::Context;
        let state_dir = &settings.server.state_dir;
        let store = Store::open(settings.store.store_config(state_dir.join("store")))
            .with_context(|| format!("cannot open the store in {}", state_dir.join("store").display()))?;
        let files = FileRegistry::open(state_dir.join("files"), settings.ingest.max_file_bytes)?
            .with_space_guard(store::SpaceGuard::new(state_dir.join("files"), settings.store.min_free_bytes));
        Ok(Library::new(LibraryParts {
            store: Arc::new(store),
            files,
            embedders: models.iter().filter(|m| m.kind() == engine::ModelKind::Embedding).cloned().collect(),
            index: settings.store.index(),
            limits: settings.limits.clone(),
            api_admission: admission::ApiAdmission::new(&settings.models, settings.ingest.workers.max(1)),
            state_dir: state_dir.clone(),
            chunking: ingest::ChunkingOptions {
                max_chunk_size_tokens: settings.ingest.max_chunk_size_tokens,
                chunk_overlap_tokens: settings.ingest.chunk_overlap_tokens,
            },
        }))
    }

    /// The store: vector stores, documents, chunks, search.
    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// The uploaded files.
    pub fn files(&self) -> &FileRegistry {
        &self.files
    }

    /// The state directory.
    pub fn state_dir(&self) -> &Path {
        &self.state_dir
    }

    /// `[limits]`.
    pub fn limits(&self) -> &LimitSettings {
        &self.limits
    }

    /// The vector index configuration of a vector store created now.
    pub fn vector_index(&self) -> store::VectorIndexConfig {
        self.index
    }

    /// `[ingest]`'s chunking, used when a request names none.
    pub fn default_chunking(&self) -> ingest::ChunkingOptions {
        self.chunking
    }

    /// The embedding model named `model`.
    pub fn embedder(&self, model: &str) -> Result<Backend, String> {
        self.embedders
            .iter()
            .find(|e| e.name() == model)
            .cloned()
            .ok_or_else(|| format!("the vector store's embedding model `{model}` is not served by this configuration"))
    }

    /// The embedding model new vector stores use: the first configured.
    pub fn default_embedder(&self) -> Option<&Backend> {
        self.embedders.first()
    }

    /// The width of `embedder`'s vectors: a local model knows it; a remote one is asked once.
    pub async fn dimension(embedder: &Backend) -> Result<usize, ServiceError> {
        if let Some(engine) = embedder.as_local() {
            return Ok(engine.info().n_embd as usize);
        }
        let probe = embedder.embed(EmbedInput::Texts(vec!["dimension probe".into()]), None).await?;
        probe.vectors.first().map(Vec::len).filter(|&d| d > 0).ok_or_else(|| ServiceError::Internal(format!("`{}` returned no embedding", embedder.name())))
    }

    /// A permit for one API embedding request to `model` (`/v1/embeddings`, a search's
    /// question), within the API's share of the model's admission; a 429 when it is used up.
    pub fn api_embed_permit(&self, model: &str) -> Result<Option<tokio::sync::OwnedSemaphorePermit>, ServiceError> {
        self.api_admission.permit(model)
    }

    /// Progress of a document being ingested, if it is.
    pub fn progress(&self, vector_store_id: &str, file_id: &str) -> Option<Progress> {
        self.progress.lock().unwrap_or_else(|p| p.into_inner()).get(&(vector_store_id.to_owned(), file_id.to_owned())).copied()
    }

    /// Publish how far a document's ingestion is (the ingestion workers call this).
    pub fn set_progress(&self, vector_store_id: &str, file_id: &str, progress: Progress) {
        self.progress.lock().unwrap_or_else(|p| p.into_inner()).insert((vector_store_id.to_owned(), file_id.to_owned()), progress);
    }

    /// The document's ingestion is over (whatever its outcome).
    pub fn clear_progress(&self, vector_store_id: &str, file_id: &str) {
        self.progress.lock().unwrap_or_else(|p| p.into_inner()).remove(&(vector_store_id.to_owned(), file_id.to_owned()));
    }
}
