//! One HTTP stream: proxy-wasm's callbacks turned into calls of the core's
//! [`Stream`], and its actions back into the host's. Every decision is the
//! core's; this file only carries them out.

use super::abi;
use super::host::WasmHost;
use super::metrics::Metrics;
use super::store_calls;
use crate::config::Config;
use crate::store::SlotTable;
use crate::stream::{Action as StreamAction, AfterCallout, Stream};
use crate::vm_cache::VmCache;
use log::warn;
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::Action;
use std::cell::RefCell;
use std::rc::Rc;

pub struct Http {
    id: u32,
    metrics: Rc<Metrics>,
    stream: Stream,
}

fn action(a: StreamAction) -> Action {
    match a {
        StreamAction::Continue => Action::Continue,
        StreamAction::Pause => Action::Pause,
    }
}

impl Http {
    pub fn new(
        id: u32,
        config: Option<Rc<Config>>,
        metrics: Rc<Metrics>,
        table: SlotTable,
        vm_cache: Rc<RefCell<VmCache>>,
    ) -> Self {
        Http { id, metrics, stream: Stream::new(id, config, table, vm_cache) }
    }

    /// Runs `f` in one callback (`hook`, named as the dynamic module names its hooks).
    fn with<R>(&mut self, hook: &'static str, f: impl FnOnce(&mut Stream, &mut WasmHost<'_>) -> R) -> R {
        #[cfg(feature = "fault-injection")]
        super::fault_injection::stream(hook);
        let _ = hook;
        let mut host = WasmHost { metrics: &self.metrics };
        f(&mut self.stream, &mut host)
    }
}

impl Context for Http {
    fn on_http_call_response(&mut self, token_id: u32, num_headers: usize, body_size: usize, _num_trailers: usize) {
        let answer = store_calls::callout_answer(num_headers, body_size);
        let after = self.with("http_callout_done", |s, h| s.callout_done(h, u64::from(token_id), answer));
        if let AfterCallout::Resume { response_phase } = after {
            if let Err(s) = abi::resume(response_phase) {
                warn!("[{}] certbound: cannot resume the stream: {s:?}", self.id);
            }
        }
    }
}

impl HttpContext for Http {
    fn on_http_request_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        action(self.with("request_headers", |s, h| s.request_headers(h, end_of_stream)))
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        action(self.with("request_body", |s, h| s.request_body(h, body_size, end_of_stream)))
    }

    /// Trailers end the request without an end-of-stream body callback (the
    /// SDK's default would let a held request go on undecided).
    fn on_http_request_trailers(&mut self, _num_trailers: usize) -> Action {
        action(self.with("request_trailers", |s, h| s.request_trailers(h)))
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        action(self.with("response_headers", |s, h| s.response_headers(h, end_of_stream)))
    }

    fn on_http_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        action(self.with("response_body", |s, h| s.response_body(h, body_size, end_of_stream)))
    }

    /// Trailers end the response: a held token response is bound (or an
    /// introspection or metadata response patched) before any of it goes on.
    fn on_http_response_trailers(&mut self, _num_trailers: usize) -> Action {
        action(self.with("response_trailers", |s, h| s.response_trailers(h)))
    }
}
