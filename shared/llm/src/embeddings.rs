//! Embeddings: the provider-neutral request and answer, the OpenAI-compatible
//! wire format (`POST {base}/embeddings`), and the `dev` provider's offline
//! lexical embedding.

use serde::{Deserialize, Serialize};

use crate::LlmError;
use crate::http::Endpoint;

/// A request for the embeddings of some texts, the same for every provider.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EmbeddingRequest {
    /// The provider's embedding model (`text-embedding-3-small`, …); the
    /// `dev` provider ignores it.
    pub model: String,
    /// The texts, each embedded on its own; answers come in the same order.
    pub inputs: Vec<String>,
}

impl EmbeddingRequest {
    /// A request for `model` to embed `inputs`.
    pub fn new(model: impl Into<String>, inputs: Vec<String>) -> Self {
        Self {
            model: model.into(),
            inputs,
        }
    }
}

/// The answer to an [`EmbeddingRequest`].
///
/// Providers check it before returning: one vector per input, in input
/// order, all of the same non-zero length, every component finite.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Embeddings {
    /// One vector per input, in the order of the inputs.
    pub vectors: Vec<Vec<f32>>,
    /// The model that answered, as the provider reports it, or the requested name.
    pub model: String,
    /// Tokens read (the provider's count, or an estimate when it sent none).
    pub prompt_tokens: u32,
}

impl Embeddings {
    /// The length of the vectors (0 when there are none).
    pub fn dimensions(&self) -> usize {
        self.vectors.first().map_or(0, Vec::len)
    }

    /// Checks the shape of an answer to a request of `inputs` texts.
    pub(crate) fn check(self, provider: &str, inputs: usize) -> Result<Self, LlmError> {
        let bad = |what: String| Err(LlmError::Protocol(format!("{provider}: {what}")));
        if self.vectors.len() != inputs {
            return bad(format!(
                "asked for {inputs} embeddings, got {}",
                self.vectors.len()
            ));
        }
        let dimensions = self.dimensions();
        if inputs > 0 && dimensions == 0 {
            return bad("an embedding is empty".to_owned());
        }
        if self.vectors.iter().any(|v| v.len() != dimensions) {
            return bad("the embeddings differ in length".to_owned());
        }
        if self.vectors.iter().flatten().any(|x| !x.is_finite()) {
            return bad("an embedding has a component that is not a finite number".to_owned());
        }
        Ok(self)
    }
}

/// `v` scaled to length 1 (unchanged when it is all zeros), so that the dot
/// product of two such vectors is their cosine similarity.
pub fn normalize(mut v: Vec<f32>) -> Vec<f32> {
    let norm = v
        .iter()
        .map(|x| f64::from(*x) * f64::from(*x))
        .sum::<f64>()
        .sqrt();
    if norm > 0.0 {
        for x in &mut v {
            *x = (f64::from(*x) / norm) as f32;
        }
    }
    v
}

/// The cosine similarity of two vectors of the same length (0 when either
/// is all zeros).
pub fn cosine_similarity(a: &[f32], b: &[f32]) -> f64 {
    let (mut dot, mut aa, mut bb) = (0.0f64, 0.0f64, 0.0f64);
    for (x, y) in a.iter().zip(b) {
        let (x, y) = (f64::from(*x), f64::from(*y));
        dot += x * y;
        aa += x * x;
        bb += y * y;
    }
    if aa == 0.0 || bb == 0.0 {
        return 0.0;
    }
    dot / (aa.sqrt() * bb.sqrt())
}

/// Asks an OpenAI-compatible `/embeddings` endpoint for `request`.
pub(crate) async fn openai_embed(
    endpoint: &Endpoint,
    request: &EmbeddingRequest,
) -> Result<Embeddings, LlmError> {
    if request.inputs.is_empty() {
        return Ok(Embeddings {
            vectors: Vec::new(),
            model: request.model.clone(),
            prompt_tokens: 0,
        });
    }
    let wire = WireRequest {
        model: &request.model,
        input: &request.inputs,
        encoding_format: "float",
    };
    let mut answer: WireEmbeddings = endpoint.post_json(&wire).await?;
    // The API documents `data` in input order and numbers each entry;
    // trust the numbers.
    answer.data.sort_by_key(|d| d.index);
    if answer.data.iter().enumerate().any(|(i, d)| d.index != i) {
        return Err(LlmError::Protocol(format!(
            "{}: the embeddings are not numbered 0..{}",
            endpoint.name,
            request.inputs.len()
        )));
    }
    let prompt_tokens = answer.usage.map_or_else(
        || crate::http::estimate_tokens(request.inputs.iter().map(|i| i.chars().count()).sum()),
        |u| u.prompt_tokens,
    );
    Embeddings {
        vectors: answer.data.into_iter().map(|d| d.embedding).collect(),
        model: answer.model.unwrap_or_else(|| request.model.clone()),
        prompt_tokens,
    }
    .check(&endpoint.name, request.inputs.len())
}

#[derive(Serialize)]
struct WireRequest<'a> {
    model: &'a str,
    input: &'a [String],
    encoding_format: &'static str,
}

#[derive(Deserialize)]
struct WireEmbeddings {
    #[serde(default)]
    data: Vec<WireEmbedding>,
    model: Option<String>,
    usage: Option<WireUsage>,
}

#[derive(Deserialize)]
struct WireEmbedding {
    index: usize,
    embedding: Vec<f32>,
}

#[derive(Deserialize)]
struct WireUsage {
    #[serde(default)]
    prompt_tokens: u32,
}

/// The length of the `dev` provider's embeddings.
pub const DEV_EMBEDDING_DIMENSIONS: usize = 256;

/// The `dev` provider's embedding of `text`: a bag of its words and word
/// pairs, hashed into [`DEV_EMBEDDING_DIMENSIONS`] signed buckets and
/// normalised to length 1.
///
/// Words are the runs of letters and digits, lowercased. Each word adds 1
/// to its bucket and each pair of neighbouring words 0.5 to the pair's, with
/// a sign taken from the hash so that collisions cancel out on average.
/// Texts sharing words (and more so, phrases) get a higher cosine
/// similarity; the same text always gets the same vector, on every machine
/// (FNV-1a, not the process-seeded std hasher). A text without words gets a
/// fixed unit vector.
pub fn dev_embedding(text: &str) -> Vec<f32> {
    let words: Vec<String> = text
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect();
    let mut vector = vec![0.0f32; DEV_EMBEDDING_DIMENSIONS];
    let mut add = |feature: &[&str], weight: f32| {
        let hash = fnv1a(feature);
        let bucket = (hash % DEV_EMBEDDING_DIMENSIONS as u64) as usize;
        let sign = if hash >> 63 == 0 { 1.0 } else { -1.0 };
        vector[bucket] += sign * weight;
    };
    if words.is_empty() {
        add(&["\u{0}"], 1.0);
    }
    for word in &words {
        add(&[word], 1.0);
    }
    for pair in words.windows(2) {
        add(&[&pair[0], &pair[1]], 0.5);
    }
    normalize(vector)
}

/// FNV-1a over the parts, separated by a byte no word contains.
fn fnv1a(parts: &[&str]) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut hash = OFFSET;
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            hash ^= 0x1f;
            hash = hash.wrapping_mul(PRIME);
        }
        for byte in part.bytes() {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(PRIME);
        }
    }
    hash
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(v: &[f32]) -> f64 {
        v.iter()
            .map(|x| f64::from(*x) * f64::from(*x))
            .sum::<f64>()
            .sqrt()
    }

    #[test]
    fn dev_embeddings_are_deterministic_and_normalised() {
        let a = dev_embedding("The quarterly revenue grew by twelve percent.");
        let b = dev_embedding("The quarterly revenue grew by twelve percent.");
        assert_eq!(a, b);
        assert_eq!(a.len(), DEV_EMBEDDING_DIMENSIONS);
        assert!((norm(&a) - 1.0).abs() < 1e-5, "{}", norm(&a));
        // Case and punctuation are not words.
        assert_eq!(
            dev_embedding("the QUARTERLY revenue, grew by twelve percent"),
            a
        );
        let empty = dev_embedding("  ...  ");
        assert!((norm(&empty) - 1.0).abs() < 1e-5);
    }

    #[test]
    fn dev_embeddings_are_stable_across_builds() {
        // Pinned: a changed hash would silently reorder every stored document.
        let v = dev_embedding("hello world");
        let nonzero: Vec<usize> = (0..v.len()).filter(|&i| v[i] != 0.0).collect();
        assert_eq!(nonzero.len(), 3, "two words and one pair: {nonzero:?}");
        assert_eq!(fnv1a(&["hello"]), 0xa430_d846_80aa_bd0b);
    }

    #[test]
    fn lexically_similar_text_scores_higher() {
        let query = dev_embedding("how did the database migration go");
        let close = dev_embedding("The database migration went smoothly on Tuesday.");
        let far = dev_embedding("Lunch was pizza and the weather stayed sunny.");
        let same = cosine_similarity(&query, &query);
        let near = cosine_similarity(&query, &close);
        let unrelated = cosine_similarity(&query, &far);
        assert!((same - 1.0).abs() < 1e-6);
        assert!(near > unrelated + 0.2, "near {near}, unrelated {unrelated}");
        // Word order matters a little, through the pairs.
        let phrase = dev_embedding("database migration");
        let swapped = dev_embedding("migration database");
        let words = dev_embedding("database and the migration");
        assert!(
            cosine_similarity(&phrase, &dev_embedding("the database migration"))
                > cosine_similarity(&swapped, &words)
        );
    }

    #[test]
    fn normalising_keeps_direction_and_leaves_zero_alone() {
        let v = normalize(vec![3.0, 4.0]);
        assert!((v[0] - 0.6).abs() < 1e-6 && (v[1] - 0.8).abs() < 1e-6);
        assert_eq!(normalize(vec![0.0, 0.0]), vec![0.0, 0.0]);
        assert_eq!(cosine_similarity(&[0.0, 0.0], &[1.0, 0.0]), 0.0);
    }

    #[test]
    fn answers_of_the_wrong_shape_are_protocol_errors() {
        let answer = |vectors: Vec<Vec<f32>>| Embeddings {
            vectors,
            model: "m".into(),
            prompt_tokens: 1,
        };
        assert!(answer(vec![vec![1.0], vec![2.0]]).check("p", 2).is_ok());
        for (vectors, inputs) in [
            (vec![vec![1.0]], 2),
            (vec![vec![1.0], vec![1.0, 2.0]], 2),
            (vec![vec![]], 1),
            (vec![vec![f32::NAN]], 1),
        ] {
            assert!(matches!(
                answer(vectors).check("p", inputs),
                Err(LlmError::Protocol(_))
            ));
        }
    }
}
