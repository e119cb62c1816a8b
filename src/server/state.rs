//! The handler state: the configuration, and the service once it has loaded.

use super::error::ApiError;
use super::ServeConfig;
use crate::service::Service;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, OnceLock};

/// The handler state: cheap handles only.
#[derive(Clone)]
pub struct AppState {
    pub loaded: Arc<OnceLock<Arc<Service>>>,
    pub config: Arc<ServeConfig>,
    /// Set when a shutdown signal arrived: /readyz turns 503 so balancers stop sending traffic.
    pub stopping: Arc<AtomicBool>,
    /// The map's compressed forms for the current catalog state (`GET /v1/map`).
    pub map_encoded: Arc<super::cache::Encoded>,
}

impl AppState {
    pub fn new(config: ServeConfig) -> Self {
        AppState {
            loaded: Arc::new(OnceLock::new()),
            config: Arc::new(config),
            stopping: Arc::new(AtomicBool::new(false)),
            map_encoded: Arc::new(super::cache::Encoded::default()),
        }
    }

    /// A state whose service is already loaded (tests that build the service from parts).
    pub fn with_service(config: ServeConfig, service: Arc<Service>) -> Self {
        let state = AppState::new(config);
        let _ = state.loaded.set(service);
        state
    }

    /// The loaded service, or 503 while it is still loading.
    pub fn ready(&self) -> Result<Arc<Service>, ApiError> {
        self.loaded
            .get()
            .cloned()
            .ok_or_else(|| ApiError::Unavailable("the service is still loading its artifacts".into()))
    }
}

impl super::extract::BodyLimit for AppState {
    fn body_limit(&self) -> usize {
        self.config.service.max_body_bytes
    }
}
