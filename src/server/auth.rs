//! API keys for writes: `Authorization: Bearer <key>` or `X-API-Key: <key>`, compared in constant time.
//!
//! Keys come from `--api-key` and from `--api-key-file` (one a line); any of them is accepted. The file
//! is read again when its modification time or size changes (checked at most once a second), so a key
//! is rotated without a restart: add the new key, move the clients, remove the old one.

use super::error::ApiError;
use super::ServeConfig;
use axum::http::HeaderMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

/// A secret that never prints.
#[derive(Clone)]
pub struct ApiKey(String);

impl ApiKey {
    pub fn new(key: String) -> Option<Self> {
        let key = key.trim().to_string();
        (!key.is_empty()).then_some(ApiKey(key))
    }

    /// Constant time in the key's content: both sides are hashed, and the digests compared without an
    /// early exit, so neither the length nor a matching prefix shows in the timing.
    fn matches(&self, candidate: &str) -> bool {
        let a = crate::hash::sha256(self.0.as_bytes());
        let b = crate::hash::sha256(candidate.as_bytes());
        a.iter().zip(b.iter()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
    }
}

impl std::fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ApiKey(<redacted>)")
    }
}

fn presented(headers: &HeaderMap) -> Option<&str> {
    if let Some(v) = headers.get(axum::http::header::AUTHORIZATION).and_then(|v| v.to_str().ok()) {
        let v = v.trim();
        if let Some(token) = v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")) {
            return Some(token.trim());
        }
    }
    headers.get("x-api-key").and_then(|v| v.to_str().ok()).map(str::trim)
}

/// The keys a write may present: the flag's, plus those of the key file as last read.
#[derive(Debug, Clone, Default)]
pub struct ApiKeys {
    flag: Option<ApiKey>,
    file: Option<Arc<KeyFile>>,
}

#[derive(Debug)]
struct KeyFile {
    path: PathBuf,
    state: Mutex<FileState>,
}

#[derive(Debug)]
struct FileState {
    keys: Vec<ApiKey>,
    version: Option<Version>,
    checked: Instant,
}

/// Modification time and length of a version of the key file.
type Version = (SystemTime, u64);

/// How often the key file's metadata is looked at.
const RECHECK: Duration = Duration::from_secs(1);

fn read_keys(path: &std::path::Path) -> std::io::Result<(Vec<ApiKey>, Option<Version>)> {
    let meta = std::fs::metadata(path)?;
    let text = std::fs::read_to_string(path)?;
    let keys = parse_keys(&text);
    Ok((keys, meta.modified().ok().map(|m| (m, meta.len()))))
}

/// One key a line; blank lines and lines starting with `#` are skipped.
fn parse_keys(text: &str) -> Vec<ApiKey> {
    text.lines().filter(|l| !l.trim_start().starts_with('#')).filter_map(|l| ApiKey::new(l.to_string())).collect()
}

impl ApiKeys {
    /// Keys from the flag and the file; an unreadable file is an error (a typo must not silently
    /// disable writes).
    pub fn new(flag: Option<String>, file: Option<PathBuf>) -> anyhow::Result<Self> {
        let file = match file {
            None => None,
            Some(path) => {
                let (keys, version) = read_keys(&path)
                    .map_err(|e| anyhow::anyhow!("cannot read the API key file {}: {e}", path.display()))?;
                let state = Mutex::new(FileState { keys, version, checked: Instant::now() });
                Some(Arc::new(KeyFile { path, state }))
            }
        };
        Ok(ApiKeys { flag: flag.and_then(ApiKey::new), file })
    }

    /// Writes are possible: a flag key, or a key file (which may gain keys later).
    pub fn enabled(&self) -> bool {
        self.flag.is_some() || self.file.is_some()
    }

    /// For the start-up log line (never a key).
    pub fn describe(&self) -> String {
        match (&self.flag, &self.file) {
            (None, None) => "not set: writes disabled".into(),
            (Some(_), None) => "from --api-key (redacted)".into(),
            (flag, Some(file)) => format!(
                "{}{} from {}",
                if flag.is_some() { "1 from --api-key, " } else { "" },
                file.state.lock().map(|s| s.keys.len()).unwrap_or(0),
                file.path.display()
            ),
        }
    }

    /// Whether `candidate` is one of the keys. Every key is compared (no early exit).
    fn accepts(&self, candidate: &str) -> bool {
        let mut ok = self.flag.as_ref().is_some_and(|k| k.matches(candidate));
        if let Some(file) = &self.file {
            let Ok(mut state) = file.state.lock() else { return ok };
            if state.checked.elapsed() >= RECHECK {
                state.checked = Instant::now();
                let now = std::fs::metadata(&file.path).ok().and_then(|m| m.modified().ok().map(|t| (t, m.len())));
                if now != state.version {
                    match read_keys(&file.path) {
                        Ok((keys, version)) => {
                            tracing::info!("API key file {} changed: {} keys", file.path.display(), keys.len());
                            state.keys = keys;
                            state.version = version;
                        }
                        // Mid-rotation the file may be briefly absent: keep the keys last read.
                        Err(e) => tracing::warn!("cannot read the API key file {}: {e}", file.path.display()),
                    }
                }
            }
            for key in &state.keys {
                ok |= key.matches(candidate);
            }
        }
        ok
    }
}

/// Refuse a write without a valid key.
pub fn check(config: &ServeConfig, headers: &HeaderMap) -> Result<(), ApiError> {
    let keys = &config.api_keys;
    if !keys.enabled() {
        return Err(ApiError::Unauthorized("writes are disabled: the server was started without an API key".into()));
    }
    match presented(headers) {
        None => Err(ApiError::Unauthorized("this route needs an API key (`Authorization: Bearer <key>`)".into())),
        Some(candidate) if keys.accepts(candidate) => Ok(()),
        Some(_) => Err(ApiError::Unauthorized("invalid API key".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_compare_by_content_and_never_print() {
        let key = ApiKey::new(" s3cret ".into()).unwrap();
        assert!(key.matches("s3cret"));
        assert!(!key.matches("s3cre"));
        assert!(!key.matches("s3cret2"));
        assert!(!format!("{key:?}").contains("s3cret"));
        assert!(ApiKey::new("  ".into()).is_none());
    }

    #[test]
    fn a_key_file_holds_several_keys_and_is_read_again_when_it_changes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys");
        std::fs::write(&path, "# rotation in progress\nold-key\n\n  new-key  \n").unwrap();
        let keys = ApiKeys::new(Some("flag-key".into()), Some(path.clone())).unwrap();
        assert!(keys.enabled());
        for k in ["old-key", "new-key", "flag-key"] {
            assert!(keys.accepts(k), "{k}");
        }
        assert!(!keys.accepts("# rotation in progress"));
        assert!(!keys.accepts(""));
        assert!(!keys.describe().contains("key\n") && !keys.describe().contains("old-key"));
        // The old key is removed (a different length, so the change shows even within one mtime tick).
        std::fs::write(&path, "new-key\n").unwrap();
        std::thread::sleep(RECHECK + Duration::from_millis(50));
        assert!(!keys.accepts("old-key"));
        assert!(keys.accepts("new-key"));
        // A missing file at start is an error, not writes silently disabled.
        assert!(ApiKeys::new(None, Some(dir.path().join("absent"))).is_err());
        assert!(!ApiKeys::new(None, None).unwrap().enabled());
    }
}
