//! The helpers a manifest author needs, registered on every template set.
//!
//! They are written by hand rather than with `handlebars_helper!` so that, in strict mode, a missing
//! argument is reported by its path (`config.DB_URL`) rather than as a helper's unnamed parameter, and so
//! that `default` and `required` can see that an argument is missing instead of failing before they run.
//! Text that holds a secret's token is transformed later, once the value is filled in (see `opaque`).

use handlebars::{Context, Handlebars, Helper, HelperDef, RenderContext, RenderError, RenderErrorReason, ScopedJson};
use serde_json::Value;

use super::budget::MAX_INDENT;
use super::opaque::{self, Operation};

/// One helper.
#[derive(Debug, Clone, Copy)]
pub(super) enum Function {
    /// `{{b64enc value}}`: base64 of the text.
    B64enc,
    /// `{{quote value}}`: the text as a double-quoted string, escaped (valid YAML and JSON).
    Quote,
    /// `{{toJson value}}`: the value as JSON.
    ToJson,
    /// `{{indent width text}}`: every line of the text indented by `width` spaces.
    Indent,
    /// `{{default value fallback}}`: the value, or the fallback when it is missing, null or empty.
    Default,
    /// `{{required value "message"}}`: the value, or an error naming it when missing, null or empty.
    Required,
}

impl Function {
    /// Every helper, by the name templates call it.
    pub(super) const ALL: [(&'static str, Function); 6] = [
        ("b64enc", Function::B64enc),
        ("quote", Function::Quote),
        ("toJson", Function::ToJson),
        ("indent", Function::Indent),
        ("default", Function::Default),
        ("required", Function::Required),
    ];
}

fn other(message: String) -> RenderError {
    RenderErrorReason::Other(message).into()
}

/// Argument `index`, which must be present and set.
fn argument<'a>(h: &'a Helper<'_>, index: usize, what: &str) -> Result<&'a Value, RenderError> {
    match h.param(index) {
        None => Err(other(format!("{} needs {what} as argument {}", h.name(), index + 1))),
        Some(param) if param.is_value_missing() => {
            Err(RenderErrorReason::MissingVariable(param.relative_path().cloned()).into())
        }
        Some(param) => Ok(param.value()),
    }
}

/// A scalar as text: strings as they are, numbers and booleans printed, null as "".
fn text(h: &Helper<'_>, value: &Value, what: &str) -> Result<String, RenderError> {
    match value {
        Value::String(text) => Ok(text.clone()),
        Value::Null => Ok(String::new()),
        Value::Bool(_) | Value::Number(_) => Ok(value.to_string()),
        Value::Array(_) | Value::Object(_) => {
            Err(other(format!("{} needs text as {what}, not a list or a map (use toJson)", h.name())))
        }
    }
}

fn unset(param: Option<&handlebars::PathAndJson<'_>>) -> bool {
    param.is_none_or(|p| {
        p.is_value_missing() || matches!(p.value(), Value::Null) || p.value().as_str().is_some_and(str::is_empty)
    })
}

/// `value` with every string that holds a token marked for JSON escaping once filled in.
fn escape_tokens_in(value: &Value) -> Value {
    match value {
        Value::String(text) if opaque::is_opaque(text) => Value::String(opaque::wrap_each(text, Operation::JsonEscape)),
        Value::Array(items) => Value::Array(items.iter().map(escape_tokens_in).collect()),
        Value::Object(map) => Value::Object(map.iter().map(|(k, v)| (k.clone(), escape_tokens_in(v))).collect()),
        other => other.clone(),
    }
}

/// The message of `required`: a literal only, so that nothing a config source holds can reach an error.
fn required_message(h: &Helper<'_>) -> Result<String, RenderError> {
    let Some(param) = h.param(1) else { return Ok(String::new()) };
    match param.try_get_constant_value() {
        Some(Value::String(text)) => Ok(format!(": {text}")),
        Some(other) => Ok(format!(": {other}")),
        None => Err(other("required takes its message as a literal string (\"…\"), not a variable".into())),
    }
}

impl HelperDef for Function {
    fn call_inner<'reg: 'rc, 'rc>(
        &self,
        h: &Helper<'rc>,
        _: &'reg Handlebars<'reg>,
        context: &'rc Context,
        _: &mut RenderContext<'reg, 'rc>,
    ) -> Result<ScopedJson<'rc>, RenderError> {
        let value = match self {
            Function::B64enc => {
                let text = text(h, argument(h, 0, "a value")?, "its argument")?;
                if opaque::is_opaque(&text) {
                    Value::String(Operation::Base64.defer(&text))
                } else {
                    Value::String(Operation::Base64.apply(&text))
                }
            }
            Function::Quote => {
                let text = text(h, argument(h, 0, "a value")?, "its argument")?;
                // serde_json escapes the plain parts now; tokens are escaped once filled in.
                Value::String(Value::String(opaque::wrap_each(&text, Operation::JsonEscape)).to_string())
            }
            Function::ToJson => Value::String(escape_tokens_in(argument(h, 0, "a value")?).to_string()),
            Function::Indent => {
                let width = argument(h, 0, "a width")?
                    .as_u64()
                    .and_then(|w| usize::try_from(w).ok())
                    .ok_or_else(|| other("indent needs a number of spaces as argument 1".into()))?;
                if width > MAX_INDENT {
                    return Err(other(format!("indent takes at most {MAX_INDENT} spaces, not {width}")));
                }
                let text = text(h, argument(h, 1, "a text")?, "argument 2")?;
                if opaque::is_opaque(&text) {
                    Value::String(Operation::Indent(width).defer(&text))
                } else {
                    Value::String(Operation::Indent(width).apply(&text))
                }
            }
            Function::Default => {
                if unset(h.param(0)) {
                    argument(h, 1, "a fallback value")?.clone()
                } else {
                    argument(h, 0, "a value")?.clone()
                }
            }
            Function::Required => {
                let message = required_message(h)?;
                if unset(h.param(0)) {
                    let path =
                        h.param(0).and_then(|p| p.relative_path().cloned()).unwrap_or_else(|| "its argument".into());
                    let stage = context.data().get("stage").and_then(Value::as_str);
                    let what = match (path.strip_prefix("config."), stage) {
                        (Some(key), Some(stage)) => format!("config key {key} is required for stage {stage}"),
                        _ => format!("{path} is required"),
                    };
                    return Err(other(format!("{what} but is not set{message}")));
                }
                argument(h, 0, "a value")?.clone()
            }
        };
        Ok(ScopedJson::Derived(value))
    }
}
