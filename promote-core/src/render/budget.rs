//! What a template may cost: templates come from pull requests too, so rendering is bounded.
//!
//! - Partials and decorators (`{{> name}}`, `{{#> name}}`, `{{#*inline}}`) are refused when templates are
//!   loaded: they are the only way a template can recurse (a self-including partial overflows the stack)
//!   or grow exponentially (partials that include each other twice per level).
//! - Blocks nest at most [`RenderBudget::max_nesting`] deep.
//! - `indent` takes at most [`MAX_INDENT`] spaces.
//! - One template renders at most [`RenderBudget::max_output_bytes`] bytes; rendering stops there.
//! - One template's `{{#each}}` blocks run their bodies at most [`RenderBudget::max_iterations`] times in
//!   all: nested loops multiply, and a body that writes nothing is not stopped by the output cap.

use std::cell::Cell;
use std::io;
use std::sync::LazyLock;

use handlebars::template::{Template, TemplateElement, TemplateMapping};
use handlebars::{Context, Handlebars, Helper, HelperDef, HelperResult, Output, RenderContext, RenderErrorReason};

/// The widest `indent` a template may ask for.
pub const MAX_INDENT: usize = 1024;

/// Limits on rendering, checked when templates load and while they render.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RenderBudget {
    /// The most bytes one template may render to (default 16 MiB).
    pub max_output_bytes: usize,
    /// How deep blocks (`{{#each}}`, `{{#if}}`…) may nest (default 16).
    pub max_nesting: usize,
    /// How many times, in all, one template's `{{#each}}` blocks may run their bodies (default 2^17 = 131072).
    pub max_iterations: usize,
}

impl Default for RenderBudget {
    fn default() -> Self {
        RenderBudget { max_output_bytes: 16 << 20, max_nesting: 16, max_iterations: 1 << 17 }
    }
}

impl RenderBudget {
    /// Sets the most bytes one template may render to.
    pub fn with_max_output_bytes(mut self, bytes: usize) -> Self {
        self.max_output_bytes = bytes;
        self
    }

    /// Sets how deep blocks may nest.
    pub fn with_max_nesting(mut self, depth: usize) -> Self {
        self.max_nesting = depth;
        self
    }

    /// Sets how many times, in all, one template's `{{#each}}` blocks may run their bodies.
    pub fn with_max_iterations(mut self, iterations: usize) -> Self {
        self.max_iterations = iterations;
        self
    }
}

/// Why a template was refused at load, with its 1-based line and column.
#[derive(Debug)]
pub(super) struct Refusal {
    pub(super) line: Option<usize>,
    pub(super) column: Option<usize>,
    pub(super) message: String,
}

/// Refuses partials, decorators and blocks nested deeper than the budget allows.
pub(super) fn check_template(template: &Template, budget: &RenderBudget) -> Result<(), Refusal> {
    check_elements(template, budget, 0)
}

fn check_elements(template: &Template, budget: &RenderBudget, depth: usize) -> Result<(), Refusal> {
    for (index, element) in template.elements.iter().enumerate() {
        let at = |message: String| {
            let position = template.mapping.get(index);
            Refusal { line: position.map(|p| p.0), column: position.map(|p| p.1), message }
        };
        match element {
            TemplateElement::PartialExpression(_) | TemplateElement::PartialBlock(_) => {
                return Err(at("partials (`{{> …}}`) are not supported in manifest templates".into()));
            }
            TemplateElement::DecoratorExpression(_) | TemplateElement::DecoratorBlock(_) => {
                return Err(at("decorators and inline partials (`{{* …}}`, `{{#* …}}`) are not supported in \
                               manifest templates"
                    .into()));
            }
            TemplateElement::HelperBlock(block) => {
                if depth + 1 > budget.max_nesting {
                    return Err(at(format!("blocks nest deeper than {} levels", budget.max_nesting)));
                }
                for inner in [&block.template, &block.inverse].into_iter().flatten() {
                    check_elements(inner, budget, depth + 1)?;
                }
            }
            // Plain text, expressions and comments; and whatever a later handlebars adds, which the
            // render budget still bounds.
            _ => {}
        }
    }
    Ok(())
}

/// Collects rendered output and stops the render once it passes the budget.
pub(super) struct BoundedOutput {
    pub(super) bytes: Vec<u8>,
    limit: usize,
}

/// The error the output raises when it is full; the renderer maps it to a template error.
pub(super) const OUTPUT_FULL: &str = "rendered output exceeds the budget";

impl BoundedOutput {
    pub(super) fn new(limit: usize) -> Self {
        BoundedOutput { bytes: Vec::new(), limit }
    }
}

impl io::Write for BoundedOutput {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.bytes.len().saturating_add(buf.len()) > self.limit {
            return Err(io::Error::other(OUTPUT_FULL));
        }
        self.bytes.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The helper that counts `{{#each}}` iterations; [`count_iterations`] puts a call to it at the start of every
/// `{{#each}}` body. Not a name a template author would pick, and harmless if one does.
pub(super) const ITERATION_HELPER: &str = "promote_budget_iteration";

/// The error the iteration helper raises when the budget is spent; the renderer maps it to a template error.
pub(super) const ITERATIONS_SPENT: &str = "the template iterates more than its budget allows";

thread_local! {
    /// Iterations left for the render running on this thread. A render is synchronous and one at a time per
    /// thread, and helpers see no per-render state of ours: a thread-local carries the count.
    static ITERATIONS_LEFT: Cell<usize> = const { Cell::new(usize::MAX) };
}

/// Starts the iteration count for one template's render on this thread.
pub(super) fn start_iterations(budget: usize) {
    ITERATIONS_LEFT.with(|left| left.set(budget));
}

/// Counts one `{{#each}}` iteration, and fails the render once the budget is spent.
#[derive(Debug, Clone, Copy)]
pub(super) struct IterationCounter;

impl HelperDef for IterationCounter {
    fn call<'reg: 'rc, 'rc>(
        &self,
        _: &Helper<'rc>,
        _: &'reg Handlebars<'reg>,
        _: &'rc Context,
        _: &mut RenderContext<'reg, 'rc>,
        _: &mut dyn Output,
    ) -> HelperResult {
        ITERATIONS_LEFT.with(|left| match left.get().checked_sub(1) {
            Some(rest) => {
                left.set(rest);
                Ok(())
            }
            None => Err(RenderErrorReason::Other(ITERATIONS_SPENT.into()).into()),
        })
    }
}

/// Puts a call to the iteration helper at the start of every `{{#each}}` body in `template`, so that each
/// iteration counts against the budget whatever the body does.
pub(super) fn count_iterations(template: &mut Template) {
    static CALL: LazyLock<(TemplateElement, TemplateMapping)> = LazyLock::new(|| {
        let mut call = Template::compile(&format!("{{{{{ITERATION_HELPER}}}}}")).expect("the helper call compiles");
        (call.elements.remove(0), call.mapping.remove(0))
    });
    for element in &mut template.elements {
        let TemplateElement::HelperBlock(block) = element else { continue };
        let is_each = block.name.as_name() == Some("each");
        if let Some(body) = &mut block.template {
            count_iterations(body);
            if is_each {
                // Errors name positions by element index: the call takes the position of what it precedes.
                let position = body.mapping.first().cloned().unwrap_or_else(|| CALL.1.clone());
                body.elements.insert(0, CALL.0.clone());
                body.mapping.insert(0, position);
            }
        }
        if let Some(inverse) = &mut block.inverse {
            count_iterations(inverse);
        }
    }
}
