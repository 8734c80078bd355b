//! What every command shares: bodies, headers, times, output and exit codes.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::Args;
use http::{HeaderMap, HeaderName, HeaderValue};

/// How a command ended.
pub(crate) enum Failure {
    /// The request was rejected: exit 1, `<code>: <message>` on stderr.
    Rejected { code: &'static str, message: String },
    /// Unusable input (a file, a secret, an argument): exit 2.
    Input(String),
    /// Something is missing at the end (`reconcile`): exit 1, the lines said what.
    Missing,
    /// The provider or the inbox cannot be read (`reconcile`): exit 3.
    Unavailable(String),
}

pub(crate) type Outcome = Result<(), Failure>;

impl Failure {
    pub(crate) fn input(message: impl std::fmt::Display) -> Self {
        Self::Input(message.to_string())
    }
}

/// Writes the reason of a failure to stderr and maps it to the exit code.
pub(crate) fn finish(outcome: Outcome) -> ExitCode {
    let mut stderr = std::io::stderr().lock();
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Rejected { code, message }) => {
            let _ = writeln!(stderr, "{code}: {message}");
            ExitCode::from(1)
        }
        Err(Failure::Input(message)) => {
            let _ = writeln!(stderr, "error: {message}");
            ExitCode::from(2)
        }
        Err(Failure::Missing) => ExitCode::from(1),
        Err(Failure::Unavailable(message)) => {
            let _ = writeln!(stderr, "unavailable: {message}");
            ExitCode::from(3)
        }
    }
}

/// Prints one line on stdout.
pub(crate) fn print_line(line: &str) -> Outcome {
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{line}").map_err(|e| Failure::input(format!("cannot write to stdout: {e}")))
}

/// BODY: `--body TEXT` or `--body-file PATH`; absent is an empty body.
#[derive(Debug, Args)]
pub(crate) struct BodyArgs {
    /// The body, as text.
    #[arg(long, value_name = "TEXT", conflicts_with = "body_file")]
    body: Option<String>,
    /// The body, read from a file and used byte for byte.
    #[arg(long, value_name = "PATH")]
    body_file: Option<PathBuf>,
}

impl BodyArgs {
    pub(crate) fn read(&self) -> Result<Vec<u8>, Failure> {
        match (&self.body, &self.body_file) {
            (Some(text), _) => Ok(text.clone().into_bytes()),
            (None, Some(path)) => std::fs::read(path).map_err(|e| {
                Failure::input(format!("cannot read the body file {}: {e}", path.display()))
            }),
            (None, None) => Ok(Vec::new()),
        }
    }
}

/// `Name: value` from `-H`: the name is everything before the first `:`.
pub(crate) fn parse_header(text: &str) -> Result<(String, String), String> {
    let (name, value) = text
        .split_once(':')
        .ok_or_else(|| format!("a header is 'Name: value'; {text:?} has no ':'"))?;
    if name.trim().is_empty() {
        return Err(format!("a header needs a name before the ':' in {text:?}"));
    }
    Ok((name.to_owned(), value.trim_start().to_owned()))
}

/// Headers as they would arrive over HTTP.
pub(crate) fn header_map(headers: &[(String, String)]) -> Result<HeaderMap, Failure> {
    let mut map = HeaderMap::new();
    for (name, value) in headers {
        let header_name = HeaderName::from_bytes(name.trim().as_bytes())
            .map_err(|_| Failure::input(format!("{name:?} is not a valid header name")))?;
        let header_value = HeaderValue::from_str(value.trim()).map_err(|_| {
            Failure::input(format!("the value of {name} is not a valid header value"))
        })?;
        map.append(header_name, header_value);
    }
    Ok(map)
}

/// TIME: an RFC 3339 timestamp or an integer of Unix milliseconds.
pub(crate) fn parse_time(text: &str) -> Result<SystemTime, String> {
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        let ms: u64 = text
            .parse()
            .map_err(|_| format!("{text} is too large for Unix milliseconds"))?;
        return Ok(UNIX_EPOCH + Duration::from_millis(ms));
    }
    let parsed = time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .map_err(|_| format!("{text:?} is neither an RFC 3339 timestamp nor Unix milliseconds"))?;
    Ok(SystemTime::from(parsed))
}

/// The given time, or the clock's.
pub(crate) fn time_or_now(time: Option<SystemTime>) -> SystemTime {
    time.unwrap_or_else(SystemTime::now)
}

/// Whole milliseconds since the epoch (0 before it).
pub(crate) fn unix_ms(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_name_is_everything_before_the_first_colon() {
        assert_eq!(
            parse_header("X-A: b:c").unwrap(),
            ("X-A".to_owned(), "b:c".to_owned())
        );
        assert!(parse_header("novalue").is_err());
        assert!(parse_header(": v").is_err());
    }

    #[test]
    fn time_is_rfc3339_or_unix_milliseconds() {
        let ms = parse_time("1700000000000").unwrap();
        let rfc = parse_time("2023-11-14T22:13:20Z").unwrap();
        assert_eq!(ms, rfc);
        assert!(parse_time("yesterday").is_err());
    }
}

/// The context headers Contentful adds to app requests (`sign`, `send contentful`).
#[derive(Debug, Args)]
pub(crate) struct ContextArgs {
    /// Context: x-contentful-space-id.
    #[arg(long, value_name = "ID")]
    space_id: Option<String>,
    /// Context: x-contentful-environment-id.
    #[arg(long, value_name = "ID")]
    environment_id: Option<String>,
    /// Context: x-contentful-app-id.
    #[arg(long, value_name = "ID")]
    app_id: Option<String>,
    /// Context: x-contentful-user-id.
    #[arg(long, value_name = "ID")]
    user_id: Option<String>,
    /// Context: x-contentful-crn.
    #[arg(long, value_name = "CRN")]
    crn: Option<String>,
}

impl ContextArgs {
    /// The context to sign with.
    pub(crate) fn to_context(&self) -> countersign_core::contentful::Context {
        countersign_core::contentful::Context {
            space_id: self.space_id.clone(),
            environment_id: self.environment_id.clone(),
            app_id: self.app_id.clone(),
            user_id: self.user_id.clone(),
            crn: self.crn.clone(),
        }
    }
}
