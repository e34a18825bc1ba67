//! The proxy-wasm shell: reads what the host knows, calls the pure core,
//! and applies its decisions. No policy lives here.

mod host;
mod http;
mod metrics;
mod root;
mod store_calls;

use proxy_wasm::traits::RootContext;
use proxy_wasm::types::LogLevel;

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|context_id| -> Box<dyn RootContext> {
        Box::new(root::Root::new(context_id))
    });
}}
