//! Reading a request body whole, up to a limit.

use futures_util::StreamExt;
use poem::Body;
use poem::error::ReadBodyError;

/// The whole of `body`, or `PayloadTooLarge` past `limit` bytes. Each
/// chunk is copied once into one buffer and let go at once (a chunk kept
/// as it came holds the connection's read buffer, and hyper then takes a
/// new one for the next request). poem's `into_bytes_limit` reads through
/// a zeroed 4 KiB buffer and copies twice (docs/benchmarks.md, twentieth
/// pass).
pub async fn read_limited(body: Body, limit: usize) -> Result<Body, ReadBodyError> {
    let mut chunks = std::pin::pin!(body.into_bytes_stream());
    let mut whole = Vec::new();
    while let Some(chunk) = chunks.next().await.transpose()? {
        if whole.len() + chunk.len() > limit {
            return Err(ReadBodyError::PayloadTooLarge);
        }
        whole.extend_from_slice(&chunk);
    }
    Ok(Body::from_vec(whole))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunked(chunks: &[&'static str]) -> Body {
        let chunks: Vec<Result<&'static str, std::io::Error>> =
            chunks.iter().map(|c| Ok(*c)).collect();
        Body::from_bytes_stream(futures_util::stream::iter(chunks))
    }

    async fn read(body: Body, limit: usize) -> Result<String, ReadBodyError> {
        read_limited(body, limit).await?.into_string().await
    }

    #[tokio::test]
    async fn one_chunk_or_many_arrive_whole() {
        assert_eq!(read(Body::from("{\"a\":1}"), 7).await.unwrap(), "{\"a\":1}");
        assert_eq!(
            read(chunked(&["{\"a\"", ":", "1}"]), 7).await.unwrap(),
            "{\"a\":1}"
        );
        // Empty chunks (and an empty body) are no trouble.
        assert_eq!(read(chunked(&["", "ab", "", "c"]), 3).await.unwrap(), "abc");
        assert_eq!(read(chunked(&["", ""]), 0).await.unwrap(), "");
        assert_eq!(read(Body::empty(), 0).await.unwrap(), "");
    }

    #[tokio::test]
    async fn one_byte_past_the_limit_is_too_large_in_any_chunk() {
        for body in [
            Body::from("12345678"),
            chunked(&["1234", "5678"]),
            chunked(&["12345678", ""]),
            chunked(&["1", "2", "3", "4", "5", "6", "7", "8"]),
        ] {
            let err = read(body, 7).await.unwrap_err();
            assert!(matches!(err, ReadBodyError::PayloadTooLarge), "{err}");
        }
    }

    #[tokio::test]
    async fn a_broken_stream_is_an_io_error() {
        let chunks: Vec<Result<&'static str, std::io::Error>> =
            vec![Ok("12"), Err(std::io::Error::other("cut"))];
        let body = Body::from_bytes_stream(futures_util::stream::iter(chunks));
        let err = read(body, 100).await.unwrap_err();
        assert!(matches!(err, ReadBodyError::Io(_)), "{err}");
    }
}
