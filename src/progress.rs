//! Progress bars shared by the offline commands: one look everywhere, hidden when stderr is not a
//! terminal so CI logs stay readable.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::time::Duration;

/// A bar over a known number of items, showing rate and ETA, e.g. `embed [=====>   ] 512/4890 93 docs/s ETA 47s`.
pub fn bar(len: u64, prefix: &str, unit: &str) -> ProgressBar {
    let pb = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr_with_hz(4));
    let template =
        format!("{{prefix:>8}} [{{bar:30}}] {{human_pos}}/{{human_len}} {{per_sec:.1}} {unit}/s ETA {{eta}} {{msg}}");
    pb.set_style(ProgressStyle::with_template(&template).expect("static template is valid").progress_chars("=> "));
    pb.set_prefix(prefix.to_string());
    pb
}

/// A bar over bytes of an input file (for streaming readers whose row count is unknown up front).
pub fn bytes_bar(len: u64, prefix: &str) -> ProgressBar {
    let pb = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr_with_hz(4));
    pb.set_style(
        ProgressStyle::with_template(
            "{prefix:>8} [{bar:30}] {binary_bytes}/{binary_total_bytes} {binary_bytes_per_sec} ETA {eta} {msg}",
        )
        .expect("static template is valid")
        .progress_chars("=> "),
    );
    pb.set_prefix(prefix.to_string());
    pb
}

/// A spinner for steps of unknown length.
pub fn spinner(prefix: &str) -> ProgressBar {
    let pb = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr_with_hz(4));
    pb.set_style(
        ProgressStyle::with_template("{prefix:>8} {spinner} {msg} {elapsed}").expect("static template is valid"),
    );
    pb.set_prefix(prefix.to_string());
    pb.enable_steady_tick(Duration::from_millis(250));
    pb
}

/// A reader that advances a [`bytes_bar`] by the bytes read through it.
pub struct ReadProgress<R> {
    inner: R,
    bar: ProgressBar,
}

impl<R> ReadProgress<R> {
    pub fn new(inner: R, bar: ProgressBar) -> Self {
        ReadProgress { inner, bar }
    }
}

impl<R: std::io::Read> std::io::Read for ReadProgress<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.bar.inc(n as u64);
        Ok(n)
    }
}
