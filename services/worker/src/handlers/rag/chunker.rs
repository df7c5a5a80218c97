//! Splitting a segment's text into chunks of at most `limit` characters,
//! preferring sentence ends, then whitespace, and splitting inside a word
//! only when one word is longer than the limit.
//!
//! Deterministic: the same text and limit always give the same chunks, which
//! is what lets an interrupted ingestion skip the chunks it already stored.

/// Characters that end a sentence when whitespace (or the text's end) follows.
const SENTENCE_ENDS: [char; 6] = ['.', '!', '?', '…', '。', '？'];

/// The chunks of `text`, in order: each non-empty, trimmed, and at most
/// `limit` characters (Unicode scalar values) long. Whitespace between
/// chunks is dropped; nothing else is.
///
/// Each chunk is the longest prefix of what remains that fits, cut after
/// the last sentence end in it, or else at its last whitespace, or else
/// (one word longer than `limit`) after exactly `limit` characters. A
/// sentence end in the first half of the window is passed over for
/// whitespace further on, so that a short first sentence does not make a
/// tiny chunk.
pub(crate) fn chunk_text(text: &str, limit: usize) -> Vec<String> {
    assert!(limit > 0, "a chunk limit of 0 cannot make progress");
    let mut chunks = Vec::new();
    let mut rest = text.trim();
    while !rest.is_empty() {
        // Byte offset just past the first `limit` characters, if the rest is longer.
        let Some((window_end, _)) = rest.char_indices().nth(limit) else {
            chunks.push(rest.to_owned());
            break;
        };
        let cut = cut_point(rest, window_end);
        chunks.push(rest[..cut].trim_end().to_owned());
        rest = rest[cut..].trim_start();
    }
    chunks
}

/// Where to end the chunk that must fit in `rest[..window_end]`: a byte
/// offset in `1..=window_end`, on a character boundary.
fn cut_point(rest: &str, window_end: usize) -> usize {
    let window = &rest[..window_end];
    let mut sentence = None;
    let mut space = None;
    let mut chars = rest.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        if i >= window_end {
            break;
        }
        let next = chars.peek().map(|&(_, n)| n);
        let end_of_c = i + c.len_utf8();
        if c.is_whitespace() && i > 0 {
            space = Some(i);
        }
        let followed_by_space = next.is_none_or(char::is_whitespace);
        if (SENTENCE_ENDS.contains(&c) && followed_by_space) || c == '\n' {
            sentence = Some(end_of_c);
        }
    }
    // Whitespace right after the window: the whole window is a clean cut.
    if rest[window_end..].starts_with(char::is_whitespace) {
        space = Some(window_end);
    }
    let half = window.len() / 2;
    match (sentence, space) {
        (Some(s), _) if s >= half => s,
        (_, Some(w)) => w,
        (Some(s), None) => s,
        (None, None) => window_end,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chars(s: &str) -> usize {
        s.chars().count()
    }

    /// The words of a text, for checking that chunking loses nothing.
    fn words(text: &str) -> Vec<&str> {
        text.split_whitespace().collect()
    }

    #[test]
    fn short_text_is_one_chunk_trimmed() {
        assert_eq!(chunk_text("  Hello there.  ", 100), ["Hello there."]);
        assert!(chunk_text("   ", 100).is_empty());
    }

    #[test]
    fn chunks_end_at_sentences_when_they_can() {
        let text =
            "The build is green again. We shipped the fix on Monday. Next we look at latency.";
        let chunks = chunk_text(text, 60);
        assert_eq!(
            chunks,
            [
                "The build is green again. We shipped the fix on Monday.",
                "Next we look at latency."
            ]
        );
    }

    #[test]
    fn without_a_late_sentence_end_chunks_end_at_whitespace() {
        // The only sentence end is early: cutting there would leave a 4-character chunk.
        let text =
            "Yes. and then we kept talking about the roadmap for quite a while without stopping";
        let chunks = chunk_text(text, 40);
        assert!(chunks[0].len() > 20, "{chunks:?}");
        for chunk in &chunks {
            assert!(chars(chunk) <= 40, "{chunk:?}");
            assert!(!chunk.starts_with(' ') && !chunk.ends_with(' '));
        }
        assert_eq!(words(&chunks.join(" ")), words(text));
        // No word was cut.
        for chunk in &chunks {
            for word in words(chunk) {
                assert!(words(text).contains(&word), "{word}");
            }
        }
    }

    #[test]
    fn a_word_longer_than_the_limit_is_split_hard() {
        let long = "x".repeat(25);
        let chunks = chunk_text(&format!("ab {long} cd"), 10);
        assert_eq!(chunks, ["ab", "xxxxxxxxxx", "xxxxxxxxxx", "xxxxx cd"]);
        // Multi-byte characters are counted and cut as characters.
        let chunks = chunk_text(&"é".repeat(7), 3);
        assert_eq!(chunks, ["ééé", "ééé", "é"]);
    }

    #[test]
    fn newlines_are_boundaries() {
        let chunks = chunk_text("Agenda\nitem one is long enough\nitem two", 30);
        assert_eq!(chunks, ["Agenda\nitem one is long enough", "item two"]);
    }

    #[test]
    fn chunks_never_exceed_the_limit_and_lose_no_word() {
        // A deterministic mix of word lengths, sentence ends and unicode.
        let vocabulary = [
            "a",
            "the",
            "ingestion",
            "pipeline",
            "façade",
            "naïve",
            "résumé.",
            "OK?",
            "wow!",
            "x",
            "supercalifragilisticexpialidocious",
            "…",
            "データ",
            "end.\n",
        ];
        let mut state = 0x2545_f491_u64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for round in 0..300 {
            let len = (next() % 120) as usize;
            let text: Vec<&str> = (0..len)
                .map(|_| vocabulary[(next() % vocabulary.len() as u64) as usize])
                .collect();
            let text = text.join(if round % 3 == 0 { "  " } else { " " });
            for limit in [1, 2, 5, 12, 40, 200] {
                let chunks = chunk_text(&text, limit);
                for chunk in &chunks {
                    assert!(!chunk.is_empty());
                    assert!(chars(chunk) <= limit, "{limit}: {chunk:?}");
                    assert_eq!(chunk.trim(), chunk);
                }
                let rejoined: String = chunks.concat();
                let original: String = text.split_whitespace().collect();
                let rejoined: String = rejoined.split_whitespace().collect();
                assert_eq!(rejoined, original, "limit {limit}");
                assert_eq!(chunks, chunk_text(&text, limit), "deterministic");
            }
        }
    }
}
