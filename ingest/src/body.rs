//! Bounded body decompression.
//!
//! Decompression streams through a reader capped at [`crate::MAX_BODY_BYTES`] + 1
//! bytes of output, so a gzip bomb costs at most the cap in memory and the time to
//! inflate it, never more.

use std::io::Read;

use crate::IngestError;

/// Content encodings accepted on OTLP/HTTP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Identity,
    Gzip,
}

impl Encoding {
    pub fn from_header(value: Option<&str>) -> Result<Encoding, IngestError> {
        match value.map(|v| v.trim().to_ascii_lowercase()).as_deref() {
            None | Some("") | Some("identity") => Ok(Encoding::Identity),
            Some("gzip") | Some("x-gzip") => Ok(Encoding::Gzip),
            Some(other) => Err(IngestError::UnsupportedMedia(format!(
                "unsupported content-encoding {other:?}: use gzip or none"
            ))),
        }
    }
}

/// Decode `raw` according to `encoding`, refusing output larger than `limit`.
pub fn decompress(raw: Vec<u8>, encoding: Encoding, limit: usize) -> Result<Vec<u8>, IngestError> {
    match encoding {
        Encoding::Identity => {
            if raw.len() > limit {
                return Err(IngestError::TooLarge { limit });
            }
            Ok(raw)
        }
        Encoding::Gzip => {
            let decoder = flate2::read::MultiGzDecoder::new(raw.as_slice());
            let mut out = Vec::with_capacity((raw.len() * 4).min(limit));
            decoder
                .take(limit as u64 + 1)
                .read_to_end(&mut out)
                .map_err(|err| IngestError::Malformed(format!("invalid gzip body: {err}")))?;
            if out.len() > limit {
                return Err(IngestError::TooLarge { limit });
            }
            Ok(out)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::Compression;
    use flate2::write::GzEncoder;
    use std::io::Write;

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut enc = GzEncoder::new(Vec::new(), Compression::best());
        enc.write_all(data).unwrap();
        enc.finish().unwrap()
    }

    #[test]
    fn bomb_is_refused_at_the_limit() {
        let bomb = gzip(&vec![0u8; 4 * 1024 * 1024]);
        assert!(bomb.len() < 64 * 1024);
        let err = decompress(bomb, Encoding::Gzip, 1024 * 1024).unwrap_err();
        assert!(matches!(err, IngestError::TooLarge { .. }));
    }

    #[test]
    fn round_trip_and_garbage() {
        assert_eq!(
            decompress(gzip(b"hello"), Encoding::Gzip, 10).unwrap(),
            b"hello"
        );
        assert!(matches!(
            decompress(b"not gzip".to_vec(), Encoding::Gzip, 100).unwrap_err(),
            IngestError::Malformed(_)
        ));
        assert!(matches!(
            Encoding::from_header(Some("br")).unwrap_err(),
            IngestError::UnsupportedMedia(_)
        ));
    }
}
