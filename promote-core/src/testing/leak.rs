//! What a leak sweep needs: everything the process logs, captured as text, and the forms in which a secret
//! value could appear in it. A test runs promotions with a known secret, then searches every output (this
//! capture included) for [`leak_forms`] of that value.

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};

use base64::Engine as _;

/// Everything the process's tracing subscriber has written since [`CapturedLogs::install`], at TRACE for every
/// target, records of the `log` crate included.
#[derive(Debug)]
pub struct CapturedLogs {
    bytes: Arc<Mutex<Vec<u8>>>,
}

impl CapturedLogs {
    /// Installs the process's global tracing subscriber on the first call, writing plain text (no colours)
    /// into the capture; later calls return the same capture. It is installed with `init`, as an embedder
    /// would install one, which also bridges the `log` crate (that handlebars, reqwest and hyper log through)
    /// into tracing at TRACE: a subscriber installed without the bridge would see none of their records, and a
    /// sweep would pass however much they leaked.
    ///
    /// # Panics
    ///
    /// When another global subscriber or `log` logger is already installed in the process.
    pub fn install() -> &'static CapturedLogs {
        static CAPTURE: OnceLock<CapturedLogs> = OnceLock::new();
        CAPTURE.get_or_init(|| {
            let bytes = Arc::new(Mutex::new(Vec::new()));
            let sink = bytes.clone();
            tracing_subscriber::fmt()
                .with_max_level(tracing::Level::TRACE)
                .with_ansi(false)
                .with_writer(move || CaptureWriter(sink.clone()))
                .init();
            assert_eq!(log::max_level(), log::LevelFilter::Trace, "the log bridge is installed at TRACE");
            CapturedLogs { bytes }
        })
    }

    /// The text captured so far.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.bytes.lock().unwrap_or_else(|poisoned| poisoned.into_inner())).into_owned()
    }
}

struct CaptureWriter(Arc<Mutex<Vec<u8>>>);

impl Write for CaptureWriter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The forms in which `value` could leak: itself, and base64-encoded (as a Kubernetes Secret's `data`, or a
/// template's `b64enc`, would write it).
pub fn leak_forms(value: &str) -> [String; 2] {
    [value.to_owned(), base64::engine::general_purpose::STANDARD.encode(value)]
}
