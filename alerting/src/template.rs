//! Annotation templates (minijinja): sandboxed — no file or network access, no
//! custom functions — and HTML-escaped by default, since event content is
//! attacker-controlled.

use minijinja::{AutoEscape, Environment};
use serde::Serialize;

fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_auto_escape_callback(|_| AutoEscape::Html);
    env.set_undefined_behavior(minijinja::UndefinedBehavior::Lenient);
    env
}

/// Check a template compiles.
pub fn check(template: &str) -> Result<(), String> {
    environment()
        .template_from_str(template)
        .map(|_| ())
        .map_err(|e| format!("invalid template: {e}"))
}

/// Render a template with `context`; on error the raw template is returned (an
/// annotation is never worth losing an alert over).
pub fn render(template: &str, context: &impl Serialize) -> String {
    let env = environment();
    let rendered = env
        .template_from_str(template)
        .and_then(|t| t.render(minijinja::Value::from_serialize(context)));
    rendered.unwrap_or_else(|_| template.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn renders_and_escapes() {
        let ctx =
            json!({"group": {"attributes.user.name": "<script>alert(1)</script>"}, "count": 7});
        assert_eq!(
            render(
                "{{ count }} failures for {{ group['attributes.user.name'] }}",
                &ctx
            ),
            "7 failures for &lt;script&gt;alert(1)&lt;&#x2f;script&gt;"
        );
        assert_eq!(render("{{ missing }}x", &ctx), "x");
        assert!(check("{{ unclosed").is_err());
    }
}
