//! Where `replay --output -|PATH|URL` sends its lines: the flag's text read
//! into a [`Destination`], then opened as a [`Sink`].
//!
//! The rule is the flag's: `-` is stdout, text starting with `http://` or
//! `https://` is an endpoint to POST batches to, anything else is a file
//! path, created (or truncated) when opened, not before.

use std::path::PathBuf;
use std::str::FromStr;

use super::format::Format;
use super::http::{Patience, PushError, PushOptions, Pusher};
use super::sink::{FileWriter, Sink};

/// Where replayed lines go, as `--output` names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    /// `-`
    Stdout,
    /// A file, created or truncated.
    File(PathBuf),
    /// An HTTP endpoint fed in acknowledged batches.
    Url(reqwest::Url),
}

/// Why `--output` cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum DestinationError {
    /// An `http(s)://` text that is not a URL.
    #[error("--output {text}: {source}")]
    Url {
        text: String,
        #[source]
        source: url::ParseError,
    },
    #[error("cannot create {}: {source}", path.display())]
    Create {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A format an HTTP endpoint would not store.
    #[error(
        "--output {url} with --format {format}: an HTTP endpoint takes InfluxDB line protocol \
         (--format influx, the default for a URL); InfluxDB's and VictoriaMetrics' /write read \
         nothing else, and VictoriaMetrics acknowledges other text while storing none of it. \
         Write {format} to a file or stdout (--output PATH or -), or drop --format"
    )]
    NotLineProtocol { url: String, format: &'static str },
    #[error(transparent)]
    Http(#[from] PushError),
}

/// How big one HTTP batch may grow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Batches {
    /// Rows at most (0 is taken as 1).
    pub rows: u64,
    /// Bytes at most.
    pub bytes: usize,
}

impl FromStr for Destination {
    type Err = DestinationError;

    fn from_str(text: &str) -> Result<Destination, DestinationError> {
        if text == "-" {
            return Ok(Destination::Stdout);
        }
        if text.starts_with("http://") || text.starts_with("https://") {
            return reqwest::Url::parse(text)
                .map(Destination::Url)
                .map_err(|source| DestinationError::Url {
                    text: text.to_string(),
                    source,
                });
        }
        Ok(Destination::File(PathBuf::from(text)))
    }
}

impl Destination {
    /// The format written here: `asked` (`--format`), else csv, or line
    /// protocol for an endpoint. An endpoint takes line protocol only:
    /// VictoriaMetrics answers csv posted to `/write` with 204 and stores
    /// nothing, so a replay would report rows "acknowledged" that are gone.
    pub fn format(&self, asked: Option<Format>) -> Result<Format, DestinationError> {
        match (self, asked) {
            (Destination::Url(_), None | Some(Format::Influx)) => Ok(Format::Influx),
            (Destination::Url(url), Some(other)) => Err(DestinationError::NotLineProtocol {
                url: super::engine::shown(url),
                format: other.name(),
            }),
            (_, asked) => Ok(asked.unwrap_or(Format::Csv)),
        }
    }

    /// The sink that writes `format` here: a file is created now; an
    /// endpoint gets `format`'s content type, batches of `batches`, each
    /// tried with `patience`. Within a tokio runtime (a file's writer is a
    /// task of its own).
    pub fn open(
        &self,
        format: Format,
        batches: Batches,
        patience: Patience,
    ) -> Result<Sink, DestinationError> {
        match self {
            Destination::Stdout => Ok(Sink::File(FileWriter::new(Box::new(std::io::stdout())))),
            Destination::File(path) => {
                let file =
                    std::fs::File::create(path).map_err(|source| DestinationError::Create {
                        path: path.clone(),
                        source,
                    })?;
                Ok(Sink::File(FileWriter::new(Box::new(file))))
            }
            Destination::Url(url) => {
                let opts = PushOptions {
                    max_rows: batches.rows.max(1),
                    max_bytes: batches.bytes,
                    content_type: format.content_type(),
                    patience,
                    ..Default::default()
                };
                let pusher = Pusher::new(url.clone(), opts)?;
                Ok(Sink::Http(Box::new(pusher)))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Destination, String> {
        text.parse().map_err(|e: DestinationError| e.to_string())
    }

    #[test]
    fn a_dash_is_stdout_a_url_an_endpoint_anything_else_a_file() {
        assert_eq!(parse("-"), Ok(Destination::Stdout));
        let url = "http://127.0.0.1:8086/write?db=site";
        assert_eq!(parse(url), Ok(Destination::Url(url.parse().unwrap())));
        let url = "https://localhost/api/v2/write";
        assert_eq!(parse(url), Ok(Destination::Url(url.parse().unwrap())));
        for path in [
            "out.csv",
            "/tmp/x.influx",
            "--",
            "-.csv",
            "",
            "HTTP://x",
            "http:/x",
        ] {
            assert_eq!(parse(path), Ok(Destination::File(path.into())), "{path}");
        }
    }

    #[test]
    fn a_url_that_does_not_parse_is_named_with_the_flag() {
        assert_eq!(
            parse("http://[bad"),
            Err("--output http://[bad: invalid IPv6 address".into())
        );
        assert_eq!(
            parse("https://"),
            Err("--output https://: empty host".into())
        );
    }

    #[test]
    fn an_endpoint_takes_line_protocol_only() {
        let url: Destination = "http://127.0.0.1:8428/write".parse().unwrap();
        assert_eq!(url.format(None).unwrap(), Format::Influx);
        assert_eq!(url.format(Some(Format::Influx)).unwrap(), Format::Influx);
        for refused in [Format::Csv, Format::Jsonl] {
            let e = url.format(Some(refused)).unwrap_err().to_string();
            assert!(
                e.starts_with("--output http://127.0.0.1:8428/write with --format "),
                "{e}"
            );
            assert!(e.contains(refused.name()), "{e}");
        }
        for other in [Destination::Stdout, Destination::File("x".into())] {
            assert_eq!(other.format(None).unwrap(), Format::Csv);
            assert_eq!(other.format(Some(Format::Jsonl)).unwrap(), Format::Jsonl);
        }
    }

    #[tokio::test]
    async fn opening_creates_the_file_or_says_why_not() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.csv");
        let batches = Batches { rows: 0, bytes: 1 };
        let sink = Destination::File(path.clone()).open(Format::Csv, batches, Patience::default());
        assert!(matches!(sink, Ok(Sink::File(_))));
        assert!(path.is_file());
        let missing = dir.path().join("no/such/dir/out.csv");
        let err = Destination::File(missing.clone())
            .open(Format::Csv, batches, Patience::default())
            .err()
            .unwrap();
        assert_eq!(
            err.to_string(),
            format!(
                "cannot create {}: No such file or directory (os error 2)",
                missing.display()
            )
        );
        let url = "http://127.0.0.1:9/write".parse().unwrap();
        let sink = Destination::Url(url).open(Format::Influx, batches, Patience::default());
        assert!(matches!(sink, Ok(Sink::Http(_))));
    }
}
