//! The proxy-wasm shell: reads what the host knows, calls the pure core,
//! and applies its decisions. No policy lives here.

mod abi;
#[cfg(feature = "fault-injection")]
mod fault_injection;
mod host;
mod http;
mod metrics;
mod root;
mod store_calls;

use proxy_wasm::traits::RootContext;

proxy_wasm::main! {{
    // Our own logger (the SDK's panics on a host status it does not expect);
    // its level is the host's, read again when the VM starts.
    let _ = log::set_logger(&abi::HostLogger);
    log::set_max_level(log::LevelFilter::Info);
    std::panic::set_hook(Box::new(|info| abi::log(5, &info.to_string())));
    proxy_wasm::set_root_context(|context_id| -> Box<dyn RootContext> {
        Box::new(root::Root::new(context_id))
    });
}}
