//! The HTTP transport: the axum router, authentication, the one error → HTTP mapping, rate
//! limits and metrics. Handlers are short and call the engine; no business rule lives here.

#![forbid(unsafe_code)]

mod body;
mod context;
mod error;
mod idempotency;
mod in_process;
mod json;
mod metrics;
mod openapi;
mod preauth;
mod ratelimit;
mod routes;
mod serve;
mod state;

pub use error::ApiError;
pub use in_process::InProcess;
pub use preauth::PreAuthLimits;
pub use ratelimit::RateLimits;
pub use routes::router;
/// The route table: every endpoint with its access rule and audit action (the authorization
/// matrix test walks it).
pub use routes::table as route_table;
pub use serve::{Listen, serve};
pub use state::{AppState, ServerConfig, TestClock};
