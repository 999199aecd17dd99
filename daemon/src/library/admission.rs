//! Admission kept for ingestion: API embedding traffic may not take every slot of an embedding
//! model, so a saturated API cannot starve the ingestion workers.
//!
//! An engine admits `max_num_seqs + max_queue` requests (a remote model `max_concurrency +
//! max_queue`); beyond that it answers 429 at once. Each ingestion worker has at most one
//! embedding call in flight, so `ingest.workers` slots of each embedding model are kept for it:
//! the API's embedding requests (`/v1/embeddings`, the question of a search or of `file_search`)
//! first take a permit from a pool of the remaining slots, and get the 429 themselves when it is
//! empty. Ingestion takes no permit here; with the API held to its share, the engine always has a
//! slot for it (and a transient refusal anyway is retried, see [`super::retry`]).

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::config::{ModelKindSetting, ModelSettings, ProviderSetting};
use crate::fault::ServiceError;

/// The API's share of each embedding model's admission.
#[derive(Debug, Default)]
pub struct ApiAdmission {
    /// Model name -> (permits, the slots kept for ingestion).
    pools: HashMap<String, (Arc<Semaphore>, usize)>,
}

impl ApiAdmission {
    /// Pools for the embedding models among `models`, keeping `reserved` slots of each.
    pub fn new(models: &[ModelSettings], reserved: usize) -> Self {
        let pools = models
            .iter()
            .filter(|m| m.kind == ModelKindSetting::Embedding)
            .map(|m| {
                let slots = match m.provider {
                    ProviderSetting::Local => m.max_num_seqs as usize + m.max_queue,
                    ProviderSetting::Remote => m.max_concurrency + m.max_queue,
                };
                // The API keeps at least one slot, whatever the configuration.
                let api = slots.saturating_sub(reserved).max(1);
                (m.name.clone(), (Arc::new(Semaphore::new(api)), slots - api.min(slots)))
            })
            .collect();
        ApiAdmission { pools }
    }

    /// A permit for one API embedding request to `model`, held until it is answered; `None` for
    /// a model without a pool (not an embedding model: the engine refuses it anyway).
    pub fn permit(&self, model: &str) -> Result<Option<OwnedSemaphorePermit>, ServiceError> {
        let Some((pool, reserved)) = self.pools.get(model) else { return Ok(None) };
        pool.clone().try_acquire_owned().map(Some).map_err(|_| {
            ServiceError::Busy(format!(
                "the embedding model `{model}` is busy: the API's share of its queue is full ({reserved} more slots are kept for ingestion); retry shortly"
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn embedding_model(max_num_seqs: u32, max_queue: usize) -> ModelSettings {
        let shipped = ::config::Config::builder()
            .add_source(::config::File::from_str(crate::config::DEFAULT_CONFIG, ::config::FileFormat::Toml))
            .build()
            .and_then(|c| c.get::<Vec<ModelSettings>>("models"))
            .unwrap_or_else(|e| panic!("the embedded [[models]]: {e}"));
        let mut m = shipped.into_iter().find(|m| m.kind == ModelKindSetting::Embedding).unwrap_or_else(|| panic!("no embedding model"));
        assert_eq!(m.kind, ModelKindSetting::Embedding);
        m.max_num_seqs = max_num_seqs;
        m.max_queue = max_queue;
        m
    }

    #[test]
    fn the_api_gets_all_but_the_reserved_slots_and_a_clear_429_beyond() {
        let model = embedding_model(2, 3);
        let admission = ApiAdmission::new(std::slice::from_ref(&model), 2);
        let held: Vec<_> = (0..3).map(|_| admission.permit(&model.name)).collect::<Result<Vec<_>, _>>().unwrap_or_default();
        assert_eq!(held.iter().filter(|p| p.is_some()).count(), 3);
        let refused = admission.permit(&model.name).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(refused.contains("2 more slots are kept for ingestion"), "{refused}");
        drop(held);
        assert!(admission.permit(&model.name).is_ok_and(|p| p.is_some()), "a permit comes back when its request ends");
        assert!(admission.permit("smollm2-135m-instruct").is_ok_and(|p| p.is_none()), "chat models have no pool");
        // A configuration with fewer slots than workers still lets the API in.
        let tiny = embedding_model(1, 1);
        assert!(ApiAdmission::new(std::slice::from_ref(&tiny), 8).permit(&tiny.name).is_ok_and(|p| p.is_some()));
    }
}
