//! Tracing the pipeline's decisions (like `ofproto/trace` and `ovn-trace`).
//!
//! The pipeline is generic over a [`Tracer`]; with [`NoTrace`] every trace call compiles
//! away (`Tracer::ON` is a constant `false`), as VPP's `do_trace` template parameter.
//! With [`Trace`] the steps are recorded and learned state is *not* changed.

use std::fmt;

/// Receives the pipeline's steps.
pub trait Tracer {
    /// False for the production path: trace code is removed at compile time, and
    /// learning and rate limits act. True: decisions are recorded, no state changes.
    const ON: bool;
    /// Records one step of a stage.
    fn step(&mut self, stage: &'static str, detail: fmt::Arguments<'_>);
}

/// The production tracer: records nothing.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoTrace;

impl Tracer for NoTrace {
    const ON: bool = false;
    #[inline(always)]
    fn step(&mut self, _: &'static str, _: fmt::Arguments<'_>) {}
}

/// A recorded trace: one line per decision.
#[derive(Debug, Default, Clone)]
pub struct Trace {
    /// (stage, what it decided)
    pub steps: Vec<(&'static str, String)>,
}

impl Tracer for Trace {
    const ON: bool = true;
    fn step(&mut self, stage: &'static str, detail: fmt::Arguments<'_>) {
        self.steps.push((stage, detail.to_string()));
    }
}

impl fmt::Display for Trace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (stage, d)) in self.steps.iter().enumerate() {
            writeln!(f, "{:>2}. {:<10} {}", i + 1, stage, d)?;
        }
        Ok(())
    }
}
