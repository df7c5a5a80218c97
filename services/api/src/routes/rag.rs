//! `GET /api/rag/search?q=&documentId=&k=`: the chunks of the caller's
//! `rag_ingestion` documents most similar to a query, by cosine similarity
//! of their embeddings.
//!
//! The query is embedded with the provider and model the worker embeds
//! chunks with (`RAG_EMBEDDING_PROVIDER`, `RAG_EMBEDDING_MODEL`), and only
//! documents embedded with that model are searched: vectors of two models
//! are not comparable.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use roundhouse_config::Settings;
use roundhouse_db::RagQuery;
use roundhouse_llm::{EmbeddingRequest, LlmConfig, Provider, Providers};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::extract::{ApiQuery, Caller};
use crate::startup::AppState;
use roundhouse_http::ApiError;
use roundhouse_http::docs::{
    BadRequest, Forbidden, InternalError, NotFound, TooManyRequests, Unauthorized, Unavailable,
    Unprocessable,
};

/// Results when the request does not say `k`.
const DEFAULT_K: i64 = 5;
/// The most results one request may ask for.
const MAX_K: i64 = 50;
/// The longest query, in characters.
const MAX_QUERY_CHARS: usize = 2000;

/// How search queries are embedded.
pub struct QueryEmbedder {
    provider: Arc<dyn Provider>,
    model: String,
}

impl QueryEmbedder {
    /// The embedding provider and model of `settings`; fails, naming the
    /// variable, when `RAG_EMBEDDING_PROVIDER` names a provider that is not
    /// configured.
    pub fn from_settings(settings: &Settings) -> anyhow::Result<Self> {
        let providers = LlmConfig::from_settings(settings)
            .and_then(|config| Providers::from_config(&config))
            .map_err(|error| anyhow::anyhow!("{error}"))?;
        let name = settings.rag_embedding_provider();
        let provider = providers
            .get(&name)
            .map_err(|error| anyhow::anyhow!("invalid setting RAG_EMBEDDING_PROVIDER: {error}"))?;
        tracing::info!(
            provider = %name,
            model = %settings.rag_embedding_model,
            "RAG search embeds queries with {name}"
        );
        Ok(Self {
            provider,
            model: settings.rag_embedding_model.clone(),
        })
    }

    /// The query's embedding, of length 1. A provider failure that may
    /// pass is a 503; any other is a 500 (logged, the detail not sent).
    async fn embed(&self, query: &str) -> Result<Vec<f32>, ApiError> {
        let request = EmbeddingRequest::new(self.model.clone(), vec![query.to_owned()]);
        match self.provider.embed(&request).await {
            Ok(embeddings) => embeddings
                .vectors
                .into_iter()
                .next()
                .map(roundhouse_llm::normalize)
                .ok_or_else(|| ApiError::internal("the embedding provider returned no vector")),
            Err(error) if error.is_retryable() => {
                tracing::warn!(%error, provider = self.provider.name(), "query embedding failed");
                Err(ApiError::unavailable(
                    "the embedding provider is unavailable; try again",
                ))
            }
            Err(error) => Err(ApiError::internal(format!(
                "embedding a search query with {}: {error}",
                self.provider.name()
            ))),
        }
    }
}

/// Query of `GET /api/rag/search`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct SearchQuery {
    /// The text to search for.
    pub q: Option<String>,
    /// Only this document.
    pub document_id: Option<String>,
    /// How many results (1–50, default 5).
    pub k: Option<i64>,
    /// The service only: search this user's documents (default: everyone's).
    pub user_id: Option<String>,
}

/// `{results: [...]}`, most similar first.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SearchResults {
    pub results: Vec<SearchResult>,
}

/// One chunk found.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SearchResult {
    pub document_id: Uuid,
    /// The `seq` of the transcript segment the chunk comes from.
    pub seq: i64,
    /// The chunk's position in its document.
    pub chunk_index: i32,
    pub text: String,
    /// Cosine similarity to the query, from -1 to 1.
    pub score: f64,
}

/// `GET /api/rag/search`: users search their own documents (another user's
/// `documentId` is 404, as another user's job is); the service searches
/// everyone's, or one user's with `userId`.
#[utoipa::path(
    get,
    path = "/api/rag/search",
    tag = "rag",
    security(("userJwt" = []), ("serviceToken" = [])),
    params(SearchQuery),
    responses(
        (status = 200, description = "The most similar chunks, most similar first", body = SearchResults),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 429, response = TooManyRequests),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 422, response = Unprocessable),
        (status = 500, response = InternalError),
        (status = 503, response = Unavailable),
    )
)]
pub async fn search(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(query): ApiQuery<SearchQuery>,
) -> Result<Json<SearchResults>, ApiError> {
    let text = query
        .q
        .as_deref()
        .map(str::trim)
        .filter(|q| !q.is_empty())
        .ok_or_else(|| ApiError::validation("q: required, the text to search for"))?;
    if text.chars().count() > MAX_QUERY_CHARS {
        return Err(ApiError::validation(format!(
            "q: at most {MAX_QUERY_CHARS} characters"
        )));
    }
    let k = query.k.unwrap_or(DEFAULT_K);
    if !(1..=MAX_K).contains(&k) {
        return Err(ApiError::validation(format!(
            "k: must be from 1 to {MAX_K}"
        )));
    }
    let document_id = query
        .document_id
        .as_deref()
        .map(|id| {
            Uuid::parse_str(id.trim())
                .map_err(|_| ApiError::validation("documentId: must be a UUID"))
        })
        .transpose()?;
    let owner = match caller.owner() {
        Some(own) => {
            if query.user_id.as_deref().is_some_and(|asked| asked != own) {
                return Err(ApiError::forbidden(
                    "userId: users can only search their own documents",
                ));
            }
            Some(own.to_owned())
        }
        None => query.user_id,
    };
    if let Some(id) = document_id {
        state
            .db
            .rag_document(id, owner.as_deref())
            .await?
            .ok_or_else(|| ApiError::not_found("document"))?;
    }
    let embedding = state.rag.embed(text).await?;
    let hits = state
        .db
        .search_rag_chunks(&RagQuery {
            embedding: &embedding,
            embedding_model: &state.rag.model,
            owner: owner.as_deref(),
            document_id,
            limit: k,
        })
        .await?;
    Ok(Json(SearchResults {
        results: hits
            .into_iter()
            .map(|hit| SearchResult {
                document_id: hit.document_id,
                seq: hit.seq,
                chunk_index: hit.chunk_index,
                text: hit.text,
                score: hit.score,
            })
            .collect(),
    }))
}
