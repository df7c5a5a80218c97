//! The `rag_ingestion` job's payload (SPEC §2), parsed the same way by the
//! API (to refuse a bad payload with 422 at enqueue) and by the worker.

use std::collections::HashMap;

use serde_json::{Map, Value};
use uuid::Uuid;

/// Fields the payload may have; anything else is refused (a typo would
/// otherwise silently fall back to a default).
const FIELDS: [&str; 6] = [
    "documentId",
    "title",
    "transcript",
    "chunkCharLimit",
    "embeddingBatch",
    "analysis",
];

/// `{documentId?, title?, transcript: {segments: [{seq, text}]},
/// chunkCharLimit?, embeddingBatch?, analysis?}`.
///
/// Segments may carry more fields (`start`, `end`, `speaker`, as transcription
/// services send them); they are ignored, and so are other fields of
/// `transcript`.
#[derive(Debug, Clone, PartialEq)]
pub struct RagJob {
    /// The document to (re)build; absent: the job's own id.
    pub document_id: Option<Uuid>,
    pub title: Option<String>,
    /// The segments, sorted by `seq` (each `seq` appears once).
    pub segments: Vec<RagSegment>,
    /// Overrides `RAG_EMBEDDING_CHAR_LIMIT`.
    pub chunk_char_limit: Option<usize>,
    /// Overrides `RAG_EMBEDDING_BATCH`.
    pub embedding_batch: Option<usize>,
    /// Overrides `RAG_ENABLE_CLAUDE_ANALYSIS`.
    pub analysis: Option<bool>,
}

/// One segment of a transcript (or paragraph of a document).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RagSegment {
    /// Its sequence number: a whole number, at least 0.
    pub seq: i64,
    /// Its text (never blank).
    pub text: String,
}

impl RagJob {
    /// The most segments one job may carry.
    pub const MAX_SEGMENTS: usize = 100_000;
    /// The longest title, in characters.
    pub const MAX_TITLE_CHARS: usize = 500;

    /// Parses and checks a payload. The error names the offending field
    /// (`transcript.segments[3].text: …`).
    pub fn parse(payload: &Value) -> Result<Self, String> {
        let object = payload
            .as_object()
            .ok_or("payload: must be a JSON object")?;
        if let Some(unknown) = object.keys().find(|k| !FIELDS.contains(&k.as_str())) {
            return Err(format!(
                "{unknown}: unknown field, expected one of {}",
                FIELDS.join(", ")
            ));
        }
        let document_id = match present(object, "documentId") {
            None => None,
            Some(Value::String(id)) => {
                Some(Uuid::parse_str(id).map_err(|_| "documentId: must be a UUID".to_owned())?)
            }
            Some(_) => return Err("documentId: must be a UUID string".into()),
        };
        let title = match present(object, "title") {
            None => None,
            Some(Value::String(title)) if title.chars().count() <= Self::MAX_TITLE_CHARS => {
                Some(title.clone())
            }
            Some(Value::String(_)) => {
                return Err(format!(
                    "title: at most {} characters",
                    Self::MAX_TITLE_CHARS
                ));
            }
            Some(_) => return Err("title: must be a string".into()),
        };
        let segments = segments(object.get("transcript"))?;
        let chunk_char_limit = bounded(
            object,
            "chunkCharLimit",
            roundhouse_config::RAG_CHAR_LIMIT_RANGE,
        )?;
        let embedding_batch = bounded(
            object,
            "embeddingBatch",
            roundhouse_config::RAG_EMBEDDING_BATCH_RANGE,
        )?;
        let analysis = match present(object, "analysis") {
            None => None,
            Some(Value::Bool(on)) => Some(*on),
            Some(_) => return Err("analysis: must be true or false".into()),
        };
        Ok(Self {
            document_id,
            title,
            segments,
            chunk_char_limit,
            embedding_batch,
            analysis,
        })
    }
}

/// The value of `key`, treating `null` as absent.
fn present<'a>(object: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    object.get(key).filter(|v| !v.is_null())
}

/// An optional whole number within `range`.
fn bounded(
    object: &Map<String, Value>,
    key: &str,
    range: std::ops::RangeInclusive<usize>,
) -> Result<Option<usize>, String> {
    let Some(value) = present(object, key) else {
        return Ok(None);
    };
    value
        .as_u64()
        .and_then(|n| usize::try_from(n).ok())
        .filter(|n| range.contains(n))
        .map(Some)
        .ok_or_else(|| {
            format!(
                "{key}: must be a whole number from {} to {}",
                range.start(),
                range.end()
            )
        })
}

fn segments(transcript: Option<&Value>) -> Result<Vec<RagSegment>, String> {
    let transcript = match transcript {
        Some(Value::Object(transcript)) => transcript,
        Some(_) => return Err("transcript: must be an object {segments: [{seq, text}]}".into()),
        None => return Err("transcript: required, {segments: [{seq, text}]}".into()),
    };
    let list = match transcript.get("segments") {
        Some(Value::Array(list)) if !list.is_empty() => list,
        Some(Value::Array(_)) => return Err("transcript.segments: must not be empty".into()),
        Some(_) => return Err("transcript.segments: must be an array of {seq, text}".into()),
        None => return Err("transcript.segments: required, an array of {seq, text}".into()),
    };
    if list.len() > RagJob::MAX_SEGMENTS {
        return Err(format!(
            "transcript.segments: at most {} segments per job",
            RagJob::MAX_SEGMENTS
        ));
    }
    let mut first_at: HashMap<i64, usize> = HashMap::with_capacity(list.len());
    let mut segments = Vec::with_capacity(list.len());
    for (i, segment) in list.iter().enumerate() {
        let field = |name: &str| format!("transcript.segments[{i}].{name}");
        let Value::Object(segment) = segment else {
            return Err(format!(
                "transcript.segments[{i}]: must be an object {{seq, text}}"
            ));
        };
        let seq = segment
            .get("seq")
            .and_then(Value::as_i64)
            .filter(|seq| *seq >= 0)
            .ok_or_else(|| format!("{}: must be a whole number, at least 0", field("seq")))?;
        if let Some(first) = first_at.insert(seq, i) {
            return Err(format!(
                "{}: {seq} is also the seq of transcript.segments[{first}]",
                field("seq")
            ));
        }
        let text = match segment.get("text") {
            Some(Value::String(text)) if !text.trim().is_empty() => text.clone(),
            Some(Value::String(_)) => return Err(format!("{}: must not be blank", field("text"))),
            Some(_) => return Err(format!("{}: must be a string", field("text"))),
            None => return Err(format!("{}: required", field("text"))),
        };
        segments.push(RagSegment { seq, text });
    }
    segments.sort_by_key(|s| s.seq);
    Ok(segments)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_transcript_is_parsed_and_sorted_by_seq() {
        let job = RagJob::parse(&json!({
            "documentId": "0195f3a1-7b1c-7d2e-8f00-000000000001",
            "title": "Standup",
            "transcript": {"language": "en", "segments": [
                {"seq": 2, "text": "second", "start": 1.5},
                {"seq": 1, "text": "first", "speaker": "A"}
            ]},
            "chunkCharLimit": 500, "embeddingBatch": 8, "analysis": true
        }))
        .unwrap();
        assert_eq!(
            job.segments.iter().map(|s| s.seq).collect::<Vec<_>>(),
            [1, 2]
        );
        assert_eq!(job.segments[0].text, "first");
        assert_eq!(job.chunk_char_limit, Some(500));
        assert_eq!(job.embedding_batch, Some(8));
        assert_eq!(job.analysis, Some(true));
        assert!(job.document_id.is_some());

        let minimal =
            RagJob::parse(&json!({"transcript": {"segments": [{"seq": 0, "text": "x"}]}})).unwrap();
        assert_eq!(minimal.document_id, None);
        assert_eq!(minimal.chunk_char_limit, None);
    }

    #[test]
    fn bad_payloads_name_the_field() {
        let one = |segment: Value| json!({"transcript": {"segments": [segment]}});
        for (payload, field) in [
            (json!([]), "payload"),
            (json!({}), "transcript"),
            (json!({"transcript": "hello"}), "transcript"),
            (json!({"transcript": {}}), "transcript.segments"),
            (
                json!({"transcript": {"segments": []}}),
                "transcript.segments",
            ),
            (json!({"transcript": {"segments": [1]}}), "segments[0]"),
            (one(json!({"seq": 1, "text": 5})), "segments[0].text"),
            (one(json!({"seq": 1, "text": "  "})), "segments[0].text"),
            (one(json!({"seq": 1})), "segments[0].text"),
            (one(json!({"seq": -1, "text": "a"})), "segments[0].seq"),
            (one(json!({"seq": 1.5, "text": "a"})), "segments[0].seq"),
            (one(json!({"seq": "1", "text": "a"})), "segments[0].seq"),
            (
                json!({"transcript": {"segments": [{"seq": 1, "text": "a"}, {"seq": 1, "text": "b"}]}}),
                "segments[1].seq",
            ),
            (
                json!({"documentId": "doc-1", "transcript": {"segments": [{"seq": 1, "text": "a"}]}}),
                "documentId",
            ),
            (
                json!({"chunkCharLimit": 0, "transcript": {"segments": [{"seq": 1, "text": "a"}]}}),
                "chunkCharLimit",
            ),
            (
                json!({"embeddingBatch": 100000, "transcript": {"segments": [{"seq": 1, "text": "a"}]}}),
                "embeddingBatch",
            ),
            (
                json!({"analysis": "yes", "transcript": {"segments": [{"seq": 1, "text": "a"}]}}),
                "analysis",
            ),
            (
                json!({"title": 3, "transcript": {"segments": [{"seq": 1, "text": "a"}]}}),
                "title",
            ),
            (
                json!({"segments": [], "transcript": {"segments": [{"seq": 1, "text": "a"}]}}),
                "segments",
            ),
        ] {
            let error = RagJob::parse(&payload).unwrap_err();
            assert!(error.contains(field), "{payload}: {error}");
        }
    }
}
